//! `[[limits]]`: bandwidth limits on a process name, a user, a systemd unit, a cgroup, a
//! container or a Kubernetes pod, each egress and/or ingress; `[never_limit]` names the processes no limit touches.

use super::alerts::{parse_rate, UserSetting};
use serde::Deserialize;

/// Limits the kernel side has room for.
pub const MAX_LIMITS: usize = 64;

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub name: String,
    /// Every process of this name, together (the kernel's name: its first 15 bytes).
    pub process: Option<String>,
    /// A user name or uid: all its processes together.
    pub user: Option<UserSetting>,
    /// A systemd unit ("backup.service"): everything in its cgroup, together.
    pub unit: Option<String>,
    /// A cgroup path under /sys/fs/cgroup ("machine.slice/libpod-1234.scope"), with
    /// everything below it.
    pub cgroup: Option<String>,
    /// A container by name or id (12 hex digits or more): everything in it, together.
    pub container: Option<String>,
    /// A Kubernetes pod, "namespace/name" or a name: all its containers together.
    pub pod: Option<String>,
    /// Bytes or bits per second, as alert rates ("20 Mbit/s", "5 MB/s").
    pub egress: Option<String>,
    pub ingress: Option<String>,
}

/// `[never_limit]`: processes no limit touches.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeverLimit {
    pub processes: Vec<String>,
}

/// Who a limit applies to: exactly one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitScope {
    Process(String),
    Uid(u32),
    Unit(String),
    Cgroup(String),
    Container(String),
    Pod(String),
}

impl LimitScope {
    /// As a person reads it: "process restic", "unit backup.service".
    pub fn describe(&self) -> String {
        match self {
            LimitScope::Process(name) => format!("process {name}"),
            LimitScope::Uid(uid) => format!("uid {uid}"),
            LimitScope::Unit(unit) => format!("unit {unit}"),
            LimitScope::Cgroup(path) => format!("cgroup {path}"),
            LimitScope::Container(container) => format!("container {container}"),
            LimitScope::Pod(pod) => format!("pod {pod}"),
        }
    }
}

/// A limit as checked: its scope and rates in bytes per second (None: not limited
/// that way).
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub name: String,
    pub scope: LimitScope,
    pub egress: Option<u64>,
    pub ingress: Option<u64>,
}

impl LimitConfig {
    pub fn checked(&self) -> anyhow::Result<Limit> {
        let name = &self.name;
        if name.trim().is_empty() {
            anyhow::bail!("[[limits]] without a name: give each limit a name (name = \"backup\")");
        }
        let mut scopes = Vec::new();
        if let Some(process) = &self.process {
            scopes.push(LimitScope::Process(process.clone()));
        }
        if let Some(user) = &self.user {
            scopes.push(LimitScope::Uid(uid_of(user, name)?));
        }
        if let Some(unit) = &self.unit {
            if unit.contains('/') || unit.trim().is_empty() {
                anyhow::bail!("[[limits]] \"{name}\": unit = \"{unit}\" is no unit name; give one like \"backup.service\"");
            }
            scopes.push(LimitScope::Unit(unit.clone()));
        }
        if let Some(cgroup) = &self.cgroup {
            let path = cgroup.trim_matches('/');
            if path.split('/').any(|part| part == "..") || path.is_empty() {
                anyhow::bail!("[[limits]] \"{name}\": cgroup = \"{cgroup}\" must name a cgroup below /sys/fs/cgroup, without \"..\"");
            }
            scopes.push(LimitScope::Cgroup(path.to_string()));
        }
        if let Some(container) = &self.container {
            if container.trim().is_empty() || container.contains('/') {
                anyhow::bail!("[[limits]] \"{name}\": container = \"{container}\" is no container name; give its name or id, as `podman ps` shows them");
            }
            scopes.push(LimitScope::Container(container.clone()));
        }
        if let Some(pod) = &self.pod {
            let parts: Vec<&str> = pod.split('/').collect();
            if parts.len() > 2 || parts.iter().any(|part| part.trim().is_empty()) {
                anyhow::bail!("[[limits]] \"{name}\": pod = \"{pod}\" is no pod; give \"namespace/name\" or a pod name");
            }
            scopes.push(LimitScope::Pod(pod.clone()));
        }
        let scope = match scopes.len() {
            1 => scopes.remove(0),
            0 => anyhow::bail!("[[limits]] \"{name}\" limits nothing: give one of process, user, unit, cgroup, container or pod"),
            _ => anyhow::bail!("[[limits]] \"{name}\" has more than one of process, user, unit, cgroup, container and pod: give one (a limit per scope)"),
        };
        let rate = |text: &Option<String>, way: &str| -> anyhow::Result<Option<u64>> {
            text.as_ref()
                .map(|text| {
                    let bytes = parse_rate(text).map_err(|e| {
                        anyhow::anyhow!("[[limits]] \"{name}\": {way} = \"{text}\": {e}")
                    })?;
                    Ok((bytes.round() as u64).max(1))
                })
                .transpose()
        };
        let egress = rate(&self.egress, "egress")?;
        let ingress = rate(&self.ingress, "ingress")?;
        if egress.is_none() && ingress.is_none() {
            anyhow::bail!("[[limits]] \"{name}\" sets no rate: give egress and/or ingress (egress = \"20 Mbit/s\")");
        }
        Ok(Limit {
            name: name.clone(),
            scope,
            egress,
            ingress,
        })
    }
}

fn uid_of(user: &UserSetting, limit: &str) -> anyhow::Result<u32> {
    match user {
        UserSetting::Uid(uid) => Ok(*uid),
        UserSetting::Name(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Ok(user.uid.as_raw()),
            Ok(None) => anyhow::bail!("[[limits]] \"{limit}\": no user {name} on this host; give an existing user or a uid (user = 1000)"),
            Err(error) => anyhow::bail!("[[limits]] \"{limit}\": cannot look user {name} up ({error}); give a uid (user = 1000)"),
        },
    }
}

/// Every limit checked, or the first error: names unique, at most MAX_LIMITS.
pub fn check_all(limits: &[LimitConfig]) -> anyhow::Result<Vec<Limit>> {
    if limits.len() > MAX_LIMITS {
        anyhow::bail!(
            "{} [[limits]]: netgraph keeps at most {MAX_LIMITS}; give a limit a wider scope (a unit or user) instead of one per process",
            limits.len()
        );
    }
    let mut checked: Vec<Limit> = Vec::new();
    for limit in limits {
        let limit = limit.checked()?;
        if checked.iter().any(|other| other.name == limit.name) {
            anyhow::bail!(
                "two [[limits]] are named \"{}\": give each its own name",
                limit.name
            );
        }
        checked.push(limit);
    }
    Ok(checked)
}

/// Processes no limit touches, unless the configuration says otherwise: the way in to
/// fix a limit that went wrong.
pub fn default_never_limit() -> Vec<String> {
    vec!["sshd".into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(toml: &str) -> anyhow::Result<Limit> {
        let config: LimitConfig = toml::from_str(toml).unwrap();
        config.checked()
    }

    #[test]
    fn a_process_limited_both_ways() {
        let checked = limit(
            "name = \"backup\"\nprocess = \"restic\"\negress = \"20 Mbit/s\"\ningress = \"1 MB/s\"",
        )
        .unwrap();
        assert_eq!(checked.scope, LimitScope::Process("restic".into()));
        assert_eq!(checked.egress, Some(2_500_000));
        assert_eq!(checked.ingress, Some(1_000_000));
    }

    #[test]
    fn one_scope_and_one_rate_are_required() {
        let error = limit("name = \"x\"\negress = \"1 MB/s\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("limits nothing"), "{error}");
        let error =
            limit("name = \"x\"\nprocess = \"a\"\nunit = \"b.service\"\negress = \"1 MB/s\"")
                .unwrap_err()
                .to_string();
        assert!(error.contains("more than one"), "{error}");
        let error = limit("name = \"x\"\nprocess = \"a\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sets no rate"), "{error}");
        let error = limit("name = \"x\"\nprocess = \"a\"\negress = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("egress = \"fast\""), "{error}");
    }

    #[test]
    fn cgroup_paths_stay_below_the_cgroup_root() {
        let error = limit("name = \"x\"\ncgroup = \"../etc\"\negress = \"1 MB/s\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("without \"..\""), "{error}");
        let checked =
            limit("name = \"x\"\ncgroup = \"/system.slice/a.service/\"\negress = \"1 MB/s\"")
                .unwrap();
        assert_eq!(
            checked.scope,
            LimitScope::Cgroup("system.slice/a.service".into())
        );
    }

    #[test]
    fn containers_and_pods() {
        let checked = limit("name = \"x\"\ncontainer = \"web\"\negress = \"1 MB/s\"").unwrap();
        assert_eq!(checked.scope, LimitScope::Container("web".into()));
        assert_eq!(checked.scope.describe(), "container web");
        let checked = limit("name = \"x\"\npod = \"shop/api-1\"\negress = \"1 MB/s\"").unwrap();
        assert_eq!(checked.scope, LimitScope::Pod("shop/api-1".into()));
        for bad in ["pod = \"a/b/c\"", "pod = \"shop/\"", "container = \"\""] {
            let error = limit(&format!("name = \"x\"\n{bad}\negress = \"1 MB/s\""))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is no"), "{bad}: {error}");
        }
    }

    #[test]
    fn names_are_unique() {
        let one: LimitConfig =
            toml::from_str("name = \"x\"\nprocess = \"a\"\negress = \"1 MB/s\"").unwrap();
        let error = check_all(&[one.clone(), one]).unwrap_err().to_string();
        assert!(error.contains("two [[limits]]"), "{error}");
    }
}

//! What a rule watches: a process name, a uid, an interface, a container, any of them
//! together, or (none given) the whole host.

use crate::accounting::SeriesKey;
use crate::config::alerts::RuleConfig;
use crate::store::{GroupBy, Only};
use crate::workload::Workload;
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Scope {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Scope {
    pub fn of(rule: &RuleConfig) -> Scope {
        Scope {
            process: rule.process.clone(),
            // Checked when the configuration loaded.
            uid: rule.uid().ok().flatten(),
            interface: rule.interface.clone(),
            container: rule.container.clone(),
        }
    }

    pub fn matches(&self, key: &SeriesKey, workload: Option<&Workload>) -> bool {
        self.process.as_ref().is_none_or(|p| *key.name == **p)
            && self.uid.is_none_or(|uid| key.uid == Some(uid))
            && self
                .interface
                .as_ref()
                .is_none_or(|i| *key.interface == **i)
            && self
                .container
                .as_ref()
                .is_none_or(|c| container_matches(c, key, workload))
    }

    /// The same selection as the store's filters.
    pub fn store_filters(&self) -> Vec<(GroupBy, String)> {
        let mut filters = Vec::new();
        if let Some(process) = &self.process {
            filters.push((GroupBy::Process, process.clone()));
        }
        if let Some(uid) = self.uid {
            filters.push((GroupBy::User, uid.to_string()));
        }
        if let Some(interface) = &self.interface {
            filters.push((GroupBy::Interface, interface.clone()));
        }
        if let Some(container) = &self.container {
            filters.push((GroupBy::Container, container.clone()));
        }
        filters
    }

    /// As a person reads it: "process ng-big on eth0", "the host".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(process) = &self.process {
            parts.push(format!("process {process}"));
        }
        if let Some(uid) = self.uid {
            parts.push(format!("uid {uid}"));
        }
        if let Some(container) = &self.container {
            parts.push(format!("container {container}"));
        }
        if let Some(interface) = &self.interface {
            parts.push(format!("on {interface}"));
        }
        if parts.is_empty() {
            "the host".into()
        } else {
            parts.join(" ")
        }
    }
}

/// The store's filters borrowed from owned pairs.
pub fn as_only(filters: &[(GroupBy, String)]) -> Vec<Only<'_>> {
    filters
        .iter()
        .map(|(group_by, key)| Only {
            group_by: *group_by,
            key,
        })
        .collect()
}

/// A container by its name, or by its id (short or full, or the start of either).
fn container_matches(wanted: &str, key: &SeriesKey, workload: Option<&Workload>) -> bool {
    if workload.and_then(|w| w.container.as_deref()) == Some(wanted) {
        return true;
    }
    key.container
        .as_deref()
        .is_some_and(|id| !id.is_empty() && (id.starts_with(wanted) || wanted.starts_with(id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(name: &str, uid: Option<u32>, interface: &str, container: Option<&str>) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            uid,
            interface: interface.into(),
            container: container.map(Arc::from),
            reason: None,
        }
    }

    #[test]
    fn every_given_part_must_match() {
        let scope = Scope {
            process: Some("curl".into()),
            interface: Some("wwan0".into()),
            ..Scope::default()
        };
        assert!(scope.matches(&key("curl", Some(0), "wwan0", None), None));
        assert!(!scope.matches(&key("curl", Some(0), "eth0", None), None));
        assert!(!scope.matches(&key("wget", Some(0), "wwan0", None), None));
        assert!(Scope::default().matches(&key("unknown TCP", None, "eth0", None), None));
        assert_eq!(scope.describe(), "process curl on wwan0");
        assert_eq!(Scope::default().describe(), "the host");
    }

    #[test]
    fn containers_by_name_or_id() {
        let scope = |c: &str| Scope {
            container: Some(c.into()),
            ..Scope::default()
        };
        let row = key("nginx", Some(0), "eth0", Some("0123456789ab"));
        let named = Workload {
            container: Some("web".into()),
            ..Workload::default()
        };
        assert!(scope("web").matches(&row, Some(&named)));
        assert!(scope("0123456789abcdef0123").matches(&row, None));
        assert!(scope("012345").matches(&row, None));
        assert!(!scope("db").matches(&row, Some(&named)));
        assert!(!scope("web").matches(&key("nginx", Some(0), "eth0", None), None));
    }
}

//! Bandwidth limits: which owners each configured limit covers, resolved into what the
//! engine's kernel side matches packets by (process names, uids, cgroup ids), again each
//! interval as units and cgroups come and go. The engine enforces them and counts what
//! each let through and held back.

pub mod command;
mod throttles;

pub use throttles::Throttles;

use crate::config::limits::{Limit, LimitScope};
use crate::workload::ContainerDirectory;
use std::path::PathBuf;
use std::sync::Arc;

/// The configured limits and the processes none of them touches.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LimitSetup {
    pub limits: Vec<Limit>,
    pub never: Vec<String>,
}

/// A limit's number on the kernel side: its place in the configuration, from 1.
pub type LimitId = u32;

/// What the engine is given: each limit's rates, and who each covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitTargets {
    pub limits: Vec<LimitRates>,
    /// Process names (the kernel's: at most 15 bytes) and their limit; `None`: exempt.
    pub names: Vec<(String, Option<LimitId>)>,
    pub uids: Vec<(u32, LimitId)>,
    pub cgroups: Vec<(u64, LimitId)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRates {
    pub id: LimitId,
    pub name: Arc<str>,
    /// As a person reads it ("process restic").
    pub scope: String,
    pub covers: LimitScope,
    /// Bytes per second; None: not limited that way.
    pub egress: Option<u64>,
    pub ingress: Option<u64>,
}

/// What a limit let through and held back one way, over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimitFlow {
    pub passed_bytes: u64,
    pub passed_packets: u64,
    pub held_bytes: u64,
    pub held_packets: u64,
}

impl LimitFlow {
    pub fn add(&mut self, other: &LimitFlow) {
        self.passed_bytes += other.passed_bytes;
        self.passed_packets += other.passed_packets;
        self.held_bytes += other.held_bytes;
        self.held_packets += other.held_packets;
    }
}

/// A limit's counts over an interval, as the engine reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitCount {
    pub rates: LimitRates,
    pub egress: LimitFlow,
    pub ingress: LimitFlow,
}

impl LimitTargets {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }
}

/// Longest process name the kernel keeps (TASK_COMM_LEN less its NUL).
const KERNEL_NAME_BYTES: usize = 15;

/// The kernel's name for a process named `name`: its first 15 bytes.
pub fn kernel_name(name: &str) -> String {
    let mut end = name.len().min(KERNEL_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Resolves a setup, and the throttles alert rules apply, against the host's cgroup
/// tree and the containers the runtimes named.
pub struct Limits {
    setup: LimitSetup,
    throttles: Throttles,
    containers: ContainerDirectory,
    cgroup_root: Option<PathBuf>,
}

impl Limits {
    pub fn new(setup: LimitSetup, throttles: Throttles, containers: ContainerDirectory) -> Limits {
        Limits {
            setup,
            throttles,
            containers,
            cgroup_root: crate::cgroup::cgroup2_root(),
        }
    }

    pub fn throttles(&self) -> &Throttles {
        &self.throttles
    }

    /// Who each limit covers now.
    pub fn targets(&self) -> LimitTargets {
        let mut targets = LimitTargets::default();
        let throttles = self.throttles.active();
        if self.setup.limits.is_empty() && throttles.is_empty() {
            return targets;
        }
        // The kernel side has room for MAX_LIMITS; configured limits were checked
        // against it, throttles take what is left.
        let room = crate::config::limits::MAX_LIMITS.saturating_sub(self.setup.limits.len());
        if throttles.len() > room {
            tracing::warn!("{} quotas throttle at once, more than the {room} limits left: the last ones are not applied", throttles.len());
        }
        let all: Vec<&Limit> = self
            .setup
            .limits
            .iter()
            .chain(throttles.iter().take(room))
            .collect();
        // Exemptions first: a name both exempt and limited stays exempt.
        for name in &self.setup.never {
            targets.names.push((kernel_name(name), None));
        }
        // The tree is walked only for the scopes that live in it.
        let walks_tree = all
            .iter()
            .any(|limit| !matches!(limit.scope, LimitScope::Process(_) | LimitScope::Uid(_)));
        let tree = match &self.cgroup_root {
            Some(root) if walks_tree => Some(crate::cgroup_tree::CgroupTree::read(root)),
            _ => None,
        };
        for (index, limit) in all.into_iter().enumerate() {
            let id = index as LimitId + 1;
            targets.limits.push(LimitRates {
                id,
                name: limit.name.as_str().into(),
                scope: limit.scope.describe(),
                covers: limit.scope.clone(),
                egress: limit.egress,
                ingress: limit.ingress,
            });
            match &limit.scope {
                LimitScope::Process(name) => {
                    let name = kernel_name(name);
                    if !targets.names.iter().any(|(known, _)| *known == name) {
                        targets.names.push((name, Some(id)));
                    }
                }
                LimitScope::Uid(uid) => targets.uids.push((*uid, id)),
                LimitScope::Unit(unit) => {
                    if let Some(tree) = &tree {
                        targets
                            .cgroups
                            .extend(tree.named(unit).into_iter().map(|cgroup| (cgroup, id)));
                    }
                }
                LimitScope::Cgroup(path) => {
                    if let Some(tree) = &tree {
                        targets
                            .cgroups
                            .extend(tree.below(path).into_iter().map(|cgroup| (cgroup, id)));
                    }
                }
                LimitScope::Container(wanted) => {
                    if let Some(tree) = &tree {
                        let cgroups =
                            tree.of_workloads(&self.containers, |w| w.is_container(wanted));
                        targets
                            .cgroups
                            .extend(cgroups.into_iter().map(|cgroup| (cgroup, id)));
                    }
                }
                LimitScope::Pod(wanted) => {
                    if let Some(tree) = &tree {
                        let cgroups = tree.of_workloads(&self.containers, |w| w.is_pod(wanted));
                        targets
                            .cgroups
                            .extend(cgroups.into_iter().map(|cgroup| (cgroup, id)));
                    }
                }
            }
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::LimitScope;

    fn limit(name: &str, scope: LimitScope) -> Limit {
        Limit {
            name: name.into(),
            scope,
            egress: Some(1000),
            ingress: None,
        }
    }

    #[test]
    fn names_are_cut_as_the_kernel_cuts_them() {
        assert_eq!(kernel_name("restic"), "restic");
        assert_eq!(kernel_name("a-very-long-process-name"), "a-very-long-pro");
        assert_eq!(kernel_name("ééééééééé"), "ééééééé");
    }

    #[test]
    fn exempt_names_win_over_limits() {
        let limits = Limits::new(
            LimitSetup {
                limits: vec![
                    limit("ssh", LimitScope::Process("sshd".into())),
                    limit("me", LimitScope::Uid(1000)),
                ],
                never: vec!["sshd".into()],
            },
            Throttles::default(),
            ContainerDirectory::default(),
        );
        let targets = limits.targets();
        assert_eq!(targets.names, vec![("sshd".to_string(), None)]);
        assert_eq!(targets.uids, vec![(1000, 2)]);
        assert_eq!(targets.limits.len(), 2);
        assert_eq!(targets.limits[1].scope, "uid 1000");
    }

    #[test]
    fn no_limits_no_targets() {
        let throttles = Throttles::default();
        let limits = Limits::new(
            LimitSetup {
                limits: Vec::new(),
                never: vec!["sshd".into()],
            },
            throttles.clone(),
            ContainerDirectory::default(),
        );
        assert!(limits.targets().is_empty());
        assert!(limits.targets().names.is_empty());
        // A quota that fires throttles its scope until it ends.
        throttles.start(limit("quota", LimitScope::Process("curl".into())));
        let targets = limits.targets();
        assert_eq!(targets.limits.len(), 1);
        assert_eq!(targets.names.last(), Some(&("curl".to_string(), Some(1))));
        throttles.end("quota");
        assert!(limits.targets().is_empty());
    }
}

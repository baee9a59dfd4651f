//! Turns the owners the kernel recorded into process identities: the cgroup id becomes
//! a path, and the executable is read while the process lives.

use super::ProcessIdentity;
use crate::cgroup::CgroupPaths;
use crate::engine::{KernelOwner, KernelOwnership};
use std::collections::HashMap;
use std::sync::Arc;

/// Intervals an identity stays cached after its last use.
const KEEP_UNUSED: u64 = 5;

pub struct KernelOwners {
    identities: HashMap<KernelOwner, (Arc<ProcessIdentity>, u64)>,
    cgroups: CgroupPaths,
    generation: u64,
}

impl KernelOwners {
    pub fn new() -> Self {
        KernelOwners {
            identities: HashMap::new(),
            cgroups: CgroupPaths::new(),
            generation: 0,
        }
    }

    pub fn identity(&mut self, owner: &KernelOwner) -> Arc<ProcessIdentity> {
        let generation = self.generation;
        if let Some((identity, used)) = self.identities.get_mut(owner) {
            *used = generation;
            return identity.clone();
        }
        let v2 = match &owner.cgroup_path {
            Some(path) => Some(path.to_string()),
            None => self.cgroups.path(owner.cgroup_id),
        };
        let (exe, systemd) = while_alive(owner);
        let identity = Arc::new(ProcessIdentity {
            pid: owner.tgid,
            name: owner.comm.clone(),
            // The program as executed, for one that ended before it could be read.
            exe: exe.or_else(|| owner.exe.as_deref().map(String::from)),
            uid: owner.uid,
            cgroup: crate::cgroup::with_systemd_units(v2, systemd.as_deref()),
        });
        self.identities
            .insert(owner.clone(), (identity.clone(), generation));
        identity
    }

    /// Ends an interval: forgets identities no traffic used for a while.
    pub fn end_interval(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.identities
            .retain(|_, (_, used)| generation - *used <= KEEP_UNUSED);
    }
}

/// Who moved a socket's traffic: the process it was stamped with as it passed, in the
/// socket's network namespace (a process can hold sockets of several); else the
/// socket's owner.
pub fn mover(ownership: KernelOwnership) -> Option<KernelOwner> {
    match (ownership.mover, ownership.socket) {
        (Some(mut mover), Some(socket)) => {
            mover.netns = socket.netns;
            Some(mover)
        }
        (mover, socket) => mover.or(socket),
    }
}

/// The executable and the path in systemd's own hierarchy (hybrid layouts), if the
/// process still lives and is still the one the kernel saw (its pid not reused by
/// another program).
fn while_alive(owner: &KernelOwner) -> (Option<String>, Option<String>) {
    let proc = format!("/proc/{}", owner.tgid);
    let same = std::fs::read_to_string(format!("{proc}/comm"))
        .is_ok_and(|comm| comm.trim_end() == owner.comm);
    if !same {
        return (None, None);
    }
    let exe = std::fs::read_link(format!("{proc}/exe"))
        .ok()
        .map(|exe| exe.to_string_lossy().into_owned());
    let cgroups = std::fs::read_to_string(format!("{proc}/cgroup")).unwrap_or_default();
    let systemd = crate::cgroup::systemd_path(&cgroups).map(String::from);
    (exe, systemd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(tgid: u32, netns: u64) -> KernelOwner {
        KernelOwner {
            tgid,
            uid: 0,
            comm: format!("p{tgid}"),
            cgroup_id: 1,
            cgroup_path: None,
            exe: None,
            netns,
        }
    }

    #[test]
    fn the_mover_counts_in_the_sockets_namespace() {
        let ownership = KernelOwnership {
            socket: Some(owner(1, 10)),
            mover: Some(owner(2, 20)),
        };
        assert_eq!(mover(ownership), Some(owner(2, 10)));
    }

    #[test]
    fn without_a_mover_the_sockets_owner_counts() {
        let ownership = KernelOwnership {
            socket: Some(owner(1, 10)),
            mover: None,
        };
        assert_eq!(mover(ownership), Some(owner(1, 10)));
        let only_mover = KernelOwnership {
            socket: None,
            mover: Some(owner(2, 20)),
        };
        assert_eq!(mover(only_mover), Some(owner(2, 20)));
        assert_eq!(mover(KernelOwnership::default()), None);
    }
}

//! Which process holds which socket, and who that process is.

use super::host::Host;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// A process as accounting reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// The kernel's name for it (`comm`), as `ps -o comm` and nethogs' peers show.
    pub name: String,
    /// The executable's path, where readable.
    pub exe: Option<String>,
    pub uid: u32,
    /// The cgroup v2 path: the systemd unit or container it runs in.
    pub cgroup: Option<String>,
}

/// Which process holds each socket, by inode, as last read from the host.
#[derive(Default)]
pub struct ProcessTable {
    owners: HashMap<u64, Arc<ProcessIdentity>>,
}

impl ProcessTable {
    pub fn owner(&self, inode: u64) -> Option<&Arc<ProcessIdentity>> {
        self.owners.get(&inode)
    }

    /// Rescans every process's open files, forgetting sockets that are gone.
    pub fn refresh_all(&mut self, host: &dyn Host) {
        let mut owners = HashMap::with_capacity(self.owners.len());
        for pid in host.pids_newest_first() {
            scan_sockets(host, pid, &self.owners, &mut owners);
        }
        self.owners = owners;
    }

    /// Finds the owners of these sockets, scanning the newest processes first and
    /// stopping once all are found: a process that just opened a socket is usually the
    /// newest, and may live only milliseconds.
    pub fn find(&mut self, host: &dyn Host, inodes: &[u64]) {
        let mut missing: Vec<u64> = inodes
            .iter()
            .copied()
            .filter(|inode| !self.owners.contains_key(inode))
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut found = HashMap::new();
        for pid in host.pids_newest_first() {
            scan_sockets(host, pid, &self.owners, &mut found);
            missing.retain(|inode| !found.contains_key(inode));
            if missing.is_empty() {
                break;
            }
        }
        self.owners.extend(found);
    }
}

/// Adds the process's sockets to `into`; identities already `known` for a socket of the
/// same pid are reused, so /proc/PID/{stat,exe,cgroup} are read only for new ones.
fn scan_sockets(
    host: &dyn Host,
    pid: u32,
    known: &HashMap<u64, Arc<ProcessIdentity>>,
    into: &mut HashMap<u64, Arc<ProcessIdentity>>,
) {
    let Some(inodes) = host.socket_inodes(pid) else {
        return;
    };
    let mut identity: Option<Option<Arc<ProcessIdentity>>> = None;
    for inode in inodes {
        if into.contains_key(&inode) {
            continue;
        }
        let owner = match known.get(&inode) {
            Some(owner) if owner.pid == pid => Some(owner.clone()),
            _ => identity
                .get_or_insert_with(|| host.identity(pid).map(Arc::new))
                .clone(),
        };
        if let Some(owner) = owner {
            into.insert(inode, owner);
        }
    }
}

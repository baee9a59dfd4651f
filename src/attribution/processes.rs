//! Which process holds which socket (from /proc/*/fd), and who that process is.

use procfs::process::{FDTarget, Process};
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

#[derive(Default)]
pub struct ProcessTable {
    owners: HashMap<u64, Arc<ProcessIdentity>>,
}

impl ProcessTable {
    pub fn owner(&self, inode: u64) -> Option<&Arc<ProcessIdentity>> {
        self.owners.get(&inode)
    }

    /// Rescans every process's open files, forgetting sockets that are gone.
    pub fn refresh_all(&mut self) {
        let mut owners = HashMap::with_capacity(self.owners.len());
        for process in processes_newest_first() {
            scan_sockets(&process, &self.owners, &mut owners);
        }
        self.owners = owners;
    }

    /// Finds the owners of these sockets, scanning the newest processes first and
    /// stopping once all are found: a process that just opened a socket is usually the
    /// newest, and may live only milliseconds.
    pub fn find(&mut self, inodes: &[u64]) {
        let mut missing: Vec<u64> = inodes
            .iter()
            .copied()
            .filter(|inode| !self.owners.contains_key(inode))
            .collect();
        if missing.is_empty() {
            return;
        }
        let mut found = HashMap::new();
        for process in processes_newest_first() {
            scan_sockets(&process, &self.owners, &mut found);
            missing.retain(|inode| !found.contains_key(inode));
            if missing.is_empty() {
                break;
            }
        }
        self.owners.extend(found);
    }
}

fn processes_newest_first() -> Vec<Process> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let mut processes: Vec<Process> = processes.flatten().collect();
    processes.sort_unstable_by_key(|p| std::cmp::Reverse(p.pid()));
    processes
}

/// Adds the process's sockets to `into`; identities already `known` for a socket of the
/// same pid are reused, so /proc/PID/{stat,exe,cgroup} are read only for new ones.
fn scan_sockets(
    process: &Process,
    known: &HashMap<u64, Arc<ProcessIdentity>>,
    into: &mut HashMap<u64, Arc<ProcessIdentity>>,
) {
    let Ok(fds) = process.fd() else {
        return;
    };
    let pid = process.pid() as u32;
    let mut identity: Option<Option<Arc<ProcessIdentity>>> = None;
    for fd in fds.flatten() {
        let FDTarget::Socket(inode) = fd.target else {
            continue;
        };
        if into.contains_key(&inode) {
            continue;
        }
        let owner = match known.get(&inode) {
            Some(owner) if owner.pid == pid => Some(owner.clone()),
            _ => identity
                .get_or_insert_with(|| read_identity(process).map(Arc::new))
                .clone(),
        };
        if let Some(owner) = owner {
            into.insert(inode, owner);
        }
    }
}

/// `None` when the process ended while being read.
fn read_identity(process: &Process) -> Option<ProcessIdentity> {
    let stat = process.stat().ok()?;
    let groups = process.cgroups().map(|groups| groups.0).unwrap_or_default();
    let v2 = groups
        .iter()
        .find(|g| g.hierarchy == 0)
        .or(groups.first())
        .map(|g| g.pathname.clone());
    let systemd = groups
        .iter()
        .find(|g| g.controllers.iter().any(|c| c == "name=systemd"))
        .map(|g| g.pathname.as_str());
    let cgroup = crate::cgroup::with_systemd_units(v2, systemd);
    Some(ProcessIdentity {
        pid: process.pid() as u32,
        name: stat.comm,
        exe: process.exe().ok().map(|p| p.to_string_lossy().into_owned()),
        uid: process.uid().ok()?,
        cgroup,
    })
}

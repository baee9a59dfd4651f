//! What attribution reads of the host, behind one seam: the sockets (sock_diag, else
//! /proc/net) and which process holds each (/proc/PID/fd) and who that is. The real
//! host reads the kernel; tests give attribution a host of their own making, so its
//! rules are tested without root.

use super::processes::ProcessIdentity;
use super::sock_diag::SockDiag;
use super::sockets::SocketTable;
use procfs::process::{FDTarget, Process};

pub trait Host: Send {
    /// Every socket of the network namespace, read now.
    fn sockets(&mut self) -> SocketTable;
    /// The running processes' pids, newest (highest) first.
    fn pids_newest_first(&self) -> Vec<u32>;
    /// The inodes of the sockets the process holds; `None` once it has ended or is
    /// not readable.
    fn socket_inodes(&self, pid: u32) -> Option<Vec<u64>>;
    /// Who the process is; `None` once it has ended.
    fn identity(&self, pid: u32) -> Option<ProcessIdentity>;
}

/// The host netgraph runs on, read through the kernel's interfaces.
pub struct KernelHost {
    diag: Option<SockDiag>,
}

impl KernelHost {
    pub fn open() -> KernelHost {
        let diag = match SockDiag::open() {
            Ok(diag) => Some(diag),
            Err(error) => {
                tracing::warn!(%error, "netlink sock_diag unavailable; reading sockets from /proc/net instead (slower)");
                None
            }
        };
        KernelHost { diag }
    }
}

impl Host for KernelHost {
    fn sockets(&mut self) -> SocketTable {
        SocketTable::load(self.diag.as_mut())
    }

    fn pids_newest_first(&self) -> Vec<u32> {
        let Ok(processes) = procfs::process::all_processes() else {
            return Vec::new();
        };
        let mut pids: Vec<u32> = processes.flatten().map(|p| p.pid() as u32).collect();
        pids.sort_unstable_by(|a, b| b.cmp(a));
        pids
    }

    fn socket_inodes(&self, pid: u32) -> Option<Vec<u64>> {
        let process = Process::new(pid as i32).ok()?;
        let fds = process.fd().ok()?;
        Some(
            fds.flatten()
                .filter_map(|fd| match fd.target {
                    FDTarget::Socket(inode) => Some(inode),
                    _ => None,
                })
                .collect(),
        )
    }

    fn identity(&self, pid: u32) -> Option<ProcessIdentity> {
        let process = Process::new(pid as i32).ok()?;
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
            pid,
            name: stat.comm,
            exe: process.exe().ok().map(|p| p.to_string_lossy().into_owned()),
            uid: process.uid().ok()?,
            cgroup,
        })
    }
}

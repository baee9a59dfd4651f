//! Whose packets a capture takes: a process name, pid, user, container, interface or
//! peer, any of them together; resolved each interval into what the engine matches by
//! (a container's cgroups change as it restarts).

use crate::attribution::ProcessIdentity;
use crate::cgroup_tree::CgroupTree;
use crate::engine::packets::{CaptureTargets, CapturedPacket};
use crate::workload::{ContainerDirectory, Workload};
use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureScope {
    pub process: Option<String>,
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub container: Option<String>,
    /// Matched as netgraph names interfaces (`eth0`, `veth1@netns4026532`).
    pub interface: Option<String>,
    pub peer: Option<IpAddr>,
}

impl CaptureScope {
    /// As a person reads it ("process curl, peer 10.0.0.1"); "every process" if empty.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(process) = &self.process {
            parts.push(format!("process {process}"));
        }
        if let Some(pid) = self.pid {
            parts.push(format!("pid {pid}"));
        }
        if let Some(uid) = self.uid {
            parts.push(format!("uid {uid}"));
        }
        if let Some(container) = &self.container {
            parts.push(format!("container {container}"));
        }
        if let Some(interface) = &self.interface {
            parts.push(format!("interface {interface}"));
        }
        if let Some(peer) = self.peer {
            parts.push(format!("peer {peer}"));
        }
        if parts.is_empty() {
            "every process".into()
        } else {
            parts.join(", ")
        }
    }

    /// What the engine matches packets by now.
    pub fn targets(
        &self,
        tree: Option<&CgroupTree>,
        containers: &ContainerDirectory,
        snap_length: u32,
    ) -> CaptureTargets {
        CaptureTargets {
            pid: self.pid,
            uid: self.uid,
            name: self.process.as_deref().map(crate::limits::kernel_name),
            cgroups: self.container.as_ref().map(|wanted| {
                tree.map(|tree| tree.of_workloads(containers, |w| w.is_container(wanted)))
                    .unwrap_or_default()
            }),
            peer: self.peer,
            snap_length,
        }
    }

    /// Whether a process (and its workload) is one the scope names; the peer and the
    /// interface are the packet's, judged elsewhere.
    pub fn owned_by(&self, process: &ProcessIdentity, workload: Option<&Workload>) -> bool {
        self.process
            .as_deref()
            .is_none_or(|name| process.name == crate::limits::kernel_name(name))
            && self.pid.is_none_or(|pid| process.pid == pid)
            && self.uid.is_none_or(|uid| process.uid == uid)
            && self
                .container
                .as_deref()
                .is_none_or(|wanted| workload.is_some_and(|w| w.is_container(wanted)))
    }

    /// What the engine cannot match by: the interface.
    pub fn keeps(&self, packet: &CapturedPacket) -> bool {
        self.interface
            .as_deref()
            .is_none_or(|wanted| *packet.interface == *wanted)
    }

    /// Whether the cgroup tree is needed to resolve it.
    pub fn needs_cgroups(&self) -> bool {
        self.container.is_some()
    }
}

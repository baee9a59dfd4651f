//! The eBPF engine: counts every IP packet of every local socket in the kernel
//! (cgroup_skb at the cgroup v2 root) against the socket, and records each socket's
//! owner in process context (socket creation, send and receive), so that a process
//! that lived a millisecond is still named. See bpf/netgraph.bpf.c.

mod counters;
mod interface_names;
mod skeleton;
mod support;

use super::{Engine, EngineReport, InterfaceTraffic, KernelOwner, SocketTraffic};
use crate::traffic::{Protocol, Traffic};
use counters::{Counters, Direction};
use interface_names::InterfaceNames;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use skeleton::{NetgraphSkel, NetgraphSkelBuilder};
use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

pub use support::{check_support, Unsupported};

/// Drains between forgetting resolved interface names (indexes get reused).
const FORGET_NAMES_EVERY: u64 = 60;
/// Drains between sweeps for owners of sockets that never moved a packet.
const SWEEP_OWNERS_EVERY: u64 = 30;

fn lookup_owner(owners: &libbpf_rs::MapMut<'_>, cookie: u64) -> Option<(KernelOwner, bool)> {
    let value = owners.lookup(&cookie.to_ne_bytes(), MapFlags::ANY).ok()??;
    counters::parse_owner(&value)
}

pub struct EbpfEngine {
    skel: NetgraphSkel<'static>,
    _links: Vec<Link>,
    counters: Counters,
    names: InterfaceNames,
    lost_reported: u64,
    drains: u64,
    /// Whether sockets are adopted by the processes that use them (Linux 6.3+).
    pub follows_use: bool,
}

impl EbpfEngine {
    pub fn start() -> Result<EbpfEngine, Unsupported> {
        let cgroup_root = check_support()?;
        // The skeleton borrows its object storage for its whole life, which is the
        // engine's: one allocation per engine, given up when the process ends.
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = NetgraphSkelBuilder::default()
            .open(storage)
            .map_err(|e| Unsupported::load(&e))?;
        let skel = open.load().map_err(|e| Unsupported::load(&e))?;

        let cgroup = std::fs::File::open(&cgroup_root).map_err(|e| Unsupported::Cgroup {
            path: cgroup_root.clone(),
            error: e.to_string(),
        })?;
        let fd = cgroup.as_raw_fd();
        let progs = &skel.progs;
        let mut links = Vec::new();
        for program in [
            &progs.owner_on_create,
            &progs.owner_on_release,
            &progs.count_egress,
            &progs.count_ingress,
        ] {
            links.push(
                program
                    .attach_cgroup(fd)
                    .map_err(|e| Unsupported::attach(&e))?,
            );
        }
        let mut follows_use = true;
        for (program, tracepoint) in [
            (&progs.owner_on_send, "sock_send_length"),
            (&progs.owner_on_recv, "sock_recv_length"),
        ] {
            match program.attach_raw_tracepoint(tracepoint) {
                Ok(link) => links.push(link),
                Err(error) => {
                    follows_use = false;
                    tracing::info!(%tracepoint, %error, "kernel lacks this tracepoint (Linux 6.3+): accepted and inherited sockets are named after their creator or from /proc");
                }
            }
        }
        Ok(EbpfEngine {
            skel,
            _links: links,
            counters: Counters::default(),
            names: InterfaceNames::new(),
            lost_reported: 0,
            drains: 0,
            follows_use,
        })
    }

    /// Owner records with no counters left: sockets closed without ever moving a
    /// packet. Swept now and then, as a full pass over the map costs.
    fn sweep_owners(&mut self) {
        let owners = &self.skel.maps.owners;
        let stale: Vec<Vec<u8>> = owners
            .keys()
            .filter(|key| {
                let cookie = key
                    .get(..8)
                    .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()));
                let released =
                    lookup_owner(owners, cookie.unwrap_or_default()).is_some_and(|(_, r)| r);
                released && !cookie.is_some_and(|c| self.counters.tracks(c))
            })
            .collect();
        for key in stale {
            let _ = owners.delete(&key);
        }
    }

    fn lost_total(&self) -> u64 {
        let mut total = 0;
        for kind in 0u32..2 {
            if let Ok(Some(per_cpu)) = self
                .skel
                .maps
                .losses
                .lookup_percpu(&kind.to_ne_bytes(), MapFlags::ANY)
            {
                total += per_cpu
                    .iter()
                    .filter_map(|v| {
                        v.get(..8)
                            .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
                    })
                    .sum::<u64>();
            }
        }
        total
    }
}

impl Engine for EbpfEngine {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn drain(&mut self) -> EngineReport {
        self.drains += 1;
        if self.drains % FORGET_NAMES_EVERY == 0 {
            self.names.forget();
        }
        let map = &self.skel.maps.traffic;
        let deltas = self.counters.read(map);

        let mut owners: HashMap<u64, Option<(KernelOwner, bool)>> = HashMap::new();
        let mut sockets: HashMap<(u64, u32, Protocol), (Traffic, Option<KernelOwner>)> =
            HashMap::new();
        for (key, delta) in deltas.changed {
            let owner = owners
                .entry(key.cookie)
                .or_insert_with(|| lookup_owner(&self.skel.maps.owners, key.cookie))
                .as_ref()
                .map(|(owner, _)| owner.clone());
            let entry = sockets
                .entry((key.cookie, key.ifindex, key.protocol))
                .or_insert((Traffic::default(), owner));
            match key.direction {
                Direction::Egress => entry.0.sent.merge(delta),
                Direction::Ingress => entry.0.recv.merge(delta),
            }
        }

        let mut report = EngineReport::default();
        let mut interfaces: HashMap<super::InterfaceName, InterfaceTraffic> = HashMap::new();
        for ((cookie, ifindex, protocol), (traffic, owner)) in sockets {
            let interface = self.names.name(
                owner.as_ref().map(|o| o.netns),
                ifindex,
                owner.as_ref().map(|o| o.tgid),
            );
            interfaces
                .entry(interface.clone())
                .or_insert_with(|| InterfaceTraffic::new(interface.clone()))
                .captured
                .merge(traffic);
            report.sockets.push(SocketTraffic {
                interface,
                protocol,
                cookie,
                owner,
                traffic,
            });
        }
        report.interfaces = interfaces.into_values().collect();

        // Forget sockets that are closed and quiet; their counts have all been read.
        let owner_map = &self.skel.maps.owners;
        let mut released = |cookie: u64| match owners.get(&cookie) {
            Some(known) => known.as_ref().map(|(_, released)| *released),
            None => lookup_owner(owner_map, cookie).map(|(_, released)| released),
        };
        let forgotten = self.counters.collect(map, deltas.idle, &mut released);
        for cookie in forgotten {
            let _ = owner_map.delete(&cookie.to_ne_bytes());
        }
        if self.drains % SWEEP_OWNERS_EVERY == 0 {
            self.sweep_owners();
        }

        let lost = self.lost_total();
        report.lost = lost.saturating_sub(self.lost_reported);
        self.lost_reported = lost;
        if report.lost > 0 {
            tracing::warn!(
                lost = report.lost,
                "eBPF maps full: some packets or owners were not recorded"
            );
        }
        report
    }

    fn stop(&mut self) {}
}

//! The eBPF engine: counts every IP packet of every local socket in the kernel
//! (cgroup_skb at the cgroup v2 root) against the socket, and records each socket's
//! owner in process context (socket creation, send and receive), so that a process
//! that lived a millisecond is still named. See bpf/netgraph.bpf.c.

mod counters;
mod interface_hooks;
mod interface_names;
mod map_ops;
mod plain_data;
mod skeleton;
mod support;

use super::host_addresses::{self, LocalAddresses};
use super::{Engine, EngineReport, InterfaceTraffic, KernelOwner, SocketTraffic};
use crate::traffic::{Ends, Protocol, Traffic};
use counters::{Counters, Direction};
use interface_hooks::InterfaceHooks;
use interface_names::InterfaceNames;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags};
use skeleton::{NetgraphSkel, NetgraphSkelBuilder};
use std::collections::{HashMap, HashSet};
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

pub use support::{check_support, Unsupported};

/// Drains between forgetting resolved interface names (indexes get reused).
const FORGET_NAMES_EVERY: u64 = 60;
/// Drains between sweeps of owner and process records nothing refers to; a record
/// goes at the second sweep that finds it unused.
const SWEEP_EVERY: u64 = 10;

/// One socket's traffic on one interface under one owner, and with one peer when
/// addresses are recorded: (cookie, tgid, ifindex, protocol, (near, far)). The cookie
/// is `None` where no process can own the socket (a request or time-wait socket, or
/// none at all), so that attribution does not look for one.
type SocketKey = (Option<u64>, u32, u32, Protocol, Option<(IpAddr, IpAddr)>);

/// Every owner record in one pass: (raw key, cookie, owner, whether released).
fn owner_records(owners: &libbpf_rs::MapMut<'_>) -> Vec<(Vec<u8>, u64, KernelOwner, bool)> {
    map_ops::entries(owners)
        .into_iter()
        .filter_map(|(key, value)| {
            let cookie = u64::from_ne_bytes(key.get(..8)?.try_into().ok()?);
            let (owner, released) = counters::parse_owner(&value)?;
            Some((key, cookie, owner, released))
        })
        .collect()
}

fn lookup_owner(owners: &libbpf_rs::MapMut<'_>, cookie: u64) -> Option<(KernelOwner, bool)> {
    let value = owners.lookup(&cookie.to_ne_bytes(), MapFlags::ANY).ok()??;
    counters::parse_owner(&value)
}

fn lookup_process(processes: &libbpf_rs::MapMut<'_>, tgid: u32) -> Option<KernelOwner> {
    let value = processes
        .lookup(&tgid.to_ne_bytes(), MapFlags::ANY)
        .ok()??;
    counters::parse_owner(&value).map(|(owner, _)| owner)
}

pub struct EbpfEngine {
    tcx: bool,
    hooks: InterfaceHooks,
    skel: NetgraphSkel<'static>,
    _links: Vec<Link>,
    counters: Counters,
    names: InterfaceNames,
    lost_reported: u64,
    drains: u64,
    /// Whether sockets are adopted by the processes that use them (Linux 6.3+).
    pub follows_use: bool,
    /// Whether each packet's two ends are recorded (for GeoIP).
    record_addresses: bool,
    host: LocalAddresses,
    /// Sockets whose counters were all unchanged at the last drain.
    idle: HashSet<u64>,
    /// Records the last sweep found unused: the next sweep deletes those still unused.
    unused: Unused,
}

#[derive(Default)]
struct Unused {
    owners: HashSet<u64>,
    processes: HashSet<u32>,
}

impl EbpfEngine {
    /// `record_addresses` counts by both ends of each packet too (GeoIP needs them),
    /// at the cost of a larger key per packet.
    pub fn start(record_addresses: bool) -> Result<EbpfEngine, Unsupported> {
        let cgroup_root = check_support()?;
        // The skeleton borrows its object storage for its whole life, which is the
        // engine's: one allocation per engine, given up when the process ends.
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = NetgraphSkelBuilder::default()
            .open(storage)
            .map_err(|e| Unsupported::load(&e))?;
        // Per-interface hooks need tcx (Linux 6.6); without it they are not loaded, so
        // older kernels still count every socket.
        let tcx = interface_hooks::kernel_has_tcx();
        for (program, attach_type) in [
            (
                &mut open.progs.interface_ingress,
                libbpf_rs::ProgramAttachType::TcxIngress,
            ),
            (
                &mut open.progs.interface_egress,
                libbpf_rs::ProgramAttachType::TcxEgress,
            ),
        ] {
            if tcx {
                program.set_attach_type(attach_type);
            } else {
                program.set_autoload(false);
            }
        }
        if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
            rodata.record_addresses = u8::from(record_addresses);
        }
        // The counter maps not used get one entry, to take no memory.
        let unused = if record_addresses {
            [&mut open.maps.traffic, &mut open.maps.interface_traffic]
        } else {
            [
                &mut open.maps.peer_traffic,
                &mut open.maps.interface_peer_traffic,
            ]
        };
        for map in unused {
            let _ = map.set_max_entries(1);
        }
        if !tcx {
            tracing::info!("Linux before 6.6 (no tcx): traffic without a local socket (forwarded, ARP) is not counted per interface");
        }
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
        let mut hooks = InterfaceHooks::default();
        if tcx {
            hooks.sync(&skel);
        }
        Ok(EbpfEngine {
            tcx,
            hooks,
            skel,
            _links: links,
            counters: Counters::default(),
            names: InterfaceNames::new(),
            lost_reported: 0,
            drains: 0,
            follows_use,
            record_addresses,
            host: LocalAddresses::default(),
            idle: HashSet::new(),
            unused: Unused::default(),
        })
    }

    /// Owner records of closed sockets with no counters left (closed without moving a
    /// packet), and process records no socket or counter refers to any more. A record
    /// goes only when two sweeps in a row find it unused: packets counted between a
    /// drain's read and this sweep (a socket closed with data still queued) still find
    /// their owner, as the next drain reads their counters before the next sweep. One
    /// read of each map, then batched deletes: linear in the maps' size.
    fn sweep(&mut self) {
        let maps = &self.skel.maps;
        let tracked = self.counters.cookies();
        let mut referenced = self.counters.tgids();
        let mut unused_owners = HashSet::new();
        let mut doomed = Vec::new();
        let owners = owner_records(&maps.owners);
        let owners_before = owners.len();
        for (key, cookie, owner, released) in owners {
            if !released || tracked.contains(&cookie) {
                referenced.insert(owner.tgid);
            } else if self.unused.owners.contains(&cookie) {
                doomed.push(key);
            } else {
                referenced.insert(owner.tgid);
                unused_owners.insert(cookie);
            }
        }
        let owners_deleted = map_ops::delete(&maps.owners, &doomed);
        let mut unused_processes = HashSet::new();
        let mut doomed = Vec::new();
        let mut processes_before = 0;
        for key in map_ops::keys(&maps.processes) {
            processes_before += 1;
            let Some(tgid) = key
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
            else {
                continue;
            };
            if referenced.contains(&tgid) {
                continue;
            }
            if self.unused.processes.contains(&tgid) {
                doomed.push(key);
            } else {
                unused_processes.insert(tgid);
            }
        }
        let processes_deleted = map_ops::delete(&maps.processes, &doomed);
        tracing::debug!(
            owners = owners_before - owners_deleted,
            processes = processes_before - processes_deleted,
            counters = self.counters.len(),
            "swept owner and process records"
        );
        self.unused = Unused {
            owners: unused_owners,
            processes: unused_processes,
        };
    }

    fn lost_total(&self) -> u64 {
        let mut total = 0;
        // One counter per kind of loss: the kernel side sizes the map by LOSS_KINDS.
        for kind in 0..self.skel.maps.losses.max_entries() {
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

    fn records_addresses(&self) -> bool {
        self.record_addresses
    }

    fn drain(&mut self) -> EngineReport {
        self.drains += 1;
        let maps = &self.skel.maps;
        let traffic_map = if self.record_addresses {
            &maps.peer_traffic
        } else {
            &maps.traffic
        };
        let deltas = self.counters.read(traffic_map);

        // The socket's current owner, and each process traffic was stamped with.
        let mut owners: HashMap<u64, Option<(KernelOwner, bool)>> = HashMap::new();
        let mut processes: HashMap<u32, Option<KernelOwner>> = HashMap::new();
        let mut sockets: HashMap<SocketKey, (Traffic, Option<KernelOwner>)> = HashMap::new();
        let own_netns = self.names.own_netns();
        for (key, delta) in deltas.changed {
            let ownable = !key.transient && key.cookie != 0;
            let current = if ownable {
                owners
                    .entry(key.cookie)
                    .or_insert_with(|| lookup_owner(&maps.owners, key.cookie))
            } else {
                &None
            };
            // Sockets of this namespace share its interfaces' TC counters.
            let here = current
                .as_ref()
                .is_none_or(|(owner, _)| own_netns.is_none() || Some(owner.netns) == own_netns);
            if here {
                self.hooks.note_attributed(
                    key.ifindex,
                    key.direction,
                    key.ip_number,
                    key.ends,
                    delta,
                );
            }
            let owner = if key.tgid == 0 {
                // Before any owner was recorded (an accepted socket's first packets).
                current.as_ref().map(|(owner, _)| owner.clone())
            } else {
                processes
                    .entry(key.tgid)
                    .or_insert_with(|| lookup_process(&maps.processes, key.tgid))
                    .clone()
                    .map(|mut owner| {
                        // The namespace is the socket's, whoever owned it.
                        if let Some((socket_owner, _)) = current {
                            owner.netns = socket_owner.netns;
                        }
                        owner
                    })
            };
            let entry = sockets
                .entry((
                    ownable.then_some(key.cookie),
                    key.tgid,
                    key.ifindex,
                    key.protocol,
                    key.ends,
                ))
                .or_insert((Traffic::default(), owner));
            match key.direction {
                Direction::Egress => entry.0.sent.merge(delta),
                Direction::Ingress => entry.0.recv.merge(delta),
            }
        }

        let mut report = EngineReport::default();
        let mut interfaces: HashMap<super::InterfaceName, InterfaceTraffic> = HashMap::new();
        for ((cookie, _, ifindex, protocol, ends), (traffic, owner)) in sockets {
            let interface = self.names.name(owner.as_ref().map(|o| o.netns), ifindex);
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
                ends: ends.map(|(near, far)| Ends {
                    near,
                    far,
                    near_is_host: true,
                }),
                traffic,
            });
        }
        if self.tcx {
            self.hooks.sync(&self.skel);
            let maps = &self.skel.maps;
            let interface_map = if self.record_addresses {
                &maps.interface_peer_traffic
            } else {
                &maps.interface_traffic
            };
            let (unattributed, non_ip) = self.hooks.unattributed(interface_map);
            if unattributed.iter().any(|item| item.ends.is_some()) {
                match host_addresses::discover() {
                    Ok(host) => self.host = host,
                    Err(error) => tracing::debug!(%error, "cannot list the host's addresses"),
                }
            }
            for item in unattributed {
                let interface = self.names.name(None, item.ifindex);
                interfaces
                    .entry(interface.clone())
                    .or_insert_with(|| InterfaceTraffic::new(interface.clone()))
                    .captured
                    .merge(item.traffic);
                report.sockets.push(SocketTraffic {
                    interface,
                    protocol: item.protocol,
                    cookie: None,
                    owner: None,
                    ends: item.ends.map(|(near, far)| Ends {
                        near,
                        far,
                        near_is_host: self.host.is_local(near),
                    }),
                    traffic: item.traffic,
                });
            }
            for (ifindex, counter) in non_ip {
                let interface = self.names.name(None, ifindex);
                interfaces
                    .entry(interface.clone())
                    .or_insert_with(|| InterfaceTraffic::new(interface.clone()))
                    .non_ip
                    .merge(counter);
            }
        }
        report.interfaces = interfaces.into_values().collect();

        self.idle = deltas.idle;
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

    /// Forgets sockets that are closed and quiet (their counts have all been read),
    /// and now and then sweeps unused owner and process records.
    fn maintain(&mut self) {
        if self.drains % FORGET_NAMES_EVERY == 0 {
            self.names.forget();
        }
        let maps = &self.skel.maps;
        let traffic_map = if self.record_addresses {
            &maps.peer_traffic
        } else {
            &maps.traffic
        };
        let idle = std::mem::take(&mut self.idle);
        // Many sockets to ask about: one read of every owner record costs less.
        let known: Option<HashMap<u64, bool>> = (idle.len() > 64).then(|| {
            owner_records(&maps.owners)
                .into_iter()
                .map(|(_, cookie, _, released)| (cookie, released))
                .collect()
        });
        let mut released = |cookie: u64| match &known {
            Some(known) => known.get(&cookie).copied(),
            None => lookup_owner(&maps.owners, cookie).map(|(_, released)| released),
        };
        let forgotten: Vec<Vec<u8>> = self
            .counters
            .collect(traffic_map, idle, &mut released)
            .into_iter()
            .map(|cookie| cookie.to_ne_bytes().to_vec())
            .collect();
        map_ops::delete(&maps.owners, &forgotten);
        if self.drains % SWEEP_EVERY == 0 {
            self.sweep();
        }
    }

    fn stop(&mut self) {}
}

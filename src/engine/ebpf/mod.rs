//! The eBPF engine: counts every IP packet of every local socket in the kernel
//! (cgroup_skb at the cgroup v2 root) against the socket, and records each socket's
//! owner in process context (socket creation, send and receive), so that a process
//! that lived a millisecond is still named. See bpf/netgraph.bpf.c.

mod counters;
mod drops;
mod interface_hooks;

/// Also attaches the cost bench's floor programs (examples/bpf_floor.rs).
pub use counters::Direction;
pub use interface_hooks::attach_tcx;
mod interface_names;
mod limits;
mod loading;
mod map_ops;
mod missed_runs;
mod owner_records;
mod packet_capture;
mod plain_data;
mod probes;
mod skeleton;
mod socket_counts;
mod support;
mod tcp_health;

use super::features::Feature;
use super::host_addresses::{self, LocalAddresses};
use super::{
    Conversation, DnsTransport, Engine, EngineReport, InterfaceName, InterfaceTraffic,
    KernelOwnership, NameSample, Recording, SampleKind, SampleSocket, SocketTraffic,
};
use crate::traffic::{Counter, Ends, Protocol, Service, Traffic};
use counters::{CounterKey, Counters, HookCount};
use drops::{DropCounters, DropDelta};
use interface_hooks::InterfaceHooks;
use interface_names::InterfaceNames;
use libbpf_rs::skel::Skel;
use libbpf_rs::{Link, MapCore, MapFlags, MapMut};
use owner_records::{OwnerLookups, Sweeper};
use skeleton::{types, NetgraphMaps, NetgraphSkel};
use socket_counts::SocketCounts;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use tcp_health::{HealthCounters, HealthDelta};

pub use loading::WITHOUT_VARIABLE;
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
/// Socket, owner, interface, protocol, both ends and their ports.
type SocketKey = (
    Option<u64>,
    u32,
    u32,
    Protocol,
    Option<(IpAddr, IpAddr)>,
    (u16, u16),
);

/// The socket counter map in use.
fn traffic_map<'a>(maps: &'a NetgraphMaps<'static>, record_addresses: bool) -> &'a MapMut<'static> {
    if record_addresses {
        &maps.peer_traffic
    } else {
        &maps.traffic
    }
}

pub struct EbpfEngine {
    hooks: InterfaceHooks,
    /// Each optional part as the kernel allowed it.
    features: Vec<Feature>,
    skel: NetgraphSkel<'static>,
    _links: Vec<Link>,
    /// Owned sockets' counts kept in their own storage, where the kernel allows it.
    socket_counts: Option<SocketCounts>,
    counters: Counters,
    names: InterfaceNames,
    lost_reported: u64,
    /// Skipped tracing program runs already reported.
    missed_runs: missed_runs::MissedRuns,
    drains: u64,
    /// Whether sockets are adopted by the processes that use them (Linux 6.3+).
    pub follows_use: bool,
    /// What is recorded besides counts (both ends for GeoIP and peers, names).
    recording: Recording,
    host: LocalAddresses,
    /// Sockets whose counters were all unchanged at the last drain.
    idle: HashSet<u64>,
    sweeper: Sweeper,
    /// TCP's health per socket, where the kernel allows its tracepoints.
    health: Option<HealthCounters>,
    /// Dropped packets per socket, where the kernel says why it drops.
    drops: Option<DropCounters>,
    limits: limits::KernelLimits,
    /// Whether the counting programs can copy packets (decided by loading).
    can_capture: bool,
    capture: packet_capture::KernelCapture,
}

/// A socket an event happened to, as the tracepoint programs recorded it.
struct SocketEvent {
    cookie: u64,
    protocol: Protocol,
    ifindex: u32,
    netns: u64,
    ends: (IpAddr, IpAddr),
    ports: (u16, u16),
}

impl EbpfEngine {
    /// `recording.addresses` counts by both ends of each packet too (GeoIP and peers
    /// need them), at the cost of a larger key per packet.
    pub fn start(recording: Recording) -> Result<EbpfEngine, Unsupported> {
        let loaded = loading::load(recording)?;
        let mut hooks = InterfaceHooks::new(
            !loaded.without.has("tcx"),
            !loaded.without.has("interface_hooks"),
        );
        hooks.sync(&loaded.skel);
        let mut features = loaded.features;
        let interface_feature = hooks.feature();
        if interface_feature.is_degraded() {
            tracing::info!("eBPF engine: {}", interface_feature.describe());
        }
        features.push(interface_feature);
        Ok(EbpfEngine {
            hooks,
            features,
            skel: loaded.skel,
            _links: loaded.links,
            socket_counts: loaded.socket_counts,
            counters: Counters::default(),
            names: InterfaceNames::new(),
            lost_reported: 0,
            missed_runs: missed_runs::MissedRuns::default(),
            drains: 0,
            follows_use: loaded.follows_use,
            recording,
            host: LocalAddresses::default(),
            idle: HashSet::new(),
            sweeper: Sweeper::default(),
            health: loaded.tcp_health.then(HealthCounters::default),
            drops: loaded.drops.map(DropCounters::new),
            limits: limits::KernelLimits::default(),
            can_capture: loaded.packet_capture,
            capture: packet_capture::KernelCapture::default(),
        })
    }

    /// Socket counters that changed, one item per socket, interface, owner and peer,
    /// with what the kernel recorded of their owners. Notes on the interface hooks
    /// what sockets of this namespace moved.
    fn socket_traffic(
        &mut self,
        changed: Vec<(CounterKey, HookCount)>,
        health: Vec<HealthDelta>,
        drops: Vec<DropDelta>,
    ) -> Vec<SocketTraffic> {
        let mut lookups = OwnerLookups::new(&self.skel.maps);
        let own_netns = self.names.own_netns();
        // Per socket: its traffic, owners, and the device's namespace where the kernel
        // side recorded it (packets without an owner).
        let mut sockets: HashMap<SocketKey, (Traffic, KernelOwnership, Option<u64>)> =
            HashMap::new();
        for (key, delta) in changed {
            let ownable = !key.transient && key.cookie != 0;
            let entry = sockets
                .entry((
                    ownable.then_some(key.cookie),
                    key.tgid,
                    key.ifindex,
                    key.protocol,
                    key.ends,
                    key.ports,
                ))
                .or_insert_with(|| {
                    let ownership = KernelOwnership {
                        socket: ownable.then(|| lookups.socket(key.cookie)).flatten(),
                        // 0: moved before any owner was recorded (an accepted socket's
                        // first packets).
                        mover: (key.tgid != 0).then(|| lookups.process(key.tgid)).flatten(),
                    };
                    (Traffic::default(), ownership, key.netns)
                });
            let netns = {
                let ownership = &entry.1;
                let owner = ownership.socket.as_ref().or(ownership.mover.as_ref());
                owner.map(|owner| owner.netns).or(key.netns)
            };
            // As the link carried it: segments where it carries segments.
            let offloads = self.names.offloads(netns, key.ifindex);
            let delta = delta.on_link(match key.direction {
                Direction::Egress => offloads.segments_sent(),
                Direction::Ingress => offloads.segments_received(),
            });
            // Sockets of this namespace share its interfaces' TC counters.
            let socket_netns = entry.1.socket.as_ref().map(|owner| owner.netns);
            let here = socket_netns
                .or(key.netns)
                .is_none_or(|netns| own_netns.is_none_or(|own| own == netns));
            if here {
                self.hooks.note_attributed(
                    key.ifindex,
                    key.direction,
                    key.ip_number,
                    key.ends,
                    delta,
                );
            }
            match key.direction {
                Direction::Egress => entry.0.sent.merge(delta),
                Direction::Ingress => entry.0.recv.merge(delta),
            }
        }
        self.add_events(&mut sockets, health, drops, &mut lookups);
        sockets
            .into_iter()
            .map(
                |(
                    (cookie, _, ifindex, protocol, ends, ports),
                    (traffic, ownership, device_netns),
                )| {
                    let owner = ownership.socket.as_ref().or(ownership.mover.as_ref());
                    let netns = owner.map(|owner| owner.netns).or(device_netns);
                    SocketTraffic {
                        interface: self.names.name(netns, ifindex),
                        protocol,
                        cookie,
                        ownership,
                        ends: ends.map(|(near, far)| Ends {
                            near,
                            far,
                            near_is_host: true,
                            service: Service::of(protocol, ports.0, ports.1),
                        }),
                        traffic,
                    }
                },
            )
            .collect()
    }

    /// TCP's health and drops on each socket's traffic: its RTT weighted by the bytes
    /// it moved, and what happened to it this interval on its first item (an item of
    /// its own where it moved nothing, such as a connect that failed or a send dropped).
    fn add_events(
        &self,
        sockets: &mut HashMap<SocketKey, (Traffic, KernelOwnership, Option<u64>)>,
        health: Vec<HealthDelta>,
        drops: Vec<DropDelta>,
        lookups: &mut OwnerLookups<'_>,
    ) {
        let mut first: HashMap<u64, SocketKey> = HashMap::new();
        for (key, (traffic, ..)) in sockets.iter_mut() {
            let Some(cookie) = key.0 else {
                continue;
            };
            if let (Some(counters), Protocol::Tcp) = (&self.health, key.3) {
                if let Some(rtt) = counters.rtt_of(cookie) {
                    traffic.tcp.add_rtt(rtt, traffic.bytes());
                }
            }
            first.entry(cookie).or_insert(*key);
        }
        let addresses = self.recording.addresses;
        let mut apply = |event: SocketEvent, change: &mut dyn FnMut(&mut Traffic)| {
            let key = first.get(&event.cookie).copied().unwrap_or_else(|| {
                let owner = lookups.socket(event.cookie);
                (
                    Some(event.cookie),
                    owner.as_ref().map_or(0, |owner| owner.tgid),
                    event.ifindex,
                    event.protocol,
                    addresses.then_some(event.ends),
                    if addresses { event.ports } else { (0, 0) },
                )
            });
            first.insert(event.cookie, key);
            let (traffic, ..) = sockets.entry(key).or_insert_with(|| {
                let ownership = KernelOwnership {
                    socket: lookups.socket(event.cookie),
                    mover: None,
                };
                // The namespace the route's device is in, should no owner say it.
                (
                    Traffic::default(),
                    ownership,
                    (event.netns != 0).then_some(event.netns),
                )
            });
            change(traffic);
        };
        for delta in health {
            let event = SocketEvent {
                cookie: delta.cookie,
                protocol: Protocol::Tcp,
                ifindex: delta.ifindex,
                netns: delta.netns,
                ends: delta.ends,
                ports: delta.ports,
            };
            apply(event, &mut |traffic| {
                if traffic.bytes() == 0 && traffic.tcp.rtt_us().is_none() {
                    traffic.tcp.add_rtt(delta.rtt_us, 0);
                }
                traffic.tcp.merge(&delta.health);
            });
        }
        for delta in drops {
            let event = SocketEvent {
                cookie: delta.cookie,
                protocol: delta.protocol,
                ifindex: delta.ifindex,
                netns: delta.netns,
                ends: delta.ends,
                ports: delta.ports,
            };
            apply(event, &mut |traffic| traffic.drops.merge(&delta.drops));
        }
    }

    /// Hooks interfaces that appeared, and reads what crossed them all.
    fn read_interfaces(&mut self) {
        self.hooks.sync(&self.skel);
        let maps = &self.skel.maps;
        let interface_map = if self.recording.addresses {
            &maps.interface_peer_traffic
        } else {
            &maps.interface_traffic
        };
        let names = &mut self.names;
        let mut carries_segments = |ifindex, direction| {
            let offloads = names.offloads(None, ifindex);
            match direction {
                Direction::Egress => offloads.segments_sent(),
                Direction::Ingress => offloads.segments_received(),
            }
        };
        self.hooks
            .read_crossed(interface_map, &mut carries_segments);
    }

    /// What crossed the interfaces without a local socket (forwarded, or the kernel's
    /// own), and frames that carry no IP, by interface.
    fn interface_only_traffic(&mut self) -> (Vec<SocketTraffic>, Vec<(u32, Counter)>) {
        let (unattributed, non_ip) = self.hooks.unattributed();
        if unattributed.iter().any(|item| item.ends.is_some()) {
            match host_addresses::discover() {
                Ok(host) => self.host = host,
                Err(error) => tracing::debug!(%error, "cannot list the host's addresses"),
            }
        }
        let traffic = unattributed
            .into_iter()
            .map(|item| SocketTraffic {
                interface: self.names.name(None, item.ifindex),
                protocol: item.protocol,
                cookie: None,
                ownership: KernelOwnership::default(),
                ends: item.ends.map(|(near, far)| Ends {
                    near,
                    far,
                    near_is_host: self.host.is_local(near),
                    service: None,
                }),
                traffic: item.traffic,
            })
            .collect();
        (traffic, non_ip.into_iter().collect())
    }

    /// Payloads the kernel side queued to learn names from, since the last call.
    fn name_samples(&self) -> Vec<NameSample> {
        if !self.recording.dns_answers && !self.recording.tls_hellos {
            return Vec::new();
        }
        map_ops::drain_queue(&self.skel.maps.payload_samples)
            .iter()
            .filter_map(|bytes| {
                let sample: types::payload_sample = plain_data::read(bytes)?;
                use types::sample_kind as wire;
                let kind = match sample.kind {
                    wire::SAMPLE_DNS_UDP => SampleKind::DnsAnswer(DnsTransport::Udp),
                    wire::SAMPLE_DNS_TCP => SampleKind::DnsAnswer(DnsTransport::Tcp),
                    wire::SAMPLE_DNS_UDP_QUERY => SampleKind::DnsQuery(DnsTransport::Udp),
                    wire::SAMPLE_DNS_TCP_QUERY => SampleKind::DnsQuery(DnsTransport::Tcp),
                    wire::SAMPLE_TLS_HELLO => SampleKind::TlsHello,
                    _ => return None,
                };
                let length = (sample.length as usize).min(sample.data.len());
                let far = counters::address(sample.far);
                Some(NameSample {
                    kind,
                    socket: match sample.tgid {
                        0 => SampleSocket::Unknown,
                        tgid => SampleSocket::Process(tgid),
                    },
                    far,
                    conversation: Conversation::Socket {
                        cookie: sample.cookie,
                        server: far,
                    },
                    payload: sample.data[..length].to_vec(),
                })
            })
            .collect()
    }

    /// Losses the kernel side counted since the last call: records a full map
    /// refused, and tracing programs' runs the kernel skipped.
    fn new_losses(&mut self) -> u64 {
        let full = self.map_full_total();
        let new_full = full.saturating_sub(self.lost_reported);
        self.lost_reported = full;
        if new_full > 0 {
            tracing::warn!(
                lost = new_full,
                "eBPF maps full: some packets or owners were not recorded"
            );
        }
        let misses = self.missed_runs.new_misses(self.skel.object());
        let new_missed: u64 = misses.values().sum();
        if new_missed > 0 {
            tracing::warn!(
                missed = new_missed,
                programs = %missed_runs::describe(&misses),
                "the kernel skipped runs of netgraph's tracing programs (an interrupt came while one ran on the same CPU): some events were not recorded"
            );
        }
        new_full + new_missed
    }

    fn map_full_total(&self) -> u64 {
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

/// Per-interface totals: everything reported on each, and frames that carry no IP.
fn interface_totals(
    sockets: &[SocketTraffic],
    non_ip: Vec<(InterfaceName, Counter)>,
) -> Vec<InterfaceTraffic> {
    let mut interfaces: HashMap<InterfaceName, InterfaceTraffic> = HashMap::new();
    fn entry<'a>(
        interfaces: &'a mut HashMap<InterfaceName, InterfaceTraffic>,
        interface: &InterfaceName,
    ) -> &'a mut InterfaceTraffic {
        interfaces
            .entry(interface.clone())
            .or_insert_with(|| InterfaceTraffic::new(interface.clone()))
    }
    for socket in sockets {
        entry(&mut interfaces, &socket.interface)
            .captured
            .merge(socket.traffic);
    }
    for (interface, counter) in non_ip {
        entry(&mut interfaces, &interface).non_ip.merge(counter);
    }
    interfaces.into_values().collect()
}

impl Engine for EbpfEngine {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn records_addresses(&self) -> bool {
        self.recording.addresses
    }

    fn features(&self) -> Vec<Feature> {
        self.features.clone()
    }

    fn drain(&mut self) -> EngineReport {
        self.drains += 1;
        // Interfaces before sockets (see `InterfaceHooks::read_crossed`).
        if self.hooks.active() {
            self.read_interfaces();
        }
        // Slots first: a socket released between the two reads has its last counts
        // handed over to the map, read after.
        let in_sockets = self
            .socket_counts
            .as_ref()
            .map(SocketCounts::take)
            .unwrap_or_default();
        let mut deltas = self
            .counters
            .read(traffic_map(&self.skel.maps, self.recording.addresses));
        for (key, _) in &in_sockets {
            deltas.idle.remove(&key.cookie);
        }
        deltas.changed.extend(in_sockets);
        self.idle = deltas.idle;
        let health = match self.health.as_mut() {
            Some(health) => health.read(&self.skel.maps.tcp_health),
            None => Vec::new(),
        };
        let drops = match self.drops.as_mut() {
            Some(drops) => drops.read(&self.skel.maps.drops),
            None => Vec::new(),
        };
        let mut sockets = self.socket_traffic(deltas.changed, health, drops);
        let mut non_ip = Vec::new();
        if self.hooks.active() {
            let (interface_only, frames) = self.interface_only_traffic();
            sockets.extend(interface_only);
            non_ip = frames
                .into_iter()
                .map(|(ifindex, counter)| (self.names.name(None, ifindex), counter))
                .collect();
        }
        EngineReport {
            interfaces: interface_totals(&sockets, non_ip),
            sockets,
            flows: Vec::new(),
            lost: self.new_losses(),
            name_samples: self.name_samples(),
            limits: self.limits.read(&self.skel.maps),
        }
    }

    /// Forgets sockets that are closed and quiet (their counts have all been read),
    /// and now and then sweeps unused owner and process records.
    fn maintain(&mut self) {
        if self.drains % FORGET_NAMES_EVERY == 0 {
            self.names.forget();
        }
        let maps = &self.skel.maps;
        let idle = std::mem::take(&mut self.idle);
        // Many sockets to ask about: one read of every owner record costs less.
        let known: Option<HashMap<u64, bool>> = (idle.len() > 64).then(|| {
            owner_records::socket_records(&maps.owners)
                .into_iter()
                .map(|record| (record.cookie, record.released))
                .collect()
        });
        let mut released = |cookie: u64| match &known {
            Some(known) => known.get(&cookie).copied(),
            None => owner_records::socket_owner(&maps.owners, cookie).map(|(_, released)| released),
        };
        let forgotten_cookies = self.counters.collect(
            traffic_map(maps, self.recording.addresses),
            idle,
            &mut released,
        );
        let forgotten: Vec<Vec<u8>> = forgotten_cookies
            .iter()
            .map(|cookie| cookie.to_ne_bytes().to_vec())
            .collect();
        map_ops::delete(&maps.owners, &forgotten);
        let sweep = self.drains % SWEEP_EVERY == 0;
        if let Some(health) = self.health.as_mut() {
            let counted = sweep.then(|| self.counters.cookies());
            health.forget(&maps.tcp_health, &forgotten_cookies, counted.as_ref());
        }
        if let Some(drops) = self.drops.as_mut() {
            drops.forget(&maps.drops, &forgotten_cookies);
        }
        if sweep {
            self.sweeper.sweep(maps, &self.counters);
        }
    }

    fn set_limits(&mut self, targets: &crate::limits::LimitTargets) -> Result<(), String> {
        let in_force = self.limits.apply(&self.skel.maps, targets);
        match self.skel.maps.bss_data.as_deref_mut() {
            Some(switch) => {
                switch.limits_in_force = u32::from(in_force);
                Ok(())
            }
            None if !in_force => Ok(()),
            None => Err(
                "this kernel gives no writable globals to BPF programs: limits need Linux 5.5+"
                    .into(),
            ),
        }
    }

    fn set_capture(
        &mut self,
        capture: Option<(
            &crate::engine::packets::CaptureTargets,
            &crate::engine::packets::PacketTap,
        )>,
    ) -> Result<(), String> {
        if capture.is_some() && !self.can_capture {
            let why = self
                .features
                .iter()
                .find(|feature| feature.name == "packet_capture")
                .map_or("it did not load".to_string(), |feature| feature.describe());
            return Err(format!(
                "this kernel does not let netgraph capture packets: {why}"
            ));
        }
        self.capture.apply(&mut self.skel, capture)
    }

    fn stop(&mut self) {
        let _ = self.capture.apply(&mut self.skel, None);
    }
}

//! TC hooks on every interface of the host's namespace, counting everything that
//! crosses it, and the traffic among it that no local socket moved. Attached as tcx
//! links (Linux 6.6+, which the kernel detaches when netgraph exits) where the kernel
//! takes them, else as classic TC filters on a clsact qdisc (detached on exit; a
//! killed netgraph leaves them, and the next start replaces them).

use super::counters::{address, Direction, HookCount};
use super::loading::WITHOUT_VARIABLE;
use super::plain_data;
use super::skeleton::{types, NetgraphSkel};
use crate::engine::features::{Feature, FeatureState};
use crate::traffic::{Counter, Protocol, Traffic};
use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, MapMut, TcHook, TcHookBuilder};
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::ptr::NonNull;

/// How the programs are attached to interfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookMode {
    Tcx,
    /// Classic TC, where tcx is missing (before 6.6) or refused.
    Tc,
    Off,
}

/// Our classic TC filters' handle and priorities: first on ingress, last on egress, as
/// the tcx links are; the same handle replaces what a killed netgraph left.
const TC_HANDLE: u32 = 0x4e47;
const TC_FIRST: u32 = 1;
const TC_LAST: u32 = 0xffff;

enum Hooked {
    /// Dropping a link detaches its program.
    Tcx {
        _links: [Link; 2],
    },
    Tc {
        _filters: TcFilters,
    },
}

/// Classic TC filters, detached when dropped.
struct TcFilters([TcHook; 2]);

// SAFETY: a TcHook is plain data; its one pointer (a custom qdisc's name) is null for
// the clsact hooks made here.
unsafe impl Send for TcFilters {}

impl Drop for TcFilters {
    fn drop(&mut self) {
        for hook in &mut self.0 {
            let _ = hook.detach();
        }
    }
}

const LOSES_HOOKS: &str = "traffic without a local socket (forwarded, ARP, the kernel's own) is not counted per interface";

/// (ifindex, direction, protocol number).
type Key = (u32, Direction, u8);
/// (near, far) addresses.
type Pair = (IpAddr, IpAddr);

/// Drains a pair of addresses must stay unchanged before its kernel counter is deleted.
const QUIET_PAIR: u32 = 60;

struct Seen {
    ifindex: u32,
    value: Counter,
    quiet: u32,
}

pub struct InterfaceHooks {
    hooked: HashMap<u32, Hooked>,
    complained: bool,
    /// Decided at the first interface: tcx, else TC; `Off` if neither attaches.
    mode: Option<HookMode>,
    /// Why tcx (and TC) are not used, for the feature line.
    why_not_tcx: Option<String>,
    why_off: Option<String>,
    /// Refused by the kernel, or absent (switched off).
    off_state: FeatureState,
    allow_tcx: bool,
    /// The kernel's cumulative counters as last read, by raw map key.
    seen: HashMap<Vec<u8>, Seen>,
    /// Per key, since start: everything that crossed, what local sockets moved, and
    /// what was reported as no socket's.
    crossed: HashMap<Key, Counter>,
    attributed: HashMap<Key, Counter>,
    unattributed: HashMap<Key, Counter>,
    non_ip_reported: HashMap<u32, Counter>,
    /// Non-IP frames per interface, as last read (cumulative).
    non_ip_crossed: HashMap<u32, Counter>,
    /// This drain's traffic by pair of addresses (when recorded): crossed and moved by sockets.
    pairs_crossed: HashMap<(Key, Pair), Counter>,
    pairs_attributed: HashMap<(Key, Pair), Counter>,
}

/// One interface's traffic that no socket moved, by protocol and (when recorded)
/// pair of addresses.
pub struct Unattributed {
    pub ifindex: u32,
    pub protocol: Protocol,
    pub ends: Option<Pair>,
    pub traffic: Traffic,
}

impl InterfaceHooks {
    /// `allow_tcx` false, or `enabled` false, switch tcx or all hooks off (tests of
    /// each fallback).
    pub fn new(allow_tcx: bool, enabled: bool) -> InterfaceHooks {
        InterfaceHooks {
            hooked: HashMap::new(),
            complained: false,
            mode: (!enabled).then_some(HookMode::Off),
            why_not_tcx: (!allow_tcx).then(|| format!("switched off by {WITHOUT_VARIABLE}=tcx")),
            why_off: (!enabled)
                .then(|| format!("switched off by {WITHOUT_VARIABLE}=interface_hooks")),
            off_state: if enabled {
                FeatureState::Refused
            } else {
                FeatureState::Absent
            },
            allow_tcx,
            seen: HashMap::new(),
            crossed: HashMap::new(),
            attributed: HashMap::new(),
            unattributed: HashMap::new(),
            non_ip_reported: HashMap::new(),
            non_ip_crossed: HashMap::new(),
            pairs_crossed: HashMap::new(),
            pairs_attributed: HashMap::new(),
        }
    }

    /// Whether any interface is hooked (traffic no socket moved is then reported).
    pub fn active(&self) -> bool {
        !matches!(self.mode, None | Some(HookMode::Off))
    }

    pub fn feature(&self) -> Feature {
        match self.mode {
            Some(HookMode::Tcx) => Feature::used("interface_hooks", "tcx"),
            Some(HookMode::Tc) => Feature::used(
                "interface_hooks",
                format!(
                    "classic TC filters (tcx, Linux 6.6+: {})",
                    self.why_not_tcx.as_deref().unwrap_or("unavailable")
                ),
            ),
            None | Some(HookMode::Off) => Feature::degraded(
                "interface_hooks",
                self.off_state,
                self.why_off
                    .clone()
                    .unwrap_or_else(|| "no interface to hook".into()),
                LOSES_HOOKS,
            ),
        }
    }

    /// Attaches to interfaces that appeared and lets go of vanished ones.
    pub fn sync(&mut self, skel: &NetgraphSkel<'_>) {
        if self.mode == Some(HookMode::Off) {
            return;
        }
        let present = host_interfaces();
        self.hooked
            .retain(|ifindex, _| present.iter().any(|(i, _)| i == ifindex));
        for (ifindex, link_len) in present {
            if self.hooked.contains_key(&ifindex) {
                continue;
            }
            let _ = skel.maps.link_header_length.update(
                &ifindex.to_ne_bytes(),
                &link_len.to_ne_bytes(),
                MapFlags::ANY,
            );
            match self.attach(skel, ifindex) {
                Ok(hooked) => {
                    self.hooked.insert(ifindex, hooked);
                }
                Err(error) => {
                    if self.mode.is_none() {
                        // The first interface decides: neither kind attaches here.
                        tracing::warn!(ifindex, %error, "cannot hook interfaces: {LOSES_HOOKS}");
                        self.why_off = Some(error.to_string());
                        self.mode = Some(HookMode::Off);
                        return;
                    }
                    if !self.complained {
                        self.complained = true;
                        tracing::warn!(ifindex, %error, "cannot hook interface; traffic without a local socket on it is not counted");
                    }
                }
            }
        }
    }

    /// tcx where the kernel takes it; classic TC from the first refusal on.
    fn attach(&mut self, skel: &NetgraphSkel<'_>, ifindex: u32) -> std::io::Result<Hooked> {
        let progs = &skel.progs;
        if self.allow_tcx && self.mode != Some(HookMode::Tc) {
            let ingress = attach_tcx(&progs.interface_ingress, ifindex, Direction::Ingress);
            let egress = attach_tcx(&progs.interface_egress, ifindex, Direction::Egress);
            match (ingress, egress) {
                (Ok(ingress), Ok(egress)) => {
                    self.mode = Some(HookMode::Tcx);
                    return Ok(Hooked::Tcx {
                        _links: [ingress, egress],
                    });
                }
                (Err(error), _) | (_, Err(error)) => {
                    if self.mode == Some(HookMode::Tcx) {
                        return Err(error);
                    }
                    self.why_not_tcx = Some(error.to_string());
                }
            }
        }
        let ingress = attach_tc(&progs.interface_ingress, ifindex, Direction::Ingress)?;
        let egress = match attach_tc(&progs.interface_egress, ifindex, Direction::Egress) {
            Ok(egress) => egress,
            Err(error) => {
                let _ = { ingress }.detach();
                return Err(error);
            }
        };
        self.mode = Some(HookMode::Tc);
        Ok(Hooked::Tc {
            _filters: TcFilters([ingress, egress]),
        })
    }

    /// Notes traffic local sockets of this namespace moved (by IP protocol number).
    pub fn note_attributed(
        &mut self,
        ifindex: u32,
        direction: Direction,
        ip_number: u8,
        ends: Option<Pair>,
        counter: Counter,
    ) {
        let key = (ifindex, direction, ip_number);
        self.attributed.entry(key).or_default().merge(counter);
        if let Some(pair) = ends {
            self.pairs_attributed
                .entry((key, pair))
                .or_default()
                .merge(counter);
        }
    }

    /// Reads what crossed the interfaces, before the sockets' counters are read: a
    /// packet leaving is counted by its socket before TC sees it, so every packet read
    /// here has its socket's count in the read that follows. (Read after the sockets, a
    /// reply sent in between was TC's alone for a drain, reported as no socket's, and
    /// counted again with its socket at the next.) Arriving packets meet TC first and
    /// their socket within the same softirq, well inside the gap between the reads.
    /// `carries_segments` says whether an interface's link carries the segments of
    /// offloaded packets in a direction (see `HookCount::on_link`).
    pub fn read_crossed(
        &mut self,
        map: &MapMut<'_>,
        carries_segments: &mut dyn FnMut(u32, Direction) -> bool,
    ) {
        let mut non_ip = HashMap::new();
        self.read(map, &mut non_ip, carries_segments);
        self.non_ip_crossed = non_ip;
    }

    /// What crossed the interfaces (as `read_crossed` last read it) beyond what sockets
    /// moved, since the last call. Cumulative totals make this exact over time: a
    /// packet a socket counted but TC not yet makes one drain's difference run behind,
    /// so only a growing excess is reported. With addresses recorded, the excess is
    /// named after the pairs that crossed more than sockets moved this drain, pairs no
    /// socket moved anything for first; whatever is left keeps no addresses.
    pub fn unattributed(&mut self) -> (Vec<Unattributed>, HashMap<u32, Counter>) {
        let non_ip = std::mem::take(&mut self.non_ip_crossed);
        let mut found: HashMap<(u32, Protocol, Option<Pair>), Traffic> = HashMap::new();
        let mut candidates: HashMap<Key, Vec<(Pair, Counter, bool)>> = HashMap::new();
        for ((key, pair), crossed) in self.pairs_crossed.drain() {
            let attributed = self
                .pairs_attributed
                .get(&(key, pair))
                .copied()
                .unwrap_or_default();
            let excess = Counter {
                bytes: crossed.bytes.saturating_sub(attributed.bytes),
                packets: crossed.packets.saturating_sub(attributed.packets),
            };
            if !excess.is_zero() {
                candidates
                    .entry(key)
                    .or_default()
                    .push((pair, excess, attributed.is_zero()));
            }
        }
        self.pairs_attributed.clear();
        for (&key, &crossed) in &self.crossed {
            let attributed = self.attributed.get(&key).copied().unwrap_or_default();
            let excess = Counter {
                bytes: crossed.bytes.saturating_sub(attributed.bytes),
                packets: crossed.packets.saturating_sub(attributed.packets),
            };
            let reported = self.unattributed.entry(key).or_default();
            let mut grown = Counter {
                bytes: excess.bytes.saturating_sub(reported.bytes),
                packets: excess.packets.saturating_sub(reported.packets),
            };
            reported.bytes = reported.bytes.max(excess.bytes);
            reported.packets = reported.packets.max(excess.packets);
            let (ifindex, direction, ip_number) = key;
            let protocol = Protocol::from_ip_number(ip_number);
            let mut pairs = candidates.remove(&key).unwrap_or_default();
            pairs.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.bytes.cmp(&a.1.bytes)));
            let mut share = |ends: Option<Pair>, part: Counter| {
                if part.is_zero() {
                    return;
                }
                let traffic = found.entry((ifindex, protocol, ends)).or_default();
                match direction {
                    Direction::Egress => traffic.sent.merge(part),
                    Direction::Ingress => traffic.recv.merge(part),
                }
            };
            for (pair, excess, _) in pairs {
                let part = Counter {
                    bytes: excess.bytes.min(grown.bytes),
                    packets: excess.packets.min(grown.packets),
                };
                grown.bytes -= part.bytes;
                grown.packets -= part.packets;
                share(Some(pair), part);
            }
            share(None, grown);
        }
        let non_ip_new = non_ip
            .into_iter()
            .map(|(ifindex, total)| {
                let reported = self.non_ip_reported.entry(ifindex).or_default();
                let new = Counter {
                    bytes: total.bytes - reported.bytes.min(total.bytes),
                    packets: total.packets - reported.packets.min(total.packets),
                };
                *reported = total;
                (ifindex, new)
            })
            .collect();
        let unattributed = found
            .into_iter()
            .map(|((ifindex, protocol, ends), traffic)| Unattributed {
                ifindex,
                protocol,
                ends,
                traffic,
            })
            .collect();
        (unattributed, non_ip_new)
    }

    /// Turns the kernel's cumulative counters into totals kept here, so that quiet
    /// pairs of addresses can be deleted from the bounded map without losing a count.
    fn read(
        &mut self,
        map: &MapMut<'_>,
        non_ip: &mut HashMap<u32, Counter>,
        carries_segments: &mut dyn FnMut(u32, Direction) -> bool,
    ) {
        for (raw_key, total) in totals(map) {
            let Some((key, pair)) = parse_interface_key(&raw_key) else {
                continue;
            };
            if !self.hooked.contains_key(&key.ifindex) {
                continue;
            }
            let direction = Direction::from_kernel(key.direction);
            let total = total.on_link(carries_segments(key.ifindex, direction));
            if key.non_ip != 0 {
                non_ip.entry(key.ifindex).or_default().merge(total);
                continue;
            }
            let seen = self.seen.entry(raw_key.clone()).or_insert(Seen {
                ifindex: key.ifindex,
                value: Counter::default(),
                quiet: 0,
            });
            let delta = Counter {
                bytes: total.bytes.saturating_sub(seen.value.bytes),
                packets: total.packets.saturating_sub(seen.value.packets),
            };
            seen.value = total;
            seen.quiet = if delta.is_zero() { seen.quiet + 1 } else { 0 };
            if pair.is_some() && seen.quiet >= QUIET_PAIR {
                let _ = map.delete(&raw_key);
                self.seen.remove(&raw_key);
                continue;
            }
            let k = (key.ifindex, direction, key.protocol);
            self.crossed.entry(k).or_default().merge(delta);
            if let (Some(pair), false) = (pair, delta.is_zero()) {
                self.pairs_crossed
                    .entry((k, pair))
                    .or_default()
                    .merge(delta);
            }
        }
        // A key missing from one pass (the map changed while it was walked) keeps its
        // baseline, or its whole total would count again when it reappears.
        let hooked = &self.hooked;
        self.seen
            .retain(|_, seen| hooked.contains_key(&seen.ifindex));
    }
}

/// A key of either interface map (by protocol, or by protocol and both ends).
fn parse_interface_key(bytes: &[u8]) -> Option<(types::interface_key, Option<Pair>)> {
    match plain_data::read::<types::interface_peer_key>(bytes) {
        Some(peer) => Some((
            peer.interface,
            Some((address(peer.ends.near), address(peer.ends.far))),
        )),
        None => Some((plain_data::read::<types::interface_key>(bytes)?, None)),
    }
}

/// Per-CPU counters summed.
fn totals(map: &MapMut<'_>) -> Vec<(Vec<u8>, HookCount)> {
    super::map_ops::keys(map)
        .filter_map(|key| {
            let per_cpu = map.lookup_percpu(&key, MapFlags::ANY).ok()??;
            let mut total = HookCount::default();
            for value in per_cpu {
                if let Some(v) = plain_data::read::<types::traffic_value>(&value) {
                    total.merge(HookCount::of(&v));
                }
            }
            Some((key, total))
        })
        .collect()
}

/// (ifindex, link header length) of every interface in this namespace.
fn host_interfaces() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let read = |file: &str| {
                std::fs::read_to_string(entry.path().join(file))
                    .ok()?
                    .trim()
                    .parse::<u32>()
                    .ok()
            };
            let ifindex = read("ifindex")?;
            // ARPHRD_ETHER (1) and ARPHRD_LOOPBACK (772) frames start with 14 bytes of
            // Ethernet header; tun, WireGuard (ARPHRD_NONE) and others start with IP.
            let link_len = match read("type")? {
                1 | 772 => 14,
                _ => 0,
            };
            Some((ifindex, link_len))
        })
        .collect()
}

/// Attaches a counting program first in the interface's ingress chain and last in its
/// egress chain: a program that ends the chain (passes or drops the packet) cannot hide
/// from us what arrived, and what we count leaving has passed everything else.
pub fn attach_tc(
    program: &libbpf_rs::ProgramMut<'_>,
    ifindex: u32,
    direction: Direction,
) -> std::io::Result<TcHook> {
    let (point, priority) = match direction {
        Direction::Ingress => (libbpf_rs::TC_INGRESS, TC_FIRST),
        Direction::Egress => (libbpf_rs::TC_EGRESS, TC_LAST),
    };
    let mut hook = TcHookBuilder::new(program.as_fd())
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(TC_HANDLE)
        .priority(priority)
        .hook(point);
    let io = |error: libbpf_rs::Error| std::io::Error::other(error.to_string());
    hook.create().map_err(io)?;
    hook.attach().map_err(io)
}

pub fn attach_tcx(
    program: &libbpf_rs::ProgramMut<'_>,
    ifindex: u32,
    direction: Direction,
) -> Result<Link, std::io::Error> {
    let options = libbpf_sys::bpf_tcx_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tcx_opts>() as _,
        flags: match direction {
            Direction::Ingress => libbpf_sys::BPF_F_BEFORE,
            Direction::Egress => libbpf_sys::BPF_F_AFTER,
        },
        ..Default::default()
    };
    // SAFETY: a loaded program and valid options; libbpf returns a link or NULL with errno.
    let link = unsafe {
        libbpf_sys::bpf_program__attach_tcx(
            program.as_libbpf_object().as_ptr(),
            ifindex as i32,
            &options,
        )
    };
    match NonNull::new(link) {
        // SAFETY: a link libbpf just created, owned from here on.
        Some(link) => Ok(unsafe { Link::from_ptr(link) }),
        None => Err(std::io::Error::last_os_error()),
    }
}

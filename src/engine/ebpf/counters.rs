//! Reads the kernel's cumulative per-socket counters and turns them into deltas.
//! Counters are never reset while a socket is active, so no increment is lost to a
//! race between reading and clearing; a socket's entries are deleted only once it is
//! closed and quiet.

use super::map_ops;
use super::plain_data;
use super::skeleton::types;
use crate::engine::KernelOwner;
use crate::traffic::{Counter, Protocol};
use libbpf_rs::MapMut;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};

/// Drains a closed socket's counters must stay unchanged before they are forgotten.
const QUIET_AFTER_CLOSE: u32 = 2;
/// Drains a socket with no known owner (opened before netgraph) must stay unchanged.
const QUIET_WITHOUT_OWNER: u32 = 60;
/// Sockets forgotten per drain at most, so that a burst of closed connections costs
/// the interval loop a bounded time; the rest are forgotten at the next drains.
pub const FORGET_PER_DRAIN: usize = 65_536;
/// Drains a counter of a live socket must stay unchanged before it is taken out of the
/// map: a server's listener, a DNS server or the kernel's own sockets meet a new peer
/// (address and port) with nearly every client, and would otherwise fill the map.
const QUIET_ENTRY: u32 = 30;
/// Such counters taken per drain at most (each one system call).
const TAKE_PER_DRAIN: usize = 8_192;

/// A packet's direction, as the kernel side's `enum direction` numbers it in every key
/// (socket and interface counters alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    pub fn from_kernel(value: types::direction) -> Direction {
        if value == types::direction::EGRESS {
            Direction::Egress
        } else {
            Direction::Ingress
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CounterKey {
    pub cookie: u64,
    /// The socket's owner when the packets passed (0: none recorded yet).
    pub tgid: u32,
    pub ifindex: u32,
    pub direction: Direction,
    pub protocol: Protocol,
    /// The IP header's protocol number (ICMP and ICMPv6 differ here).
    pub ip_number: u8,
    /// The packets' (near, far) addresses, when the engine records them.
    pub ends: Option<(IpAddr, IpAddr)>,
    /// The packets' (near, far) TCP or UDP ports, with their addresses (else 0).
    pub ports: (u16, u16),
    /// A request or time-wait socket: never owned, gone once quiet.
    pub transient: bool,
    /// The device's network namespace (inode), recorded for packets without an owner.
    pub netns: Option<u64>,
}

/// A count as the kernel side keeps it: the packets as they passed the hook, and what
/// their offloaded segments add on a link that carries segments (one IP and transport
/// header and one packet per segment beyond the first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookCount {
    pub passed: Counter,
    pub segments: Counter,
}

impl HookCount {
    pub fn of(value: &types::traffic_value) -> HookCount {
        HookCount {
            passed: Counter {
                bytes: value.bytes,
                packets: value.packets,
            },
            segments: Counter {
                bytes: value.segment_bytes,
                packets: value.segment_packets,
            },
        }
    }

    /// As the link carried it: with the segments' headers where it carries segments.
    pub fn on_link(self, carries_segments: bool) -> Counter {
        let mut counter = self.passed;
        if carries_segments {
            counter.merge(self.segments);
        }
        counter
    }

    pub fn merge(&mut self, other: HookCount) {
        self.passed.merge(other.passed);
        self.segments.merge(other.segments);
    }

    /// What was added since `earlier`; `None` if it is smaller (counted afresh since).
    pub fn since(self, earlier: HookCount) -> Option<HookCount> {
        let less = |now: Counter, then: Counter| {
            Some(Counter {
                bytes: now.bytes.checked_sub(then.bytes)?,
                packets: now.packets.checked_sub(then.packets)?,
            })
        };
        Some(HookCount {
            passed: less(self.passed, earlier.passed)?,
            segments: less(self.segments, earlier.segments)?,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.passed.is_zero() && self.segments.is_zero()
    }
}

/// A counter map's key as the kernel holds it (either map's layout), kept inline: the
/// counters of a hundred thousand sockets are one table, not an allocation each.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RawKey {
    len: u8,
    bytes: [u8; RAW_KEY_MAX],
}

const RAW_KEY_MAX: usize = std::mem::size_of::<types::peer_traffic_key>();

impl RawKey {
    fn of(bytes: &[u8]) -> Option<RawKey> {
        let mut key = RawKey {
            len: u8::try_from(bytes.len()).ok()?,
            bytes: [0; RAW_KEY_MAX],
        };
        key.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        Some(key)
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The socket part, which both layouts start with.
    fn socket(&self) -> types::traffic_key {
        let size = std::mem::size_of::<types::traffic_key>();
        plain_data::read(&self.bytes[..size]).unwrap_or_default()
    }
}

struct Seen {
    value: HookCount,
    quiet: u32,
}

pub struct Deltas {
    pub changed: Vec<(CounterKey, HookCount)>,
    /// Sockets whose every counter was unchanged this drain.
    pub idle: HashSet<u64>,
}

#[derive(Default)]
pub struct Counters {
    seen: HashMap<RawKey, Seen>,
    /// What taken counters held beyond their last read, handed out by the next read.
    taken: Vec<(CounterKey, HookCount)>,
    /// The kernel cannot take a hash map's entry (before 5.14): live sockets' quiet
    /// counters then stay until their socket closes.
    cannot_take: bool,
}

/// An address as the kernel side stores it: IPv6, with IPv4 mapped.
pub fn address(bytes: [u8; 16]) -> IpAddr {
    crate::traffic::canonical_ip(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// Parses a key of either counter map (by socket, or by socket and both ends).
fn parse_key(bytes: &[u8]) -> Option<CounterKey> {
    let (key, ends, ports) = match plain_data::read::<types::peer_traffic_key>(bytes) {
        Some(peer) => (
            peer.socket,
            Some((address(peer.ends.near), address(peer.ends.far))),
            (peer.near_port, peer.far_port),
        ),
        None => (plain_data::read::<types::traffic_key>(bytes)?, None, (0, 0)),
    };
    Some(CounterKey {
        ends,
        ports,
        cookie: key.cookie,
        tgid: key.tgid,
        ifindex: key.ifindex,
        direction: Direction::from_kernel(key.direction),
        protocol: Protocol::from_ip_number(key.protocol),
        ip_number: key.protocol,
        transient: key.transient != 0,
        netns: (key.netns != 0).then_some(u64::from(key.netns)),
    })
}

/// An owner record's process and whether its socket was released, without its name.
pub fn parse_owner_state(bytes: &[u8]) -> Option<(u32, bool)> {
    let owner: types::owner = plain_data::read(bytes)?;
    Some((owner.tgid, released(&owner)))
}

/// Only INET sockets report their release; others (packet sockets) count as released,
/// so that their quiet counters and records go, and come back with the next packet
/// they send.
fn released(owner: &types::owner) -> bool {
    owner.released != 0 || !matches!(i32::from(owner.family), libc::AF_INET | libc::AF_INET6)
}

/// An owner record and whether its socket was released.
pub fn parse_owner(bytes: &[u8]) -> Option<(KernelOwner, bool)> {
    let owner: types::owner = plain_data::read(bytes)?;
    let comm: Vec<u8> = owner
        .comm
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    Some((
        KernelOwner {
            tgid: owner.tgid,
            uid: owner.uid,
            comm: String::from_utf8_lossy(&comm).into_owned(),
            cgroup_id: owner.cgroup_id,
            cgroup_path: None,
            exe: None,
            netns: owner.netns,
        },
        released(&owner),
    ))
}

/// What the counters need of a kernel map: one bounded pass, and batched deletes. The
/// kernel's maps implement it; tests use a plain table.
pub trait KernelMap {
    fn entries(&self) -> map_ops::Entries;
    /// Deletes these keys; returns how many were deleted.
    fn delete(&self, keys: &[Vec<u8>]) -> usize;
    /// Deletes one key and returns its last value, atomically, so that nothing counted
    /// between a read and the delete is lost.
    fn take(&self, key: &[u8]) -> map_ops::Taken;
}

impl KernelMap for MapMut<'_> {
    fn entries(&self) -> map_ops::Entries {
        map_ops::entries(self)
    }

    fn delete(&self, keys: &[Vec<u8>]) -> usize {
        map_ops::delete(self, keys)
    }

    fn take(&self, key: &[u8]) -> map_ops::Taken {
        map_ops::take(self, key)
    }
}

impl Counters {
    pub fn read(&mut self, map: &dyn KernelMap) -> Deltas {
        let mut changed = std::mem::take(&mut self.taken);
        let mut busy: HashSet<u64> = changed.iter().map(|(key, _)| key.cookie).collect();
        let mut cookies = HashSet::new();
        for (raw_key, raw_value) in map.entries().iter() {
            let (Some(key), Some(value), Some(raw)) = (
                parse_key(raw_key),
                plain_data::read::<types::traffic_value>(raw_value),
                RawKey::of(raw_key),
            ) else {
                continue;
            };
            let value = HookCount::of(&value);
            cookies.insert(key.cookie);
            let seen = self.seen.entry(raw).or_insert(Seen {
                value: HookCount::default(),
                quiet: 0,
            });
            // Smaller than before: deleted and counted afresh since.
            let delta = value.since(seen.value).unwrap_or(value);
            seen.value = value;
            if delta.is_zero() {
                seen.quiet += 1;
            } else {
                seen.quiet = 0;
                busy.insert(key.cookie);
                changed.push((key, delta));
            }
        }
        // Only `collect` deletes counters, so a key missing from one pass (the map
        // changed while it was walked) keeps its baseline rather than counting again.
        let idle = cookies.difference(&busy).copied().collect();
        Deltas { changed, idle }
    }

    /// Deletes the counters of idle sockets that are closed (or have no owner record)
    /// and have been quiet long enough, at most `FORGET_PER_DRAIN` sockets a drain (the
    /// rest stay quiet and go at the next). `released` says whether a socket was closed
    /// (`None`: no owner record). Returns the sockets forgotten.
    pub fn collect(
        &mut self,
        map: &dyn KernelMap,
        idle: HashSet<u64>,
        released: &mut dyn FnMut(u64) -> Option<bool>,
    ) -> Vec<u64> {
        // (quietest counter, whether the socket is a transient one) per idle socket.
        let mut quietest: HashMap<u64, (u32, bool)> = HashMap::new();
        for (raw, seen) in &self.seen {
            let key = raw.socket();
            if idle.contains(&key.cookie) {
                let entry = quietest.entry(key.cookie).or_insert((u32::MAX, false));
                entry.0 = entry.0.min(seen.quiet);
                entry.1 |= key.transient != 0;
            }
        }
        let mut forget: Vec<u64> = quietest
            .into_iter()
            .filter(|&(cookie, (quiet, transient))| {
                if transient {
                    return quiet >= QUIET_AFTER_CLOSE;
                }
                match released(cookie) {
                    Some(true) => quiet >= QUIET_AFTER_CLOSE,
                    Some(false) => false,
                    None => quiet >= QUIET_WITHOUT_OWNER,
                }
            })
            .map(|(cookie, _)| cookie)
            .collect();
        if forget.len() > FORGET_PER_DRAIN {
            tracing::info!(
                deferred = forget.len() - FORGET_PER_DRAIN,
                "many sockets closed at once: the rest are forgotten at the next intervals"
            );
            forget.truncate(FORGET_PER_DRAIN);
        }
        let forget: HashSet<u64> = forget.into_iter().collect();
        if !forget.is_empty() {
            let mut doomed = Vec::new();
            self.seen.retain(|raw, _| {
                let keep = !forget.contains(&raw.socket().cookie);
                if !keep {
                    doomed.push(raw.as_slice().to_vec());
                }
                keep
            });
            map.delete(&doomed);
        }
        self.take_quiet(map);
        forget.into_iter().collect()
    }

    /// Takes out of the map the counters of live sockets that have been quiet long
    /// enough; what they counted since the last read goes to the next.
    fn take_quiet(&mut self, map: &dyn KernelMap) {
        if self.cannot_take {
            return;
        }
        let quiet: Vec<RawKey> = self
            .seen
            .iter()
            .filter(|(_, seen)| seen.quiet >= QUIET_ENTRY)
            .map(|(raw, _)| *raw)
            .take(TAKE_PER_DRAIN)
            .collect();
        for raw in quiet {
            let last = match map.take(raw.as_slice()) {
                map_ops::Taken::Value(value) => plain_data::read::<types::traffic_value>(&value)
                    .map(|value| HookCount::of(&value)),
                map_ops::Taken::Gone => None,
                map_ops::Taken::Unsupported(error) => {
                    tracing::info!(%error, "this kernel cannot take a counter out of a map atomically (5.14 and later can): quiet peers of live sockets stay in the map until their socket closes");
                    self.cannot_take = true;
                    return;
                }
            };
            let Some(seen) = self.seen.remove(&raw) else {
                continue;
            };
            if let (Some(last), Some(key)) = (last, parse_key(raw.as_slice())) {
                let delta = last.since(seen.value).unwrap_or(last);
                if !delta.is_zero() {
                    self.taken.push((key, delta));
                }
            }
        }
    }

    /// Counters kept (one per socket, owner, interface and direction).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Sockets that counters are kept for.
    pub fn cookies(&self) -> HashSet<u64> {
        self.seen.keys().map(|raw| raw.socket().cookie).collect()
    }

    /// Processes that counters still being tracked were stamped with.
    pub fn tgids(&self) -> HashSet<u32> {
        self.seen.keys().map(|raw| raw.socket().tgid).collect()
    }
}

#[cfg(test)]
mod tests;

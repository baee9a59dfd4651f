//! Packets the kernel dropped, per owning socket and reason, as the kfree_skb program
//! counts them, turned into what happened since the last drain. The kernel numbers its
//! reasons differently from one version to the next: their names come from its BTF.

use super::counters::{address, KernelMap};
use super::plain_data;
use super::skeleton::types;
use crate::traffic::{DropKind, Drops, Protocol};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// Drains an entry stays unchanged before it goes (its socket may drop again: it then
/// starts afresh, nothing lost).
const QUIET_BEFORE_FORGET: u32 = 60;

/// The kernel's drop reasons: which numbers mean a drop, and each one's kind.
#[derive(Clone, Debug, Default)]
pub struct DropReasons {
    kinds: HashMap<u32, DropKind>,
    /// `SKB_DROP_REASON_NOT_SPECIFIED`: the reasons before it mean "not dropped".
    pub first: u32,
}

impl DropReasons {
    /// From the running kernel's BTF (`enum skb_drop_reason`); `None` where the kernel
    /// has no drop reasons (before 5.17) or no BTF.
    pub fn of_kernel() -> Option<DropReasons> {
        let btf = libbpf_rs::btf::Btf::from_vmlinux().ok()?;
        let reasons: libbpf_rs::btf::types::Enum<'_> = btf.type_by_name("skb_drop_reason")?;
        DropReasons::from_names(
            reasons.iter().filter_map(|member| {
                Some((member.name?.to_str()?, u32::try_from(member.value).ok()?))
            }),
        )
    }

    fn from_names<'a>(names: impl Iterator<Item = (&'a str, u32)>) -> Option<DropReasons> {
        let mut reasons = DropReasons::default();
        let mut first = None;
        for (name, value) in names {
            if name == "SKB_DROP_REASON_NOT_SPECIFIED" {
                first = Some(value);
            }
            reasons.kinds.insert(value, DropKind::of(name));
        }
        reasons.first = first?;
        Some(reasons)
    }

    fn kind(&self, reason: u32) -> Option<DropKind> {
        (reason >= self.first).then(|| self.kinds.get(&reason).copied().unwrap_or(DropKind::Other))
    }
}

/// One socket's drops since the last drain.
#[derive(Clone, Debug, PartialEq)]
pub struct DropDelta {
    pub cookie: u64,
    pub drops: Drops,
    pub protocol: Protocol,
    /// The route's device, when the socket had one, in the socket's namespace.
    pub ifindex: u32,
    pub netns: u64,
    /// (near, far) addresses and ports.
    pub ends: (IpAddr, IpAddr),
    pub ports: (u16, u16),
}

struct Seen {
    packets: u64,
    bytes: u64,
    quiet: u32,
}

pub struct DropCounters {
    reasons: DropReasons,
    /// By (socket cookie, reason).
    seen: HashMap<(u64, u32), Seen>,
}

impl DropCounters {
    pub fn new(reasons: DropReasons) -> DropCounters {
        DropCounters {
            reasons,
            seen: HashMap::new(),
        }
    }

    /// What each socket dropped since the last read, its reasons summed by kind.
    pub fn read(&mut self, map: &dyn KernelMap) -> Vec<DropDelta> {
        let mut by_socket: HashMap<u64, DropDelta> = HashMap::new();
        for (key, value) in map.entries().iter() {
            let (Some(key), Some(value)) = (
                plain_data::read::<types::drop_key>(key),
                plain_data::read::<types::drop_count>(value),
            ) else {
                continue;
            };
            let seen = self.seen.entry((key.cookie, key.reason)).or_insert(Seen {
                packets: 0,
                bytes: 0,
                quiet: 0,
            });
            // Fewer than before: deleted and made afresh since.
            let less = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
            let (packets, bytes) = (
                less(value.packets, seen.packets),
                less(value.bytes, seen.bytes),
            );
            (seen.packets, seen.bytes) = (value.packets, value.bytes);
            if packets == 0 {
                seen.quiet += 1;
                continue;
            }
            seen.quiet = 0;
            let Some(kind) = self.reasons.kind(key.reason) else {
                continue;
            };
            by_socket
                .entry(key.cookie)
                .or_insert_with(|| DropDelta {
                    cookie: key.cookie,
                    drops: Drops::default(),
                    protocol: Protocol::from_ip_number(value.protocol as u8),
                    ifindex: value.ifindex,
                    netns: u64::from(value.netns),
                    ends: (address(value.ends.near), address(value.ends.far)),
                    ports: (value.near_port, value.far_port),
                })
                .drops
                .add(kind, packets, bytes);
        }
        by_socket.into_values().collect()
    }

    /// Forgets the entries of sockets whose counters were forgotten, and those quiet a
    /// while.
    pub fn forget(&mut self, map: &dyn KernelMap, forgotten: &[u64]) {
        let forgotten: HashSet<u64> = forgotten.iter().copied().collect();
        let mut doomed = Vec::new();
        self.seen.retain(|&(cookie, reason), seen| {
            let keep = !forgotten.contains(&cookie) && seen.quiet < QUIET_BEFORE_FORGET;
            if !keep {
                doomed.push(plain_data::bytes_of(&types::drop_key {
                    cookie,
                    reason,
                    ..Default::default()
                }));
            }
            keep
        });
        map.delete(&doomed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ebpf::map_ops;

    /// A map of the test's own: entries it sets, deletes it records.
    #[derive(Default)]
    struct Table {
        entries: std::cell::RefCell<Vec<(types::drop_key, types::drop_count)>>,
    }

    impl KernelMap for Table {
        fn entries(&self) -> map_ops::Entries {
            let mut entries = map_ops::Entries::new(
                std::mem::size_of::<types::drop_key>(),
                std::mem::size_of::<types::drop_count>(),
            );
            for (key, value) in self.entries.borrow().iter() {
                entries.push(&plain_data::bytes_of(key), &plain_data::bytes_of(value));
            }
            entries
        }

        fn delete(&self, keys: &[Vec<u8>]) -> usize {
            let mut entries = self.entries.borrow_mut();
            let before = entries.len();
            entries.retain(|(key, _)| !keys.contains(&plain_data::bytes_of(key)));
            before - entries.len()
        }

        fn take(&self, _key: &[u8]) -> map_ops::Taken {
            map_ops::Taken::Gone
        }
    }

    /// Numbered as 6.1 numbers them.
    fn reasons() -> DropReasons {
        DropReasons::from_names(
            [
                ("SKB_NOT_DROPPED_YET", 0),
                ("SKB_CONSUMED", 1),
                ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
                ("SKB_DROP_REASON_SOCKET_RCVBUFF", 6),
                ("SKB_DROP_REASON_NETFILTER_DROP", 12),
            ]
            .into_iter(),
        )
        .unwrap()
    }

    fn entry(cookie: u64, reason: u32, packets: u64) -> (types::drop_key, types::drop_count) {
        (
            types::drop_key {
                cookie,
                reason,
                ..Default::default()
            },
            types::drop_count {
                packets,
                bytes: packets * 100,
                protocol: 17,
                ..Default::default()
            },
        )
    }

    #[test]
    fn drops_are_reported_once_by_kind_and_quiet_entries_go() {
        let table = Table::default();
        let mut counters = DropCounters::new(reasons());
        table.entries.borrow_mut().extend([
            entry(7, 12, 3),
            entry(7, 6, 1),
            entry(8, 1, 5),  // consumed: not a drop
            entry(9, 99, 2), // a reason this kernel's BTF did not list
        ]);
        let mut first = counters.read(&table);
        first.sort_by_key(|d| d.cookie);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].cookie, 7);
        assert_eq!(first[0].protocol, Protocol::Udp);
        assert_eq!(first[0].drops.of(DropKind::Netfilter), 3);
        assert_eq!(first[0].drops.of(DropKind::Socket), 1);
        assert_eq!(first[0].drops.bytes, 400);
        assert_eq!(first[1].drops.of(DropKind::Other), 2);
        // Two more netfilter drops on 7; nothing else.
        table.entries.borrow_mut()[0] = entry(7, 12, 5);
        let second = counters.read(&table);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].drops.of(DropKind::Netfilter), 2);
        assert_eq!(second[0].drops.total(), 2);
        // A forgotten socket's entries go, in the kernel too.
        counters.forget(&table, &[7]);
        assert!(table
            .entries
            .borrow()
            .iter()
            .all(|(key, _)| key.cookie != 7));
        for _ in 0..QUIET_BEFORE_FORGET {
            assert!(counters.read(&table).is_empty());
        }
        counters.forget(&table, &[]);
        assert!(table.entries.borrow().is_empty());
        assert!(counters.seen.is_empty());
    }

    #[test]
    fn a_kernel_without_drop_reasons_has_none() {
        assert!(DropReasons::from_names([("SKB_CONSUMED", 1)].into_iter()).is_none());
        assert_eq!(reasons().first, 2);
    }
}

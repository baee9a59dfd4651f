//! TCP's health per socket, as the kernel side's tracepoints count it (retransmitted
//! segments, connects and their failures, the smoothed RTT when last seen), turned into
//! what happened since the last drain. Entries go with their socket's counters.

use super::counters::{address, KernelMap};
use super::map_ops;
use super::plain_data;
use super::skeleton::types;
use crate::traffic::TcpHealth;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

/// Drains an entry of a socket that has no counters any more stays before it goes
/// (a connect that failed before any packet was counted, a race with the counters).
const QUIET_WITHOUT_COUNTERS: u32 = 60;

/// One socket's health since the last drain.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthDelta {
    pub cookie: u64,
    pub health: TcpHealth,
    /// The smoothed RTT when last seen, to be weighted by the socket's bytes.
    pub rtt_us: u32,
    /// The route's device, when the kernel had one, in the socket's namespace.
    pub ifindex: u32,
    pub netns: u64,
    /// (near, far) addresses and ports.
    pub ends: (IpAddr, IpAddr),
    pub ports: (u16, u16),
}

struct Seen {
    value: types::tcp_health,
    quiet: u32,
}

#[derive(Default)]
pub struct HealthCounters {
    seen: HashMap<u64, Seen>,
    /// What forgotten entries held beyond their last read, handed out by the next read.
    taken: Vec<HealthDelta>,
}

impl HealthCounters {
    /// What each socket's health gained since the last read (RTTs: as last seen, for
    /// sockets that moved bytes or had an event).
    pub fn read(&mut self, map: &dyn KernelMap) -> Vec<HealthDelta> {
        let mut deltas = std::mem::take(&mut self.taken);
        for (key, value) in map.entries().iter() {
            let (Some(cookie), Some(value)) = (
                key.try_into().ok().map(u64::from_ne_bytes),
                plain_data::read::<types::tcp_health>(value),
            ) else {
                continue;
            };
            let seen = self.seen.entry(cookie).or_insert(Seen {
                value: types::tcp_health::default(),
                quiet: 0,
            });
            let health = since(&value, &seen.value);
            let changed = !health.is_zero() || value.rtt_us != seen.value.rtt_us;
            seen.value = value;
            if !changed {
                seen.quiet += 1;
                continue;
            }
            seen.quiet = 0;
            deltas.push(delta(cookie, health, &value));
        }
        deltas
    }

    /// Forgets the entries of sockets whose counters were forgotten, and, given the
    /// sockets that still have counters, those of sockets without any quiet a while.
    /// Each is taken out of the map in one step where the kernel can (5.14+): a late
    /// retransmission counted since the last read (an orphaned socket still sending)
    /// goes to the next read instead of being lost.
    pub fn forget(
        &mut self,
        map: &dyn KernelMap,
        forgotten: &[u64],
        counted: Option<&HashSet<u64>>,
    ) {
        let forgotten: HashSet<u64> = forgotten.iter().copied().collect();
        let mut doomed = Vec::new();
        self.seen.retain(|cookie, seen| {
            let uncounted_and_quiet = counted.is_some_and(|counted| {
                !counted.contains(cookie) && seen.quiet >= QUIET_WITHOUT_COUNTERS
            });
            let keep = !forgotten.contains(cookie) && !uncounted_and_quiet;
            if !keep {
                doomed.push((*cookie, seen.value));
            }
            keep
        });
        let mut deleted = Vec::new();
        for (cookie, before) in doomed {
            let key = cookie.to_ne_bytes();
            match map.take(&key) {
                map_ops::Taken::Value(value) => {
                    let Some(value) = plain_data::read::<types::tcp_health>(&value) else {
                        continue;
                    };
                    let health = since(&value, &before);
                    if !health.is_zero() {
                        self.taken.push(delta(cookie, health, &value));
                    }
                }
                map_ops::Taken::Gone => {}
                map_ops::Taken::Unsupported(_) => deleted.push(key.to_vec()),
            }
        }
        map.delete(&deleted);
    }

    /// The socket's smoothed RTT as last seen (at its handshake, a retransmission or
    /// its end).
    pub fn rtt_of(&self, cookie: u64) -> Option<u32> {
        let rtt = self.seen.get(&cookie)?.value.rtt_us;
        (rtt > 0).then_some(rtt)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }
}

fn delta(cookie: u64, health: TcpHealth, value: &types::tcp_health) -> HealthDelta {
    HealthDelta {
        cookie,
        health,
        rtt_us: value.rtt_us,
        ifindex: value.ifindex,
        netns: u64::from(value.netns),
        ends: (address(value.ends.near), address(value.ends.far)),
        ports: (value.near_port, value.far_port),
    }
}

/// What `now` added to `before`; a smaller count means the entry was made afresh.
fn since(now: &types::tcp_health, before: &types::tcp_health) -> TcpHealth {
    let less = |now: u64, then: u64| now.checked_sub(then).unwrap_or(now);
    let less32 = |now: u32, then: u32| u64::from(now.checked_sub(then).unwrap_or(now));
    TcpHealth {
        retransmits: less(now.retransmits, before.retransmits),
        retransmit_bytes: less(now.retransmit_bytes, before.retransmit_bytes),
        connects: less32(now.connects, before.connects),
        connects_refused: less32(now.refused, before.refused),
        connects_timed_out: less32(now.timed_out, before.timed_out),
        connects_unreachable: less32(now.unreachable, before.unreachable),
        connects_aborted: less32(now.aborted, before.aborted),
        ..TcpHealth::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ebpf::map_ops;

    /// A map of the test's own: entries it sets, deletes it records.
    #[derive(Default)]
    struct Table {
        entries: std::cell::RefCell<Vec<(u64, types::tcp_health)>>,
    }

    impl KernelMap for Table {
        fn entries(&self) -> map_ops::Entries {
            let size = std::mem::size_of::<types::tcp_health>();
            let mut entries = map_ops::Entries::new(8, size);
            for (cookie, value) in self.entries.borrow().iter() {
                entries.push(&cookie.to_ne_bytes(), &plain_data::bytes_of(value));
            }
            entries
        }

        fn delete(&self, keys: &[Vec<u8>]) -> usize {
            let mut entries = self.entries.borrow_mut();
            let before = entries.len();
            entries.retain(|(cookie, _)| !keys.contains(&cookie.to_ne_bytes().to_vec()));
            before - entries.len()
        }

        fn take(&self, key: &[u8]) -> map_ops::Taken {
            let mut entries = self.entries.borrow_mut();
            match entries
                .iter()
                .position(|(cookie, _)| cookie.to_ne_bytes() == key)
            {
                Some(at) => map_ops::Taken::Value(plain_data::bytes_of(&entries.remove(at).1)),
                None => map_ops::Taken::Gone,
            }
        }
    }

    fn health(retransmits: u64, refused: u32, rtt_us: u32) -> types::tcp_health {
        types::tcp_health {
            retransmits,
            retransmit_bytes: retransmits * 1448,
            refused,
            rtt_us,
            ..Default::default()
        }
    }

    #[test]
    fn each_event_is_reported_once_and_entries_go_with_their_socket() {
        let table = Table::default();
        let mut counters = HealthCounters::default();
        table.entries.borrow_mut().push((7, health(3, 0, 20_000)));
        table.entries.borrow_mut().push((8, health(0, 1, 0)));
        let first = counters.read(&table);
        assert_eq!(first.len(), 2);
        let seven = first.iter().find(|d| d.cookie == 7).unwrap();
        assert_eq!(
            (
                seven.health.retransmits,
                seven.health.retransmit_bytes,
                seven.rtt_us
            ),
            (3, 3 * 1448, 20_000)
        );
        assert_eq!(
            first
                .iter()
                .find(|d| d.cookie == 8)
                .unwrap()
                .health
                .connects_refused,
            1
        );
        // Two more retransmissions of 7; nothing new for 8.
        table.entries.borrow_mut()[0].1 = health(5, 0, 20_000);
        let second = counters.read(&table);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].health.retransmits, 2);
        // 7's counters were forgotten (closed and quiet), after one more retransmission
        // the last read did not see (an orphaned socket still sending): taken out with
        // the entry, it comes with the next read. 8 never had counters.
        table.entries.borrow_mut()[0].1 = health(6, 0, 20_000);
        let counted = HashSet::from([7]);
        counters.forget(&table, &[7], Some(&counted));
        assert_eq!(table.entries.borrow().len(), 1);
        let late = counters.read(&table);
        assert_eq!(late.len(), 1);
        assert_eq!((late[0].cookie, late[0].health.retransmits), (7, 1));
        for _ in 1..QUIET_WITHOUT_COUNTERS {
            counters.read(&table);
        }
        counters.forget(&table, &[], None);
        assert_eq!(table.entries.borrow().len(), 1, "kept until the sweep");
        counters.forget(&table, &[], Some(&counted));
        assert!(table.entries.borrow().is_empty());
        assert_eq!(counters.len(), 0);
    }
}

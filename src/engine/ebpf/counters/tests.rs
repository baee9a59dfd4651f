//! The counters' delta, baseline and cleanup logic against a table standing in for the
//! kernel's map, so it is tested without a kernel.

use super::*;
use crate::engine::ebpf::plain_data::bytes_of;
use std::cell::RefCell;

#[derive(Default)]
struct FakeMap {
    entries: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
    /// Keys a pass leaves out, as a walk of a changing map may.
    hidden: RefCell<HashSet<Vec<u8>>>,
    /// Values keys take just before they are taken.
    late: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
    /// As a kernel before 5.14.
    cannot_take: RefCell<bool>,
}

impl KernelMap for FakeMap {
    fn entries(&self) -> map_ops::Entries {
        let hidden = self.hidden.borrow();
        let entries = self.entries.borrow();
        let mut found = map_ops::Entries::new(
            entries.keys().next().map_or(1, Vec::len),
            std::mem::size_of::<types::traffic_value>(),
        );
        for (key, value) in entries.iter().filter(|(key, _)| !hidden.contains(*key)) {
            found.push(key, value);
        }
        found
    }

    fn delete(&self, keys: &[Vec<u8>]) -> usize {
        let mut entries = self.entries.borrow_mut();
        keys.iter()
            .filter(|key| entries.remove(*key).is_some())
            .count()
    }

    fn take(&self, key: &[u8]) -> map_ops::Taken {
        if *self.cannot_take.borrow() {
            return map_ops::Taken::Unsupported(libbpf_rs::Error::from(
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        // A packet counted between the drain's read and the take.
        let mut entries = self.entries.borrow_mut();
        if let Some(late) = self.late.borrow_mut().remove(key) {
            entries.insert(key.to_vec(), late);
        }
        entries
            .remove(key)
            .map_or(map_ops::Taken::Gone, map_ops::Taken::Value)
    }
}

fn key(cookie: u64, direction: types::direction, transient: bool) -> Vec<u8> {
    bytes_of(&types::traffic_key {
        cookie,
        tgid: 42,
        ifindex: 2,
        direction,
        protocol: 6,
        transient: u8::from(transient),
        ..Default::default()
    })
}

impl FakeMap {
    fn set(&self, key: &[u8], bytes: u64, packets: u64) {
        self.set_offloaded(key, (bytes, packets), (0, 0));
    }

    /// A counter with the headers and packets its offloaded segments add.
    fn set_offloaded(
        &self,
        key: &[u8],
        (bytes, packets): (u64, u64),
        (segment_bytes, segment_packets): (u64, u64),
    ) {
        let value = bytes_of(&types::traffic_value {
            bytes,
            packets,
            segment_bytes,
            segment_packets,
        });
        self.entries.borrow_mut().insert(key.to_vec(), value);
    }
}

fn sent(deltas: &Deltas, cookie: u64) -> u64 {
    deltas
        .changed
        .iter()
        .filter(|(key, _)| key.cookie == cookie)
        .map(|(_, delta)| delta.passed.bytes)
        .sum()
}

#[test]
fn offloaded_segments_count_only_on_links_that_carry_them() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    let egress = key(1, types::direction::EGRESS, false);
    // One 64 KiB GSO packet of 45 segments with 52-byte IP and TCP headers.
    map.set_offloaded(&egress, (65_226, 1), (44 * 52, 44));
    let first = counters.read(&map);
    let (_, delta) = first.changed[0];
    let wire = delta.on_link(true);
    assert_eq!((wire.bytes, wire.packets), (65_226 + 44 * 52, 45));
    assert_eq!(delta.on_link(false).packets, 1, "a veth passes it whole");
    map.set_offloaded(&egress, (65_226 + 1500, 2), (44 * 52, 44));
    let second = counters.read(&map);
    let wire = second.changed[0].1.on_link(true);
    assert_eq!((wire.bytes, wire.packets), (1500, 1));
}

#[test]
fn deltas_of_cumulative_counters() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    let egress = key(1, types::direction::EGRESS, false);
    map.set(&egress, 1000, 2);
    let first = counters.read(&map);
    assert_eq!(sent(&first, 1), 1000);
    assert_eq!(first.changed[0].0.direction, Direction::Egress);
    map.set(&egress, 1500, 3);
    assert_eq!(sent(&counters.read(&map), 1), 500);
    let quiet = counters.read(&map);
    assert!(quiet.changed.is_empty());
    assert!(quiet.idle.contains(&1));
    // Deleted and created afresh since (smaller than before): counted from zero.
    map.set(&egress, 300, 1);
    assert_eq!(sent(&counters.read(&map), 1), 300);
}

#[test]
fn a_key_missing_from_one_pass_keeps_its_baseline() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    let egress = key(1, types::direction::EGRESS, false);
    map.set(&egress, 1000, 1);
    counters.read(&map);
    map.hidden.borrow_mut().insert(egress.clone());
    map.set(&egress, 1200, 2);
    let missed = counters.read(&map);
    assert!(missed.changed.is_empty() && !missed.idle.contains(&1));
    map.hidden.borrow_mut().clear();
    assert_eq!(sent(&counters.read(&map), 1), 200, "not 1200 again");
}

#[test]
fn closed_quiet_sockets_are_forgotten_and_open_ones_kept() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    // 1 closed, 2 open, 3 without an owner record, 4 a time-wait socket.
    for cookie in 1..=4 {
        map.set(&key(cookie, types::direction::EGRESS, cookie == 4), 100, 1);
        map.set(&key(cookie, types::direction::INGRESS, cookie == 4), 100, 1);
    }
    let mut released = |cookie: u64| match cookie {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    };
    let mut forgotten = Vec::new();
    for _ in 0..3 {
        let deltas = counters.read(&map);
        forgotten.extend(counters.collect(&map, deltas.idle, &mut released));
    }
    forgotten.sort_unstable();
    assert_eq!(forgotten, [1, 4], "after {QUIET_AFTER_CLOSE} quiet drains");
    assert_eq!(
        map.entries.borrow().len(),
        4,
        "their kernel counters deleted"
    );
    assert_eq!(counters.cookies(), HashSet::from([2, 3]));
    assert_eq!(counters.tgids(), HashSet::from([42]));
    for _ in 0..QUIET_WITHOUT_OWNER {
        let deltas = counters.read(&map);
        forgotten.extend(counters.collect(&map, deltas.idle, &mut released));
    }
    // The quiet counters of the open socket and of the one without an owner record are
    // taken out of the map one by one; neither socket is forgotten (the open one's
    // owner record stays for its next packet).
    assert!(!forgotten.contains(&2) && !forgotten.contains(&3));
    assert!(map.entries.borrow().is_empty());
    assert!(counters.cookies().is_empty());
}

#[test]
fn peer_counters_are_read_and_forgotten_by_their_socket() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    let peer_key = |cookie: u64, far: u8| {
        let mut ends = types::ends::default();
        ends.near[..4].copy_from_slice(&[10, 0, 0, 1]);
        ends.far[..4].copy_from_slice(&[10, 0, 0, far]);
        bytes_of(&types::peer_traffic_key {
            socket: types::traffic_key {
                cookie,
                tgid: 7,
                ifindex: 2,
                direction: types::direction::EGRESS,
                protocol: 17,
                ..Default::default()
            },
            ends,
            near_port: 5353,
            far_port: 53,
            ..Default::default()
        })
    };
    // One socket talking to two peers: two counters, one socket.
    map.set(&peer_key(9, 2), 100, 1);
    map.set(&peer_key(9, 3), 250, 2);
    let deltas = counters.read(&map);
    assert_eq!(sent(&deltas, 9), 350);
    assert_eq!(counters.len(), 2);
    assert_eq!(counters.tgids(), HashSet::from([7]));
    let mut released = |_| Some(true);
    for _ in 0..=QUIET_AFTER_CLOSE {
        let deltas = counters.read(&map);
        counters.collect(&map, deltas.idle, &mut released);
    }
    assert!(
        map.entries.borrow().is_empty(),
        "both deleted by their raw keys"
    );
    assert!(counters.cookies().is_empty());
}

/// A live socket (a server's listener, a DNS server) meets a new peer with every
/// client: each counter goes once quiet, the socket stays, and what a counter took
/// between the last read and its taking is counted at the next read.
#[test]
fn quiet_peers_of_a_live_socket_are_taken_out_and_their_last_bytes_kept() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    let peer_key = |far_port: u16| {
        bytes_of(&types::peer_traffic_key {
            socket: types::traffic_key {
                cookie: 5,
                tgid: 7,
                ifindex: 2,
                direction: types::direction::INGRESS,
                protocol: 17,
                ..Default::default()
            },
            near_port: 53,
            far_port,
            ..Default::default()
        })
    };
    let mut released = |_| Some(false);
    for client in 0..100u16 {
        map.set(&peer_key(40_000 + client), 60, 1);
    }
    let busy = peer_key(50_000);
    let mut total = 0;
    for drain in 0..QUIET_ENTRY + 2 {
        // One client keeps talking; the hundred others said their one datagram.
        map.set(&busy, 60 * (u64::from(drain) + 1), u64::from(drain) + 1);
        if drain == QUIET_ENTRY {
            // A late datagram from a quiet client, between the read and the take.
            let late = bytes_of(&types::traffic_value {
                bytes: 60 + 70,
                packets: 2,
                ..Default::default()
            });
            map.late.borrow_mut().insert(peer_key(40_000), late);
        }
        let deltas = counters.read(&map);
        total += sent(&deltas, 5);
        assert!(counters
            .collect(&map, deltas.idle, &mut released)
            .is_empty());
    }
    total += sent(&counters.read(&map), 5);
    assert_eq!(
        map.entries.borrow().len(),
        1,
        "only the busy client's counter"
    );
    assert_eq!(counters.len(), 1);
    let busy_bytes = 60 * (u64::from(QUIET_ENTRY) + 2);
    assert_eq!(
        total,
        100 * 60 + 70 + busy_bytes,
        "every byte, the late one too"
    );
}

#[test]
fn a_kernel_that_cannot_take_keeps_the_counters() {
    let (map, mut counters) = (FakeMap::default(), Counters::default());
    *map.cannot_take.borrow_mut() = true;
    map.set(&key(1, types::direction::EGRESS, false), 100, 1);
    let mut released = |_| Some(false);
    for _ in 0..QUIET_ENTRY + 2 {
        let deltas = counters.read(&map);
        counters.collect(&map, deltas.idle, &mut released);
    }
    assert_eq!(map.entries.borrow().len(), 1);
    assert_eq!(counters.len(), 1);
}

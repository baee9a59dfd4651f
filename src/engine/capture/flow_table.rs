//! Per-interface traffic by flow, bounded, oriented by the host's own addresses.

use super::decode::IpPacket;
use super::end::End;
use super::link::LinkDirection;
use crate::engine::host_addresses::LocalAddresses;
use crate::engine::{FlowTraffic, InterfaceName, InterfaceTraffic};
use crate::traffic::{Counter, Flow, Protocol, Traffic};
use std::collections::HashMap;

pub struct FlowTable {
    interface: InterfaceName,
    /// On a loopback interface every packet is both sent and received by this host.
    loopback: bool,
    /// Each flow's traffic, in `slots`. Hashed with aHash: SipHash was a quarter of the
    /// engine's CPU on small packets, and aHash's random keys keep crafted flows from
    /// colliding.
    index: HashMap<FlowKey, usize, ahash::RandomState>,
    slots: Vec<(Flow, Traffic)>,
    /// The slot each direction counted last: the packets of a bulk stream or a flood
    /// follow one another, and skip the hash lookup (most of the table's cost).
    recent: [Option<(FlowKey, usize)>; 2],
    capacity: usize,
    totals: InterfaceTraffic,
    segments: LinkSegments,
}

/// Where the link carries packets larger than its MTU as segments: the MTU, per
/// direction (see `engine::offloads`).
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkSegments {
    pub sent: Option<u64>,
    pub received: Option<u64>,
}

/// A packet as the link carried it: one larger than the MTU (merged by GRO, or
/// offloaded) was that many MTU-sized segments, each with its own headers; bulk senders
/// fill every segment but the last.
fn on_wire(packet: &IpPacket, mtu: Option<u64>) -> Counter {
    let headers = u64::from(packet.headers);
    match mtu {
        Some(mtu) if headers > 0 && mtu > headers && packet.ip_len > mtu => {
            let segments = (packet.ip_len - headers).div_ceil(mtu - headers);
            Counter {
                bytes: packet.ip_len + (segments - 1) * headers,
                packets: segments,
            }
        }
        _ => Counter {
            bytes: packet.ip_len,
            packets: 1,
        },
    }
}

impl FlowTable {
    pub fn new(interface: InterfaceName, loopback: bool, capacity: usize) -> Self {
        FlowTable {
            loopback,
            totals: InterfaceTraffic::new(interface.clone()),
            interface,
            index: HashMap::default(),
            slots: Vec::new(),
            recent: [None, None],
            capacity,
            segments: LinkSegments::default(),
        }
    }

    pub fn with_segments(mut self, segments: LinkSegments) -> Self {
        self.segments = segments;
        self
    }

    /// Counts one IP packet. Returns the flows this packet opened, for attribution hints.
    /// Direction comes from the link layer where it tells, else from the host's addresses;
    /// on loopback a packet counts for both ends.
    pub fn record(&mut self, packet: &IpPacket, local: &LocalAddresses) -> [Option<Flow>; 2] {
        let protocol = Protocol::from_ip_number(packet.ip_number);
        let (src, dst) = (packet.src, packet.dst);
        let (sent, received) = if self.loopback {
            (true, true)
        } else {
            match packet.direction {
                LinkDirection::Outgoing => (true, false),
                LinkDirection::Incoming => (false, true),
                // Traffic to no local address (broadcast, multicast, transit) is received too.
                LinkDirection::Unknown => {
                    let from_us = local.is_local(src.ip());
                    (from_us, local.is_local(dst.ip()) || !from_us)
                }
            }
        };
        let mut opened = [None, None];
        if sent {
            let key = FlowKey {
                protocol,
                local: src,
                remote: dst,
            };
            let counted = on_wire(packet, self.segments.sent);
            self.totals.captured.sent.merge(counted);
            opened[0] = self.add(key, counted, Side::Sent);
        }
        if received {
            let key = FlowKey {
                protocol,
                local: dst,
                remote: src,
            };
            let counted = on_wire(packet, self.segments.received);
            self.totals.captured.recv.merge(counted);
            opened[1] = self.add(key, counted, Side::Received);
        }
        opened
    }

    pub fn record_malformed(&mut self, wire_len: u64) {
        self.totals.malformed.add_packet(wire_len);
    }

    pub fn record_not_ip(&mut self, wire_len: u64) {
        self.totals.non_ip.add_packet(wire_len);
    }

    /// Adds to the flow of `key`; returns the flow if it is new.
    fn add(&mut self, key: FlowKey, counted: Counter, side: Side) -> Option<Flow> {
        let recent = &mut self.recent[side as usize];
        if let Some((last, slot)) = *recent {
            if last == key {
                side.of(&mut self.slots[slot].1).merge(counted);
                return None;
            }
        }
        if let Some(&slot) = self.index.get(&key) {
            *recent = Some((key, slot));
            side.of(&mut self.slots[slot].1).merge(counted);
            return None;
        }
        if self.index.len() >= self.capacity {
            // Beyond the bound the flow's identity is dropped, never its bytes:
            // they go to a per-protocol flow with no socket, so to the unknown bucket.
            self.totals.overflow.merge(counted);
            let anonymous = overflow_flow(key.protocol);
            let slot = self.slot_of(anonymous);
            side.of(&mut self.slots[slot].1).merge(counted);
            return None;
        }
        let flow = Flow {
            protocol: key.protocol,
            local: key.local.address(),
            remote: key.remote.address(),
        };
        let slot = self.slot_of(flow);
        self.recent[side as usize] = Some((key, slot));
        side.of(&mut self.slots[slot].1).merge(counted);
        Some(flow)
    }

    fn slot_of(&mut self, flow: Flow) -> usize {
        let slots = &mut self.slots;
        *self.index.entry(FlowKey::of(&flow)).or_insert_with(|| {
            slots.push((flow, Traffic::default()));
            slots.len() - 1
        })
    }

    /// Takes the traffic since the last drain. Flows idle for a whole drain period are
    /// forgotten, which keeps the table to the flows that are alive.
    pub fn drain(&mut self) -> (Vec<FlowTraffic>, InterfaceTraffic) {
        self.recent = [None, None];
        let mut flows = Vec::new();
        let mut slot = 0;
        while let Some((flow, traffic)) = self.slots.get_mut(slot) {
            if traffic.is_zero() {
                self.index.remove(&FlowKey::of(flow));
                self.slots.swap_remove(slot);
                if let Some((moved, _)) = self.slots.get(slot) {
                    self.index.insert(FlowKey::of(moved), slot);
                }
                continue;
            }
            flows.push(FlowTraffic {
                interface: self.interface.clone(),
                flow: *flow,
                traffic: std::mem::take(traffic),
                // Decided by the engine, which knows the host's addresses now.
                forwarded: false,
            });
            slot += 1;
        }
        let totals = std::mem::replace(
            &mut self.totals,
            InterfaceTraffic::new(self.interface.clone()),
        );
        (flows, totals)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

/// A flow as the table compares and hashes it, built from the packet's ends; the
/// flow's `SocketAddr`s are built only when it is new.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    protocol: Protocol,
    local: End,
    remote: End,
}

impl FlowKey {
    fn of(flow: &Flow) -> FlowKey {
        FlowKey {
            protocol: flow.protocol,
            local: End::of(flow.local),
            remote: End::of(flow.remote),
        }
    }
}

/// Which of a flow's counters a packet adds to.
#[derive(Clone, Copy)]
enum Side {
    Sent = 0,
    Received = 1,
}

impl Side {
    fn of(self, traffic: &mut Traffic) -> &mut Counter {
        match self {
            Side::Sent => &mut traffic.sent,
            Side::Received => &mut traffic.recv,
        }
    }
}

/// The flow that collects traffic past the table's bound: port 0 on the unspecified
/// address, which no socket can own.
fn overflow_flow(protocol: Protocol) -> Flow {
    let nowhere = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
    Flow {
        protocol,
        local: nowhere,
        remote: nowhere,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, SocketAddr};

    fn packet(src: &str, dst: &str, len: u64) -> IpPacket {
        IpPacket {
            ip_number: 6,
            src: End::of(src.parse().unwrap()),
            dst: End::of(dst.parse().unwrap()),
            ip_len: len,
            headers: 52,
            fragment: None,
            direction: LinkDirection::Unknown,
        }
    }

    #[test]
    fn packets_merged_by_gro_count_as_the_segments_the_link_carried() {
        let local = local();
        let segments = LinkSegments {
            sent: None,
            received: Some(1500),
        };
        let mut table = FlowTable::new("eth0".into(), false, 16).with_segments(segments);
        // 10 segments of 1,448 payload bytes, merged: one header set for all.
        let merged = packet("10.0.0.2:443", "10.0.0.1:40000", 52 + 10 * 1448);
        table.record(&merged, &local);
        // Sent the other way the link passes a large packet whole (TSO on a veth).
        let offloaded = packet("10.0.0.1:40000", "10.0.0.2:443", 52 + 10 * 1448);
        table.record(&offloaded, &local);
        let (_, totals) = table.drain();
        assert_eq!(totals.captured.recv.bytes, 10 * 1500);
        assert_eq!(totals.captured.recv.packets, 10);
        assert_eq!(totals.captured.sent.packets, 1);
        assert_eq!(totals.captured.sent.bytes, 52 + 10 * 1448);
    }

    fn local() -> LocalAddresses {
        LocalAddresses::new(["10.0.0.1".parse::<IpAddr>().unwrap()])
    }

    #[test]
    fn direction_follows_local_addresses() {
        let mut table = FlowTable::new("eth0".into(), false, 16);
        let opened = table.record(&packet("10.0.0.1:1000", "10.0.0.2:80", 100), &local());
        assert!(opened[0].is_some() && opened[1].is_none());
        table.record(&packet("10.0.0.2:80", "10.0.0.1:1000", 60), &local());
        let (flows, totals) = table.drain();
        assert_eq!(flows.len(), 1, "both directions land on one flow");
        let flow = &flows[0];
        assert_eq!(
            flow.flow.local,
            "10.0.0.1:1000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(flow.traffic.sent.bytes, 100);
        assert_eq!(flow.traffic.recv.bytes, 60);
        assert_eq!(totals.captured.sent.bytes, 100);
        assert_eq!(totals.captured.recv.bytes, 60);
    }

    #[test]
    fn loopback_counts_for_both_ends() {
        let mut table = FlowTable::new("lo".into(), true, 16);
        let opened = table.record(&packet("127.0.0.1:1000", "127.0.0.1:80", 500), &local());
        assert!(opened.iter().all(Option::is_some));
        let (flows, totals) = table.drain();
        assert_eq!(flows.len(), 2);
        assert_eq!(totals.captured.sent.bytes, 500);
        assert_eq!(totals.captured.recv.bytes, 500);
    }

    #[test]
    fn link_direction_beats_addresses() {
        let mut table = FlowTable::new("eth0".into(), false, 16);
        // Neighbour discovery from a link-local address no interface listed.
        let mut solicitation = packet("[fe80::1]:0", "[ff02::1:ff00:2]:0", 72);
        solicitation.direction = LinkDirection::Outgoing;
        table.record(&solicitation, &local());
        let (flows, totals) = table.drain();
        assert_eq!(totals.captured.sent.bytes, 72);
        assert_eq!(totals.captured.recv.bytes, 0);
        assert_eq!(
            flows[0].flow.local,
            "[fe80::1]:0".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn a_mapped_ipv6_end_is_its_ipv4_flow_and_ipv6_ends_keep_their_address() {
        let mut table = FlowTable::new("eth0".into(), false, 16);
        let opened = table.record(&packet("10.0.0.1:5", "10.0.0.2:80", 100), &local());
        let mapped = table.record(
            &packet("[::ffff:10.0.0.1]:5", "[::ffff:10.0.0.2]:80", 50),
            &local(),
        );
        assert!(opened[0].is_some());
        assert_eq!(mapped, [None, None], "the same flow as the IPv4 one");
        let v6 = table.record(&packet("[fd00::1]:7", "[fd00::2]:443", 70), &local());
        let flow = v6[1].expect("fd00::1 is not local: received, a new flow");
        assert_eq!(flow.local, "[fd00::2]:443".parse::<SocketAddr>().unwrap());
        assert_eq!(flow.remote, "[fd00::1]:7".parse::<SocketAddr>().unwrap());
        let (flows, _) = table.drain();
        let v4 = flows.iter().find(|f| f.flow.local.is_ipv4()).unwrap();
        assert_eq!(v4.flow.local, "10.0.0.1:5".parse::<SocketAddr>().unwrap());
        assert_eq!(v4.traffic.sent.bytes, 150);
    }

    #[test]
    fn each_flow_opens_once_and_its_bytes_add_up() {
        let mut table = FlowTable::new("eth0".into(), false, 2);
        let mut opened = Vec::new();
        let sends = [
            ("10.0.0.1:1", 10),
            ("10.0.0.1:1", 11),
            ("10.0.0.1:2", 20),
            ("10.0.0.1:1", 12),
            ("10.0.0.1:3", 30), // past the bound of two flows
            ("10.0.0.1:3", 31),
            ("10.0.0.1:2", 21),
        ];
        for (from, len) in sends {
            let [sent, _] = table.record(&packet(from, "10.0.0.2:80", len), &local());
            opened.extend(sent.map(|flow| flow.local.port()));
        }
        assert_eq!(opened, [1, 2], "each flow opens once; past the bound none");
        let (flows, totals) = table.drain();
        let sent_by = |port: u16| -> u64 {
            flows
                .iter()
                .filter(|f| f.flow.local.port() == port)
                .map(|f| f.traffic.sent.bytes)
                .sum()
        };
        assert_eq!((sent_by(1), sent_by(2), sent_by(0)), (33, 41, 61));
        assert_eq!(totals.overflow.bytes, 61);
        assert_eq!(totals.captured.sent.bytes, 135);
        // Counted again after a drain, where the run left off.
        table.record(&packet("10.0.0.1:2", "10.0.0.2:80", 5), &local());
        let (flows, _) = table.drain();
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].traffic.sent.bytes, 5);
    }

    #[test]
    fn interleaved_flows_and_drains_lose_nothing() {
        let mut table = FlowTable::new("eth0".into(), false, 1 << 16);
        let mut expected: HashMap<u16, u64> = HashMap::new();
        let mut reported: HashMap<u16, u64> = HashMap::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for step in 0..200_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let port = 1 + (state % 1000) as u16;
            let repeat = if state % 7 == 0 { 5 } else { 1 };
            for _ in 0..repeat {
                let len = 40 + state % 1400;
                table.record(
                    &packet(&format!("10.0.0.1:{port}"), "10.0.0.2:80", len),
                    &local(),
                );
                *expected.entry(port).or_default() += len;
            }
            if step % 10_000 == 0 {
                for flow in table.drain().0 {
                    *reported.entry(flow.flow.local.port()).or_default() += flow.traffic.sent.bytes;
                }
            }
        }
        for flow in table.drain().0 {
            *reported.entry(flow.flow.local.port()).or_default() += flow.traffic.sent.bytes;
        }
        assert_eq!(reported, expected);
    }

    #[test]
    fn flows_keep_their_counts_when_idle_ones_are_forgotten() {
        let mut table = FlowTable::new("eth0".into(), false, 16);
        let send = |table: &mut FlowTable, port: u16, len: u64| {
            table.record(
                &packet(&format!("10.0.0.1:{port}"), "10.0.0.2:80", len),
                &local(),
            )
        };
        for port in 1..=4 {
            send(&mut table, port, 10);
        }
        table.drain();
        // Flows 1 and 2 go idle; 4 stays the last one counted before the drain.
        send(&mut table, 3, 30);
        send(&mut table, 4, 40);
        table.drain();
        assert_eq!(table.len(), 2);
        let opened = send(&mut table, 1, 11);
        assert!(opened[0].is_some(), "a forgotten flow opens again");
        send(&mut table, 4, 41);
        send(&mut table, 3, 31);
        send(&mut table, 4, 42);
        let mut sent: Vec<(u16, u64)> = table
            .drain()
            .0
            .iter()
            .map(|f| (f.flow.local.port(), f.traffic.sent.bytes))
            .collect();
        sent.sort();
        assert_eq!(sent, [(1, 11), (3, 31), (4, 83)]);
    }

    #[test]
    fn overflow_keeps_bytes_and_idle_flows_are_forgotten() {
        let mut table = FlowTable::new("eth0".into(), false, 1);
        table.record(&packet("10.0.0.1:1", "10.0.0.2:80", 10), &local());
        table.record(&packet("10.0.0.1:2", "10.0.0.2:80", 20), &local());
        let (flows, totals) = table.drain();
        let bytes: u64 = flows.iter().map(|f| f.traffic.sent.bytes).sum();
        assert_eq!(bytes, 30);
        assert_eq!(totals.overflow.bytes, 20);
        assert_eq!(table.len(), 2, "flows survive one drain");
        let (flows, _) = table.drain();
        assert!(flows.is_empty());
        assert!(table.is_empty(), "idle flows are collected");
    }
}

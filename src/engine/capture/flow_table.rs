//! Per-interface traffic by flow, bounded, oriented by the host's own addresses.

use super::decode::IpPacket;
use super::link::LinkDirection;
use crate::engine::host_addresses::LocalAddresses;
use crate::engine::{FlowTraffic, InterfaceName, InterfaceTraffic};
use crate::traffic::{canonical_addr, Counter, Flow, Protocol, Traffic};
use std::collections::HashMap;

pub struct FlowTable {
    interface: InterfaceName,
    /// On a loopback interface every packet is both sent and received by this host.
    loopback: bool,
    /// Hashed with aHash: SipHash was a quarter of the engine's CPU on small packets, and
    /// aHash's random keys keep crafted flows from colliding.
    flows: HashMap<Flow, Traffic, ahash::RandomState>,
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
            flows: HashMap::default(),
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
        let src = canonical_addr(packet.src);
        let dst = canonical_addr(packet.dst);
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
            let flow = Flow {
                protocol,
                local: src,
                remote: dst,
            };
            let counted = on_wire(packet, self.segments.sent);
            self.totals.captured.sent.merge(counted);
            opened[0] = self.add(flow, counted, |t| &mut t.sent);
        }
        if received {
            let flow = Flow {
                protocol,
                local: dst,
                remote: src,
            };
            let counted = on_wire(packet, self.segments.received);
            self.totals.captured.recv.merge(counted);
            opened[1] = self.add(flow, counted, |t| &mut t.recv);
        }
        opened
    }

    pub fn record_malformed(&mut self, wire_len: u64) {
        self.totals.malformed.add_packet(wire_len);
    }

    pub fn record_not_ip(&mut self, wire_len: u64) {
        self.totals.non_ip.add_packet(wire_len);
    }

    fn add(
        &mut self,
        flow: Flow,
        counted: Counter,
        direction: fn(&mut Traffic) -> &mut Counter,
    ) -> Option<Flow> {
        if let Some(traffic) = self.flows.get_mut(&flow) {
            direction(traffic).merge(counted);
            return None;
        }
        if self.flows.len() >= self.capacity {
            // Beyond the bound the flow's identity is dropped, never its bytes:
            // they go to a per-protocol flow with no socket, so to the unknown bucket.
            self.totals.overflow.merge(counted);
            let anonymous = overflow_flow(flow.protocol);
            direction(self.flows.entry(anonymous).or_default()).merge(counted);
            return None;
        }
        direction(self.flows.entry(flow).or_default()).merge(counted);
        Some(flow)
    }

    /// Takes the traffic since the last drain. Flows idle for a whole drain period are
    /// forgotten, which keeps the table to the flows that are alive.
    pub fn drain(&mut self) -> (Vec<FlowTraffic>, InterfaceTraffic) {
        let mut flows = Vec::new();
        self.flows.retain(|flow, traffic| {
            if traffic.is_zero() {
                return false;
            }
            flows.push(FlowTraffic {
                interface: self.interface.clone(),
                flow: *flow,
                traffic: std::mem::take(traffic),
            });
            true
        });
        let totals = std::mem::replace(
            &mut self.totals,
            InterfaceTraffic::new(self.interface.clone()),
        );
        (flows, totals)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
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
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
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

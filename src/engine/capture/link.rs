//! Link-layer types a capture can deliver, and how to reach the IP packet inside each.

use etherparse::{EtherType, LaxSlicedPacket};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II, VLAN tags included (also Linux loopback, which fakes Ethernet).
    Ethernet,
    /// Linux cooked capture v1: 16-byte header, protocol at offset 14.
    LinuxSll,
    /// Linux cooked capture v2: 20-byte header, protocol at offset 0.
    LinuxSll2,
    /// Bare IPv4 or IPv6 (tun, WireGuard).
    RawIp,
    /// BSD loopback: a 4-byte address family, host byte order (`DLT_NULL`) or network order (`DLT_LOOP`).
    Null { network_order: bool },
}

impl LinkType {
    /// Maps a libpcap data link type; `None` for types netgraph does not decode.
    pub fn from_dlt(dlt: i32) -> Option<LinkType> {
        match dlt {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            // DLT_RAW is 12 on Linux, 14 on OpenBSD, 101 as LINKTYPE; 228/229 are IPv4/IPv6 only.
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            0 => Some(LinkType::Null {
                network_order: false,
            }),
            108 => Some(LinkType::Null {
                network_order: true,
            }),
            _ => None,
        }
    }
}

/// What the link layer says about a frame's direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDirection {
    Outgoing,
    Incoming,
    /// The link type does not tell (raw IP, BSD loopback): decided from addresses.
    Unknown,
}

/// A capture's link type and what identifies this host on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    pub link_type: LinkType,
    /// The interface's hardware address, where known: Ethernet frames from it are outgoing.
    pub own_mac: Option<[u8; 6]>,
}

impl Link {
    /// What the frame's link layer says of its direction (the capture ring says it of
    /// every frame; this serves frames from elsewhere).
    pub fn direction(&self, frame: &[u8]) -> LinkDirection {
        const PACKET_OUTGOING: u16 = 4;
        let packet_type = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let from_packet_type = |pkttype: Option<u16>| match pkttype {
            Some(PACKET_OUTGOING) => LinkDirection::Outgoing,
            Some(_) => LinkDirection::Incoming,
            None => LinkDirection::Unknown,
        };
        match self.link_type {
            LinkType::Ethernet => match (self.own_mac, frame.get(6..12)) {
                (Some(mac), Some(source)) if mac != [0; 6] => {
                    if source == mac {
                        LinkDirection::Outgoing
                    } else {
                        LinkDirection::Incoming
                    }
                }
                _ => LinkDirection::Unknown,
            },
            LinkType::LinuxSll => from_packet_type(packet_type(0)),
            // SLL2 keeps the packet type in one byte at offset 10.
            LinkType::LinuxSll2 => from_packet_type(frame.get(10).map(|b| u16::from(*b))),
            LinkType::RawIp | LinkType::Null { .. } => LinkDirection::Unknown,
        }
    }

    /// Whether the frame was captured on a loopback device, where libpcap hands each
    /// packet over once, as received: the cooked header's device type (ARPHRD_LOOPBACK),
    /// or a BSD loopback link.
    pub fn on_loopback(&self, frame: &[u8]) -> bool {
        const ARPHRD_LOOPBACK: u16 = 772;
        let device_type = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        match self.link_type {
            LinkType::LinuxSll => device_type(2) == Some(ARPHRD_LOOPBACK),
            LinkType::LinuxSll2 => device_type(8) == Some(ARPHRD_LOOPBACK),
            LinkType::Null { .. } => true,
            LinkType::Ethernet | LinkType::RawIp => false,
        }
    }
}

/// The result of peeling off the link layer.
// Returned by value once per packet: boxing the large variant would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub enum LinkPayload<'a> {
    /// An IP packet (possibly broken), sliced as far as it goes.
    Ip(LaxSlicedPacket<'a>),
    /// The frame claims to carry IP but its header cannot even start.
    BrokenIp,
    /// A frame carrying something else (ARP, LLDP, ...).
    NotIp,
    /// The frame is shorter than its link-layer header.
    Truncated,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const AF_INET: u32 = 2;
/// AF_INET6 differs by system: Linux 10, FreeBSD 28, OpenBSD/NetBSD 24, macOS 30.
const AF_INET6_VALUES: [u32; 4] = [10, 24, 28, 30];

pub fn strip(link: LinkType, frame: &[u8]) -> LinkPayload<'_> {
    match link {
        LinkType::Ethernet => match LaxSlicedPacket::from_ethernet(frame) {
            Ok(packet) => classify(packet),
            Err(_) => LinkPayload::Truncated,
        },
        LinkType::LinuxSll => by_ether_type(frame, 16, 14),
        LinkType::LinuxSll2 => by_ether_type(frame, 20, 0),
        LinkType::RawIp => from_ip(frame),
        LinkType::Null { network_order } => {
            let Some(family) = frame.get(..4) else {
                return LinkPayload::Truncated;
            };
            let family = [family[0], family[1], family[2], family[3]];
            let family = if network_order {
                u32::from_be_bytes(family)
            } else {
                u32::from_ne_bytes(family)
            };
            if family == AF_INET || AF_INET6_VALUES.contains(&family) {
                from_ip(&frame[4..])
            } else {
                LinkPayload::NotIp
            }
        }
    }
}

fn by_ether_type(frame: &[u8], header_len: usize, protocol_at: usize) -> LinkPayload<'_> {
    if frame.len() < header_len {
        return LinkPayload::Truncated;
    }
    let protocol = u16::from_be_bytes([frame[protocol_at], frame[protocol_at + 1]]);
    classify(LaxSlicedPacket::from_ether_type(
        EtherType(protocol),
        &frame[header_len..],
    ))
}

fn from_ip(packet: &[u8]) -> LinkPayload<'_> {
    match LaxSlicedPacket::from_ip(packet) {
        Ok(sliced) => LinkPayload::Ip(sliced),
        Err(_) => LinkPayload::BrokenIp,
    }
}

fn classify(packet: LaxSlicedPacket<'_>) -> LinkPayload<'_> {
    use etherparse::LaxNetSlice;
    match packet.net {
        Some(LaxNetSlice::Ipv4(_)) | Some(LaxNetSlice::Ipv6(_)) => LinkPayload::Ip(packet),
        Some(LaxNetSlice::Arp(_)) => LinkPayload::NotIp,
        None => {
            let claims_ip = packet
                .ether_payload()
                .map(|payload| matches!(payload.ether_type.0, ETH_P_IP | ETH_P_IPV6))
                .unwrap_or(false);
            if claims_ip {
                LinkPayload::BrokenIp
            } else {
                LinkPayload::NotIp
            }
        }
    }
}

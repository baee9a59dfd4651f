//! Turns one captured frame into the facts accounting needs: protocol, endpoints and
//! the packet's size at the IP layer. Never panics, whatever the bytes.

mod common;

use super::end::End;
use super::link::{strip, Link, LinkDirection, LinkPayload};
use etherparse::{
    IcmpEchoHeader, Icmpv4Type, Icmpv6Type, IpNumber, LaxNetSlice, LaxSlicedPacket, TransportSlice,
};
use std::net::{IpAddr, SocketAddr};

/// A decoded IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub ip_number: u8,
    /// IPv4-mapped IPv6 addresses are IPv4 ones here.
    pub src: End,
    pub dst: End,
    /// Bytes at the IP layer: IP header and everything after it.
    pub ip_len: u64,
    /// The IP and TCP or UDP headers' length (options included); 0 for other packets.
    /// A merged (GRO) or offloaded packet left as segments each with these headers.
    pub headers: u32,
    /// Set on IPv4 fragments: ports are only in the first one.
    pub fragment: Option<Fragment>,
    pub direction: LinkDirection,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    pub first: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    Ip(IpPacket),
    /// Not an IP frame; its captured wire length.
    NotIp {
        wire_len: u64,
    },
    /// Headers broken, truncated or lying about their length.
    Malformed {
        wire_len: u64,
    },
}

/// `frame` is what was captured (maybe cut at the snap length); `wire_len` its length on
/// the wire. The direction is what the link layer tells.
pub fn decode(link: &Link, frame: &[u8], wire_len: u32) -> Decoded {
    decode_heading(link, frame, wire_len, link.direction(frame))
}

/// `decode`, for a frame whose direction the capture already knows.
pub fn decode_heading(
    link: &Link,
    frame: &[u8],
    wire_len: u32,
    direction: LinkDirection,
) -> Decoded {
    match common::decode(link, frame, wire_len) {
        Some(mut packet) => {
            packet.direction = direction;
            Decoded::Ip(packet)
        }
        None => decode_in_full(link, frame, wire_len, direction),
    }
}

/// Any frame, through etherparse's full (lax) slicing.
fn decode_in_full(link: &Link, frame: &[u8], wire_len: u32, direction: LinkDirection) -> Decoded {
    let wire_len_u64 = u64::from(wire_len);
    let sliced = match strip(link.link_type, frame) {
        LinkPayload::Ip(sliced) => sliced,
        LinkPayload::NotIp => {
            return Decoded::NotIp {
                wire_len: wire_len_u64,
            }
        }
        LinkPayload::BrokenIp | LinkPayload::Truncated => {
            return Decoded::Malformed {
                wire_len: wire_len_u64,
            }
        }
    };
    match decode_ip(&sliced, frame, wire_len) {
        Some(mut packet) => {
            packet.direction = direction;
            Decoded::Ip(packet)
        }
        None => Decoded::Malformed {
            wire_len: wire_len_u64,
        },
    }
}

fn decode_ip(sliced: &LaxSlicedPacket<'_>, frame: &[u8], wire_len: u32) -> Option<IpPacket> {
    let whole_frame_captured = frame.len() as u64 >= u64::from(wire_len);
    let (src, dst, header_start, claimed_len, payload, fragment) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(ipv4) => {
            let header = ipv4.header();
            let fragment = ipv4.is_payload_fragmented().then(|| Fragment {
                id: u32::from(header.identification()),
                first: header.fragments_offset().value() == 0,
            });
            (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
                header.slice().as_ptr(),
                // 0 marks a segmentation-offloaded packet whose length only the frame knows.
                (header.total_len() != 0).then(|| u64::from(header.total_len())),
                ipv4.payload(),
                fragment,
            )
        }
        LaxNetSlice::Ipv6(ipv6) => {
            let header = ipv6.header();
            (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                header.slice().as_ptr(),
                // 0 marks a jumbogram or BIG TCP packet.
                (header.payload_length() != 0).then(|| 40 + u64::from(header.payload_length())),
                ipv6.payload(),
                None,
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let link_len = (header_start as usize).checked_sub(frame.as_ptr() as usize)? as u64;
    let available = u64::from(wire_len).checked_sub(link_len)?;
    let ip_len = match claimed_len {
        Some(claimed) if claimed > available => return None,
        Some(claimed) => claimed,
        None => available,
    };
    let ip_number = payload.ip_number;
    let later_fragment = fragment.is_some_and(|f| !f.first);
    // etherparse leaves a first fragment's transport unparsed, and a TCP header whose
    // options the snap length cut; TCP and UDP keep both ports in its first four bytes,
    // and TCP its header's length in the thirteenth.
    let partial_transport = matches!(ip_number, IpNumber::TCP | IpNumber::UDP)
        && (fragment.is_some() || !whole_frame_captured);
    let (src_port, dst_port) = match &sliced.transport {
        Some(transport) => ports(transport),
        None if later_fragment => (0, 0),
        None if partial_transport => match payload.payload.get(..4) {
            Some(p) => (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            ),
            None => (0, 0),
        },
        None if carries_ports(ip_number) && sliced.stop_err.is_some() && whole_frame_captured => {
            return None
        }
        None => (0, 0),
    };
    let ip_header = (payload.payload.as_ptr() as usize).saturating_sub(header_start as usize);
    let transport_header = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp.header_len(),
        Some(TransportSlice::Udp(_)) => 8,
        None if partial_transport && !later_fragment => match ip_number {
            IpNumber::TCP => payload
                .payload
                .get(12)
                .map_or(0, |offset| usize::from(offset >> 4) * 4),
            _ => 8,
        },
        _ => 0,
    };
    let headers = if transport_header == 0 {
        0
    } else {
        u32::try_from(ip_header + transport_header).unwrap_or(0)
    };
    Some(IpPacket {
        ip_number: ip_number.0,
        src: End::of(SocketAddr::new(src, src_port)),
        dst: End::of(SocketAddr::new(dst, dst_port)),
        ip_len,
        headers,
        fragment,
        direction: LinkDirection::Unknown,
    })
}

fn carries_ports(ip_number: IpNumber) -> bool {
    matches!(
        ip_number,
        IpNumber::TCP | IpNumber::UDP | IpNumber::ICMP | IpNumber::IPV6_ICMP
    )
}

/// Source and destination ports; for ICMP echo both are the echo identifier, which is
/// how ping sockets are keyed.
fn ports(transport: &TransportSlice<'_>) -> (u16, u16) {
    let echo = |header: IcmpEchoHeader| (header.id, header.id);
    match transport {
        TransportSlice::Tcp(tcp) => (tcp.source_port(), tcp.destination_port()),
        TransportSlice::Udp(udp) => (udp.source_port(), udp.destination_port()),
        TransportSlice::Icmpv4(icmp) => match icmp.icmp_type() {
            Icmpv4Type::EchoRequest(h) | Icmpv4Type::EchoReply(h) => echo(h),
            _ => (0, 0),
        },
        TransportSlice::Icmpv6(icmp) => match icmp.icmp_type() {
            Icmpv6Type::EchoRequest(h) | Icmpv6Type::EchoReply(h) => echo(h),
            _ => (0, 0),
        },
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests;

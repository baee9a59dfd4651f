//! The common frame, decoded with etherparse's header slices alone: Ethernet or raw IP,
//! IPv4 that is not a fragment or IPv6 without extension headers, carrying TCP or UDP
//! whose header is whole, with lengths that agree. Building the full sliced packet (a
//! large structure, per frame) was a third of the capture engine's time on small
//! packets. Anything else is `None` and goes to the full decoder; both give the same
//! answer for every frame this one takes (tested against each other).

use super::IpPacket;
use crate::engine::capture::end::End;
use crate::engine::capture::link::{Link, LinkDirection, LinkType};
use etherparse::{IpNumber, Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice};

const ETHERNET_HEADER: usize = 14;
const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xDD];
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;

/// Where the IP header starts, and its version as the link layer announces it.
fn ip_start(link_type: LinkType, frame: &[u8]) -> Option<(usize, u8)> {
    match link_type {
        LinkType::Ethernet => match frame.get(12..14)? {
            ether_type if ether_type == ETH_P_IP => Some((ETHERNET_HEADER, 4)),
            ether_type if ether_type == ETH_P_IPV6 => Some((ETHERNET_HEADER, 6)),
            _ => None,
        },
        LinkType::RawIp => Some((0, frame.first()? >> 4)),
        _ => None,
    }
}

pub fn decode(link: &Link, frame: &[u8], wire_len: u32) -> Option<IpPacket> {
    let (start, version) = ip_start(link.link_type, frame)?;
    let ip = frame.get(start..)?;
    if ip.first()? >> 4 != version {
        return None;
    }
    // Ports are filled in below, once the transport header is read.
    let (mut src, mut dst, ip_number, ip_header, ip_len) = if version == 4 {
        let header = Ipv4HeaderSlice::from_slice(ip).ok()?;
        // 0: a segmentation-offloaded packet whose length only the frame knows.
        if header.is_fragmenting_payload() || header.total_len() == 0 {
            return None;
        }
        (
            End::v4(header.source(), 0),
            End::v4(header.destination(), 0),
            header.protocol(),
            header.slice().len(),
            usize::from(header.total_len()),
        )
    } else if version == 6 {
        let header = Ipv6HeaderSlice::from_slice(ip).ok()?;
        // 0: a jumbogram or BIG TCP packet.
        if header.payload_length() == 0 {
            return None;
        }
        (
            End::v6(header.source(), 0),
            End::v6(header.destination(), 0),
            header.next_header(),
            IPV6_HEADER,
            IPV6_HEADER + usize::from(header.payload_length()),
        )
    } else {
        return None;
    };
    let available = (wire_len as usize).checked_sub(start)?;
    if ip_len > available || ip_len < ip_header {
        return None;
    }
    // The transport header must lie within what the IP header claims, not in padding.
    let transport = ip.get(ip_header..ip_len.min(ip.len()))?;
    let (ports, transport_header) = match ip_number {
        IpNumber::TCP => {
            let tcp = TcpHeaderSlice::from_slice(transport).ok()?;
            (
                (tcp.source_port(), tcp.destination_port()),
                tcp.slice().len(),
            )
        }
        IpNumber::UDP => {
            let udp = UdpHeaderSlice::from_slice(transport).ok()?;
            // A length that disagrees with the IP header's is the full decoder's case.
            if usize::from(udp.length()) != ip_len - ip_header {
                return None;
            }
            ((udp.source_port(), udp.destination_port()), UDP_HEADER)
        }
        _ => return None,
    };
    src.set_port(ports.0);
    dst.set_port(ports.1);
    Some(IpPacket {
        ip_number: ip_number.0,
        src,
        dst,
        ip_len: ip_len as u64,
        headers: u32::try_from(ip_header + transport_header).ok()?,
        fragment: None,
        direction: LinkDirection::Unknown,
    })
}

//! The vocabulary every pipeline stage shares: protocols, flows and byte counters.

use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// Transport protocol of a flow. ICMP covers ICMPv4 and ICMPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    /// Any other IP protocol, by its number.
    Other(u8),
}

impl Protocol {
    pub fn from_ip_number(number: u8) -> Self {
        match number {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            1 | 58 => Protocol::Icmp,
            n => Protocol::Other(n),
        }
    }

    /// The IP protocol number (ICMP's by the address family).
    pub fn ip_number(self, ipv6: bool) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp if ipv6 => 58,
            Protocol::Icmp => 1,
            Protocol::Other(number) => number,
        }
    }

    /// Name of the bucket that collects this protocol's unattributed bytes.
    pub fn unknown_bucket(self) -> &'static str {
        match self {
            Protocol::Tcp => "unknown TCP",
            Protocol::Udp => "unknown UDP",
            Protocol::Icmp => "unknown ICMP",
            Protocol::Other(_) => "unknown other",
        }
    }
}

/// One end-to-end conversation seen from this host: `local` is the host's endpoint.
/// For ICMP echo the port is the echo identifier; for protocols without ports it is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The two addresses of some traffic: `near` is this host's side of the interface,
/// `far` the other. `near_is_host` says whether `near` is one of the host's own
/// addresses (false for forwarded traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ends {
    pub near: IpAddr,
    pub far: IpAddr,
    pub near_is_host: bool,
    /// The far end's service, where the ports tell it.
    pub service: Option<Service>,
}

impl Ends {
    /// The ends of a flow with a local socket.
    pub fn of_flow(flow: &Flow) -> Ends {
        Ends {
            near: canonical_ip(flow.local.ip()),
            far: canonical_ip(flow.remote.ip()),
            near_is_host: true,
            service: Service::of(flow.protocol, flow.local.port(), flow.remote.port()),
        }
    }
}

/// The port a conversation's far end serves on, e.g. 443/tcp.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Service {
    pub protocol: Protocol,
    pub port: u16,
}

impl Service {
    /// The far end's port when it is the serving side: servers listen on the lower
    /// port (well-known and registered ports lie below the ephemeral range), so a far
    /// port above the near one is a client's and names no service.
    pub fn of(protocol: Protocol, near_port: u16, far_port: u16) -> Option<Service> {
        let ported = matches!(protocol, Protocol::Tcp | Protocol::Udp);
        (ported && far_port != 0 && (far_port < near_port || near_port == 0)).then_some(Service {
            protocol,
            port: far_port,
        })
    }
}

impl Service {
    /// The protocol as `443/tcp` writes it.
    pub fn protocol_label(&self) -> &'static str {
        match self.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Other(_) => "ip",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol_label())
    }
}

/// Bytes (IP layer: IP header and everything after it) and packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counter {
    pub bytes: u64,
    pub packets: u64,
}

impl Counter {
    pub fn add_packet(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.packets += 1;
    }

    pub fn merge(&mut self, other: Counter) {
        self.bytes += other.bytes;
        self.packets += other.packets;
    }

    pub fn is_zero(&self) -> bool {
        self.packets == 0 && self.bytes == 0
    }
}

/// Both directions, from the host's point of view, how TCP fared on them, and what the
/// kernel dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Traffic {
    pub sent: Counter,
    pub recv: Counter,
    #[serde(skip_serializing_if = "TcpHealth::is_zero")]
    pub tcp: TcpHealth,
    /// Packets the kernel dropped on this traffic's sockets.
    #[serde(skip_serializing_if = "Drops::is_zero")]
    pub drops: Drops,
}

impl Traffic {
    pub fn merge(&mut self, other: Traffic) {
        self.sent.merge(other.sent);
        self.recv.merge(other.recv);
        self.tcp.merge(&other.tcp);
        self.drops.merge(&other.drops);
    }

    /// No bytes, nothing that happened to TCP and no drops (a failed connect or a
    /// dropped send moves no bytes but is worth a row).
    pub fn is_zero(&self) -> bool {
        self.sent.is_zero() && self.recv.is_zero() && self.tcp.is_zero() && self.drops.is_zero()
    }

    /// Bytes both ways.
    pub fn bytes(&self) -> u64 {
        self.sent.bytes + self.recv.bytes
    }
}

mod drops;
mod health;
pub use drops::{DropKind, Drops};
pub use health::TcpHealth;

/// Maps IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) to plain IPv4, so a dual-stack
/// socket and the IPv4 packets it carries meet on the same key.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

pub fn canonical_addr(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(canonical_ip(addr.ip()), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
        let plain: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(canonical_ip(plain), plain);
    }

    #[test]
    fn the_service_is_the_serving_sides_port() {
        let https = Service::of(Protocol::Tcp, 51_000, 443).unwrap();
        assert_eq!(https.to_string(), "443/tcp");
        assert_eq!(
            Service::of(Protocol::Udp, 40_000, 53).unwrap().to_string(),
            "53/udp"
        );
        // This host serves: the far port is a client's.
        assert_eq!(Service::of(Protocol::Tcp, 443, 51_000), None);
        assert_eq!(Service::of(Protocol::Icmp, 0, 7), None);
        assert_eq!(Service::of(Protocol::Udp, 5000, 0), None);
    }

    #[test]
    fn buckets_are_named_per_protocol() {
        assert_eq!(Protocol::from_ip_number(6).unknown_bucket(), "unknown TCP");
        assert_eq!(Protocol::from_ip_number(58), Protocol::Icmp);
        assert_eq!(
            Protocol::from_ip_number(253).unknown_bucket(),
            "unknown other"
        );
    }
}

//! The host's own addresses, which decide whether a packet was sent or received
//! and whether an end of unattributed traffic is this host.

use std::collections::HashSet;
use std::net::IpAddr;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalAddresses {
    addresses: HashSet<IpAddr>,
    /// The interfaces' IPv4 broadcast addresses: delivered here, though not ours.
    broadcast: HashSet<IpAddr>,
}

impl LocalAddresses {
    pub fn new(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        LocalAddresses {
            addresses: addresses
                .into_iter()
                .map(crate::traffic::canonical_ip)
                .collect(),
            broadcast: HashSet::new(),
        }
    }

    pub fn with_broadcast(mut self, broadcast: impl IntoIterator<Item = IpAddr>) -> Self {
        self.broadcast = broadcast.into_iter().collect();
        self
    }

    /// Loopback ranges are local even where no interface lists them (all of 127/8).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.addresses.contains(&ip)
    }

    /// Whether a packet to `ip` may reach a socket here: one of ours, multicast or
    /// broadcast. A packet to any other address passes through (forwarded, NATed):
    /// no local socket is its end, whatever listens on its port.
    pub fn delivers_locally(&self, ip: IpAddr) -> bool {
        let ip = crate::traffic::canonical_ip(ip);
        self.is_local(ip)
            || ip.is_multicast()
            || ip.is_unspecified()
            || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
            || self.broadcast.contains(&ip)
    }
}

/// The addresses of every interface in this network namespace.
pub fn discover() -> std::io::Result<LocalAddresses> {
    let entries = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    Ok(LocalAddresses::new(entries.filter_map(|entry| {
        entry.address.as_ref().and_then(ip_of)
    })))
}

/// The IP address in an interface entry's address, if it is IPv4 or IPv6.
pub fn ip_of(address: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unicast_addresses_of_others_are_forwarded() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        let local =
            LocalAddresses::new([ip("10.0.0.1"), ip("fd00::1")]).with_broadcast([ip("10.0.0.255")]);
        for delivered in [
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "fd00::1",
            "127.0.0.5",
            "224.0.0.251",
            "ff02::fb",
            "255.255.255.255",
            "10.0.0.255",
        ] {
            assert!(local.delivers_locally(ip(delivered)), "{delivered}");
        }
        for passing in ["10.0.0.2", "192.0.2.9", "2001:db8::7"] {
            assert!(!local.delivers_locally(ip(passing)), "{passing}");
        }
    }
}

//! The host's own addresses, which decide whether a packet was sent or received
//! and whether an end of unattributed traffic is this host.

use std::collections::HashSet;
use std::net::IpAddr;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LocalAddresses {
    addresses: HashSet<IpAddr>,
}

impl LocalAddresses {
    pub fn new(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        LocalAddresses {
            addresses: addresses
                .into_iter()
                .map(crate::traffic::canonical_ip)
                .collect(),
        }
    }

    /// Loopback ranges are local even where no interface lists them (all of 127/8).
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.addresses.contains(&ip)
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

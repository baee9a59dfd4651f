//! The host's own addresses, which decide whether a packet was sent or received.

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

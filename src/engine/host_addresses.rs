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
pub fn discover() -> Result<LocalAddresses, pcap::Error> {
    let devices = pcap::Device::list()?;
    Ok(LocalAddresses::new(devices.iter().flat_map(|device| {
        device.addresses.iter().map(|address| address.addr)
    })))
}

//! Which network interfaces exist, which are up, and the host's addresses.

use crate::engine::host_addresses::{ip_of, LocalAddresses};
use nix::net::if_::InterfaceFlags;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub loopback: bool,
    pub up: bool,
}

pub struct HostInterfaces {
    pub interfaces: Vec<Interface>,
    pub local: LocalAddresses,
}

/// Lists the kernel's network devices and their addresses (one netlink dump: this runs
/// twice a second; libpcap's device list also probed D-Bus, USB and Bluetooth).
pub fn discover() -> std::io::Result<HostInterfaces> {
    let entries: Vec<_> = nix::ifaddrs::getifaddrs()
        .map_err(std::io::Error::from)?
        .collect();
    let local = LocalAddresses::new(
        entries
            .iter()
            .filter_map(|entry| entry.address.as_ref().and_then(ip_of)),
    )
    .with_broadcast(
        entries
            .iter()
            .filter_map(|entry| entry.broadcast.as_ref().and_then(ip_of)),
    );
    let mut interfaces: Vec<Interface> = Vec::new();
    for entry in entries {
        if interfaces
            .iter()
            .any(|known| known.name == entry.interface_name)
        {
            continue;
        }
        interfaces.push(Interface {
            loopback: entry.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            up: entry.flags.contains(InterfaceFlags::IFF_UP),
            name: entry.interface_name,
        });
    }
    Ok(HostInterfaces { interfaces, local })
}

/// Which interfaces the user wants captured.
#[derive(Clone, Debug, Default)]
pub struct InterfaceSelection {
    /// Capture only these, by name; `None` captures every interface that is up.
    pub only: Option<Vec<String>>,
    /// Capture loopback interfaces when capturing every interface.
    pub loopback: bool,
}

impl InterfaceSelection {
    pub fn wants(&self, interface: &Interface) -> bool {
        if !interface.up {
            return false;
        }
        match &self.only {
            Some(names) => names.contains(&interface.name),
            None => self.loopback || !interface.loopback,
        }
    }
}

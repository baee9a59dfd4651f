//! Which network interfaces exist, which are up, and the host's addresses.

use crate::engine::host_addresses::LocalAddresses;
use std::path::Path;

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

/// Lists the kernel's network devices (libpcap also lists pseudo-devices like `any`,
/// `nflog` or `dbus-system`; only those with an entry in /sys/class/net are real).
pub fn discover() -> Result<HostInterfaces, pcap::Error> {
    let devices = pcap::Device::list()?;
    let local = LocalAddresses::new(
        devices
            .iter()
            .flat_map(|device| device.addresses.iter().map(|address| address.addr)),
    );
    let interfaces = devices
        .into_iter()
        .filter(|device| Path::new("/sys/class/net").join(&device.name).exists())
        .map(|device| Interface {
            loopback: device.flags.is_loopback(),
            up: device.flags.is_up(),
            name: device.name,
        })
        .collect();
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

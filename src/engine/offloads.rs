//! Whether a link carries the segments of offloaded packets: the stack hands a GSO
//! packet (one header for up to 64 KiB) down, and a NIC, or software GSO before a
//! device without TSO, cuts it into MTU-sized packets, each with its own headers; on
//! receive, GRO merges what arrived. A veth or loopback with TSO passes the large packet
//! on whole. Read with the ethtool ioctls, in the interface's own network namespace.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What a link does with offloaded packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// A device on a bus (PCI, USB, virtio): its wire carries segments.
    pub physical: bool,
    pub loopback: bool,
    /// TCP segmentation offload: without it, software GSO segments before the device.
    pub tso: bool,
    /// Generic receive offload: segments that arrived are merged.
    pub gro: bool,
}

impl Offloads {
    /// What is assumed of a link that cannot be asked (in a namespace netgraph cannot
    /// enter): that it passes large packets on whole, so nothing is added that may
    /// not have crossed it.
    pub const UNKNOWN: Offloads = Offloads {
        physical: false,
        loopback: false,
        tso: true,
        gro: false,
    };

    /// Sent offloaded packets leave as segments.
    pub fn segments_sent(&self) -> bool {
        !self.loopback && (self.physical || !self.tso)
    }

    /// Received offloaded packets arrived as segments (and were merged by GRO).
    pub fn segments_received(&self) -> bool {
        !self.loopback && (self.physical || self.gro)
    }

    /// The interface `name` of the calling thread's network namespace; `None` if it
    /// cannot be asked.
    pub fn of_interface(name: &str) -> Option<Offloads> {
        // SAFETY: plain socket creation; the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: a descriptor just created and owned by nobody else.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        let flags = interface_flags(&socket, name)?;
        let loopback = flags & libc::IFF_LOOPBACK as libc::c_short != 0;
        let driver = driver_info(&socket, name);
        let gro = ethtool_value(&socket, name, ETHTOOL_GGRO).unwrap_or(0) != 0;
        Some(Offloads {
            physical: !loopback && driver.as_ref().is_some_and(|(_, bus)| !bus.is_empty()),
            loopback,
            tso: ethtool_value(&socket, name, ETHTOOL_GTSO).unwrap_or(0) != 0,
            gro: gro
                && !driver.is_some_and(|(driver, _)| {
                    driver == "veth" && !veth_merges(procfs::KernelVersion::current().ok())
                }),
        })
    }
}

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GTSO: u32 = 0x1e;
const ETHTOOL_GGRO: u32 = 0x2b;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

fn request(name: &str) -> Option<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: ifreq is plain data; all zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = *byte as libc::c_char;
    }
    Some(request)
}

fn interface_flags(socket: &OwnedFd, name: &str) -> Option<libc::c_short> {
    let mut request = request(name)?;
    // SAFETY: SIOCGIFFLAGS fills the flags of a valid, named ifreq.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) };
    if done != 0 {
        return None;
    }
    // SAFETY: the kernel filled the flags member of the union.
    Some(unsafe { request.ifr_ifru.ifru_flags })
}

/// Runs an ethtool command whose data `data` points to.
fn ethtool<T>(socket: &OwnedFd, name: &str, data: &mut T) -> bool {
    let Some(mut request) = request(name) else {
        return false;
    };
    request.ifr_ifru.ifru_data = (data as *mut T).cast();
    // SAFETY: SIOCETHTOOL with ifr_data pointing to the command's own structure, which
    // outlives the call.
    unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) == 0 }
}

fn ethtool_value(socket: &OwnedFd, name: &str, command: u32) -> Option<u32> {
    let mut value = EthtoolValue {
        cmd: command,
        data: 0,
    };
    ethtool(socket, name, &mut value).then_some(value.data)
}

/// A veth reports GRO on from the start before Linux 5.13, but merges only from 5.13,
/// where GRO (off by default) gives it a NAPI poll; before, what arrives was passed on
/// whole by the peer.
fn veth_merges(kernel: Option<procfs::KernelVersion>) -> bool {
    kernel.is_none_or(|version| version >= procfs::KernelVersion::new(5, 13, 0))
}

/// The device's driver and bus address (empty for virtual devices); `None` without a
/// driver that answers.
fn driver_info(socket: &OwnedFd, name: &str) -> Option<(String, String)> {
    // SAFETY: plain data; all zero is a valid value.
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    if !ethtool(socket, name, &mut info) {
        return None;
    }
    let text = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    Some((text(&info.driver), text(&info.bus_info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_never_carries_segments() {
        let lo = Offloads::of_interface("lo").expect("lo is there");
        assert!(lo.loopback && !lo.physical);
        assert!(!lo.segments_sent() && !lo.segments_received());
        assert_eq!(Offloads::of_interface("no-such-if0"), None);
    }

    #[test]
    fn a_veth_merges_from_linux_5_13_on() {
        let version = |major, minor| Some(procfs::KernelVersion::new(major, minor, 0));
        assert!(!veth_merges(version(5, 10)));
        assert!(!veth_merges(version(5, 12)));
        assert!(veth_merges(version(5, 13)));
        assert!(veth_merges(version(6, 18)));
    }

    #[test]
    fn a_link_that_cannot_be_asked_adds_nothing() {
        assert!(!Offloads::UNKNOWN.segments_sent() && !Offloads::UNKNOWN.segments_received());
    }

    #[test]
    fn virtual_links_carry_segments_only_without_tso_or_with_gro() {
        let veth = Offloads {
            tso: true,
            ..Offloads::default()
        };
        assert!(!veth.segments_sent() && !veth.segments_received());
        let software_gso = Offloads::default();
        assert!(software_gso.segments_sent());
        let merging = Offloads {
            tso: true,
            gro: true,
            ..Offloads::default()
        };
        assert!(merging.segments_received());
        let nic = Offloads {
            physical: true,
            tso: true,
            ..Offloads::default()
        };
        assert!(nic.segments_sent() && nic.segments_received());
    }
}

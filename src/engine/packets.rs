//! Packets an engine copies for a capture: who they are taken of, and each packet
//! with its owner as the engine knows it. Captures write them (src/capture).

use super::{InterfaceName, KernelOwner};
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::SystemTime;

/// Whose packets are copied, in the terms the engine matches them by; every criterion
/// given must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureTargets {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    /// The kernel's name for the process (at most 15 bytes).
    pub name: Option<String>,
    /// The cgroups of the containers or units in scope; empty matches nothing yet.
    pub cgroups: Option<Vec<u64>>,
    /// The far end of the packet.
    pub peer: Option<IpAddr>,
    /// Bytes of each packet kept.
    pub snap_length: u32,
}

/// Where an engine hands the packets it copied; a full channel loses the packet, counted
/// in `lost`, and never waits.
#[derive(Clone, Debug)]
pub struct PacketTap {
    pub packets: crossbeam_channel::Sender<CapturedPacket>,
    pub lost: Arc<AtomicU64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketDirection {
    Sent,
    Received,
}

#[derive(Clone, Debug)]
pub struct CapturedPacket {
    pub time: SystemTime,
    pub interface: InterfaceName,
    pub direction: PacketDirection,
    /// The socket's owner as the kernel recorded it (no cgroup path or executable).
    pub owner: KernelOwner,
    /// The packet's length from its IP header on; `data` may be shorter (cut).
    pub length: u32,
    /// Packets an offloaded packet stands for (1 if it is not one).
    pub segments: u16,
    /// From the IP header on.
    pub data: Vec<u8>,
}

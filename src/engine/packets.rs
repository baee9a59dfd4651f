//! Packets an engine copies for a capture: who they are taken of, and each packet
//! with its owner as the engine knows it. Captures write them (src/capture).

use super::{InterfaceName, KernelOwner};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Where an engine hands the packets it copied. A packet that finds no room (the
/// channel full, or `QUEUED_AT_MOST` bytes waiting) is lost, counted in `lost`; the
/// engine never waits.
#[derive(Clone, Debug)]
pub struct PacketTap {
    pub packets: crossbeam_channel::Sender<CapturedPacket>,
    pub lost: Arc<AtomicU64>,
    /// Bytes handed over and not yet taken.
    pub queued: Arc<AtomicU64>,
}

/// Packet bytes waiting for the writer, at most.
pub const QUEUED_AT_MOST: u64 = 64 << 20;

impl PacketTap {
    /// Hands a packet over, or counts it lost; false once nobody takes packets.
    pub fn offer(&self, packet: CapturedPacket) -> bool {
        let size = packet.data.len() as u64;
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > QUEUED_AT_MOST {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.lost.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        match self.packets.try_send(packet) {
            Ok(()) => true,
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                self.lost.fetch_add(1, Ordering::Relaxed);
                true
            }
            // The capture is over: what comes after it is not lost.
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(size, Ordering::Relaxed);
                false
            }
        }
    }
}

/// A flow's owner as attribution named it, for an engine that captures by flow.
#[derive(Clone, Debug)]
pub struct FlowOwner {
    pub owner: KernelOwner,
    pub container: Option<Arc<str>>,
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
    /// The socket's owner: as the kernel recorded it (eBPF: a cgroup id), or as
    /// attribution named its flow (capture engine: a cgroup path).
    pub owner: KernelOwner,
    /// The owner's container, where the engine knows it already.
    pub container: Option<Arc<str>>,
    /// The packet's length from its IP header on; `data` may be shorter (cut).
    pub length: u32,
    /// Packets an offloaded packet stands for (1 if it is not one).
    pub segments: u16,
    /// From the IP header on.
    pub data: Vec<u8>,
}

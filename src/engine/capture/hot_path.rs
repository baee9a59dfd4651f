//! The capture engine's per-packet work (decode, then count in the flow table) behind a
//! small public face, for the criterion benchmarks in `benches/`, and its reading alone,
//! for the capture floor in `bench/run.py`. Not an API.

use super::decode::{decode, Decoded};
use super::flow_table::FlowTable;
use super::link::{Link, LinkType};
use super::ring::Ring;
use super::worker::{CaptureSettings, CAPTURE_NICE, PACE, READ_TIMEOUT};
use crate::engine::host_addresses::LocalAddresses;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct CapturePath {
    link: Link,
    table: FlowTable,
    local: LocalAddresses,
}

impl CapturePath {
    /// An Ethernet interface with `own_mac` whose host owns `local`.
    pub fn ethernet(own_mac: [u8; 6], local: IpAddr) -> CapturePath {
        CapturePath {
            link: Link {
                link_type: LinkType::Ethernet,
                own_mac: Some(own_mac),
            },
            table: FlowTable::new("eth0".into(), false, 1 << 16),
            local: LocalAddresses::new([local]),
        }
    }

    /// Decodes one frame; true if it was an IP packet.
    pub fn decode(&self, frame: &[u8]) -> bool {
        matches!(
            decode(&self.link, frame, frame.len() as u32),
            Decoded::Ip(_)
        )
    }

    /// Decodes one frame and counts it, as the capture worker does.
    pub fn count(&mut self, frame: &[u8]) {
        if let Decoded::Ip(packet) = decode(&self.link, frame, frame.len() as u32) {
            self.table.record(&packet, &self.local);
        }
    }

    /// Hands the counts over, as every interval does.
    pub fn drain(&mut self) -> usize {
        self.table.drain().0.len()
    }
}

/// Reads `interface`'s ring as a capture thread does (same ring, priority, waits and
/// pace), doing nothing with a frame but touching its first byte: what reading packets
/// this way costs at least, the floor `bench/run.py` puts the engine beside. Runs until
/// `stop`; returns the frames read.
pub fn read_ring_only(interface: &str, stop: &AtomicBool) -> std::io::Result<u64> {
    let settings = CaptureSettings::default();
    let mut ring = Ring::open(interface, settings.snaplen, settings.buffer_bytes)?;
    let _ = crate::thread_priority::raise(CAPTURE_NICE);
    let mut frames = 0;
    while !stop.load(Ordering::Relaxed) {
        ring.wait(READ_TIMEOUT)?;
        let read = ring.read(|frame| {
            std::hint::black_box(frame.data.first());
        });
        frames += read as u64;
        if read > 0 {
            std::thread::sleep(PACE);
        }
    }
    Ok(frames)
}

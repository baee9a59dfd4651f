//! One capture thread per interface: reads headers from the capture ring, decodes, counts.

use super::decode::{decode_heading, Decoded};
use super::flow_table::{FlowTable, LinkSegments};
use super::fragments::FragmentPorts;
use super::link::{Link, LinkDirection, LinkType};
use super::ring::{Frame, Ring, RingStats, RingWaker};
use crate::engine::host_addresses::LocalAddresses;
use crate::engine::offloads::Offloads;
use crate::engine::{CaptureStats, FlowHints, FlowTraffic, InterfaceTraffic};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The capture thread runs before a busy host's other threads: a ring that fills
/// while it waits for a CPU loses packets for good, and it works little.
pub(super) const CAPTURE_NICE: i32 = -10;
const STATS_EVERY: Duration = Duration::from_millis(250);
/// How often a quiet interface's thread reads its statistics (a stop wakes it at once).
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// After a read, the next waits this long, so that a busy interface is read many
/// blocks at a time: wakeups were a fifth of the engine's CPU on a flood at 2 ms. The
/// ring holds far more than 8 ms of any traffic, and naming a process from /proc
/// takes longer than that anyway (the eBPF engine names those that live less).
pub(super) const PACE: Duration = Duration::from_millis(8);
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;

#[derive(Clone, Debug)]
pub struct CaptureSettings {
    /// Bytes kept of each packet: every header counting reads (up to TCP's data offset
    /// behind IPv4 options), never the payload; the smaller, the more frames the ring holds.
    pub snaplen: u32,
    pub buffer_bytes: usize,
    pub max_flows: usize,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            snaplen: 128,
            buffer_bytes: 8 << 20,
            max_flows: 65_536,
        }
    }
}

pub struct WorkerState {
    table: FlowTable,
    reported_stats: RingStats,
    latest_stats: RingStats,
    pub finished: bool,
}

impl WorkerState {
    pub fn drain(&mut self) -> (Vec<FlowTraffic>, InterfaceTraffic) {
        let (flows, mut totals) = self.table.drain();
        let (now, before) = (self.latest_stats, self.reported_stats);
        totals.capture = CaptureStats {
            received: now.received.saturating_sub(before.received),
            dropped: now.dropped.saturating_sub(before.dropped),
            if_dropped: now.if_dropped.saturating_sub(before.if_dropped),
        };
        self.reported_stats = now;
        (flows, totals)
    }
}

pub struct Worker {
    pub loopback: bool,
    state: Arc<Mutex<WorkerState>>,
    stop: Arc<AtomicBool>,
    /// Wakes the capture thread out of a wait on a quiet interface.
    wake: RingWaker,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Opens the capture here, so that errors reach the caller, then reads in a thread.
    pub fn start(
        interface: &str,
        loopback: bool,
        settings: &CaptureSettings,
        local: Arc<ArcSwap<LocalAddresses>>,
        hints: FlowHints,
    ) -> std::io::Result<Worker> {
        let ring = Ring::open(interface, settings.snaplen, settings.buffer_bytes)?;
        let link = ring.link();
        let state = Arc::new(Mutex::new(WorkerState {
            table: FlowTable::new(interface.into(), loopback, settings.max_flows)
                .with_segments(link_segments(interface)),
            reported_stats: RingStats::default(),
            latest_stats: RingStats::default(),
            finished: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let wake = ring.waker();
        let tally = Tally {
            link,
            state: state.clone(),
            local,
            hints,
            fragments: FragmentPorts::new(4096),
        };
        let interface_name = interface.to_string();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("capture {interface}"))
            .spawn(move || read(&interface_name, ring, tally, &thread_stop))
            .map_err(|e| std::io::Error::other(format!("cannot start capture thread: {e}")))?;
        Ok(Worker {
            loopback,
            state,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, WorkerState> {
        lock(&self.state)
    }

    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
    }

    pub fn join(&mut self) {
        self.request_stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

use crate::locks::lock;

/// Where this interface's link carries offloaded packets as segments, and its MTU.
fn link_segments(interface: &str) -> LinkSegments {
    let offloads = Offloads::of_interface(interface).unwrap_or(Offloads::UNKNOWN);
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{interface}/mtu"))
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok());
    LinkSegments {
        sent: mtu.filter(|_| offloads.segments_sent()),
        received: mtu.filter(|_| offloads.segments_received()),
    }
}

/// Decodes and counts what a capture delivers.
struct Tally {
    link: Link,
    state: Arc<Mutex<WorkerState>>,
    local: Arc<ArcSwap<LocalAddresses>>,
    hints: FlowHints,
    fragments: FragmentPorts,
}

impl Tally {
    /// Counts every frame of the ready blocks, under one lock taken at the first frame
    /// (never while waiting). Returns the frames read.
    fn count_ready(&mut self, ring: &mut Ring) -> usize {
        let Tally {
            link,
            state,
            local,
            hints,
            fragments,
        } = self;
        let mut counting = None;
        ring.read(|frame| {
            let (state, local) = counting.get_or_insert_with(|| (lock(state), local.load()));
            match decode_frame(link, &frame) {
                Decoded::Ip(mut packet) => {
                    fragments.apply(&mut packet);
                    for flow in state.table.record(&packet, local).into_iter().flatten() {
                        // A full hint queue only delays attribution to the interval's end.
                        let _ = hints.try_send(flow);
                    }
                }
                Decoded::NotIp { wire_len } => state.table.record_not_ip(wire_len),
                Decoded::Malformed { wire_len } => state.table.record_malformed(wire_len),
            }
        })
    }

    fn read_stats(&self, ring: &mut Ring) {
        let stats = ring.stats();
        lock(&self.state).latest_stats = stats;
    }
}

/// Decodes a frame from the ring: Ethernet frames whole, others by the protocol the
/// kernel names (they start at the network header).
pub(super) fn decode_frame(link: &Link, frame: &Frame<'_>) -> Decoded {
    let direction = if frame.outgoing {
        LinkDirection::Outgoing
    } else {
        LinkDirection::Incoming
    };
    if link.link_type != LinkType::Ethernet && !matches!(frame.protocol, ETH_P_IP | ETH_P_IPV6) {
        return Decoded::NotIp {
            wire_len: u64::from(frame.wire_len),
        };
    }
    decode_heading(link, frame.data, frame.wire_len, direction)
}

fn read(interface: &str, mut ring: Ring, mut tally: Tally, stop: &AtomicBool) {
    if let Err(error) = crate::thread_priority::raise(CAPTURE_NICE) {
        tracing::debug!(%interface, %error, "the capture thread keeps its priority");
    }
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Err(error) = ring.wait(READ_TIMEOUT) {
            if !stop.load(Ordering::Relaxed) {
                tracing::warn!(%interface, %error, "capture stopped; it restarts when the interface is up again");
            }
            break;
        }
        if tally.count_ready(&mut ring) > 0 {
            std::thread::sleep(PACE);
        }
        if last_stats.elapsed() >= STATS_EVERY {
            tally.read_stats(&mut ring);
            last_stats = Instant::now();
        }
    }
    // What the kernel already captured is counted before the thread ends, the block it
    // was filling too, which it hands over within a block timeout.
    std::thread::sleep(super::ring::HANDOVER);
    tally.count_ready(&mut ring);
    tally.read_stats(&mut ring);
    lock(&tally.state).finished = true;
}

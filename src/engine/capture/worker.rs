//! One capture thread per interface: reads headers from libpcap, decodes, counts.

use super::decode::{decode, Decoded};
use super::flow_table::{FlowTable, LinkSegments};
use super::fragments::FragmentPorts;
use super::link::{Link, LinkType};
use crate::engine::host_addresses::LocalAddresses;
use crate::engine::offloads::Offloads;
use crate::engine::{CaptureStats, FlowHints, FlowTraffic, InterfaceTraffic};
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Packets counted under one lock of the shared state.
const BATCH: usize = 512;
/// The capture thread runs before a busy host's other threads: a ring that fills
/// while it waits for a CPU loses packets for good, and it works little.
const CAPTURE_NICE: i32 = -10;
const STATS_EVERY: Duration = Duration::from_millis(250);
/// Also the longest a stop request waits for a quiet interface.
const READ_TIMEOUT_MS: i32 = 100;
/// After a read that emptied the ring, the next waits this long, so that a busy
/// interface is read in batches: one wakeup per packet (immediate mode) cost more CPU
/// than everything else the engine does, and 2 ms is far below what naming a process
/// can wait for.
const PACE: Duration = Duration::from_millis(2);

#[derive(Clone, Debug)]
pub struct CaptureSettings {
    /// Bytes kept of each packet: every header counting reads (up to TCP's data offset
    /// behind IPv4 options), never the payload; the smaller, the more frames the ring holds.
    pub snaplen: i32,
    pub buffer_bytes: i32,
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
    reported_stats: pcap::Stat,
    latest_stats: pcap::Stat,
    pub finished: bool,
}

impl WorkerState {
    pub fn drain(&mut self) -> (Vec<FlowTraffic>, InterfaceTraffic) {
        let (flows, mut totals) = self.table.drain();
        let (now, before) = (self.latest_stats, self.reported_stats);
        // libpcap's counters are 32-bit and wrap.
        totals.capture = CaptureStats {
            received: u64::from(now.received.wrapping_sub(before.received)),
            dropped: u64::from(now.dropped.wrapping_sub(before.dropped)),
            if_dropped: u64::from(now.if_dropped.wrapping_sub(before.if_dropped)),
        };
        self.reported_stats = now;
        (flows, totals)
    }
}

pub struct Worker {
    state: Arc<Mutex<WorkerState>>,
    stop: Arc<AtomicBool>,
    /// Wakes the capture thread out of a read on a quiet interface.
    wake: pcap::BreakLoop,
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
    ) -> Result<Worker, pcap::Error> {
        let mut capture = pcap::Capture::from_device(interface)?
            .snaplen(settings.snaplen)
            .buffer_size(settings.buffer_bytes)
            .timeout(READ_TIMEOUT_MS)
            .promisc(false)
            // Packets reach us at once, not in 100 ms blocks: a process that lives 5 ms
            // must still be alive when its first packet asks attribution for its name.
            .immediate_mode(true)
            .open()?;
        let dlt = capture.get_datalink().0;
        let link_type = LinkType::from_dlt(dlt).ok_or_else(|| {
            pcap::Error::PcapError(format!(
                "link type {dlt} is not supported (supported: Ethernet, Linux cooked v1/v2, raw IP, loopback)"
            ))
        })?;
        let link = Link::of_interface(link_type, interface);
        let empty = pcap::Stat {
            received: 0,
            dropped: 0,
            if_dropped: 0,
        };
        let state = Arc::new(Mutex::new(WorkerState {
            table: FlowTable::new(interface.into(), loopback, settings.max_flows)
                .with_segments(link_segments(interface)),
            reported_stats: empty,
            latest_stats: empty,
            finished: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let wake = capture.breakloop_handle();
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
            .spawn(move || read(&interface_name, capture, tally, &thread_stop))
            .map_err(|e| pcap::Error::PcapError(format!("cannot start capture thread: {e}")))?;
        Ok(Worker {
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
        self.wake.breakloop();
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
    /// Reads what is ready (or waits for some); `Ok(0)` when nothing came. Each packet
    /// is counted as it is read, under one lock per read taken at its first packet
    /// (never while the read waits).
    fn dispatch(
        &mut self,
        capture: &mut pcap::Capture<pcap::Active>,
    ) -> Result<usize, pcap::Error> {
        let Tally {
            link,
            state,
            local,
            hints,
            fragments,
        } = self;
        let mut counting = None;
        capture.dispatch(Some(BATCH), |packet| {
            let (state, local) = counting.get_or_insert_with(|| (lock(state), local.load()));
            match decode(link, packet.data, packet.header.len) {
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

    fn read_stats(&self, capture: &mut pcap::Capture<pcap::Active>) {
        if let Ok(stats) = capture.stats() {
            lock(&self.state).latest_stats = stats;
        }
    }
}

fn read(
    interface: &str,
    mut capture: pcap::Capture<pcap::Active>,
    mut tally: Tally,
    stop: &AtomicBool,
) {
    if let Err(error) = crate::thread_priority::raise(CAPTURE_NICE) {
        tracing::debug!(%interface, %error, "the capture thread keeps its priority");
    }
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match tally.dispatch(&mut capture) {
            Ok(read) if read > 0 && read < BATCH => std::thread::sleep(PACE),
            Ok(_) | Err(pcap::Error::TimeoutExpired) => {}
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(error) => {
                tracing::warn!(%interface, %error, "capture stopped; it restarts when the interface is up again");
                break;
            }
        }
        if last_stats.elapsed() >= STATS_EVERY {
            tally.read_stats(&mut capture);
            last_stats = Instant::now();
        }
    }
    // What the kernel already captured is counted before the thread ends, without
    // waiting for more.
    match capture.setnonblock() {
        Ok(mut capture) => {
            while let Ok(1..) = tally.dispatch(&mut capture) {}
            tally.read_stats(&mut capture);
        }
        Err(error) => tracing::debug!(%interface, %error, "cannot read the capture's last packets"),
    }
    lock(&tally.state).finished = true;
}

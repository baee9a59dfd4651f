//! The eBPF side of a capture: writes whom the counting programs copy packets of (the
//! scope in their globals, the cgroups in a map) and reads the perf buffer they copy
//! into on a thread of its own, so that a capture never holds up a drain.

use super::interface_names::InterfaceNames;
use super::plain_data::{self, PlainData};
use super::skeleton::{types, NetgraphSkel};
use crate::engine::packets::{CaptureTargets, CapturedPacket, PacketDirection, PacketTap};
use crate::engine::KernelOwner;
use libbpf_rs::{MapCore, MapFlags, MapHandle, PerfBufferBuilder};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

// SAFETY: a repr(C) struct of integers and byte arrays, generated from the BTF.
unsafe impl PlainData for types::captured_header {}

/// The perf buffer, all CPUs together: room for a burst of large packets while the
/// reader waits for a CPU. Allocated only while a capture runs.
const BUFFER_BYTES: usize = 64 << 20;
/// Each CPU's share, at least and at most.
const CPU_BYTES: (usize, usize) = (1 << 20, 16 << 20);
/// The reader runs before a busy host's other threads, as the capture engine's do: a
/// buffer that fills while it waits for a CPU loses packets.
const READER_NICE: i32 = -10;
/// How long the reader waits for packets before looking at its stop flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct KernelCapture {
    reader: Option<Reader>,
    cgroups: HashSet<u64>,
}

struct Reader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl KernelCapture {
    pub fn apply(
        &mut self,
        skel: &mut NetgraphSkel<'static>,
        capture: Option<(&CaptureTargets, &PacketTap)>,
    ) -> Result<(), String> {
        let Some(bss) = skel.maps.bss_data.as_deref_mut() else {
            return match capture {
                None => Ok(()),
                Some(_) => Err("this kernel gives no writable globals to BPF programs: capturing needs Linux 5.5+".into()),
            };
        };
        let Some((targets, tap)) = capture else {
            bss.capture_scope.active = 0;
            self.stop_reader();
            return Ok(());
        };
        // Off while the scope changes, so that no packet is judged by half of it.
        bss.capture_scope.active = 0;
        let scope = &mut bss.capture_scope;
        scope.by_tgid = u8::from(targets.pid.is_some());
        scope.tgid = targets.pid.unwrap_or(0);
        scope.by_uid = u8::from(targets.uid.is_some());
        scope.uid = targets.uid.unwrap_or(0);
        scope.by_name = u8::from(targets.name.is_some());
        scope.comm = [0; 16];
        if let Some(name) = &targets.name {
            for (slot, byte) in scope.comm.iter_mut().zip(name.bytes().take(15)) {
                *slot = byte as _;
            }
        }
        scope.by_cgroup = u8::from(targets.cgroups.is_some());
        scope.by_peer = u8::from(targets.peer.is_some());
        scope.peer = match targets.peer {
            Some(IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            Some(IpAddr::V6(v6)) => v6.octets(),
            None => [0; 16],
        };
        scope.snap_length = targets.snap_length;
        self.sync_cgroups(skel, targets.cgroups.as_deref().unwrap_or_default());
        if self.reader.is_none() {
            self.reader = Some(start_reader(skel, tap.clone())?);
        }
        if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
            bss.capture_scope.active = 1;
        }
        Ok(())
    }

    fn sync_cgroups(&mut self, skel: &NetgraphSkel<'static>, wanted: &[u64]) {
        let map = &skel.maps.capture_cgroups;
        let wanted: HashSet<u64> = wanted.iter().copied().collect();
        for cgroup in wanted.difference(&self.cgroups) {
            if let Err(error) = map.update(&cgroup.to_ne_bytes(), &[1], MapFlags::ANY) {
                tracing::warn!("cannot add a cgroup to the capture's scope: {error}");
            }
        }
        for cgroup in self.cgroups.difference(&wanted) {
            let _ = map.delete(&cgroup.to_ne_bytes());
        }
        self.cgroups = wanted;
    }

    fn stop_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.stop.store(true, Ordering::Relaxed);
            let _ = reader.thread.join();
        }
    }
}

impl Drop for KernelCapture {
    fn drop(&mut self) {
        self.stop_reader();
    }
}

fn start_reader(skel: &NetgraphSkel<'static>, tap: PacketTap) -> Result<Reader, String> {
    let map = MapHandle::try_from(&skel.maps.captured_packets)
        .map_err(|error| format!("cannot open the captured packets' buffer: {error}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    // The buffer is opened here so that a failure is told to whoever asked.
    let (opened, outcome) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("capture-reader".into())
        .spawn(move || read(&map, tap, &stopped, &opened))
        .map_err(|error| format!("cannot start the capture's reader: {error}"))?;
    match outcome.recv() {
        Ok(Ok(())) => Ok(Reader { stop, thread }),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => Err("the capture's reader ended at once".into()),
    }
}

fn read(
    map: &MapHandle,
    tap: PacketTap,
    stop: &AtomicBool,
    opened: &std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut names = InterfaceNames::new();
    let clock = Clock::now();
    let lost = tap.lost.clone();
    if let Err(error) = crate::thread_priority::raise(READER_NICE) {
        tracing::debug!(%error, "the capture's reader keeps its priority");
    }
    let buffer = PerfBufferBuilder::new(map)
        .pages(pages_per_cpu())
        .sample_cb(move |_cpu, data: &[u8]| {
            if let Some(packet) = packet_of(data, &mut names, &clock) {
                tap.offer(packet);
            }
        })
        .lost_cb(move |_cpu, count| {
            lost.fetch_add(count, Ordering::Relaxed);
        })
        .build();
    let buffer = match buffer {
        Ok(buffer) => {
            let _ = opened.send(Ok(()));
            buffer
        }
        Err(error) => {
            let _ = opened.send(Err(format!(
                "cannot open the captured packets' perf buffer: {error}"
            )));
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Err(error) = buffer.poll(POLL) {
            if error.kind() != libbpf_rs::ErrorKind::Interrupted {
                tracing::warn!("capture: reading the kernel's buffer failed: {error}");
                std::thread::sleep(POLL);
            }
        }
    }
    // What is in the buffer still belongs to the capture.
    let _ = buffer.consume();
}

/// Pages of each CPU's buffer: a power of two, as the kernel wants.
fn pages_per_cpu() -> usize {
    let cpus = libbpf_rs::num_possible_cpus().unwrap_or(1).max(1);
    let bytes = (BUFFER_BYTES / cpus).clamp(CPU_BYTES.0, CPU_BYTES.1);
    // SAFETY: sysconf reads a constant of the system.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|page| *page > 0)
        .unwrap_or(4096);
    // The largest power of two not above the share.
    1 << (usize::BITS - 1 - (bytes / page).leading_zeros())
}

/// Turns the kernel's monotonic packet times into wall-clock times.
struct Clock {
    wall_at_zero: SystemTime,
}

impl Clock {
    fn now() -> Clock {
        let monotonic = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32))
            .unwrap_or_default();
        Clock {
            wall_at_zero: SystemTime::now() - monotonic,
        }
    }

    fn wall(&self, monotonic_ns: u64) -> SystemTime {
        self.wall_at_zero + Duration::from_nanos(monotonic_ns)
    }
}

/// A perf record: the header, then the packet's first `captured` bytes (padded).
fn packet_of(data: &[u8], names: &mut InterfaceNames, clock: &Clock) -> Option<CapturedPacket> {
    let header_size = std::mem::size_of::<types::captured_header>();
    let header: types::captured_header = plain_data::read(data.get(..header_size)?)?;
    let bytes = data.get(header_size..header_size + header.captured as usize)?;
    let comm: Vec<u8> = header
        .comm
        .iter()
        .map(|c| *c as u8)
        .take_while(|c| *c != 0)
        .collect();
    let netns = (header.netns != 0).then_some(header.netns);
    Some(CapturedPacket {
        time: clock.wall(header.time_ns),
        interface: names.name(netns, header.ifindex),
        direction: if header.direction.0 == 0 {
            PacketDirection::Sent
        } else {
            PacketDirection::Received
        },
        owner: KernelOwner {
            tgid: header.tgid,
            uid: header.uid,
            comm: String::from_utf8_lossy(&comm).into_owned(),
            cgroup_id: header.cgroup_id,
            cgroup_path: None,
            exe: None,
            netns: header.netns,
        },
        container: None,
        length: header.length,
        segments: header.gso_segs.max(1),
        data: bytes.to_vec(),
    })
}

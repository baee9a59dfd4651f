//! The writer thread of a running capture: takes the packets the engine copied, keeps
//! those in scope until the capture's time or size is up, names each packet's owner in
//! its comment (process, pid, user, container, direction) and writes the file.

use super::pcapng::PacketFile;
use super::{CaptureJob, CaptureOutcome, Ended};
use crate::cgroup::CgroupPaths;
use crate::engine::packets::{CapturedPacket, PacketDirection};
use crate::workload::ContainerDirectory;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the writer looks at its stop flag while no packet comes.
const WAKE: Duration = Duration::from_millis(100);

pub struct WriterState {
    /// Set by the writer when its time or size is up.
    pub finished: Arc<AtomicBool>,
    /// The tap's counts (engine/packets.rs): packets lost, bytes waiting.
    pub lost: Arc<AtomicU64>,
    pub queued: Arc<AtomicU64>,
}

pub fn write(
    job: &CaptureJob,
    file: File,
    packets: crossbeam_channel::Receiver<CapturedPacket>,
    state: &WriterState,
    containers: ContainerDirectory,
) -> CaptureOutcome {
    let deadline = Instant::now() + job.duration;
    let mut namer = Namer::new(containers);
    let mut outcome = CaptureOutcome {
        path: job.path.clone(),
        packets: 0,
        bytes: 0,
        file_bytes: 0,
        lost: 0,
        ended: Ended::Stopped,
        error: None,
    };
    let about = format!("netgraph capture of {}", job.scope.describe());
    let mut out = match PacketFile::new(BufWriter::new(file), job.snap_length, &about) {
        Ok(out) => out,
        Err(error) => {
            state.finished.store(true, Ordering::Relaxed);
            return CaptureOutcome::failed(job.path.clone(), format!("cannot write: {error}"));
        }
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            outcome.ended = Ended::Time;
            break;
        }
        let packet = match packets.recv_timeout((deadline - now).min(WAKE)) {
            Ok(packet) => packet,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            // The engine stopped copying (netgraph stops): everything copied is in.
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        state
            .queued
            .fetch_sub(packet.data.len() as u64, Ordering::Relaxed);
        // Copied before the deadline and read after it: still in the window.
        if !job.scope.keeps(&packet) {
            continue;
        }
        // Room for this packet and its comment, or the file is complete.
        if out.written + packet.data.len() as u64 + 256 > job.max_bytes {
            outcome.ended = Ended::Size;
            break;
        }
        let comment = namer.comment(&packet);
        if let Err(error) = out.write(&packet, comment) {
            outcome.ended = Ended::Failed;
            outcome.error = Some(format!("cannot write {}: {error}", job.path.display()));
            break;
        }
        outcome.packets += 1;
        outcome.bytes += u64::from(packet.length);
    }
    state.finished.store(true, Ordering::Relaxed);
    if let Err(error) = out.flush() {
        outcome.ended = Ended::Failed;
        outcome.error = Some(format!("cannot write {}: {error}", job.path.display()));
    }
    outcome.file_bytes = out.written;
    outcome.lost = state.lost.load(Ordering::Relaxed);
    outcome
}

/// Names packets' owners: the container from the socket's cgroup, looked up once per
/// cgroup.
struct Namer {
    containers: ContainerDirectory,
    paths: CgroupPaths,
    labels: HashMap<u64, Option<String>>,
}

impl Namer {
    fn new(containers: ContainerDirectory) -> Namer {
        Namer {
            containers,
            paths: CgroupPaths::new(),
            labels: HashMap::new(),
        }
    }

    fn comment(&mut self, packet: &CapturedPacket) -> String {
        let owner = &packet.owner;
        let direction = match packet.direction {
            PacketDirection::Sent => "sent",
            PacketDirection::Received => "received",
        };
        let mut comment = format!(
            "process={} pid={} uid={}",
            owner.comm, owner.tgid, owner.uid
        );
        let container = match (&packet.container, &owner.cgroup_path) {
            (Some(known), _) => Some(known.to_string()),
            (None, Some(path)) => self
                .containers
                .workload_of(path)
                .and_then(|workload| workload.container_label().map(String::from)),
            (None, None) => self.container(owner.cgroup_id),
        };
        if let Some(container) = container {
            comment.push_str(&format!(" container={container}"));
        }
        comment.push_str(&format!(" direction={direction}"));
        if packet.segments > 1 {
            // An offloaded packet: a link that cuts it carried this many.
            comment.push_str(&format!(" segments={}", packet.segments));
        }
        comment
    }

    fn container(&mut self, cgroup: u64) -> Option<String> {
        if let Some(label) = self.labels.get(&cgroup) {
            return label.clone();
        }
        let label = self
            .paths
            .path(cgroup)
            .and_then(|path| self.containers.workload_of(&path))
            .and_then(|workload| workload.container_label().map(String::from));
        // A container's name may come later from its runtime: only names are kept.
        if label.is_some() {
            self.labels.insert(cgroup, label.clone());
        }
        label
    }
}

//! Captures as the interval loop runs them, one at a time: each interval, the one
//! running gets its scope resolved again (containers restart) and ends once its
//! writer is done; then the next waiting one starts.

use super::writer::{self, WriterState};
use super::{CaptureJob, CaptureOutcome, Captures, Ended, WAITING_AT_MOST};
use crate::attribution::{AttributedReport, Owner};
use crate::cgroup_tree::CgroupTree;
use crate::engine::packets::{CaptureTargets, FlowOwner, PacketTap};
use crate::engine::Engine;
use crate::engine::KernelOwner;
use crate::traffic::Flow;
use crate::workload::ContainerDirectory;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Packets between the engine's reader and the writer: a burst of this many waits,
/// more are lost (and counted), never waited for.
const PACKET_QUEUE: usize = 16_384;

pub struct Capturing {
    requests: Captures,
    waiting: VecDeque<CaptureJob>,
    running: Option<Running>,
    cgroup_root: Option<PathBuf>,
}

struct Running {
    targets: CaptureTargets,
    tap: PacketTap,
    state: WriterState,
    writer: JoinHandle<(CaptureJob, CaptureOutcome)>,
    scope: super::CaptureScope,
    snap_length: u32,
    /// Told how it ended (the job itself went with the writer).
    done: Option<crossbeam_channel::Sender<CaptureOutcome>>,
}

impl Capturing {
    pub fn new(requests: Captures) -> Capturing {
        Capturing {
            requests,
            waiting: VecDeque::new(),
            running: None,
            cgroup_root: crate::cgroup::cgroup2_root(),
        }
    }

    /// Once per interval, before the engine is drained.
    pub fn tick(&mut self, engine: &mut dyn Engine, containers: &ContainerDirectory) {
        for job in self.requests.take() {
            if self.waiting.len() >= WAITING_AT_MOST {
                let error = format!(
                    "{WAITING_AT_MOST} captures are waiting already; try again when they are done"
                );
                tell(job, error);
            } else {
                self.waiting.push_back(job);
            }
        }
        if self
            .running
            .as_ref()
            .is_some_and(|running| running.state.finished.load(Ordering::Relaxed))
        {
            self.finish(engine);
        }
        if let Some(running) = &mut self.running {
            // A container's cgroups change as it restarts.
            if running.scope.needs_cgroups() {
                let targets = resolve(
                    &running.scope,
                    self.cgroup_root.as_deref(),
                    containers,
                    running.snap_length,
                );
                if targets != running.targets {
                    if let Err(error) = engine.set_capture(Some((&targets, &running.tap))) {
                        tracing::warn!("capture: cannot follow its scope: {error}");
                    }
                    running.targets = targets;
                }
            }
            return;
        }
        while let Some(job) = self.waiting.pop_front() {
            if self.start(job, engine, containers) {
                break;
            }
        }
    }

    /// Tells an engine that captures by flow (the capture engine) who owns the flows
    /// attribution named this interval, and which of them the running capture wants.
    pub fn name_flows(&self, report: &AttributedReport, engine: &mut dyn Engine) {
        let Some(running) = &self.running else {
            return;
        };
        let named: Vec<(Flow, Option<FlowOwner>)> = report
            .traffic
            .iter()
            .filter_map(|traffic| {
                let flow = traffic.flow?;
                let owner = match &traffic.owner {
                    Owner::Process(process)
                        if running.scope.owned_by(process, traffic.workload.as_deref()) =>
                    {
                        Some(FlowOwner {
                            owner: KernelOwner {
                                tgid: process.pid,
                                uid: process.uid,
                                comm: process.name.clone(),
                                cgroup_path: process.cgroup.as_deref().map(Arc::from),
                                ..Default::default()
                            },
                            container: traffic
                                .workload
                                .as_deref()
                                .and_then(|w| w.container_label())
                                .map(Arc::from),
                        })
                    }
                    _ => None,
                };
                Some((flow, owner))
            })
            .collect();
        if !named.is_empty() {
            engine.capture_owners(named);
        }
    }

    /// At shutdown: the running capture ends with what was copied, waiting ones do not
    /// run.
    pub fn stop(&mut self, engine: &mut dyn Engine) {
        self.finish(engine);
        for job in self.waiting.drain(..).chain(self.requests.take()) {
            tell(job, "netgraph stopped before it could start".into());
        }
    }

    /// Starts a capture; false if it could not (it is told why).
    fn start(
        &mut self,
        mut job: CaptureJob,
        engine: &mut dyn Engine,
        containers: &ContainerDirectory,
    ) -> bool {
        let file = match crate::private_files::create_file(&job.path) {
            Ok(file) => file,
            Err(error) => {
                let error = format!("cannot create {}: {error}", job.path.display());
                tell(job, error);
                return false;
            }
        };
        let targets = resolve(
            &job.scope,
            self.cgroup_root.as_deref(),
            containers,
            job.snap_length,
        );
        let (sender, receiver) = crossbeam_channel::bounded(PACKET_QUEUE);
        let tap = PacketTap {
            packets: sender,
            lost: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(AtomicU64::new(0)),
        };
        if let Err(error) = engine.set_capture(Some((&targets, &tap))) {
            let _ = std::fs::remove_file(&job.path);
            tell(job, error);
            return false;
        }
        let state = WriterState {
            finished: Arc::new(AtomicBool::new(false)),
            lost: tap.lost.clone(),
            queued: tap.queued.clone(),
        };
        let thread_state = WriterState {
            finished: state.finished.clone(),
            lost: state.lost.clone(),
            queued: state.queued.clone(),
        };
        let containers = containers.clone();
        let scope = job.scope.clone();
        let snap_length = job.snap_length;
        tracing::info!(
            scope = %scope.describe(),
            file = %job.path.display(),
            duration = ?job.duration,
            "capture started"
        );
        let done = job.done.take();
        let spawned = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || {
                let outcome = writer::write(&job, file, receiver, &thread_state, containers);
                (job, outcome)
            });
        match spawned {
            Ok(writer) => {
                self.running = Some(Running {
                    targets,
                    tap,
                    state,
                    writer,
                    scope,
                    snap_length,
                    done,
                });
                true
            }
            Err(error) => {
                let _ = engine.set_capture(None);
                if let Some(done) = done {
                    let _ = done.send(CaptureOutcome::failed(
                        PathBuf::new(),
                        format!("cannot start the capture's writer: {error}"),
                    ));
                }
                false
            }
        }
    }

    /// Stops the engine copying (its reader hands over what the kernel still holds) and
    /// waits for the writer to write what was copied, then tells the outcome.
    fn finish(&mut self, engine: &mut dyn Engine) {
        let Some(running) = self.running.take() else {
            return;
        };
        let _ = engine.set_capture(None);
        drop(running.tap);
        let Ok((job, outcome)) = running.writer.join() else {
            tracing::error!("capture: its writer failed");
            return;
        };
        let words = match outcome.ended {
            Ended::Time => "its time is up",
            Ended::Size => "the file reached its size",
            Ended::Stopped => "netgraph stopped",
            Ended::Failed => "it failed",
        };
        match &outcome.error {
            Some(error) => tracing::error!(file = %job.path.display(), "capture failed: {error}"),
            None => tracing::info!(
                file = %job.path.display(),
                packets = outcome.packets,
                bytes = outcome.bytes,
                lost = outcome.lost,
                "capture done: {words}"
            ),
        }
        if let Some(done) = running.done {
            let _ = done.send(outcome);
        }
    }
}

fn resolve(
    scope: &super::CaptureScope,
    cgroup_root: Option<&std::path::Path>,
    containers: &ContainerDirectory,
    snap_length: u32,
) -> CaptureTargets {
    let tree = match cgroup_root {
        Some(root) if scope.needs_cgroups() => Some(CgroupTree::read(root)),
        _ => None,
    };
    scope.targets(tree.as_ref(), containers, snap_length)
}

/// Tells whoever asked that `job` did not run, and why.
fn tell(job: CaptureJob, error: String) {
    tracing::error!(file = %job.path.display(), "capture not started: {error}");
    if let Some(done) = job.done {
        let _ = done.send(CaptureOutcome::failed(job.path, error));
    }
}

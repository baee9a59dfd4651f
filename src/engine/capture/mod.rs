//! The capture engine: packet capture on every selected interface, the way nethogs
//! works, with interfaces picked up and dropped while running.

mod decode;
mod end;
mod flow_table;
mod fragments;
#[doc(hidden)]
pub mod hot_path;
mod interfaces;
mod link;
mod name_samples;
mod packet_copier;
mod ring;
mod worker;

pub use decode::{decode, Decoded, IpPacket};
pub use end::End;
pub use interfaces::InterfaceSelection;
pub use link::{Link, LinkDirection, LinkType};
pub use worker::CaptureSettings;

use super::host_addresses::LocalAddresses;
use super::{Engine, EngineReport, FlowHints, InterfaceName, InterfaceTraffic, Recording};
use crate::rate_limited::Repeats;
use arc_swap::ArcSwap;
use name_samples::NameSamples;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use worker::Worker;

/// Lost packets are lost bytes: the warning, once a minute per interface, names the fix.
fn warn_of_full_rings(
    said: &mut HashMap<InterfaceName, Repeats>,
    buffer_mib: usize,
    interfaces: &[InterfaceTraffic],
) {
    for totals in interfaces.iter().filter(|t| t.capture.dropped > 0) {
        let repeats = said
            .entry(totals.interface.clone())
            .or_insert_with(Repeats::every_minute);
        let Some(repeats) = repeats.check("ring full") else {
            continue;
        };
        tracing::warn!(
            interface = &*totals.interface,
            lost = totals.capture.dropped,
            "capture ring full: {} packets were lost uncounted (ps_drop); raise --buffer-mib (now {buffer_mib} MiB) or use the eBPF engine{repeats}",
            totals.capture.dropped,
        );
    }
}

/// How often interfaces and addresses are looked at again.
const RESCAN_EVERY: Duration = Duration::from_millis(500);

pub struct CaptureEngine {
    shared: Arc<Shared>,
    watcher: Option<JoinHandle<()>>,
    /// DNS answers and ClientHellos, when names for peers are wanted.
    name_samples: Option<NameSamples>,
    /// Per interface: packets the kernel dropped because its ring was full, said once a
    /// minute.
    ring_full: HashMap<InterfaceName, Repeats>,
    /// A capture's copiers, one per interface, while one runs.
    copiers: Vec<packet_copier::PacketCopier>,
    /// The owners of flows, as attribution named them while a capture runs.
    flow_owners: Arc<ArcSwap<packet_copier::FlowOwners>>,
}

struct Shared {
    selection: InterfaceSelection,
    settings: CaptureSettings,
    hints: FlowHints,
    local: Arc<ArcSwap<LocalAddresses>>,
    workers: Mutex<Workers>,
    stop: AtomicBool,
}

#[derive(Default)]
struct Workers {
    running: HashMap<String, Worker>,
    /// Finished workers whose last counts have not been drained yet.
    retired: Vec<Worker>,
    /// Interfaces whose failure was already logged, so it is said once.
    complained: HashSet<String>,
}

impl CaptureEngine {
    pub fn start(
        selection: InterfaceSelection,
        settings: CaptureSettings,
        recording: Recording,
        hints: FlowHints,
    ) -> anyhow::Result<CaptureEngine> {
        let shared = Arc::new(Shared {
            selection,
            settings,
            hints,
            local: Arc::new(ArcSwap::from_pointee(LocalAddresses::default())),
            workers: Mutex::new(Workers::default()),
            stop: AtomicBool::new(false),
        });
        let first_error = shared.rescan()?;
        if shared.workers().running.is_empty() {
            if let Some(error) = first_error {
                anyhow::bail!(
                    "cannot capture on any interface: {error}; run netgraph as root or with CAP_NET_RAW and CAP_NET_ADMIN"
                );
            }
        }
        let watcher_shared = shared.clone();
        let watcher = std::thread::Builder::new()
            .name("interface watcher".into())
            .spawn(move || watcher_shared.watch())?;
        Ok(CaptureEngine {
            shared,
            watcher: Some(watcher),
            name_samples: NameSamples::start(recording),
            ring_full: HashMap::new(),
            copiers: Vec::new(),
            flow_owners: Default::default(),
        })
    }

    /// Names of the interfaces being captured now.
    pub fn interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shared.workers().running.keys().cloned().collect();
        names.sort();
        names
    }
}

impl Shared {
    fn workers(&self) -> MutexGuard<'_, Workers> {
        crate::locks::lock(&self.workers)
    }

    fn watch(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(RESCAN_EVERY);
            if let Err(error) = self.rescan() {
                tracing::warn!(%error, "cannot list network interfaces");
            }
        }
    }

    /// Starts captures on new interfaces, retires those on vanished ones.
    /// Returns the first error met opening a capture.
    fn rescan(&self) -> std::io::Result<Option<String>> {
        let host = interfaces::discover()?;
        self.local.store(Arc::new(host.local));
        let wanted: Vec<&interfaces::Interface> = host
            .interfaces
            .iter()
            .filter(|i| self.selection.wants(i))
            .collect();
        let mut workers = self.workers();
        let workers = &mut *workers;
        let mut first_error = None;

        let still_wanted = |name: &str| wanted.iter().any(|i| i.name == name);
        let ended: Vec<String> = workers
            .running
            .iter()
            .filter(|(name, w)| w.state().finished || !still_wanted(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            if let Some(worker) = workers.running.remove(&name) {
                worker.request_stop();
                tracing::info!(interface = %name, "stopped capturing");
                workers.retired.push(worker);
            }
        }

        for interface in wanted {
            if self.stop.load(Ordering::Relaxed) || workers.running.contains_key(&interface.name) {
                continue;
            }
            match Worker::start(
                &interface.name,
                interface.loopback,
                &self.settings,
                self.local.clone(),
                self.hints.clone(),
            ) {
                Ok(worker) => {
                    tracing::info!(interface = %interface.name, "capturing");
                    workers.complained.remove(&interface.name);
                    workers.running.insert(interface.name.clone(), worker);
                }
                Err(error) => {
                    if workers.complained.insert(interface.name.clone()) {
                        tracing::warn!(interface = %interface.name, %error, "cannot capture on interface; will retry");
                    }
                    first_error.get_or_insert_with(|| format!("{}: {error}", interface.name));
                }
            }
        }
        if let Some(only) = &self.selection.only {
            for name in only {
                let present = host.interfaces.iter().any(|i| &i.name == name);
                if !present && workers.complained.insert(name.clone()) {
                    tracing::warn!(interface = %name, "interface does not exist (yet); it is captured as soon as it appears");
                }
            }
        }
        Ok(first_error)
    }
}

impl Engine for CaptureEngine {
    fn name(&self) -> &'static str {
        "capture"
    }

    /// Flows are known by their two ends.
    fn records_addresses(&self) -> bool {
        true
    }

    fn drain(&mut self) -> EngineReport {
        let mut report = EngineReport::default();
        let mut workers = self.shared.workers();
        let workers = &mut *workers;
        let retired = std::mem::take(&mut workers.retired);
        for worker in workers.running.values().chain(retired.iter()) {
            let (flows, totals) = worker.state().drain();
            report.flows.extend(flows);
            report.interfaces.push(totals);
        }
        for mut worker in retired {
            worker.join();
            // Counts that arrived between the drain above and the thread's end.
            let (flows, totals) = worker.state().drain();
            report.flows.extend(flows);
            report.interfaces.push(totals);
        }
        let local = self.shared.local.load();
        for flow in &mut report.flows {
            flow.forwarded = !local.delivers_locally(flow.flow.local.ip());
        }
        if let Some(samples) = &self.name_samples {
            report.name_samples = samples.drain();
        }
        let buffer_mib = self.shared.settings.buffer_bytes >> 20;
        warn_of_full_rings(&mut self.ring_full, buffer_mib, &report.interfaces);
        report
    }

    fn set_capture(
        &mut self,
        capture: Option<(&super::packets::CaptureTargets, &super::packets::PacketTap)>,
    ) -> Result<(), String> {
        let Some((targets, tap)) = capture else {
            // Dropping a copier reads what its ring holds, then ends it.
            self.copiers.clear();
            self.flow_owners.store(Default::default());
            return Ok(());
        };
        // The scope's owners change with each interval's names, not its copiers.
        if !self.copiers.is_empty() {
            return Ok(());
        }
        let interfaces: Vec<(String, bool)> = self
            .shared
            .workers()
            .running
            .iter()
            .map(|(name, worker)| (name.clone(), worker.loopback))
            .collect();
        for (interface, loopback) in interfaces {
            match packet_copier::PacketCopier::start(
                &interface,
                loopback,
                targets,
                tap.clone(),
                self.flow_owners.clone(),
            ) {
                Ok(copier) => self.copiers.push(copier),
                Err(error) => {
                    self.copiers.clear();
                    return Err(format!("cannot capture on {interface}: {error}"));
                }
            }
        }
        Ok(())
    }

    fn capture_owners(
        &mut self,
        owners: Vec<(crate::traffic::Flow, Option<super::packets::FlowOwner>)>,
    ) {
        if !self.copiers.is_empty() {
            let known = self.flow_owners.load();
            self.flow_owners.store(Arc::new(known.with(owners)));
        }
    }

    fn stop(&mut self) {
        self.copiers.clear();
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
        let mut workers = self.shared.workers();
        let workers = &mut *workers;
        for (_, mut worker) in workers.running.drain() {
            worker.join();
            workers.retired.push(worker);
        }
    }
}

impl Drop for CaptureEngine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// For `netgraph check`: the interfaces that are up, after opening one of them for
/// capture as the engine would (which needs CAP_NET_RAW).
pub fn probe() -> anyhow::Result<Vec<String>> {
    let host = interfaces::discover()?;
    let up: Vec<String> = host
        .interfaces
        .iter()
        .filter(|i| i.up)
        .map(|i| i.name.clone())
        .collect();
    let first = up
        .first()
        .ok_or_else(|| anyhow::anyhow!("no network interface is up"))?;
    ring::Ring::open(first, 128, 1 << 20).map_err(|e| anyhow::anyhow!("cannot capture: {e}"))?;
    Ok(up)
}

//! Attribution: which process owns each flow an engine reported.
//! Flows no process can be found for land in per-protocol buckets, never dropped.

mod host;
#[doc(hidden)]
pub mod hot_path;
mod kernel_owners;
mod multicast_names;
mod peer_names;
mod processes;
mod resolver;
mod reverse_names;
mod sock_diag;
mod sockets;
mod unowned;

pub use peer_names::RememberedName;
pub use processes::ProcessIdentity;
pub use sockets::{SocketEntry, SocketTable};
pub use unowned::Unowned;

use crate::engine::{EngineReport, InterfaceName, InterfaceTraffic, NameSample, SampleSocket};
use crate::locks::lock;
use crate::traffic::{Ends, Flow, Protocol, Traffic};
use crate::workload::{RuntimeSockets, Workload, Workloads};
use crossbeam_channel::{Receiver, Sender};
use kernel_owners::KernelOwners;
use peer_names::PeerNames;
use resolver::{Resolver, SocketRef};
use reverse_names::ReverseNames;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Most hints handled in one refresh.
const HINT_BATCH: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    Process(Arc<ProcessIdentity>),
    /// Traffic no process could be found for, by protocol, and why.
    Unknown(Protocol, Unowned),
}

#[derive(Clone, Debug)]
pub struct AttributedTraffic {
    pub owner: Owner,
    pub interface: InterfaceName,
    /// The two ends, where the engine knows them (GeoIP names countries from them).
    pub ends: Option<Ends>,
    pub traffic: Traffic,
    /// The unit, container or pod the owning process works for.
    pub workload: Option<Arc<Workload>>,
    /// The far end's name, learnt from DNS answers, ClientHellos or reverse DNS
    /// (where the ends are known).
    pub peer_name: Option<Arc<str>>,
    /// The capture engine's flow (captures follow flows to their owners).
    pub flow: Option<Flow>,
}

#[derive(Debug, Default)]
pub struct AttributedReport {
    pub traffic: Vec<AttributedTraffic>,
    pub interfaces: Vec<InterfaceTraffic>,
    /// Events the engine could not record (see [`EngineReport::lost`]).
    pub lost: u64,
    /// Peer names learnt or kept in use this interval, for the store to remember.
    pub names: Vec<RememberedName>,
    /// What each limit let through and held back (the engine's, passed on).
    pub limits: Vec<crate::limits::LimitCount>,
}

pub struct Attributor {
    resolver: Arc<Mutex<Resolver>>,
    kernel_owners: KernelOwners,
    workloads: Workloads,
    peer_names: PeerNames,
    /// Reverse DNS, when configured.
    reverse_names: Option<ReverseNames>,
    /// Dropped to stop the hint thread, which sleeps until a hint or this comes.
    stop: Option<Sender<()>>,
    hint_thread: Option<JoinHandle<()>>,
}

impl Attributor {
    /// `hints` carries flows engines have just seen for the first time; containers
    /// are named by the runtimes at `runtimes`; `reverse_names` looks up PTR names for
    /// peers nothing else named.
    pub fn start(
        hints: Receiver<Flow>,
        runtimes: RuntimeSockets,
        reverse_names: bool,
    ) -> std::io::Result<Attributor> {
        let resolver = Arc::new(Mutex::new(Resolver::new(
            Box::new(host::KernelHost::open()),
        )));
        let (stop, stopped) = crossbeam_channel::bounded(0);
        let thread_resolver = resolver.clone();
        let hint_thread = std::thread::Builder::new()
            .name("attribution".into())
            .spawn(move || resolve_hints(&thread_resolver, &hints, &stopped))?;
        Ok(Attributor {
            resolver,
            kernel_owners: KernelOwners::new(),
            workloads: Workloads::start(runtimes),
            peer_names: PeerNames::default(),
            reverse_names: if reverse_names {
                Some(ReverseNames::start()?)
            } else {
                None
            },
            stop: Some(stop),
            hint_thread: Some(hint_thread),
        })
    }

    /// The containers the runtimes named, for limits that find them by name.
    pub fn containers(&self) -> crate::workload::ContainerDirectory {
        self.workloads.directory()
    }

    pub fn attribute(&mut self, report: EngineReport) -> AttributedReport {
        // Sockets the kernel named are done; the rest are looked up in the socket table.
        let mut traffic = Vec::with_capacity(report.flows.len() + report.sockets.len());
        let mut unnamed = Vec::new();
        for socket in report.sockets {
            let owner = match (kernel_owners::mover(socket.ownership), socket.cookie) {
                (Some(owner), _) => Owner::Process(self.kernel_owners.identity(&owner)),
                // Traffic that crossed an interface without any local socket.
                (None, None) => {
                    traffic.extend(without_socket(
                        socket.protocol,
                        socket.interface,
                        socket.ends,
                        socket.traffic,
                    ));
                    continue;
                }
                (None, Some(cookie)) => {
                    unnamed.push(Unnamed {
                        socket: SocketRef::Cookie(cookie),
                        protocol: socket.protocol,
                        interface: socket.interface,
                        ends: socket.ends,
                        traffic: socket.traffic,
                    });
                    continue;
                }
            };
            traffic.push(AttributedTraffic {
                owner,
                interface: socket.interface,
                ends: socket.ends,
                traffic: socket.traffic,
                workload: None,
                peer_name: None,
                flow: None,
            });
        }
        self.kernel_owners.end_interval();
        for f in report.flows {
            let mut ends = Ends::of_flow(&f.flow);
            if f.forwarded {
                // Passing through: never given to a local socket on the same port.
                ends.near_is_host = false;
                traffic.extend(without_socket(
                    f.flow.protocol,
                    f.interface,
                    Some(ends),
                    f.traffic,
                ));
                continue;
            }
            unnamed.push(Unnamed {
                socket: SocketRef::Flow(f.flow),
                protocol: f.flow.protocol,
                interface: f.interface,
                ends: Some(ends),
                traffic: f.traffic,
            });
        }
        let refs: Vec<SocketRef> = unnamed.iter().map(|u| u.socket).collect();
        let owners = lock(&self.resolver).resolve_interval(&refs);
        let samples = samples_by_process(report.name_samples, &refs, &owners);
        traffic.extend(
            unnamed
                .into_iter()
                .zip(owners)
                .map(|(u, owner)| AttributedTraffic {
                    owner: match (owner, u.socket) {
                        (Some(process), _) => Owner::Process(process),
                        // The kernel answers pings and sends ICMP errors through
                        // sockets of its own, which no process owns.
                        (None, SocketRef::Cookie(_)) if u.protocol == Protocol::Icmp => {
                            Owner::Unknown(u.protocol, Unowned::Kernel)
                        }
                        (None, SocketRef::Cookie(_)) => {
                            Owner::Unknown(u.protocol, Unowned::SocketWithoutOwner)
                        }
                        (None, SocketRef::Flow(_)) => Owner::Unknown(u.protocol, Unowned::NotFound),
                    },
                    interface: u.interface,
                    ends: u.ends,
                    traffic: u.traffic,
                    workload: None,
                    peer_name: None,
                    flow: match u.socket {
                        SocketRef::Flow(flow) => Some(flow),
                        SocketRef::Cookie(_) => None,
                    },
                }),
        );
        let now = std::time::Instant::now();
        self.peer_names.learn(&samples, now);
        for item in &mut traffic {
            let pid = match &item.owner {
                Owner::Process(process) => {
                    item.workload = process.cgroup.as_deref().map(|c| self.workloads.of(c));
                    Some(process.pid)
                }
                Owner::Unknown(..) => None,
            };
            if let Some(ends) = &item.ends {
                item.peer_name = self
                    .peer_names
                    .name(pid, ends.far, now)
                    .or_else(|| multicast_names::name(ends.far).map(Arc::from))
                    .or_else(|| {
                        let reverse = self.reverse_names.as_ref()?;
                        reverse.name(ends.far, now)
                    });
            }
        }
        self.workloads.end_interval();
        self.peer_names.expire(now);
        AttributedReport {
            traffic,
            interfaces: report.interfaces,
            lost: report.lost,
            names: self.peer_names.remembered(now, unix_now()),
            limits: report.limits,
        }
    }

    /// Takes up the peer names a previous run kept in the store.
    pub fn restore_names(&mut self, names: Vec<RememberedName>) {
        let count = names.len();
        self.peer_names
            .restore(names, std::time::Instant::now(), unix_now());
        if count > 0 {
            tracing::info!(names = count, "peer names from the previous run taken up");
        }
    }
}

fn unix_now() -> i64 {
    let since_epoch = std::time::UNIX_EPOCH.elapsed().unwrap_or_default();
    since_epoch.as_secs() as i64
}

/// Traffic that crossed an interface without any local socket, split by direction
/// where the two differ in why (what arrived for a closed port; the kernel's answer).
fn without_socket(
    protocol: Protocol,
    interface: InterfaceName,
    ends: Option<Ends>,
    traffic: Traffic,
) -> Vec<AttributedTraffic> {
    let (received, sent) = Unowned::without_socket(protocol, ends.as_ref());
    let item = |reason, traffic| AttributedTraffic {
        owner: Owner::Unknown(protocol, reason),
        interface: interface.clone(),
        ends,
        traffic,
        workload: None,
        peer_name: None,
        flow: None,
    };
    if received == sent {
        return vec![item(received, traffic)];
    }
    let only = |sent: bool| Traffic {
        sent: if sent {
            traffic.sent
        } else {
            Default::default()
        },
        recv: if sent {
            Default::default()
        } else {
            traffic.recv
        },
        // Traffic without a socket has no TCP state or drops of its own.
        tcp: Default::default(),
        drops: Default::default(),
    };
    vec![item(received, only(false)), item(sent, only(true))]
}

/// Each sample with the process whose socket it passed: recorded by the kernel, or the
/// owner attribution found for its flow this interval.
fn samples_by_process(
    samples: Vec<NameSample>,
    refs: &[SocketRef],
    owners: &[Option<Arc<ProcessIdentity>>],
) -> Vec<(Option<u32>, NameSample)> {
    if samples.is_empty() {
        return Vec::new();
    }
    let flow_owners: std::collections::HashMap<Flow, u32> = refs
        .iter()
        .zip(owners)
        .filter_map(|(socket, owner)| match (socket, owner) {
            (SocketRef::Flow(flow), Some(process)) => Some((*flow, process.pid)),
            _ => None,
        })
        .collect();
    samples
        .into_iter()
        .map(|sample| {
            let pid = match sample.socket {
                SampleSocket::Process(pid) => Some(pid),
                SampleSocket::Flow(flow) => flow_owners.get(&flow).copied(),
                SampleSocket::Unknown => None,
            };
            (pid, sample)
        })
        .collect()
}

/// Traffic whose owner is still to be looked up.
struct Unnamed {
    socket: SocketRef,
    protocol: Protocol,
    interface: InterfaceName,
    ends: Option<Ends>,
    traffic: Traffic,
}

impl Drop for Attributor {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.hint_thread.take() {
            let _ = thread.join();
        }
    }
}

/// Looks up the owners of new flows as their hints come, until `stopped` disconnects.
/// Waits without a timeout: a thread that woke to poll cost CPU on an idle host.
fn resolve_hints(resolver: &Mutex<Resolver>, hints: &Receiver<Flow>, stopped: &Receiver<()>) {
    let mut pending = Vec::with_capacity(HINT_BATCH);
    loop {
        crossbeam_channel::select! {
            recv(hints) -> flow => match flow {
                Ok(flow) => pending.push(flow),
                Err(_) => return,
            },
            recv(stopped) -> _ => return,
        }
        let wait = lock(resolver).until_refresh_allowed();
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        pending.extend(hints.try_iter().take(HINT_BATCH - pending.len()));
        lock(resolver).resolve_new(&pending);
        pending.clear();
    }
}

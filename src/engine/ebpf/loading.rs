//! Opening, configuring, loading and attaching the eBPF programs: the core (counting
//! at the cgroup root, socket creation and release) and each optional part in the best
//! form the kernel accepts, decided by loading it first (probes.rs). One refused or
//! missing optional part costs what it gives, never the whole engine.

use super::drops::DropReasons;
use super::probes::{self, Probe, ProbeFailure};
use super::skeleton::{NetgraphSkel, NetgraphSkelBuilder, OpenNetgraphSkel};
use super::socket_counts::SocketCounts;
use super::support::{check_support, Unsupported};
use crate::engine::features::{Feature, FeatureState};
use crate::engine::Recording;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::Link;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

/// Switches optional parts off, for tests of each fallback on a kernel that has them:
/// a comma-separated list of `typed_tracepoints`, `socket_tracepoints` (typed and raw),
/// `accept_tracepoints`, `owner_tracepoints` (all three), `socket_counts`,
/// `device_netns`, `tcx`, `interface_hooks`, `path_tracepoints`, `tcp_health`, `drops`,
/// `packet_capture`.
pub const WITHOUT_VARIABLE: &str = "NETGRAPH_EBPF_WITHOUT";

/// The programs, loaded and attached.
pub struct Loaded {
    pub skel: NetgraphSkel<'static>,
    /// Dropping a link detaches its program.
    pub links: Vec<Link>,
    /// Whether sockets are adopted by the processes that use them (Linux 6.3+).
    pub follows_use: bool,
    /// The counts kept in owned sockets' own storage, where the kernel allows it.
    pub socket_counts: Option<SocketCounts>,
    /// What was chosen for each optional part (the interface hooks are added as they
    /// attach).
    pub features: Vec<Feature>,
    pub without: Without,
    /// Whether TCP's health is counted (its tracepoints attached).
    pub tcp_health: bool,
    /// The kernel's drop reasons, where dropped packets are counted.
    pub drops: Option<DropReasons>,
    /// Whether packets can be captured by owner.
    pub packet_capture: bool,
}

/// How sockets are adopted by the processes that send and receive on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnerTracepoints {
    Typed,
    Raw,
    /// Only accepted sockets, at the accept syscalls' exit (kernels before 6.3).
    Accept,
    Off,
}

/// What one load asks of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    owners: OwnerTracepoints,
    socket_counts: bool,
    device_netns: bool,
    path_tracepoints: bool,
    tcp_health: Option<TracepointKind>,
    /// `SKB_DROP_REASON_NOT_SPECIFIED`, where dropped packets are counted.
    drops: Option<(u32, TracepointKind)>,
    /// The counting programs copy packets by owner to a perf buffer when asked.
    packet_capture: bool,
}

/// Which of a tracepoint's two programs: the BTF-typed one (which the kernel skips only
/// when the same program is already running on the CPU), else the classic one (skipped
/// when any kprobe or tracepoint program is; counted as lost either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TracepointKind {
    Typed,
    Classic,
}

impl TracepointKind {
    fn describe(self) -> &'static str {
        match self {
            TracepointKind::Typed => "typed",
            TracepointKind::Classic => "classic",
        }
    }
}

impl Plan {
    const CORE: Plan = Plan {
        owners: OwnerTracepoints::Off,
        socket_counts: false,
        device_netns: false,
        path_tracepoints: false,
        tcp_health: None,
        drops: None,
        packet_capture: false,
    };
}

/// Optional parts switched off by `NETGRAPH_EBPF_WITHOUT`.
#[derive(Clone, Debug, Default)]
pub struct Without(Vec<String>);

impl Without {
    pub fn from_env() -> Without {
        Without::parse(&std::env::var(WITHOUT_VARIABLE).unwrap_or_default())
    }

    fn parse(list: &str) -> Without {
        Without(
            list.split(',')
                .map(|item| item.trim().to_string())
                .filter(|item| !item.is_empty())
                .collect(),
        )
    }

    pub fn has(&self, part: &str) -> bool {
        self.0.iter().any(|item| item == part)
    }

    fn failure(part: &str) -> ProbeFailure {
        ProbeFailure {
            state: FeatureState::Absent,
            why: format!("switched off by {WITHOUT_VARIABLE}={part}"),
        }
    }
}

const LOSES_ADOPTION: &str = "accepted and inherited sockets are named from /proc at each interval: a connection that ends within an interval may stay unknown";
const LOSES_INHERITED: &str = "a socket passed to another process (inherited across fork, or sent over a Unix socket) stays its creator's";
const LOSES_SOCKET_COUNTS: &str =
    "each packet updates a counter map (more CPU per packet); counts stay exact";
const LOSES_DEVICE_NETNS: &str = "packets no process owns (handshakes, time-wait) in other network namespaces are named after the host's interface with the same index";
const LOSES_PATHS: &str = "a process or container that ends within an interval may have no program path or container name";
const LOSES_TCP_HEALTH: &str =
    "no TCP retransmissions, connect failures or round-trip times per process";
const LOSES_DROPS: &str = "no dropped packets per process";
const LOSES_CAPTURE: &str = "no packet capture by process (`netgraph capture`, alert captures)";

/// `recording.addresses` counts by both ends of each packet too, at the cost of a
/// larger key per packet.
pub fn load(recording: Recording) -> Result<Loaded, Unsupported> {
    let cgroup_root = check_support()?;
    // libbpf's own lines (a probe's refused load, the verifier's log) are details: the
    // outcome is reported in netgraph's words, these with RUST_LOG=debug.
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, libbpf_line)));
    let without = Without::from_env();
    let mut features = Vec::new();
    let reasons = DropReasons::of_kernel();
    let plan = choose(recording, &without, reasons.as_ref(), &mut features);
    // Probed one by one, they may still be refused together, or the kfunc or the RTT
    // sampling in the counting programs may be: then without TCP health, without the
    // kfunc, then the core alone, which still counts every byte.
    let fallbacks = [
        plan,
        Plan {
            packet_capture: false,
            ..plan
        },
        Plan {
            drops: None,
            packet_capture: false,
            ..plan
        },
        Plan {
            tcp_health: None,
            drops: None,
            ..plan
        },
        Plan {
            device_netns: false,
            tcp_health: None,
            drops: None,
            ..plan
        },
        Plan::CORE,
    ];
    let mut failure = None;
    let mut loaded = None;
    for candidate in fallbacks {
        match load_plan(recording, candidate, &cgroup_root, reasons.as_ref()) {
            Ok(done) => {
                loaded = Some((done, candidate));
                break;
            }
            Err(error) => {
                tracing::warn!(
                    "the eBPF programs did not load with {candidate:?} ({error}); trying with less"
                );
                failure = Some(error);
            }
        }
    }
    let Some((mut loaded, used)) = loaded else {
        return Err(failure.expect("a load was tried"));
    };
    if let Some(error) = failure.filter(|_| used != plan) {
        let why = format!("loading with it failed ({error})");
        for (name, loses, was, is) in [
            (
                "owner_tracepoints",
                LOSES_ADOPTION,
                plan.owners != OwnerTracepoints::Off,
                used.owners != OwnerTracepoints::Off,
            ),
            (
                "socket_counts",
                LOSES_SOCKET_COUNTS,
                plan.socket_counts,
                used.socket_counts,
            ),
            (
                "device_netns",
                LOSES_DEVICE_NETNS,
                plan.device_netns,
                used.device_netns,
            ),
            (
                "path_tracepoints",
                LOSES_PATHS,
                plan.path_tracepoints,
                used.path_tracepoints,
            ),
            (
                "tcp_health",
                LOSES_TCP_HEALTH,
                plan.tcp_health.is_some(),
                used.tcp_health.is_some(),
            ),
            (
                "drops",
                LOSES_DROPS,
                plan.drops.is_some(),
                used.drops.is_some(),
            ),
            (
                "packet_capture",
                LOSES_CAPTURE,
                plan.packet_capture,
                used.packet_capture,
            ),
        ] {
            if was && !is {
                features.retain(|f| f.name != name);
                features.push(Feature::degraded(
                    name,
                    FeatureState::Refused,
                    why.clone(),
                    loses,
                ));
            }
        }
    }
    // A part probed fine but refused at its attachment says so once, not twice.
    features.retain(|chosen| !loaded.features.iter().any(|f| f.name == chosen.name));
    features.append(&mut loaded.features);
    loaded.features = features;
    loaded.without = without;
    for feature in loaded.features.iter().filter(|f| f.is_degraded()) {
        tracing::info!("eBPF engine: {}", feature.describe());
    }
    Ok(loaded)
}

fn libbpf_line(_level: libbpf_rs::PrintLevel, line: String) {
    tracing::debug!(target: "libbpf", "{}", line.trim_end());
}

/// Decides each optional part by probing it, noting what was chosen and why.
fn choose(
    recording: Recording,
    without: &Without,
    reasons: Option<&DropReasons>,
    features: &mut Vec<Feature>,
) -> Plan {
    let mut plan = Plan::CORE;
    // Owners kept current as sockets are used: the typed tracepoints, else raw ones.
    let configure =
        |plan: Plan| move |open: &mut OpenNetgraphSkel<'_>| configure(open, recording, plan);
    let no_socket_tracepoints =
        without.has("socket_tracepoints") || without.has("owner_tracepoints");
    let typed = if no_socket_tracepoints || without.has("typed_tracepoints") {
        Err(Without::failure("typed_tracepoints"))
    } else {
        probes::run(Probe::TypedTracepoints, configure(plan))
    };
    let raw = match &typed {
        Ok(()) => None,
        Err(_) if no_socket_tracepoints => Some(Err(Without::failure("socket_tracepoints"))),
        Err(_) => Some(probes::run(Probe::RawTracepoints, configure(plan))),
    };
    let has_tracepoints = probes::kernel_btf_has(&[
        (c"btf_trace_sock_send_length", libbpf_sys::BTF_KIND_TYPEDEF),
        (c"btf_trace_sock_recv_length", libbpf_sys::BTF_KIND_TYPEDEF),
    ]);
    match (typed.as_ref(), raw) {
        (Ok(()), _) => {
            plan.owners = OwnerTracepoints::Typed;
            features.push(Feature::used("owner_tracepoints", "typed tracepoints"));
        }
        (Err(typed), Some(Ok(()))) => {
            plan.owners = OwnerTracepoints::Raw;
            features.push(Feature::used(
                "owner_tracepoints",
                format!("raw tracepoints; typed ones: {}", typed.why),
            ));
            // Raw tracepoints cannot reach socket storage: counting falls back below.
        }
        (Err(typed), raw) => {
            let failure = match raw {
                Some(Err(raw)) => raw,
                _ => typed.clone(),
            };
            let failure = if has_tracepoints || no_socket_tracepoints {
                failure
            } else {
                ProbeFailure {
                    state: FeatureState::Absent,
                    why: "the kernel has no sock_send_length/sock_recv_length tracepoints (Linux 6.3+)".into(),
                }
            };
            // What older kernels allow: the accept syscalls name a server's sockets.
            probes::ensure_tracefs();
            let accept = if without.has("owner_tracepoints") || without.has("accept_tracepoints") {
                Err(Without::failure("accept_tracepoints"))
            } else {
                probes::run(
                    Probe::AcceptTracepoints,
                    configure(Plan {
                        owners: OwnerTracepoints::Accept,
                        ..plan
                    }),
                )
            };
            match accept {
                Ok(()) => {
                    plan.owners = OwnerTracepoints::Accept;
                    features.push(Feature::degraded(
                        "owner_tracepoints",
                        FeatureState::Used,
                        format!(
                            "accept(2) tracepoints only; socket tracepoints: {}",
                            failure.why
                        ),
                        LOSES_INHERITED,
                    ));
                }
                Err(accept) => features.push(Feature::degraded(
                    "owner_tracepoints",
                    failure.state,
                    format!("{}; accept(2) tracepoints: {}", failure.why, accept.why),
                    LOSES_ADOPTION,
                )),
            }
        }
    }
    // Counts in sockets' own storage: needs the typed tracepoints (which keep the
    // storage's owner current) and the storage iterator (which takes the counts).
    let storage_plan = Plan {
        socket_counts: true,
        ..plan
    };
    let socket_counts = if without.has("socket_counts") {
        Err(Without::failure("socket_counts"))
    } else if recording.addresses {
        Err(ProbeFailure {
            state: FeatureState::Absent,
            why: "not used when both ends of each packet are recorded ([peers], [geoip])".into(),
        })
    } else if plan.owners != OwnerTracepoints::Typed {
        Err(ProbeFailure {
            state: FeatureState::Absent,
            why: "needs the typed owner tracepoints".into(),
        })
    } else {
        probes::run(Probe::StorageIterator, configure(storage_plan))
    };
    match socket_counts {
        Ok(()) => {
            plan.socket_counts = true;
            features.push(Feature::used("socket_counts", "socket storage iterator"));
        }
        Err(failure) => features.push(Feature::degraded(
            "socket_counts",
            failure.state,
            failure.why,
            LOSES_SOCKET_COUNTS,
        )),
    }
    // A kfunc (6.2+), resolved by libbpf from BTF; the real load is the test.
    let kfunc = probes::kernel_btf_has(&[(c"bpf_cast_to_kern_ctx", libbpf_sys::BTF_KIND_FUNC)]);
    if without.has("device_netns") {
        let failure = Without::failure("device_netns");
        features.push(Feature::degraded(
            "device_netns",
            failure.state,
            failure.why,
            LOSES_DEVICE_NETNS,
        ));
    } else if kfunc {
        plan.device_netns = true;
        features.push(Feature::used("device_netns", "bpf_cast_to_kern_ctx"));
    } else {
        features.push(Feature::degraded(
            "device_netns",
            FeatureState::Absent,
            "the kernel has no bpf_cast_to_kern_ctx kfunc (Linux 6.2+)",
            LOSES_DEVICE_NETNS,
        ));
    }
    let paths = if without.has("path_tracepoints") {
        Err(Without::failure("path_tracepoints"))
    } else {
        probes::run(Probe::PathTracepoints, configure(plan))
    };
    match paths {
        Ok(()) => plan.path_tracepoints = true,
        Err(failure) => features.push(Feature::degraded(
            "path_tracepoints",
            failure.state,
            failure.why,
            LOSES_PATHS,
        )),
    }
    let health = if without.has("tcp_health") {
        Err(Without::failure("tcp_health"))
    } else {
        probes::ensure_tracefs();
        typed_else_classic(
            |kind| probes::run(Probe::TcpHealth(kind), configure(plan)),
            without,
        )
    };
    plan.tcp_health = note_probe(
        features,
        "tcp_health",
        health,
        |kind| {
            format!(
                "{} tcp_retransmit_skb and inet_sock_set_state tracepoints",
                kind.describe()
            )
        },
        LOSES_TCP_HEALTH,
    );
    let drops = match reasons {
        _ if without.has("drops") => Err(Without::failure("drops")),
        None => Err(ProbeFailure {
            state: FeatureState::Absent,
            why: "the kernel does not say why it drops packets (skb_drop_reason, Linux 5.17+)"
                .to_string(),
        }),
        Some(reasons) => typed_else_classic(
            |kind| {
                probes::run(
                    Probe::Drops(kind),
                    configure(Plan {
                        drops: Some((reasons.first, kind)),
                        ..plan
                    }),
                )
            },
            without,
        )
        .map(|kind| (reasons.first, kind)),
    };
    plan.drops = note_probe(
        features,
        "drops",
        drops,
        |(_, kind)| format!("{} kfree_skb tracepoint with drop reasons", kind.describe()),
        LOSES_DROPS,
    );
    // Last: it is probed with the counting programs as every other choice left them.
    let capture = if without.has("packet_capture") {
        Err(Without::failure("packet_capture"))
    } else {
        probes::run(
            Probe::PacketCapture,
            configure(Plan {
                packet_capture: true,
                ..plan
            }),
        )
    };
    plan.packet_capture = note_probe(
        features,
        "packet_capture",
        capture,
        |()| "perf buffer from the counting programs".to_string(),
        LOSES_CAPTURE,
    )
    .is_some();
    plan
}

/// The typed program where the kernel allows it, else the classic one (also when
/// `typed_tracepoints` is switched off); the classic one's failure is the one told.
fn typed_else_classic(
    probe: impl Fn(TracepointKind) -> Result<(), ProbeFailure>,
    without: &Without,
) -> Result<TracepointKind, ProbeFailure> {
    if !without.has("typed_tracepoints") && probe(TracepointKind::Typed).is_ok() {
        return Ok(TracepointKind::Typed);
    }
    probe(TracepointKind::Classic).map(|()| TracepointKind::Classic)
}

/// Notes how an optional part's probe went: used (and how), or why not and what that
/// loses. Returns what the probe found where it went well.
fn note_probe<T>(
    features: &mut Vec<Feature>,
    name: &str,
    outcome: Result<T, ProbeFailure>,
    how: impl FnOnce(&T) -> String,
    loses: &str,
) -> Option<T> {
    match outcome {
        Ok(found) => {
            features.push(Feature::used(name, how(&found)));
            Some(found)
        }
        Err(failure) => {
            features.push(Feature::degraded(name, failure.state, failure.why, loses));
            None
        }
    }
}

fn load_plan(
    recording: Recording,
    plan: Plan,
    cgroup_root: &Path,
    reasons: Option<&DropReasons>,
) -> Result<Loaded, Unsupported> {
    // The skeleton borrows its object storage for its whole life, which is the
    // engine's: one allocation per engine, given up when the process ends.
    let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
        Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = NetgraphSkelBuilder::default()
        .open(storage)
        .map_err(|e| Unsupported::load(&e))?;
    configure(&mut open, recording, plan);
    let skel = open.load().map_err(|e| Unsupported::load(&e))?;
    // Before anything counts into sockets' storage: nothing would take it out.
    let socket_counts = if plan.socket_counts {
        let link = skel
            .progs
            .take_socket_counts
            .attach_iter(skel.maps.socket_states.as_fd())
            .map_err(|e| Unsupported::attach(&e))?;
        Some(SocketCounts::new(link))
    } else {
        None
    };
    let mut links = attach_to_cgroup(&skel, cgroup_root, plan.socket_counts)?;
    let mut features = Vec::new();
    let follows_use = match plan.owners {
        OwnerTracepoints::Off => false,
        OwnerTracepoints::Typed => attach_owner_tracepoints(
            [&skel.progs.owner_on_send, &skel.progs.owner_on_recv],
            &mut links,
        ),
        OwnerTracepoints::Raw => attach_owner_tracepoints(
            [&skel.progs.owner_on_send_raw, &skel.progs.owner_on_recv_raw],
            &mut links,
        ),
        OwnerTracepoints::Accept => {
            attach_owner_tracepoints(
                [
                    &skel.progs.owner_on_accept4_exit,
                    &skel.progs.owner_on_accept_exit,
                ],
                &mut links,
            );
            false
        }
    };
    let mut tcp_health = false;
    if let Some(kind) = plan.tcp_health {
        let (retransmit, state) = match kind {
            TracepointKind::Typed => (
                &skel.progs.health_on_retransmit_typed,
                &skel.progs.health_on_state_typed,
            ),
            TracepointKind::Classic => (
                &skel.progs.health_on_retransmit,
                &skel.progs.health_on_state,
            ),
        };
        // Probed with its attachment: a failure now is a surprise worth a line.
        let attached = retransmit
            .attach()
            .and_then(|retransmits| Ok([retransmits, state.attach()?]));
        match attached {
            Ok(health_links) => {
                links.extend(health_links);
                tcp_health = true;
            }
            Err(error) => features.push(Feature::degraded(
                "tcp_health",
                FeatureState::Refused,
                format!("cannot attach ({error})"),
                LOSES_TCP_HEALTH,
            )),
        }
    }
    let mut drops = None;
    if let Some((_, kind)) = plan.drops {
        let program = match kind {
            TracepointKind::Typed => &skel.progs.drops_on_free_typed,
            TracepointKind::Classic => &skel.progs.drops_on_free,
        };
        match program.attach() {
            Ok(link) => {
                links.push(link);
                drops = reasons.cloned();
            }
            Err(error) => features.push(Feature::degraded(
                "drops",
                FeatureState::Refused,
                format!("cannot attach ({error})"),
                LOSES_DROPS,
            )),
        }
    }
    if plan.path_tracepoints {
        let exe = attach_raw(&skel.progs.record_exe, "sched_process_exec", &mut links);
        let cgroup = attach_raw(&skel.progs.record_cgroup_path, "cgroup_mkdir", &mut links);
        features.push(match (exe, cgroup) {
            (Ok(()), Ok(())) => Feature::used("path_tracepoints", "exec and cgroup_mkdir"),
            (Err(error), _) | (_, Err(error)) => Feature::degraded(
                "path_tracepoints",
                FeatureState::Refused,
                format!("cannot attach ({error})"),
                LOSES_PATHS,
            ),
        });
    }
    Ok(Loaded {
        skel,
        links,
        follows_use,
        socket_counts,
        features,
        without: Without::default(),
        tcp_health,
        drops,
        packet_capture: plan.packet_capture,
    })
}

/// Sets up an opened object for `plan`: which programs load, the load-time constants,
/// and map sizes. Probes set up theirs the same way.
fn configure(open: &mut OpenNetgraphSkel<'_>, recording: Recording, plan: Plan) {
    let progs = &mut open.progs;
    let typed = plan.owners == OwnerTracepoints::Typed;
    let raw = plan.owners == OwnerTracepoints::Raw;
    progs.owner_on_send.set_autoload(typed);
    progs.owner_on_recv.set_autoload(typed);
    progs.owner_on_send_raw.set_autoload(raw);
    progs.owner_on_recv_raw.set_autoload(raw);
    let accept = plan.owners == OwnerTracepoints::Accept;
    progs.owner_on_accept4_exit.set_autoload(accept);
    progs.owner_on_accept_exit.set_autoload(accept);
    progs.take_socket_counts.set_autoload(plan.socket_counts);
    // One variant of each counting program: the plain ones load on every kernel.
    progs.count_egress.set_autoload(!plan.socket_counts);
    progs.count_ingress.set_autoload(!plan.socket_counts);
    progs.owner_on_release.set_autoload(!plan.socket_counts);
    progs
        .count_egress_in_storage
        .set_autoload(plan.socket_counts);
    progs
        .count_ingress_in_storage
        .set_autoload(plan.socket_counts);
    progs
        .owner_on_release_in_storage
        .set_autoload(plan.socket_counts);
    progs.record_exe.set_autoload(plan.path_tracepoints);
    progs.record_cgroup_path.set_autoload(plan.path_tracepoints);
    let health = |kind| plan.tcp_health == Some(kind);
    progs
        .health_on_retransmit_typed
        .set_autoload(health(TracepointKind::Typed));
    progs
        .health_on_state_typed
        .set_autoload(health(TracepointKind::Typed));
    progs
        .health_on_retransmit
        .set_autoload(health(TracepointKind::Classic));
    progs
        .health_on_state
        .set_autoload(health(TracepointKind::Classic));
    let drops = |kind| plan.drops.is_some_and(|(_, k)| k == kind);
    progs
        .drops_on_free_typed
        .set_autoload(drops(TracepointKind::Typed));
    progs
        .drops_on_free
        .set_autoload(drops(TracepointKind::Classic));
    // tcx needs the attach types; classic TC, where tcx is missing, ignores them.
    progs
        .interface_ingress
        .set_attach_type(libbpf_rs::ProgramAttachType::TcxIngress);
    progs
        .interface_egress
        .set_attach_type(libbpf_rs::ProgramAttachType::TcxEgress);
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.record_addresses = u8::from(recording.addresses);
        rodata.record_dns_answers = u8::from(recording.addresses && recording.dns_answers);
        rodata.record_tls_hellos = u8::from(recording.addresses && recording.tls_hellos);
        rodata.count_in_storage = u8::from(plan.socket_counts);
        rodata.use_kern_ctx = u8::from(plan.device_netns);
        rodata.match_accepted = u8::from(plan.owners == OwnerTracepoints::Accept);
        rodata.count_tcp_health = u8::from(plan.tcp_health.is_some());
        rodata.first_drop_reason = plan.drops.map_or(0, |(first, _)| first);
        rodata.own_tgid = std::process::id();
        rodata.can_capture = u8::from(plan.packet_capture);
    }
    // The counter maps not used get one entry, to take no memory.
    let unused = if recording.addresses {
        [&mut open.maps.traffic, &mut open.maps.interface_traffic]
    } else {
        [
            &mut open.maps.peer_traffic,
            &mut open.maps.interface_peer_traffic,
        ]
    };
    for map in unused {
        let _ = map.set_max_entries(1);
    }
    if !(recording.addresses && (recording.dns_answers || recording.tls_hellos)) {
        let _ = open.maps.payload_samples.set_max_entries(1);
    }
    if plan.tcp_health.is_none() {
        let _ = open.maps.tcp_health.set_max_entries(1);
    }
    if plan.drops.is_none() {
        let _ = open.maps.drops.set_max_entries(1);
    }
}

/// Counting and socket creation/release, for every socket of the host.
fn attach_to_cgroup(
    skel: &NetgraphSkel<'static>,
    root: &Path,
    in_storage: bool,
) -> Result<Vec<Link>, Unsupported> {
    let cgroup = std::fs::File::open(root).map_err(|e| Unsupported::Cgroup {
        path: root.to_path_buf(),
        error: e.to_string(),
    })?;
    let progs = &skel.progs;
    let [release, egress, ingress] = if in_storage {
        [
            &progs.owner_on_release_in_storage,
            &progs.count_egress_in_storage,
            &progs.count_ingress_in_storage,
        ]
    } else {
        [
            &progs.owner_on_release,
            &progs.count_egress,
            &progs.count_ingress,
        ]
    };
    [&progs.owner_on_create, release, egress, ingress]
        .into_iter()
        .map(|program| {
            program
                .attach_cgroup(cgroup.as_raw_fd())
                .map_err(|e| Unsupported::attach(&e))
        })
        .collect()
}

/// Adoption of sockets by the processes that send and receive on them (probed: the
/// attachment was tried before, so a failure here is a surprise worth a line).
fn attach_owner_tracepoints(
    programs: [&libbpf_rs::ProgramMut<'static>; 2],
    links: &mut Vec<Link>,
) -> bool {
    for program in programs {
        match program.attach() {
            Ok(link) => links.push(link),
            Err(error) => {
                tracing::warn!(%error, "cannot follow sockets as they are used: {LOSES_ADOPTION}");
                return false;
            }
        }
    }
    true
}

fn attach_raw(
    program: &libbpf_rs::ProgramMut<'static>,
    tracepoint: &str,
    links: &mut Vec<Link>,
) -> Result<(), libbpf_rs::Error> {
    links.push(program.attach_raw_tracepoint(tracepoint)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_are_a_comma_separated_list() {
        let without = Without::parse(" tcx, socket_counts ,,");
        assert!(without.has("tcx") && without.has("socket_counts"));
        assert!(!without.has("device_netns") && !without.has(""));
        assert!(!Without::parse("").has("tcx"));
        let failure = Without::failure("tcx");
        assert_eq!(failure.state, FeatureState::Absent);
        assert_eq!(failure.why, "switched off by NETGRAPH_EBPF_WITHOUT=tcx");
    }
}

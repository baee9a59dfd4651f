//! Opening, configuring, loading and attaching the eBPF programs.

use super::interface_hooks;
use super::skeleton::{NetgraphSkel, NetgraphSkelBuilder, OpenNetgraphSkel};
use super::socket_counts::SocketCounts;
use super::support::{check_support, Unsupported};
use crate::engine::Recording;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::Link;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

/// The programs, loaded and attached.
pub struct Loaded {
    pub skel: NetgraphSkel<'static>,
    /// Dropping a link detaches its program.
    pub links: Vec<Link>,
    /// Whether the per-interface hooks were loaded (tcx, Linux 6.6+).
    pub tcx: bool,
    /// Whether sockets are adopted by the processes that use them (Linux 6.3+).
    pub follows_use: bool,
    /// The counts kept in owned sockets' own storage, where the kernel allows it.
    pub socket_counts: Option<SocketCounts>,
}

/// `recording.addresses` counts by both ends of each packet too, at the cost of a
/// larger key per packet.
pub fn load(recording: Recording) -> Result<Loaded, Unsupported> {
    let cgroup_root = check_support()?;
    // Per-interface hooks need tcx (Linux 6.6); without it they are not loaded, so
    // older kernels still count every socket.
    let tcx = interface_hooks::kernel_has_tcx();
    if !tcx {
        tracing::info!("Linux before 6.6 (no tcx): traffic without a local socket (forwarded, ARP) is not counted per interface");
    }
    let features = KernelFeatures::read();
    let skel = open(recording, tcx, features)?
        .load()
        .map_err(|e| Unsupported::load(&e))?;
    // Before anything counts into sockets' storage: nothing would take it out.
    let socket_counts = if features.counts_in_storage() {
        let link = skel
            .progs
            .take_socket_counts
            .attach_iter(skel.maps.socket_states.as_fd())
            .map_err(|e| Unsupported::attach(&e))?;
        Some(SocketCounts::new(link))
    } else {
        None
    };
    let mut links = attach_to_cgroup(&skel, &cgroup_root)?;
    let follows_use = features.socket_tracepoints && attach_to_tracepoints(&skel, &mut links);
    attach_cgroup_paths(&skel, &mut links);
    attach_exe_paths(&skel, &mut links);
    Ok(Loaded {
        skel,
        links,
        tcx,
        follows_use,
        socket_counts,
    })
}

fn open(
    recording: Recording,
    tcx: bool,
    features: KernelFeatures,
) -> Result<OpenNetgraphSkel<'static>, Unsupported> {
    // The skeleton borrows its object storage for its whole life, which is the
    // engine's: one allocation per engine, given up when the process ends.
    let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
        Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = NetgraphSkelBuilder::default()
        .open(storage)
        .map_err(|e| Unsupported::load(&e))?;
    if !features.socket_tracepoints {
        // Typed tracepoint programs the kernel does not know would fail the whole load.
        open.progs.owner_on_send.set_autoload(false);
        open.progs.owner_on_recv.set_autoload(false);
    }
    if !features.counts_in_storage() {
        open.progs.take_socket_counts.set_autoload(false);
    }
    for (program, attach_type) in [
        (
            &mut open.progs.interface_ingress,
            libbpf_rs::ProgramAttachType::TcxIngress,
        ),
        (
            &mut open.progs.interface_egress,
            libbpf_rs::ProgramAttachType::TcxEgress,
        ),
    ] {
        if tcx {
            program.set_attach_type(attach_type);
        } else {
            program.set_autoload(false);
        }
    }
    if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
        rodata.record_addresses = u8::from(recording.addresses);
        rodata.record_dns_answers = u8::from(recording.addresses && recording.dns_answers);
        rodata.record_tls_hellos = u8::from(recording.addresses && recording.tls_hellos);
        rodata.count_in_storage = u8::from(features.counts_in_storage());
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
    Ok(open)
}

/// Counting and socket creation/release, for every socket of the host.
fn attach_to_cgroup(skel: &NetgraphSkel<'static>, root: &Path) -> Result<Vec<Link>, Unsupported> {
    let cgroup = std::fs::File::open(root).map_err(|e| Unsupported::Cgroup {
        path: root.to_path_buf(),
        error: e.to_string(),
    })?;
    let progs = &skel.progs;
    [
        &progs.owner_on_create,
        &progs.owner_on_release,
        &progs.count_egress,
        &progs.count_ingress,
    ]
    .into_iter()
    .map(|program| {
        program
            .attach_cgroup(cgroup.as_raw_fd())
            .map_err(|e| Unsupported::attach(&e))
    })
    .collect()
}

/// Adoption of sockets by the processes that send and receive on them, where the
/// kernel has the tracepoints (Linux 6.3+; `open` left them out where it has not).
fn attach_to_tracepoints(skel: &NetgraphSkel<'static>, links: &mut Vec<Link>) -> bool {
    let progs = &skel.progs;
    let mut follows_use = true;
    for program in [&progs.owner_on_send, &progs.owner_on_recv] {
        match program.attach() {
            Ok(link) => links.push(link),
            Err(error) => {
                follows_use = false;
                tracing::info!(%error, "cannot follow sockets as they are used: accepted and inherited sockets are named after their creator or from /proc");
            }
        }
    }
    follows_use
}

/// What the kernel's BTF says it has, read once before loading (parsing it takes
/// memory for a moment).
#[derive(Clone, Copy, Default)]
struct KernelFeatures {
    /// The sock_send_length/sock_recv_length tracepoints, which the typed (tp_btf)
    /// programs need to load at all (Linux 6.3+).
    socket_tracepoints: bool,
    /// The socket storage iterator (Linux 5.10+), which takes the counts kept in
    /// sockets' own storage.
    storage_iterator: bool,
}

impl KernelFeatures {
    fn read() -> KernelFeatures {
        let features = kernel_btf_features().unwrap_or_default();
        if !features.socket_tracepoints {
            tracing::info!("kernel lacks the sock_send_length/sock_recv_length tracepoints (Linux 6.3+): accepted and inherited sockets are named after their creator or from /proc");
        }
        features
    }

    /// Owned sockets are counted in their own storage (no hash map update per packet)
    /// where their owners are kept current by the tracepoints and the iterator can take
    /// the counts.
    fn counts_in_storage(self) -> bool {
        self.socket_tracepoints && self.storage_iterator
    }
}

fn kernel_btf_features() -> Option<KernelFeatures> {
    // SAFETY: libbpf parses the kernel's BTF and returns an owned handle or NULL; the
    // names are NUL-terminated; the handle is freed once.
    unsafe {
        let btf = libbpf_sys::btf__load_vmlinux_btf();
        if btf.is_null() {
            return None;
        }
        let has = |name: &std::ffi::CStr, kind| {
            libbpf_sys::btf__find_by_name_kind(btf, name.as_ptr(), kind) >= 0
        };
        let features = KernelFeatures {
            socket_tracepoints: [c"btf_trace_sock_send_length", c"btf_trace_sock_recv_length"]
                .iter()
                .all(|name| has(name, libbpf_sys::BTF_KIND_TYPEDEF)),
            storage_iterator: has(c"bpf_iter_bpf_sk_storage_map", libbpf_sys::BTF_KIND_FUNC),
        };
        libbpf_sys::btf__free(btf);
        Some(features)
    }
}

/// The program each process executes (so that short-lived processes keep their exe).
fn attach_exe_paths(skel: &NetgraphSkel<'static>, links: &mut Vec<Link>) {
    match skel
        .progs
        .record_exe
        .attach_raw_tracepoint("sched_process_exec")
    {
        Ok(link) => links.push(link),
        Err(error) => {
            tracing::info!(%error, "cannot follow programs as they start: a process that ends within an interval has no exe")
        }
    }
}

/// Paths of cgroups as they are made (so that short-lived containers are named);
/// without it, paths are found by walking the hierarchy while the cgroup exists.
fn attach_cgroup_paths(skel: &NetgraphSkel<'static>, links: &mut Vec<Link>) {
    match skel
        .progs
        .record_cgroup_path
        .attach_raw_tracepoint("cgroup_mkdir")
    {
        Ok(link) => links.push(link),
        Err(error) => {
            tracing::info!(%error, "cannot follow cgroups as they are made: a container that lives under an interval may stay unnamed")
        }
    }
}

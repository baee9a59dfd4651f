//! Which optional programs this kernel accepts, decided by loading each on its own
//! (with every other program left out and the maps at a token size) before the real
//! load: a kernel's BTF lists what it has, not what its security policy allows, and one
//! refused program would fail the whole load.

use super::loading::TracepointKind;
use super::skeleton::{NetgraphSkelBuilder, OpenNetgraphSkel};
use crate::engine::features::FeatureState;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapType;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

/// Entries a probe's maps get: enough to create, nothing to hold.
const PROBE_MAP_ENTRIES: u32 = 64;

/// The programs one probe loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// BTF-typed owner tracepoints (tp_btf/sock_send_length, sock_recv_length).
    TypedTracepoints,
    /// The same tracepoints as raw tracepoints.
    RawTracepoints,
    /// The accept syscalls' exit (classic tracepoints): what older kernels have.
    AcceptTracepoints,
    /// The socket storage iterator that takes counts kept in sockets' storage.
    StorageIterator,
    /// Raw tracepoints on exec and cgroup creation.
    PathTracepoints,
    /// Tracepoints on TCP retransmissions and state changes (TCP health).
    TcpHealth(TracepointKind),
    /// The tracepoint on dropped packets (skb:kfree_skb with its reason).
    Drops(TracepointKind),
    /// The counting programs with packet capture (a perf buffer from cgroup_skb).
    PacketCapture,
}

impl Probe {
    fn programs(self) -> &'static [&'static str] {
        match self {
            Probe::TypedTracepoints => &["owner_on_send", "owner_on_recv"],
            Probe::RawTracepoints => &["owner_on_send_raw", "owner_on_recv_raw"],
            Probe::AcceptTracepoints => &["owner_on_accept4_exit", "owner_on_accept_exit"],
            Probe::StorageIterator => &["take_socket_counts"],
            Probe::PathTracepoints => &["record_exe", "record_cgroup_path"],
            Probe::TcpHealth(TracepointKind::Typed) => {
                &["health_on_retransmit_typed", "health_on_state_typed"]
            }
            Probe::TcpHealth(TracepointKind::Classic) => {
                &["health_on_retransmit", "health_on_state"]
            }
            Probe::Drops(TracepointKind::Typed) => &["drops_on_free_typed"],
            Probe::Drops(TracepointKind::Classic) => &["drops_on_free"],
            Probe::PacketCapture => &[
                "count_egress",
                "count_ingress",
                "count_egress_in_storage",
                "count_ingress_in_storage",
            ],
        }
    }
}

/// Why a probe failed: refused (the kernel has it, its policy said no) or absent.
#[derive(Clone, Debug)]
pub struct ProbeFailure {
    pub state: FeatureState,
    pub why: String,
}

impl ProbeFailure {
    pub fn from_error(error: &libbpf_rs::Error) -> ProbeFailure {
        let refused = matches!(error.kind(), libbpf_rs::ErrorKind::PermissionDenied);
        ProbeFailure {
            state: if refused {
                FeatureState::Refused
            } else {
                FeatureState::Absent
            },
            why: if refused {
                format!("refused by the kernel's security policy: {error}")
            } else {
                format!("the kernel rejected it: {error}")
            },
        }
    }
}

/// Loads (and where it matters attaches) one probe's programs, `configure` setting up
/// the object as the real load will.
pub fn run(
    probe: Probe,
    configure: impl FnOnce(&mut OpenNetgraphSkel<'_>),
) -> Result<(), ProbeFailure> {
    let mut storage = MaybeUninit::uninit();
    let mut open = NetgraphSkelBuilder::default()
        .open(&mut storage)
        .map_err(|e| ProbeFailure::from_error(&e))?;
    configure(&mut open);
    let wanted = probe.programs();
    for mut program in open.open_object_mut().progs_mut() {
        let name = program.name().to_string_lossy().into_owned();
        // Of the counting programs, only the variant the plan uses.
        let counting_variant = probe != Probe::PacketCapture || program.autoload();
        program.set_autoload(wanted.contains(&name.as_str()) && counting_variant);
    }
    for mut map in open.open_object_mut().maps_mut() {
        let shrinkable = !matches!(map.map_type(), MapType::SkStorage | MapType::Array)
            && map.max_entries() > PROBE_MAP_ENTRIES;
        if shrinkable {
            let _ = map.set_max_entries(PROBE_MAP_ENTRIES);
        }
    }
    let skel = open.load().map_err(|e| ProbeFailure::from_error(&e))?;
    // Loading is not all: the kernel may still refuse the attachment.
    let attached = match probe {
        Probe::StorageIterator => skel
            .progs
            .take_socket_counts
            .attach_iter(skel.maps.socket_states.as_fd())
            .map(drop),
        Probe::TypedTracepoints => skel
            .progs
            .owner_on_send
            .attach()
            .and_then(|_| skel.progs.owner_on_recv.attach())
            .map(drop),
        Probe::RawTracepoints => skel
            .progs
            .owner_on_send_raw
            .attach()
            .and_then(|_| skel.progs.owner_on_recv_raw.attach())
            .map(drop),
        Probe::AcceptTracepoints => skel
            .progs
            .owner_on_accept4_exit
            .attach()
            .and_then(|_| skel.progs.owner_on_accept_exit.attach())
            .map(drop),
        // Each is attached on its own later, and may fail alone.
        Probe::PathTracepoints => Ok(()),
        Probe::TcpHealth(TracepointKind::Typed) => skel
            .progs
            .health_on_retransmit_typed
            .attach()
            .and_then(|_| skel.progs.health_on_state_typed.attach())
            .map(drop),
        Probe::TcpHealth(TracepointKind::Classic) => skel
            .progs
            .health_on_retransmit
            .attach()
            .and_then(|_| skel.progs.health_on_state.attach())
            .map(drop),
        Probe::Drops(TracepointKind::Typed) => skel.progs.drops_on_free_typed.attach().map(drop),
        Probe::Drops(TracepointKind::Classic) => skel.progs.drops_on_free.attach().map(drop),
        // Attached at the cgroup root with the core, which needs it anyway.
        Probe::PacketCapture => Ok(()),
    };
    attached.map_err(|e| ProbeFailure::from_error(&e))
}

/// Classic tracepoints are found through tracefs, which not every host mounts (systemd
/// does): mounted here if missing, where allowed.
pub fn ensure_tracefs() {
    let mounted = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|path| std::path::Path::new(path).exists());
    if mounted {
        return;
    }
    let mount = nix::mount::mount(
        Some("tracefs"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    if let Err(error) = mount {
        tracing::debug!(%error, "cannot mount tracefs on /sys/kernel/tracing");
    }
}

/// Whether the kernel's BTF names a type: for wording why a probe failed (a kernel
/// too old for it) and for kfuncs, which libbpf resolves from BTF.
pub fn kernel_btf_has(names: &[(&std::ffi::CStr, u32)]) -> bool {
    // SAFETY: libbpf parses the kernel's BTF and returns an owned handle or NULL; the
    // names are NUL-terminated; the handle is freed once.
    unsafe {
        let btf = libbpf_sys::btf__load_vmlinux_btf();
        if btf.is_null() {
            return false;
        }
        let found = names
            .iter()
            .all(|(name, kind)| libbpf_sys::btf__find_by_name_kind(btf, name.as_ptr(), *kind) >= 0);
        libbpf_sys::btf__free(btf);
        found
    }
}

//! Whether this kernel and these privileges allow the eBPF engine, and why not.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error(
        "the kernel has no BTF (/sys/kernel/btf/vmlinux missing; needs CONFIG_DEBUG_INFO_BTF)"
    )]
    NoBtf,
    #[error("no cgroup v2 hierarchy is mounted (none in /proc/mounts); boot with systemd.unified_cgroup_hierarchy=1 or mount one")]
    NoCgroup2,
    #[error("cannot open the cgroup v2 root {path}: {error}")]
    Cgroup { path: PathBuf, error: String },
    #[error("loading eBPF programs was refused ({0}); run as root, or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")]
    NotPermitted(String),
    #[error("loading eBPF programs was refused to root ({0}): the kernel's security policy (lockdown, a BPF LSM or kernel.unprivileged_bpf_disabled in a container) forbids them; the capture engine counts instead")]
    RefusedByPolicy(String),
    #[error("the kernel rejected netgraph's eBPF programs: {0}")]
    Rejected(String),
    #[error("cannot attach netgraph's eBPF programs: {0}; run as root, or with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")]
    Attach(String),
}

impl Unsupported {
    pub fn load(error: &libbpf_rs::Error) -> Unsupported {
        let text = format!("{error:#}");
        if error.kind() == libbpf_rs::ErrorKind::PermissionDenied {
            // Root was refused too: no privilege would help.
            if nix::unistd::geteuid().is_root() {
                Unsupported::RefusedByPolicy(text)
            } else {
                Unsupported::NotPermitted(text)
            }
        } else {
            Unsupported::Rejected(text)
        }
    }

    pub fn attach(error: &libbpf_rs::Error) -> Unsupported {
        Unsupported::Attach(format!("{error:#}"))
    }
}

/// Checks what can be checked before loading; returns the cgroup v2 root to attach to.
pub fn check_support() -> Result<PathBuf, Unsupported> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(Unsupported::NoBtf);
    }
    crate::cgroup::cgroup2_root().ok_or(Unsupported::NoCgroup2)
}

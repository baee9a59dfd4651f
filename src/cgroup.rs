//! The host's cgroup v2 hierarchy: where it is mounted, and the path of a cgroup id
//! (a cgroup's id is the inode number of its directory).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where netgraph mounts cgroup v2 when none is visible (as Cilium does).
const PRIVATE_MOUNT: &str = "/run/netgraph/cgroup2";

/// Where cgroup v2 is mounted: /sys/fs/cgroup on most systems, /sys/fs/cgroup/unified
/// on hybrid ones. Where none is visible (under `ip netns exec`, which gives a fresh
/// /sys, or in a container), one is mounted at /run/netgraph/cgroup2.
pub fn cgroup2_root() -> Option<PathBuf> {
    mounted_cgroup2().or_else(mount_cgroup2)
}

fn mounted_cgroup2() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(path))
    })
}

fn mount_cgroup2() -> Option<PathBuf> {
    let target = PathBuf::from(PRIVATE_MOUNT);
    if let Err(error) = std::fs::create_dir_all(&target) {
        tracing::debug!(%error, "cannot make {PRIVATE_MOUNT}");
        return None;
    }
    let (source, kind) = (c"none", c"cgroup2");
    let path = std::ffi::CString::new(PRIVATE_MOUNT).ok()?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let mounted = unsafe {
        libc::mount(
            source.as_ptr(),
            path.as_ptr(),
            kind.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if mounted != 0 {
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "cannot mount cgroup v2 at {PRIVATE_MOUNT}");
        return None;
    }
    tracing::info!("no cgroup v2 hierarchy was visible: mounted one at {PRIVATE_MOUNT}");
    warn_if_in_own_cgroup_namespace();
    Some(target)
}

/// In a cgroup namespace of its own, the hierarchy netgraph sees is its container's,
/// not the host's: only the container's sockets would be counted.
fn warn_if_in_own_cgroup_namespace() {
    let own = std::fs::read_link("/proc/self/ns/cgroup");
    let host = std::fs::read_link("/proc/1/ns/cgroup");
    if let (Ok(own), Ok(host)) = (own, host) {
        if own != host {
            tracing::warn!("netgraph runs in a cgroup namespace of its own and counts only its sockets; run it in the host's (podman/docker --cgroupns=host, with the host's PID namespace)");
        }
    }
}

/// cgroup id -> path such as `/system.slice/nginx.service`, rescanned when an id is new.
#[derive(Default)]
pub struct CgroupPaths {
    root: Option<PathBuf>,
    paths: HashMap<u64, String>,
    scanned_for: Option<u64>,
}

impl CgroupPaths {
    pub fn new() -> Self {
        CgroupPaths {
            root: cgroup2_root(),
            ..CgroupPaths::default()
        }
    }

    pub fn path(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        // One rescan per unknown id, so a vanished cgroup does not cost a walk each time.
        if self.scanned_for == Some(id) {
            return None;
        }
        self.scanned_for = Some(id);
        let root = self.root.clone()?;
        self.paths.clear();
        walk(&root, &root, &mut self.paths, 0);
        self.paths.get(&id).cloned()
    }
}

fn walk(root: &Path, dir: &Path, paths: &mut HashMap<u64, String>, depth: usize) {
    if depth > 32 {
        return;
    }
    let Ok(metadata) = std::fs::metadata(dir) else {
        return;
    };
    let relative = dir.strip_prefix(root).unwrap_or(dir);
    paths.insert(metadata.ino(), format!("/{}", relative.display()));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(root, &entry.path(), paths, depth + 1);
        }
    }
}

/// A process's cgroup path as its workload is read from: the cgroup v2 path, or the
/// path in systemd's own (v1, `name=systemd`) hierarchy where that one goes deeper below
/// it. On hybrid hosts, and in containers whose systemd runs on that layout, systemd
/// keeps its units there only: `/libpod-<id>` in v2 is `/libpod-<id>/system.slice/
/// web.service` for systemd.
pub fn with_systemd_units(v2: Option<String>, systemd: Option<&str>) -> Option<String> {
    match (v2, systemd) {
        (Some(v2), Some(systemd)) if extends(systemd, &v2) => Some(systemd.to_string()),
        (None, Some(systemd)) => Some(systemd.to_string()),
        (v2, _) => v2,
    }
}

/// Whether `deeper` is a path strictly below `path`.
fn extends(deeper: &str, path: &str) -> bool {
    let base = path.trim_end_matches('/');
    deeper.len() > base.len() + 1
        && deeper.starts_with(base)
        && deeper.as_bytes()[base.len()] == b'/'
}

/// The `name=systemd` path in a `/proc/PID/cgroup` text.
pub fn systemd_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        (controllers == "name=systemd").then_some(path)
    })
}

#[cfg(test)]
mod systemd_tests {
    use super::*;

    #[test]
    fn systemds_own_hierarchy_names_units_v2_does_not_hold() {
        let proc_cgroup = "9:name=systemd:/libpod_parent/libpod-81711a/system.slice/web.service\n\
                           1:cpu:/libpod_parent/libpod-81711a\n0::/libpod_parent/libpod-81711a\n";
        let systemd = systemd_path(proc_cgroup);
        assert_eq!(
            with_systemd_units(Some("/libpod_parent/libpod-81711a".into()), systemd).as_deref(),
            Some("/libpod_parent/libpod-81711a/system.slice/web.service")
        );
        // Unified hosts have no such line; a path elsewhere is not taken.
        assert_eq!(systemd_path("0::/system.slice/nginx.service\n"), None);
        let elsewhere = Some("/user.slice/user-1000.slice/session-2.scope");
        assert_eq!(
            with_systemd_units(Some("/system.slice/a.service".into()), elsewhere).as_deref(),
            Some("/system.slice/a.service")
        );
        assert_eq!(
            with_systemd_units(Some("/".into()), Some("/system.slice/cron.service")).as_deref(),
            Some("/system.slice/cron.service")
        );
        assert!(!extends("/libpod-81711ab", "/libpod-81711a"));
    }
}

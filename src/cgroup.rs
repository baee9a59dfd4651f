//! The host's cgroup v2 hierarchy: where it is mounted, and the path of a cgroup id
//! (a cgroup's id is the inode number of its directory).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where cgroup v2 is mounted: /sys/fs/cgroup on most systems, /sys/fs/cgroup/unified
/// on hybrid ones.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(path))
    })
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

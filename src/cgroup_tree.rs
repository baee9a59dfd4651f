//! The cgroup tree as limits and captures see it: every cgroup's path and id, read each interval
//! (bounded), so that a unit's or container's cgroups, created after netgraph started,
//! are limited (or captured) too.

use crate::workload::{ContainerDirectory, Workload};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Cgroups read at most: a host with more is a host to fix, and the walk stays cheap.
const MAX_CGROUPS: usize = 50_000;
/// Deepest nesting followed.
const MAX_DEPTH: usize = 16;

pub struct CgroupTree {
    /// Path below the root ("system.slice/backup.service") and id.
    cgroups: Vec<(String, u64)>,
}

impl CgroupTree {
    pub fn read(root: &Path) -> CgroupTree {
        let mut cgroups = Vec::new();
        let mut pending = vec![(root.to_path_buf(), String::new(), 0)];
        while let Some((dir, path, depth)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if cgroups.len() >= MAX_CGROUPS {
                    tracing::warn!(
                        "more than {MAX_CGROUPS} cgroups: limits on units and cgroups see only the first"
                    );
                    return CgroupTree { cgroups };
                }
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                if !metadata.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if path.is_empty() {
                    name
                } else {
                    format!("{path}/{name}")
                };
                cgroups.push((child.clone(), metadata.ino()));
                if depth + 1 < MAX_DEPTH {
                    pending.push((entry.path(), child, depth + 1));
                }
            }
        }
        CgroupTree { cgroups }
    }

    /// A unit's cgroups wherever it runs (system.slice, a user's manager), and all
    /// below them.
    pub fn named(&self, unit: &str) -> Vec<u64> {
        self.cgroups
            .iter()
            .filter(|(path, _)| path.split('/').any(|part| part == unit))
            .map(|(_, id)| *id)
            .collect()
    }

    /// The cgroups of containers whose workload `wanted` picks, and all below them.
    pub fn of_workloads(
        &self,
        containers: &ContainerDirectory,
        wanted: impl Fn(&Workload) -> bool,
    ) -> Vec<u64> {
        // A container's cgroups share its id: each container is judged once.
        let mut judged: HashMap<String, bool> = HashMap::new();
        let mut found = Vec::new();
        for (path, id) in &self.cgroups {
            let Some(container) = crate::workload::origin(path).container else {
                continue;
            };
            let picked = *judged.entry(container.id).or_insert_with(|| {
                containers
                    .workload_of(path)
                    .is_some_and(|workload| wanted(&workload))
            });
            if picked {
                found.push(*id);
            }
        }
        found
    }

    /// The cgroup at `path` below the root and all below it.
    pub fn below(&self, path: &str) -> Vec<u64> {
        self.cgroups
            .iter()
            .filter(|(candidate, _)| {
                candidate == path
                    || candidate
                        .strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .map(|(_, id)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_paths_take_their_subtrees() {
        let root = std::env::temp_dir().join(format!("netgraph-cgroups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in [
            "system.slice/backup.service/worker",
            "system.slice/backup.service.d",
            "user.slice/user-1000.slice/user@1000.service/app.slice/backup.service",
            "system.slice/other.service",
        ] {
            std::fs::create_dir_all(root.as_path().join(dir)).unwrap();
        }
        let tree = CgroupTree::read(root.as_path());
        let id = |path: &str| std::fs::metadata(root.as_path().join(path)).unwrap().ino();
        let mut unit = tree.named("backup.service");
        unit.sort();
        let mut expected = vec![
            id("system.slice/backup.service"),
            id("system.slice/backup.service/worker"),
            id("user.slice/user-1000.slice/user@1000.service/app.slice/backup.service"),
        ];
        expected.sort();
        assert_eq!(unit, expected);
        let mut below = tree.below("system.slice/backup.service");
        below.sort();
        let mut expected = vec![
            id("system.slice/backup.service"),
            id("system.slice/backup.service/worker"),
        ];
        expected.sort();
        assert_eq!(below, expected);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn containers_and_pods_take_their_cgroups() {
        use crate::workload::ContainerFacts;
        let root = std::env::temp_dir().join(format!("netgraph-containers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (web, db) = ("a".repeat(64), "b".repeat(64));
        for dir in [
            format!("machine.slice/libpod-{web}.scope/container"),
            format!("machine.slice/libpod-conmon-{web}.scope"),
            format!("kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/{db}"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let containers = ContainerDirectory::default();
        containers.learn(ContainerFacts {
            id: web.clone(),
            name: "web".into(),
            ..ContainerFacts::default()
        });
        containers.learn(ContainerFacts::new(
            db.clone(),
            "k8s_api",
            String::new(),
            [
                ("io.kubernetes.pod.name", "api-1"),
                ("io.kubernetes.pod.namespace", "shop"),
                ("io.kubernetes.container.name", "api"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ));
        let tree = CgroupTree::read(&root);
        let id = |path: &str| std::fs::metadata(root.join(path)).unwrap().ino();
        let mut by_name = tree.of_workloads(&containers, |w| w.is_container("web"));
        by_name.sort();
        let mut expected = vec![
            id(&format!("machine.slice/libpod-{web}.scope")),
            id(&format!("machine.slice/libpod-{web}.scope/container")),
        ];
        expected.sort();
        assert_eq!(by_name, expected, "the container's cgroups, not conmon's");
        let by_id = tree.of_workloads(&containers, |w| w.is_container(&web[..12]));
        assert_eq!(by_id.len(), 2);
        assert!(tree
            .of_workloads(&containers, |w| w.is_container("aaaa"))
            .is_empty());
        let pod_cgroup = id(&format!(
            "kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/{db}"
        ));
        assert_eq!(
            tree.of_workloads(&containers, |w| w.is_pod("shop/api-1")),
            vec![pod_cgroup]
        );
        assert_eq!(
            tree.of_workloads(&containers, |w| w.is_pod("api-1")),
            vec![pod_cgroup]
        );
        assert!(tree
            .of_workloads(&containers, |w| w.is_pod("other/api-1"))
            .is_empty());
        assert_eq!(
            tree.of_workloads(&containers, |w| w.is_container("api")),
            vec![pod_cgroup]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

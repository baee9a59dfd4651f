//! Workload identity: the systemd unit, container and Kubernetes pod behind a process,
//! from its cgroup path and the container runtimes' own metadata.
//!
//! A lookup never waits for a runtime: the cgroup path gives the unit and the
//! container's id at once; names, images and pods come from a thread that follows the
//! runtimes' event streams (so a container that lives a moment is named too) and asks
//! about containers it has not heard of. Answers are cached, bounded, and forgotten
//! when no traffic has used them for a while.

mod cgroup_path;
mod containerd;
mod engine_api;
mod runtimes;

pub use cgroup_path::{origin, CgroupOrigin, ContainerRef, Runtime};
pub use runtimes::RuntimeSockets;

use crate::locks::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Containers whose facts are kept at most.
const MAX_CONTAINERS: usize = 16_384;
/// Cgroup paths whose workload is kept at most.
const MAX_PATHS: usize = 16_384;
/// Intervals a cgroup path's workload stays cached after its last use.
const KEEP_UNUSED: u64 = 300;

/// What a runtime says of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerFacts {
    /// The full id.
    pub id: String,
    pub name: String,
    pub image: String,
    pub labels: HashMap<String, String>,
}

/// The labels netgraph reads; a runtime's others (any number, any size) are not kept.
const LABELS_READ: [&str; 3] = [
    "io.kubernetes.container.name",
    "io.kubernetes.pod.name",
    "io.kubernetes.pod.namespace",
];
/// Bytes kept of an id, name, image or label value: ids are 64 hex digits, Kubernetes
/// names at most 253 characters, image references a few hundred.
const ID_BYTES: usize = 128;
const NAME_BYTES: usize = 256;
const IMAGE_BYTES: usize = 512;

impl ContainerFacts {
    /// What a runtime said of a container, within bounds whatever it sent: only the
    /// labels netgraph reads, and every string cut to a sane length.
    pub fn new(
        id: String,
        name: &str,
        image: String,
        mut labels: HashMap<String, String>,
    ) -> ContainerFacts {
        ContainerFacts {
            id: cut(id, ID_BYTES),
            name: cut(name.to_string(), NAME_BYTES),
            image: cut(image, IMAGE_BYTES),
            labels: LABELS_READ
                .iter()
                .filter_map(|key| Some((key.to_string(), cut(labels.remove(*key)?, NAME_BYTES))))
                .collect(),
        }
    }
}

/// `text` cut to at most `bytes`, on a character boundary.
fn cut(mut text: String, bytes: usize) -> String {
    if text.len() > bytes {
        let mut end = bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Who a process works for, as far as is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    /// The innermost systemd unit.
    pub unit: Option<String>,
    /// The container's id, short (12 digits) as the runtimes' tools show it.
    pub container_id: Option<String>,
    /// The container's name (in a pod: the kubelet's container name).
    pub container: Option<String>,
    pub image: Option<String>,
    /// Kubernetes pod and namespace, from the kubelet's labels.
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

impl Workload {
    fn new(origin: &CgroupOrigin, facts: Option<&ContainerFacts>) -> Workload {
        let label = |key: &str| {
            facts
                .and_then(|f| f.labels.get(key))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
        Workload {
            unit: origin.unit.clone(),
            container_id: origin
                .container
                .as_ref()
                .map(|c| c.id.chars().take(12).collect()),
            container: label("io.kubernetes.container.name")
                .or_else(|| facts.and_then(|f| non_empty(&f.name))),
            image: facts.and_then(|f| non_empty(&f.image)),
            pod: label("io.kubernetes.pod.name"),
            namespace: label("io.kubernetes.pod.namespace"),
        }
    }

    /// How the container is shown where one word must do: its name, else its id.
    pub fn container_label(&self) -> Option<&str> {
        self.container.as_deref().or(self.container_id.as_deref())
    }
}

/// Facts the runtimes gave, shared with the thread that asks them.
#[derive(Default)]
pub struct KnownContainers {
    facts: HashMap<String, Arc<ContainerFacts>>,
    /// Oldest first, to bound `facts`.
    order: VecDeque<String>,
}

impl KnownContainers {
    pub fn insert(&mut self, facts: ContainerFacts) {
        let id = facts.id.clone();
        if self.facts.insert(id.clone(), Arc::new(facts)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_CONTAINERS {
            if let Some(oldest) = self.order.pop_front() {
                self.facts.remove(&oldest);
            }
        }
    }

    /// A container by full id, or by an id the runtime gave in full where the
    /// cgroup's is the same.
    fn get(&self, id: &str) -> Option<Arc<ContainerFacts>> {
        self.facts.get(id).cloned()
    }
}

struct Cached {
    origin: CgroupOrigin,
    workload: Arc<Workload>,
    /// Whether the container's facts were in when it was made.
    complete: bool,
    used: u64,
}

/// Workloads by cgroup path, for attribution.
pub struct Workloads {
    known: Arc<Mutex<KnownContainers>>,
    asker: Option<runtimes::Asker>,
    paths: HashMap<String, Cached>,
    generation: u64,
}

impl Workloads {
    /// Follows the runtimes at `sockets` from a thread of its own.
    pub fn start(sockets: RuntimeSockets) -> Workloads {
        let known = Arc::new(Mutex::new(KnownContainers::default()));
        let asker = runtimes::start(sockets, known.clone());
        Workloads {
            known,
            asker,
            paths: HashMap::new(),
            generation: 0,
        }
    }

    /// The workload of a process in cgroup `path`, as far as is known now.
    pub fn of(&mut self, path: &str) -> Arc<Workload> {
        let generation = self.generation;
        if let Some(cached) = self.paths.get_mut(path) {
            cached.used = generation;
            if cached.complete {
                return cached.workload.clone();
            }
            let Some(container) = &cached.origin.container else {
                return cached.workload.clone();
            };
            if let Some(facts) = lock(&self.known).get(&container.id) {
                cached.workload = Arc::new(Workload::new(&cached.origin, Some(&facts)));
                cached.complete = true;
            }
            return cached.workload.clone();
        }
        let origin = origin(path);
        let facts = origin
            .container
            .as_ref()
            .and_then(|container| lock(&self.known).get(&container.id));
        if let (Some(container), None, Some(asker)) = (&origin.container, &facts, &self.asker) {
            asker.ask(container.clone());
        }
        let workload = Arc::new(Workload::new(&origin, facts.as_deref()));
        let complete = origin.container.is_none() || facts.is_some();
        if self.paths.len() >= MAX_PATHS {
            crate::bounded::keep_most_recent(&mut self.paths, MAX_PATHS / 2, |c| c.used);
        }
        self.paths.insert(
            path.to_string(),
            Cached {
                origin,
                workload: workload.clone(),
                complete,
                used: generation,
            },
        );
        workload
    }

    /// Ends an interval: forgets workloads no traffic used for a while.
    pub fn end_interval(&mut self) {
        self.generation += 1;
        let generation = self.generation;
        self.paths
            .retain(|_, cached| generation - cached.used <= KEEP_UNUSED);
    }

    /// Facts handed in directly (tests, and runtimes read by other means).
    pub fn learn(&self, facts: ContainerFacts) {
        lock(&self.known).insert(facts);
    }

    /// The containers known, for those who find them by name (limits).
    pub fn directory(&self) -> ContainerDirectory {
        ContainerDirectory {
            known: self.known.clone(),
            asker: self.asker.clone(),
        }
    }
}

/// What the runtimes said of each container, shared: finds a container's facts and
/// asks the runtimes about one it has not heard of.
#[derive(Clone, Default)]
pub struct ContainerDirectory {
    known: Arc<Mutex<KnownContainers>>,
    asker: Option<runtimes::Asker>,
}

impl ContainerDirectory {
    /// The workload of the processes in cgroup `path` (below the cgroup root), as far
    /// as is known now; a container not yet heard of is asked about, not waited for.
    pub fn workload_of(&self, path: &str) -> Option<Workload> {
        let origin = origin(path);
        let container = origin.container.as_ref()?;
        let facts = lock(&self.known).get(&container.id);
        if let (None, Some(asker)) = (&facts, &self.asker) {
            asker.ask(container.clone());
        }
        Some(Workload::new(&origin, facts.as_deref()))
    }

    /// Facts handed in directly (tests).
    pub fn learn(&self, facts: ContainerFacts) {
        lock(&self.known).insert(facts);
    }
}

impl Workload {
    /// Whether this is the container a person named: by its name (in a pod, the
    /// kubelet's container name, or the runtime's), or by its id (12 hexadecimal digits
    /// or more, short or full).
    pub fn is_container(&self, wanted: &str) -> bool {
        if self.container.as_deref() == Some(wanted) {
            return true;
        }
        let looks_like_id = wanted.len() >= 12 && wanted.bytes().all(|b| b.is_ascii_hexdigit());
        looks_like_id
            && self
                .container_id
                .as_deref()
                .is_some_and(|id| id.starts_with(wanted) || wanted.starts_with(id))
    }

    /// Whether this is the pod a person named: "namespace/name", or a name alone.
    pub fn is_pod(&self, wanted: &str) -> bool {
        let Some(pod) = self.pod.as_deref() else {
            return false;
        };
        match wanted.split_once('/') {
            Some((namespace, name)) => self.namespace.as_deref() == Some(namespace) && pod == name,
            None => pod == wanted,
        }
    }
}

#[cfg(test)]
mod tests;

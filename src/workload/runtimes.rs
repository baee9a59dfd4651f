//! The thread that asks the container runtimes: it follows each runtime's event
//! stream, lists its containers when it (re)connects, and inspects containers
//! attribution found no facts for.

use super::{containerd, engine_api, ContainerFacts, ContainerRef, KnownContainers};
use crate::locks::lock;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Containers waiting to be inspected at most; beyond, they wait for the events.
const PENDING_QUESTIONS: usize = 1024;
/// Pause before reconnecting to a runtime that went away or never answered.
const RECONNECT_AFTER: Duration = Duration::from_secs(10);

/// Where the runtimes' APIs listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSockets {
    /// Docker Engine API sockets (Docker, and podman's compatible service).
    pub docker_api: Vec<PathBuf>,
    /// containerd's own API.
    pub containerd: Vec<PathBuf>,
}

impl RuntimeSockets {
    pub fn none() -> Self {
        RuntimeSockets {
            docker_api: Vec::new(),
            containerd: Vec::new(),
        }
    }

    fn endpoints(&self) -> Vec<Endpoint> {
        let docker = self.docker_api.iter().map(|path| Endpoint {
            api: Api::DockerEngine,
            socket: path.clone(),
        });
        let containerd = self.containerd.iter().map(|path| Endpoint {
            api: Api::Containerd,
            socket: path.clone(),
        });
        docker.chain(containerd).collect()
    }
}

impl Default for RuntimeSockets {
    fn default() -> Self {
        RuntimeSockets {
            docker_api: vec![
                PathBuf::from("/run/podman/podman.sock"),
                PathBuf::from("/run/docker.sock"),
            ],
            containerd: vec![PathBuf::from("/run/containerd/containerd.sock")],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Api {
    DockerEngine,
    Containerd,
}

/// One runtime's API on its socket.
#[derive(Clone, Debug)]
struct Endpoint {
    api: Api,
    socket: PathBuf,
}

impl Endpoint {
    async fn list(&self) -> anyhow::Result<Vec<ContainerFacts>> {
        match self.api {
            Api::DockerEngine => engine_api::list(&self.socket).await,
            Api::Containerd => containerd::list(&self.socket).await,
        }
    }

    async fn inspect(&self, id: &str) -> anyhow::Result<ContainerFacts> {
        match self.api {
            Api::DockerEngine => engine_api::inspect(&self.socket, id).await,
            Api::Containerd => containerd::inspect(&self.socket, id).await,
        }
    }

    async fn follow_events(&self, created: impl FnMut(ContainerFacts)) -> anyhow::Result<()> {
        match self.api {
            Api::DockerEngine => engine_api::follow_events(&self.socket, created).await,
            Api::Containerd => containerd::follow_events(&self.socket, created).await,
        }
    }
}

/// Hands containers to inspect to the runtimes' thread, never waiting.
#[derive(Clone)]
pub struct Asker(mpsc::Sender<ContainerRef>);

impl Asker {
    pub fn ask(&self, container: ContainerRef) {
        // A full queue drops the question: the container is asked about again when
        // traffic next finds it unnamed.
        let _ = self.0.try_send(container);
    }
}

/// Starts the thread; `None` (logged) if it cannot start.
pub fn start(sockets: RuntimeSockets, known: Arc<Mutex<KnownContainers>>) -> Option<Asker> {
    let (sender, questions) = mpsc::channel(PENDING_QUESTIONS);
    let spawned = crate::background::spawn_async("runtimes", move || {
        serve(sockets.endpoints(), known, questions)
    });
    match spawned {
        Ok(()) => Some(Asker(sender)),
        Err(error) => {
            tracing::warn!("container runtimes will not be asked: {error}");
            None
        }
    }
}

async fn serve(
    endpoints: Vec<Endpoint>,
    known: Arc<Mutex<KnownContainers>>,
    mut questions: mpsc::Receiver<ContainerRef>,
) {
    for endpoint in &endpoints {
        tokio::spawn(follow(endpoint.clone(), known.clone()));
    }
    while let Some(container) = questions.recv().await {
        for endpoint in endpoints.iter().filter(|e| e.socket.exists()) {
            if let Ok(facts) = endpoint.inspect(&container.id).await {
                lock(&known).insert(facts);
                break;
            }
        }
    }
}

/// Keeps up with one runtime: every container it has, then each one created.
async fn follow(endpoint: Endpoint, known: Arc<Mutex<KnownContainers>>) {
    let mut said_absent = false;
    let socket = endpoint.socket.display().to_string();
    loop {
        match connect(&endpoint, &known).await {
            Ok(()) => {
                tracing::info!(%socket, "container runtime's events ended; reconnecting")
            }
            Err(error) if !said_absent => {
                said_absent = true;
                tracing::info!(%socket, error = format!("{error:#}"), "no container runtime answers here (containers are named by id until one does)");
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn connect(endpoint: &Endpoint, known: &Mutex<KnownContainers>) -> anyhow::Result<()> {
    // Subscribe first, so that no container created while listing is missed.
    let events = endpoint.follow_events(|facts: ContainerFacts| {
        lock(known).insert(facts);
    });
    let listing = async {
        let containers = endpoint.list().await?;
        let socket = endpoint.socket.display().to_string();
        tracing::info!(%socket, api = ?endpoint.api, containers = containers.len(), "following a container runtime");
        let mut known = lock(known);
        for facts in containers {
            known.insert(facts);
        }
        anyhow::Ok(())
    };
    let (events, listing) = tokio::join!(events, listing);
    listing?;
    events
}

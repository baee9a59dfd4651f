//! The thread that asks the container runtimes: it follows each runtime's event
//! stream, lists its containers when it (re)connects, and inspects containers
//! attribution found no facts for.

use super::{engine_api, ContainerFacts, ContainerRef, KnownContainers};
use crate::locks::lock;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Containers waiting to be inspected at most; beyond, they wait for the events.
const PENDING_QUESTIONS: usize = 1024;
/// Pause before reconnecting to a runtime that went away or never answered.
const RECONNECT_AFTER: Duration = Duration::from_secs(10);

/// Unix sockets of the Docker Engine API (Docker, and podman's compatible service).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSockets(pub Vec<PathBuf>);

impl Default for RuntimeSockets {
    fn default() -> Self {
        RuntimeSockets(
            ["/run/podman/podman.sock", "/run/docker.sock"]
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        )
    }
}

/// Hands containers to inspect to the runtimes' thread, never waiting.
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
    let spawned = std::thread::Builder::new()
        .name("runtimes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!("container runtimes will not be asked: {error}");
                    return;
                }
            };
            runtime.block_on(serve(sockets.0, known, questions));
        });
    match spawned {
        Ok(_) => Some(Asker(sender)),
        Err(error) => {
            tracing::warn!("container runtimes will not be asked: {error}");
            None
        }
    }
}

async fn serve(
    sockets: Vec<PathBuf>,
    known: Arc<Mutex<KnownContainers>>,
    mut questions: mpsc::Receiver<ContainerRef>,
) {
    for socket in &sockets {
        tokio::spawn(follow(socket.clone(), known.clone()));
    }
    while let Some(container) = questions.recv().await {
        for socket in sockets.iter().filter(|s| s.exists()) {
            if let Ok(facts) = engine_api::inspect(socket, &container.id).await {
                lock(&known).insert(facts);
                break;
            }
        }
    }
}

/// Keeps up with one runtime: every container it has, then each one created.
async fn follow(socket: PathBuf, known: Arc<Mutex<KnownContainers>>) {
    let mut said_absent = false;
    loop {
        match connect(&socket, &known).await {
            Ok(()) => {
                tracing::info!(socket = %socket.display(), "container runtime's events ended; reconnecting")
            }
            Err(error) if !said_absent => {
                said_absent = true;
                tracing::info!(socket = %socket.display(), %error, "no container runtime answers here (containers are named by id until one does)");
            }
            Err(_) => {}
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}

async fn connect(socket: &Path, known: &Mutex<KnownContainers>) -> anyhow::Result<()> {
    // Subscribe first, so that no container created while listing is missed.
    let events = engine_api::follow_events(socket, |facts: ContainerFacts| {
        lock(known).insert(facts);
    });
    let listing = async {
        let containers = engine_api::list(socket).await?;
        tracing::info!(socket = %socket.display(), containers = containers.len(), "following a container runtime");
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

//! Delivers notices off the pipeline: one thread POSTs each to its webhook (retried
//! with backoff) and runs its command (bounded in time). The pipeline only queues; a
//! full queue drops the newest notice with a log line, never waits.

use super::notice::Notice;
use crate::locks::lock;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QUEUE: usize = 256;
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for queued notices to go out.
const DRAIN_AT_SHUTDOWN: Duration = Duration::from_secs(10);

/// Where one notice goes, besides the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Targets {
    pub webhook: Option<url::Url>,
    pub command: Option<Vec<String>>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.command.is_none()
    }
}

/// The delivery thread, started with the first alert rule and kept across reloads, so
/// that a reload never waits for a slow webhook; shutdown lets it finish its queue.
#[derive(Clone, Default)]
pub struct Deliveries {
    running: Arc<Mutex<Option<Delivery>>>,
}

struct Delivery {
    queue: Sender<(Notice, Targets)>,
    done: Receiver<()>,
}

/// Where alert rules put their notices.
#[derive(Clone)]
pub struct Queue {
    queue: Option<Sender<(Notice, Targets)>>,
}

impl Deliveries {
    pub fn queue(&self) -> Queue {
        let mut running = lock(&self.running);
        if running.is_none() {
            *running = Delivery::start();
        }
        Queue {
            queue: running.as_ref().map(|d| d.queue.clone()),
        }
    }

    /// Lets the queued notices go out, for a bounded time (at shutdown).
    pub fn finish(&self) {
        let Some(delivery) = lock(&self.running).take() else {
            return;
        };
        drop(delivery.queue);
        // Senders held by alert rules still alive keep the thread waiting: they are
        // dropped with the pipeline before this is called.
        if delivery.done.recv_timeout(DRAIN_AT_SHUTDOWN).is_err() {
            tracing::warn!(
                "alerts: notices still queued after {DRAIN_AT_SHUTDOWN:?} are not delivered"
            );
        }
    }
}

impl Delivery {
    fn start() -> Option<Delivery> {
        let (queue, notices) = bounded::<(Notice, Targets)>(QUEUE);
        let (finished, done) = bounded(1);
        let thread = std::thread::Builder::new()
            .name("alert delivery".into())
            .spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .timeout_global(Some(REQUEST_TIMEOUT))
                    .build()
                    .new_agent();
                for (notice, targets) in notices {
                    deliver(&agent, &notice, &targets);
                }
                let _ = finished.send(());
            });
        match thread {
            Ok(_) => Some(Delivery { queue, done }),
            Err(error) => {
                tracing::error!(
                    "alerts: cannot start the delivery thread: {error}; notices go to the log only"
                );
                None
            }
        }
    }
}

impl Queue {
    pub fn send(&self, notice: Notice, targets: Targets) {
        if targets.is_empty() {
            return;
        }
        let Some(queue) = &self.queue else { return };
        match queue.try_send((notice, targets)) {
            Ok(()) => {}
            Err(TrySendError::Full((notice, _))) => tracing::warn!(
                rule = notice.rule,
                "alerts: {QUEUE} notices wait for a slow webhook or command; this one is only logged"
            ),
            Err(TrySendError::Disconnected((notice, _))) => tracing::warn!(
                rule = notice.rule,
                "alerts: the delivery thread is gone; this notice is only logged"
            ),
        }
    }
}

fn deliver(agent: &ureq::Agent, notice: &Notice, targets: &Targets) {
    let body = match serde_json::to_string(notice) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(
                rule = notice.rule,
                "alerts: cannot encode the notice: {error}"
            );
            return;
        }
    };
    if let Some(url) = &targets.webhook {
        post(agent, url, &body, &notice.rule);
    }
    if let Some(command) = &targets.command {
        run(command, &body, notice);
    }
}

/// POSTs `body`, retrying what may pass later (no answer, 5xx, 429) with backoff.
fn post(agent: &ureq::Agent, url: &url::Url, body: &str, rule: &str) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let error = match agent
            .post(url.as_str())
            .header("Content-Type", "application/json")
            .send(body)
        {
            Ok(_) => return,
            Err(error) => error,
        };
        let lasting = matches!(error, ureq::Error::StatusCode(code) if (400..500).contains(&code) && code != 429);
        if lasting || attempt == ATTEMPTS {
            tracing::error!(
                rule,
                "alerts: the webhook {url} did not take the notice ({error}) after {attempt} attempt(s); check the URL and the receiver"
            );
            return;
        }
        tracing::warn!(
            rule,
            "alerts: the webhook {url} failed ({error}); retrying in {backoff:?}"
        );
        std::thread::sleep(backoff);
        backoff *= 2;
    }
}

/// Runs the command with the notice on standard input and in the environment; one
/// that outlives `COMMAND_TIMEOUT` is killed.
fn run(command: &[String], body: &str, notice: &Notice) {
    let Some((program, arguments)) = command.split_first() else {
        return;
    };
    let spawned = Command::new(program)
        .args(arguments)
        .env("NETGRAPH_RULE", &notice.rule)
        .env(
            "NETGRAPH_STATE",
            serde_json::to_value(notice.state)
                .unwrap_or_default()
                .as_str()
                .unwrap_or(""),
        )
        .env("NETGRAPH_MESSAGE", &notice.message)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            tracing::error!(
                rule = notice.rule,
                "alerts: cannot run {program}: {error}; check command in [alerts]"
            );
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine.
        let _ = stdin.write_all(body.as_bytes());
    }
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                tracing::warn!(rule = notice.rule, "alerts: {program} exited with {status}");
                return;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(
                    rule = notice.rule,
                    "alerts: {program} ran over {COMMAND_TIMEOUT:?} and was stopped"
                );
                return;
            }
        }
    }
}

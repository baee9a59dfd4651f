//! Delivers notices off the pipeline. Each recipient (a webhook URL, a command) has a
//! thread and a bounded queue of its own, with its own timeout and backoff, so a recipient
//! that never answers delays nobody else. The pipeline only queues; a full queue drops
//! the newest notice with a log line (at most one a minute per recipient), never waits.

use super::notice::Notice;
use crate::locks::lock;
use crate::rate_limited::Repeats;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Notices waiting per recipient.
const QUEUE: usize = 64;
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits, all receivers together, before ending what still runs.
const DRAIN_AT_SHUTDOWN: Duration = Duration::from_secs(2);
/// A command's output kept for the log, per stream; the rest is read and dropped.
const OUTPUT_KEPT: usize = 2048;

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

    fn receivers(&self) -> impl Iterator<Item = Recipient> + '_ {
        let webhook = self.webhook.clone().map(Recipient::Webhook);
        let command = self.command.clone().map(Recipient::Command);
        webhook.into_iter().chain(command)
    }
}

/// One place notices go.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Recipient {
    Webhook(url::Url),
    Command(Vec<String>),
}

impl Recipient {
    /// For log lines: a webhook without its query (tokens live there) or credentials.
    fn describe(&self) -> String {
        match self {
            Recipient::Webhook(url) => format!("the webhook {}", redacted(url)),
            Recipient::Command(command) => {
                format!("the command {}", command.first().map_or("", String::as_str))
            }
        }
    }
}

/// A URL as it may be logged: no credentials, no query.
pub fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("..."));
    }
    shown.to_string()
}

/// The receivers' threads, started as rules first use them and kept across reloads, so
/// that a reload never waits for a slow recipient; shutdown gives them a bounded time.
#[derive(Clone, Default)]
pub struct Deliveries {
    workers: Arc<Mutex<HashMap<Recipient, Worker>>>,
}

struct Worker {
    queue: Sender<Notice>,
    done: Receiver<()>,
    /// The process group of the command running now (0: none), ended at shutdown.
    running: Arc<AtomicI32>,
    full: Arc<Mutex<Repeats>>,
}

/// Where alert rules put their notices.
#[derive(Clone, Default)]
pub struct Queue {
    deliveries: Deliveries,
}

impl Deliveries {
    pub fn queue(&self) -> Queue {
        Queue {
            deliveries: self.clone(),
        }
    }

    /// Lets the queued notices go out for a bounded time (at shutdown), then ends the
    /// commands still running, whole process groups.
    pub fn finish(&self) {
        let workers: Vec<Worker> = lock(&self.workers).drain().map(|(_, w)| w).collect();
        let deadline = Instant::now() + DRAIN_AT_SHUTDOWN;
        let mut late = 0;
        for Worker {
            queue,
            done,
            running,
            ..
        } in workers
        {
            // With its queue closed, a worker ends after what is queued.
            drop(queue);
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(left) {
                late += 1;
                let group = running.load(Ordering::SeqCst);
                if group > 0 {
                    end_group(group);
                }
            }
        }
        if late > 0 {
            tracing::warn!(
                "alerts: {late} recipient(s) still busy after {DRAIN_AT_SHUTDOWN:?}; their queued notices are not delivered"
            );
        }
    }

    fn send(&self, recipient: Recipient, notice: Notice) {
        let mut workers = lock(&self.workers);
        if !workers.contains_key(&recipient) {
            match Worker::start(recipient.clone()) {
                Some(worker) => {
                    workers.insert(recipient.clone(), worker);
                }
                None => return,
            }
        }
        let Some(worker) = workers.get(&recipient) else {
            return;
        };
        let rule = notice.rule.clone();
        match worker.queue.try_send(notice) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if let Some(held) = lock(&worker.full).check("full") {
                    tracing::warn!(
                        rule,
                        "alerts: {QUEUE} notices wait for {}; this one is only logged{held}",
                        recipient.describe()
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                workers.remove(&recipient);
                tracing::warn!(
                    rule,
                    "alerts: {} is gone; this notice is only logged",
                    recipient.describe()
                );
            }
        }
    }
}

impl Worker {
    fn start(recipient: Recipient) -> Option<Worker> {
        let (queue, notices) = bounded::<Notice>(QUEUE);
        // Disconnected when the thread ends, which `finish` waits for.
        let (finished, done) = bounded::<()>(0);
        let running = Arc::new(AtomicI32::new(0));
        let group = running.clone();
        let name = recipient.describe();
        let thread = std::thread::Builder::new()
            .name("alert delivery".into())
            .spawn(move || {
                let _finished = finished;
                let agent = ureq::Agent::config_builder()
                    .timeout_global(Some(REQUEST_TIMEOUT))
                    .build()
                    .new_agent();
                for notice in notices {
                    let body = match serde_json::to_string(&notice) {
                        Ok(body) => body,
                        Err(error) => {
                            tracing::error!(
                                rule = notice.rule,
                                "alerts: cannot encode the notice: {error}"
                            );
                            continue;
                        }
                    };
                    match &recipient {
                        Recipient::Webhook(url) => post(&agent, url, &body, &notice.rule),
                        Recipient::Command(command) => run(command, &body, &notice, &group),
                    }
                }
            });
        match thread {
            Ok(_) => Some(Worker {
                queue,
                done,
                running,
                full: Arc::new(Mutex::new(Repeats::every_minute())),
            }),
            Err(error) => {
                tracing::error!("alerts: cannot start a thread for {name}: {error}; its notices go to the log only");
                None
            }
        }
    }
}

impl Queue {
    pub fn send(&self, notice: Notice, targets: Targets) {
        for recipient in targets.receivers() {
            self.deliveries.send(recipient, notice.clone());
        }
    }
}

/// POSTs `body`, retrying what may pass later (no answer, 5xx, 429) with backoff.
fn post(agent: &ureq::Agent, url: &url::Url, body: &str, rule: &str) {
    let shown = redacted(url);
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
        // ureq's own message may repeat the URL: only the kind of failure is shown.
        let error = failure(&error);
        if lasting || attempt == ATTEMPTS {
            tracing::error!(
                rule,
                "alerts: the webhook {shown} did not take the notice ({error}) after {attempt} attempt(s); check the URL and the recipient"
            );
            return;
        }
        tracing::warn!(
            rule,
            "alerts: the webhook {shown} failed ({error}); retrying in {backoff:?}"
        );
        std::thread::sleep(backoff);
        backoff *= 2;
    }
}

/// What went wrong, without the URL.
fn failure(error: &ureq::Error) -> String {
    match error {
        ureq::Error::StatusCode(code) => format!("HTTP {code}"),
        ureq::Error::Timeout(_) => format!("no answer within {REQUEST_TIMEOUT:?}"),
        ureq::Error::Io(io) => io.kind().to_string(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => {
            let text = other.to_string();
            match text.find("://") {
                Some(_) => "request failed".into(),
                None => text,
            }
        }
    }
}

/// Runs the command in a process group of its own, with the notice on standard input
/// and in the environment; its output is kept (the start) for the log; one that
/// outlives `COMMAND_TIMEOUT` is ended with its whole group.
fn run(command: &[String], body: &str, notice: &Notice, running: &AtomicI32) {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
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
    let group = child.id() as i32;
    running.store(group, Ordering::SeqCst);
    let output = [
        child.stdout.take().map(|s| keep_start(Box::new(s))),
        child.stderr.take().map(|s| keep_start(Box::new(s))),
    ];
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is fine; stdin closes here.
        let _ = stdin.write_all(body.as_bytes());
    }
    let status = wait_or_end(&mut child, group);
    running.store(0, Ordering::SeqCst);
    // The readers end once every process of the group has closed the pipes.
    let [stdout, stderr] =
        output.map(|reader| reader.and_then(|r| r.join().ok()).unwrap_or_default());
    let said = [stdout, stderr]
        .iter()
        .filter(|text| !text.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join(" | ");
    match status {
        Some(status) if status.success() => {
            if !said.is_empty() {
                tracing::info!(rule = notice.rule, "alerts: {program} said: {said}");
            }
        }
        Some(status) => tracing::warn!(
            rule = notice.rule,
            "alerts: {program} exited with {status}: {said}"
        ),
        None => tracing::warn!(
            rule = notice.rule,
            "alerts: {program} ran over {COMMAND_TIMEOUT:?} and was ended with its process group: {said}"
        ),
    }
}

/// The command's exit, or `None` when it ran over its time and its group was ended.
fn wait_or_end(child: &mut Child, group: i32) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // Children it left behind go with it.
                end_group(group);
                return Some(status);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                end_group(group);
                let _ = child.wait();
                return None;
            }
        }
    }
}

fn end_group(group: i32) {
    // SAFETY: signalling a process group netgraph made for a command.
    unsafe { libc::kill(-group, libc::SIGKILL) };
}

/// Reads a stream to its end in a thread, keeping its first `OUTPUT_KEPT` bytes.
fn keep_start(mut stream: Box<dyn Read + Send>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 4096];
        let mut dropped = 0usize;
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = OUTPUT_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..n.min(room)]);
                    dropped += n.saturating_sub(room);
                }
            }
        }
        let mut text = String::from_utf8_lossy(&kept).trim().replace('\n', " / ");
        if dropped > 0 {
            text.push_str(&format!(" ... ({dropped} more bytes)"));
        }
        text
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::notice::{Details, PeriodFacts, State};
    use std::io::BufRead;
    use std::net::TcpListener;

    fn notice(rule: &str) -> Notice {
        Notice {
            rule: rule.into(),
            kind: "quota",
            state: State::Firing,
            message: format!("{rule} fired"),
            hostname: "host".into(),
            time: "2026-12-02T00:00:00Z".into(),
            unix_time: 0,
            scope: Default::default(),
            traffic: Default::default(),
            details: Details::Quota {
                used_bytes: 2,
                limit_bytes: 1,
                ratio: 2.0,
                period: PeriodFacts {
                    per: "day",
                    label: "2026-12-02".into(),
                    start: 0,
                    end: 86_400,
                },
                throttle: None,
            },
        }
    }

    fn webhook(url: String) -> Targets {
        Targets {
            webhook: Some(url.parse().unwrap()),
            command: None,
        }
    }

    /// A receiver on loopback that takes connections and never answers.
    fn hung_receiver() -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/hook?token=hung-SECRET",
            listener.local_addr().unwrap()
        );
        let held = std::thread::spawn(move || {
            let mut open = Vec::new();
            listener.set_nonblocking(true).unwrap();
            let until = Instant::now() + Duration::from_secs(8);
            while Instant::now() < until {
                if let Ok((stream, _)) = listener.accept() {
                    open.push(stream);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        (url, held)
    }

    /// A receiver on loopback that answers 200 and hands over each body it got.
    fn healthy_receiver() -> (String, crossbeam_channel::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (bodies, received) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = reader.get_mut().write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = bodies.send(String::from_utf8_lossy(&body).into_owned());
            }
        });
        (url, received)
    }

    #[test]
    fn a_hung_webhook_delays_no_other_receiver() {
        let deliveries = Deliveries::default();
        let queue = deliveries.queue();
        let (hung, _held) = hung_receiver();
        let (healthy, received) = healthy_receiver();
        // The hung one first, and more than its queue holds.
        for _ in 0..(QUEUE + 10) {
            queue.send(notice("to-hung"), webhook(hung.clone()));
        }
        let sent = Instant::now();
        queue.send(notice("to-healthy"), webhook(healthy));
        let body = received
            .recv_timeout(REQUEST_TIMEOUT)
            .expect("the healthy webhook got its notice while the other hung");
        assert!(body.contains("\"rule\":\"to-healthy\""), "{body}");
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "{:?}",
            sent.elapsed()
        );
        // Shutdown does not wait for the hung one beyond its bound.
        let started = Instant::now();
        deliveries.finish();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_command_that_never_ends_is_ended_with_its_group_at_shutdown() {
        let dir = std::env::temp_dir().join(format!("netgraph-delivery-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("child.pid");
        // A child in the background that would outlive its parent, and output that
        // never stops.
        let script = format!(
            "sleep 300 & echo $! > {}; yes 'spam spam spam' >&2",
            pid_file.display()
        );
        let deliveries = Deliveries::default();
        deliveries.queue().send(
            notice("hang"),
            Targets {
                webhook: None,
                command: Some(vec!["sh".into(), "-c".into(), script]),
            },
        );
        let until = Instant::now() + Duration::from_secs(5);
        while !pid_file.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let child: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let started = Instant::now();
        deliveries.finish();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // The background child went with the group (a zombie at most, until reaped).
        std::thread::sleep(Duration::from_millis(200));
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.split_whitespace().nth(2) == Some("Z"),
            "the command's child still runs: {state}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn output_is_kept_short() {
        let reader = keep_start(Box::new(std::io::Cursor::new(vec![b'x'; 100_000])));
        let text = reader.join().unwrap();
        assert!(text.len() < OUTPUT_KEPT + 40, "{}", text.len());
        assert!(
            text.ends_with(&format!("({} more bytes)", 100_000 - OUTPUT_KEPT)),
            "{text}"
        );
    }

    #[test]
    fn urls_are_logged_without_credentials_or_query() {
        let url: url::Url = "https://user:pw@alerts.example.org/hook?token=SECRET"
            .parse()
            .unwrap();
        let shown = redacted(&url);
        assert_eq!(shown, "https://alerts.example.org/hook?...");
        let described = Recipient::Webhook(url).describe();
        assert!(
            !described.contains("SECRET") && !described.contains("pw"),
            "{described}"
        );
    }
}

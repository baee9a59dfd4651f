//! The Docker Engine API on a unix socket, which Docker and podman (its compatible
//! service) both serve: listing containers, inspecting one, and the event stream
//! that announces each container as it is created, however briefly it lives.

use super::ContainerFacts;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::net::UnixStream;

/// No answer within this is a runtime that does not answer.
const TIMEOUT: Duration = Duration::from_secs(5);

async fn request(
    socket: &Path,
    path: &str,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let stream = tokio::time::timeout(TIMEOUT, UnixStream::connect(socket)).await??;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let response = tokio::time::timeout(TIMEOUT, sender.send_request(request)).await??;
    if !response.status().is_success() {
        anyhow::bail!("{path}: HTTP {}", response.status());
    }
    Ok(response)
}

/// A runtime's answer is read up to this (a list of thousands of containers is a few
/// MiB); a larger one is refused whole, so no socket can make netgraph hold more.
const MAX_BODY: usize = 16 << 20;
/// An event line longer than this is dropped (events are a few KiB).
const MAX_EVENT_LINE: usize = 1 << 20;

async fn get<T: for<'de> Deserialize<'de>>(socket: &Path, path: &str) -> anyhow::Result<T> {
    let response = request(socket, path).await?;
    let limited = http_body_util::Limited::new(response.into_body(), MAX_BODY);
    let body = tokio::time::timeout(TIMEOUT, limited.collect())
        .await?
        .map_err(|e| anyhow::anyhow!("{path}: {e} (over {} MiB?)", MAX_BODY >> 20))?
        .to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    id: String,
    #[serde(default)]
    name: String,
    config: Option<InspectedConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    #[serde(default)]
    r#type: String,
    #[serde(default)]
    action: String,
    actor: Option<Actor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Actor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(default)]
    attributes: HashMap<String, String>,
}

fn facts(id: String, name: &str, image: String, labels: HashMap<String, String>) -> ContainerFacts {
    ContainerFacts::new(id, name.trim_start_matches('/'), image, labels)
}

/// Every container the runtime knows, running or not.
pub async fn list(socket: &Path) -> anyhow::Result<Vec<ContainerFacts>> {
    let listed: Vec<Listed> = get(socket, "/containers/json?all=true").await?;
    Ok(listed
        .into_iter()
        .map(|c| {
            let name = c.names.first().map(String::as_str).unwrap_or_default();
            facts(c.id.clone(), name, c.image, c.labels.unwrap_or_default())
        })
        .collect())
}

/// One container by id.
pub async fn inspect(socket: &Path, id: &str) -> anyhow::Result<ContainerFacts> {
    let found: Inspected = get(socket, &format!("/containers/{id}/json")).await?;
    let config = found.config.unwrap_or(InspectedConfig {
        image: String::new(),
        labels: None,
    });
    Ok(facts(
        found.id,
        &found.name,
        config.image,
        config.labels.unwrap_or_default(),
    ))
}

/// Follows the event stream, handing each created container to `created` as it is
/// announced (the event's attributes carry its name, image and labels). Returns when
/// the stream ends or fails.
pub async fn follow_events(
    socket: &Path,
    mut created: impl FnMut(ContainerFacts),
) -> anyhow::Result<()> {
    let filters = r#"{"type":["container"],"event":["create"]}"#;
    let path = format!(
        "/events?filters={}",
        percent_encoding::utf8_percent_encode(filters, percent_encoding::NON_ALPHANUMERIC)
    );
    let mut body = request(socket, &path).await?.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Event>(&line) else {
                continue;
            };
            if event.r#type != "container" || event.action != "create" {
                continue;
            }
            if let Some(mut actor) = event.actor {
                let name = actor.attributes.remove("name").unwrap_or_default();
                let image = actor.attributes.remove("image").unwrap_or_default();
                // What remains are the container's labels (and a few fields of the
                // runtime's own, which no label reader asks for).
                created(facts(actor.id, &name, image, actor.attributes));
            }
        }
        // A line never grows without end.
        if pending.len() > MAX_EVENT_LINE {
            pending.clear();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A runtime socket that answers every request with `length` bytes of a JSON list
    /// that never closes; returns how many bytes it managed to send.
    fn hostile_runtime(socket: &Path, length: usize) -> std::thread::JoinHandle<usize> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n[");
            stream.write_all(head.as_bytes()).unwrap();
            let chunk = vec![b' '; 1 << 20];
            let mut sent = 1;
            while sent < length {
                match stream.write(&chunk[..chunk.len().min(length - sent)]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            sent
        })
    }

    #[test]
    fn a_huge_answer_is_refused_after_its_bound() {
        let dir = std::env::temp_dir().join(format!("netgraph-engine-api-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("docker.sock");
        let _ = std::fs::remove_file(&socket);
        let server = hostile_runtime(&socket, 512 << 20);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime.block_on(list(&socket)).unwrap_err().to_string();
        assert!(error.contains("over 16 MiB"), "{error}");
        drop(runtime);
        // The client stopped reading near its bound: the rest was never taken.
        let sent = server.join().unwrap();
        assert!(sent < 64 << 20, "{sent} bytes were read");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

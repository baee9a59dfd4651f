//! Serving an axum router from a thread of its own, on a listener bound beforehand so
//! that a taken address is reported at start. Used by the Prometheus endpoint and the
//! web server; the pipeline itself stays synchronous.
//!
//! Hostile or slow clients cannot take the process's file descriptors or time: the
//! number of open connections is bounded (to admit a new one, the oldest connection
//! that has never sent a whole request is dropped, so slow clients go first and a
//! prompt client, on a new or a kept-alive connection, is always served), request
//! headers must arrive within a few seconds, and no connection lives for ever.

pub mod token;

use crate::rate_limited::Repeats;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{AbortHandle, JoinSet};

/// Connections open at once at most per listener, within the share of file
/// descriptors given to listeners (see `connection_limit`).
const MAX_CONNECTIONS: usize = 256;
/// A request's headers must arrive within this time (also an idle keep-alive's limit).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection, however busy, is kept longer.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Binds `listen`; `what` names the server in errors ("the web server").
pub fn bind(listen: SocketAddr, what: &str, fix: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("{what} cannot listen on {listen}: {e}; {fix}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves `router` on `listener` until the process ends.
pub fn serve_in_thread(
    name: &str,
    listener: std::net::TcpListener,
    router: axum::Router,
) -> anyhow::Result<()> {
    let label = name.to_string();
    crate::background::spawn_async(name, move || async move {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => serve(&label, listener, router, connection_limit()).await,
            Err(error) => tracing::error!("{label} stopped: {error}"),
        }
    })?;
    Ok(())
}

/// The listeners' share of file descriptors: a quarter of the soft limit, so that a
/// flood of connections leaves the spool, the store and the engines what they need.
pub fn connection_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur as usize
    } else {
        1024
    };
    (soft / 4).clamp(16, MAX_CONNECTIONS)
}

/// An open connection, and whether a whole request has arrived on it yet.
struct OpenConnection {
    task: AbortHandle,
    served: Arc<AtomicBool>,
}

/// The connection to drop for a new one: the oldest that never sent a whole request
/// (a slow or idle client), else the oldest.
fn eviction_victim(open: &VecDeque<OpenConnection>) -> usize {
    open.iter()
        .position(|connection| !connection.served.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// Serves `router` with at most `limit` connections open at once.
async fn serve(label: &str, listener: tokio::net::TcpListener, router: axum::Router, limit: usize) {
    let service = TowerToHyperService::new(router);
    let mut connections = JoinSet::new();
    // Oldest first; finished ones are pruned as new ones come.
    let mut open: VecDeque<OpenConnection> = VecDeque::new();
    let mut accept_errors = Repeats::every_minute();
    let mut dropped = Repeats::every_minute();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, most likely: wait for some to be given back.
                if let Some(repeated) = accept_errors.check(&error.to_string()) {
                    tracing::warn!("{label}: cannot accept a connection: {error}{repeated}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        open.retain(|connection| !connection.task.is_finished());
        let mut evicted = false;
        while open.len() >= limit {
            if let Some(victim) = open.remove(eviction_victim(&open)) {
                victim.task.abort();
                evicted = true;
                if let Some(repeated) = dropped.check("full") {
                    tracing::warn!(
                        "{label}: {limit} connections open, dropping the slowest for a new one{repeated}"
                    );
                }
            }
        }
        // An aborted connection lets go of its descriptor only once the runtime drops
        // its task: let it, before accepting more, or a flood that is always ready to
        // accept holds the evicted ones' descriptors too.
        if evicted {
            tokio::task::yield_now().await;
        }
        let served = Arc::new(AtomicBool::new(false));
        let marks = served.clone();
        let service = service.clone();
        let marking = hyper::service::service_fn(move |request| {
            marks.store(true, Ordering::Relaxed);
            service.call(request)
        });
        let task = connections.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), marking);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
        open.push_back(OpenConnection { task, served });
    }
}

#[cfg(test)]
mod tests;

//! A writer on its own thread, as a sink holds it: lines go into its spool, and the
//! sink stops it at a reload or shutdown.

use super::{Destination, Writer};
use crate::sinks::spool::Spool;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long shutdown lets the writer finish: a healthy server takes the last interval
/// within it, a hung one is not waited for. What is left stays spooled and is sent at
/// the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// A writer running on its own thread: the sink spools into it and stops it.
pub struct Delivering {
    name: String,
    server: String,
    items: String,
    spool: Arc<Spool>,
    stop: Arc<AtomicBool>,
    finished: crossbeam_channel::Receiver<()>,
}

/// The sink's spool, shared with the sink a reload replaces (whose writer may still be
/// in a request: its batch is marked in flight, so the two never send the same lines).
pub fn open_spool(
    directory: &Path,
    max_bytes: u64,
    sink: &str,
    items: &str,
) -> anyhow::Result<Arc<Spool>> {
    let spool = Spool::shared(directory, max_bytes)?;
    let waiting = spool.waiting();
    if waiting > 0 {
        tracing::info!(
            sink,
            "{waiting} {items} spooled by an earlier run will be sent"
        );
    }
    Ok(spool)
}

impl Delivering {
    pub fn start<D: Destination + 'static>(
        thread: String,
        writer: Writer<D>,
    ) -> std::io::Result<Delivering> {
        let (done, finished) = crossbeam_channel::bounded(1);
        let delivering = Delivering {
            name: writer.name.clone(),
            server: writer.destination.server().to_string(),
            items: writer.destination.items().to_string(),
            spool: writer.spool.clone(),
            stop: writer.stop.clone(),
            finished,
        };
        std::thread::Builder::new().name(thread).spawn(move || {
            writer.run();
            let _ = done.send(());
        })?;
        Ok(delivering)
    }

    pub fn push(&self, lines: &[String]) -> anyhow::Result<()> {
        self.spool.push(lines)
    }

    /// The writer stops after the request it may be in (a hung server: its timeout),
    /// off the interval loop; the next sink's writer sends what is spooled meanwhile.
    pub fn release(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.spool.wake();
    }

    /// Stops the writer, waiting a moment for what it is sending.
    pub fn finish(&self) {
        self.release();
        if self.finished.recv_timeout(SHUTDOWN_GRACE).is_err() {
            tracing::warn!(
                sink = %self.name,
                "{} has not answered by shutdown; not waiting for it",
                self.server
            );
        }
        let waiting = self.spool.waiting();
        if waiting > 0 {
            tracing::info!(
                sink = %self.name,
                "{waiting} {} stay spooled for the next start",
                self.items
            );
        }
    }
}

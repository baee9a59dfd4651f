//! The store's own thread: the interval loop hands each interval over and goes on;
//! this thread writes it, and between writes keeps the store within its retention and
//! size bound, one small step at a time. A write that fails (a full disk) is kept and
//! retried, so the store loses no interval to a passing failure.

use super::maintenance::Step;
use super::{seconds, Store};
use crate::accounting::IntervalReport;
use crate::locks::lock;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Intervals waiting for the writer, at most: ten minutes of one-second intervals.
const WAITING: usize = 600;
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);
/// How soon a failed write is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long shutdown waits for the intervals still waiting to be written.
const FINISH_WITHIN: Duration = Duration::from_secs(2);

pub struct StoreWriter {
    sender: Option<Sender<IntervalReport>>,
    /// Why the latest write failed, while it has not succeeded since.
    failure: Arc<Mutex<Option<String>>>,
    finished: Receiver<()>,
}

impl StoreWriter {
    pub fn start(store: Store) -> anyhow::Result<StoreWriter> {
        let (sender, receiver) = crossbeam_channel::bounded(WAITING);
        let (done, finished) = crossbeam_channel::bounded(1);
        let failure = Arc::new(Mutex::new(None));
        let thread_failure = failure.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                run(store, &receiver, &thread_failure);
                let _ = done.send(());
            })?;
        Ok(StoreWriter {
            sender: Some(sender),
            failure,
            finished,
        })
    }

    /// Hands an interval to the writer; fails when the writer's latest write failed
    /// (the interval still waits to be written) or when it is too far behind.
    pub fn write(&self, report: &IntervalReport) -> anyhow::Result<()> {
        if let Some(sender) = &self.sender {
            if let Err(TrySendError::Full(_)) = sender.try_send(report.clone()) {
                anyhow::bail!(
                    "the store is {WAITING} intervals behind (a stalled disk?): this interval is not kept in it"
                );
            }
        }
        match lock(&self.failure).clone() {
            Some(error) => Err(anyhow::anyhow!(error)),
            None => Ok(()),
        }
    }

    /// Writes what waits, within FINISH_WITHIN.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if self.sender.take().is_none() {
            return Ok(());
        }
        match self.finished.recv_timeout(FINISH_WITHIN) {
            Ok(()) => Ok(()),
            Err(_) => anyhow::bail!(
                "the store did not finish writing within {} s; the last intervals may be missing from it",
                FINISH_WITHIN.as_secs()
            ),
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn run(mut store: Store, receiver: &Receiver<IntervalReport>, failure: &Mutex<Option<String>>) {
    let mut waiting: VecDeque<IntervalReport> = VecDeque::new();
    let mut next_maintenance = Instant::now();
    let mut maintaining = false;
    loop {
        let timeout = if !waiting.is_empty() {
            RETRY_AFTER
        } else if maintaining {
            Duration::ZERO
        } else {
            next_maintenance.saturating_duration_since(Instant::now())
        };
        // While a failing disk keeps WAITING intervals here, the next wait in the
        // channel, and the loop is told when that is full too.
        let stopping = if waiting.len() >= WAITING {
            std::thread::sleep(timeout);
            false
        } else {
            match receiver.recv_timeout(timeout) {
                Ok(report) => {
                    waiting.push_back(report);
                    false
                }
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            }
        };
        while waiting.len() < WAITING {
            match receiver.try_recv() {
                Ok(report) => waiting.push_back(report),
                Err(_) => break,
            }
        }
        while let Some(report) = waiting.front() {
            match store.write(report) {
                Ok(()) => {
                    waiting.pop_front();
                    lock(failure).take();
                }
                Err(error) => {
                    *lock(failure) = Some(format!("{error:#}"));
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        if !waiting.is_empty() {
            continue;
        }
        if !maintaining && Instant::now() >= next_maintenance {
            maintaining = true;
            next_maintenance = Instant::now() + MAINTAIN_EVERY;
        }
        if maintaining {
            match store.maintenance_step(seconds(SystemTime::now())) {
                Ok(Step::More) => {}
                Ok(Step::Done) => {
                    maintaining = false;
                    // The queries' memory, freed since the last pass, goes back too.
                    crate::malloc_arenas::give_back_freed();
                }
                Err(error) => {
                    tracing::warn!(
                        "store maintenance failed: {error:#}; it is tried again in a minute"
                    );
                    maintaining = false;
                }
            }
        }
    }
}

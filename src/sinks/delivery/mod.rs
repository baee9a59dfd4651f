//! The delivery thread of one spooled sink (InfluxDB, OTLP): takes batches from the
//! spool in order, one request at a time, and acts on each answer (see `Verdict`).

mod delivering;
pub mod http;
mod verdict;

pub use delivering::{open_spool, Delivering};
pub use verdict::{parse_retry_after, Verdict};

use super::self_metrics::SinkMetrics;
use super::spool::Spool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a sink's batches go: sends one and says what the server made of it.
pub trait Destination: Send {
    /// The server as log lines name it ("InfluxDB").
    fn server(&self) -> &str;
    /// What one spooled line is to the server ("points").
    fn items(&self) -> &str;
    fn send(&self, lines: &[String]) -> Verdict;
}

pub struct Writer<D: Destination> {
    pub name: String,
    pub destination: D,
    pub spool: Arc<Spool>,
    pub metrics: SinkMetrics,
    pub stop: Arc<AtomicBool>,
    pub batch: BatchSize,
    pub flush_interval: Duration,
    pub jitter: f64,
    pub max_retry_delay: Duration,
}

enum Delivery {
    /// The points are settled (written, or dropped for good).
    Settled,
    Retry {
        after: Option<Duration>,
        message: String,
    },
}

/// Batches delivered at a reduced size before trying twice the size.
const GROW_AFTER: u32 = 10;
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// A failure that lasts is logged again this often, not at every attempt.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);

/// How many points go in one request: the configured number, halved by each 413, and
/// doubled again every `GROW_AFTER` delivered batches up to the configured number (the
/// server's limit may have been raised, or the large interval was rare).
pub struct BatchSize {
    pub lines: usize,
    configured: usize,
    delivered: u32,
}

impl BatchSize {
    pub fn new(configured: usize) -> BatchSize {
        BatchSize {
            lines: configured,
            configured,
            delivered: 0,
        }
    }

    /// A 413 for a batch of twice `half`: whether the size went down.
    fn shrink_to(&mut self, half: usize) -> bool {
        self.delivered = 0;
        let shrunk = self.lines > half;
        self.lines = self.lines.min(half.max(1));
        shrunk
    }

    /// A batch was delivered: the new size if it grew.
    fn delivered(&mut self) -> Option<usize> {
        if self.lines >= self.configured {
            return None;
        }
        self.delivered += 1;
        if self.delivered < GROW_AFTER {
            return None;
        }
        self.delivered = 0;
        self.lines = (self.lines * 2).min(self.configured);
        Some(self.lines)
    }
}

/// The wait before the next attempt: the server's Retry-After, but never longer than
/// our own longest wait (a huge value would stop delivery until a restart).
fn retry_wait(retry_after: Option<Duration>, backoff: Duration, longest: Duration) -> Duration {
    retry_after.map_or(backoff, |after| after.min(longest))
}

impl<D: Destination> Writer<D> {
    pub fn run(mut self) {
        let mut delay = FIRST_RETRY_DELAY;
        let mut failing_since: Option<(Instant, String, Instant)> = None;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            if !stopping {
                let wait = self
                    .flush_interval
                    .mul_f64(1.0 + rand::random::<f64>() * self.jitter);
                self.spool
                    .wait_for(self.batch.lines as u64, wait, &self.stop);
            }
            self.update_levels();
            let batch = match self.spool.take_batch(self.batch.lines) {
                Ok(Some(batch)) => batch,
                Ok(None) if stopping => return,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(sink = %self.name, "cannot read the spool: {error:#}");
                    self.sleep(delay);
                    continue;
                }
            };
            match self.deliver(&batch.lines) {
                Delivery::Settled => {
                    self.spool.commit(&batch);
                    delay = FIRST_RETRY_DELAY;
                    if let Some(grown) = self.batch.delivered() {
                        tracing::info!(sink = %self.name, "sending up to {grown} {} per request again", self.destination.items());
                    }
                    if let Some((since, _, _)) = failing_since.take() {
                        tracing::info!(
                            sink = %self.name,
                            "{} accepts writes again after {}; sending what was spooled",
                            self.destination.server(),
                            humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                        );
                    }
                }
                Delivery::Retry { after, message } => {
                    self.spool.release(&batch);
                    self.metrics.error_now();
                    let repeat = match &failing_since {
                        None => true,
                        Some((_, last, logged)) => {
                            *last != message || logged.elapsed() >= REPEAT_LOG_EVERY
                        }
                    };
                    if repeat {
                        tracing::warn!(sink = %self.name, "{message}");
                        let since = failing_since.as_ref().map_or(Instant::now(), |f| f.0);
                        failing_since = Some((since, message, Instant::now()));
                    }
                    if stopping {
                        self.update_levels();
                        return;
                    }
                    self.sleep(retry_wait(after, delay, self.max_retry_delay));
                    delay = (delay * 2).min(self.max_retry_delay);
                }
            }
        }
    }

    fn update_levels(&self) {
        self.metrics.spooled.set(self.spool.waiting() as i64);
        let evicted = self.spool.take_evicted();
        if evicted > 0 {
            self.metrics.dropped.inc_by(evicted);
            tracing::error!(
                sink = %self.name,
                "the spool is full: dropped the {evicted} oldest {}; raise spool_max_mib or fix {}",
                self.destination.items(),
                self.destination.server()
            );
        }
    }

    /// Sleeps, waking early when asked to stop.
    fn sleep(&self, duration: Duration) {
        let end = Instant::now() + duration;
        while Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
        }
    }

    fn deliver(&mut self, lines: &[String]) -> Delivery {
        let (server, items) = (self.destination.server(), self.destination.items());
        match self.destination.send(lines) {
            Verdict::Written => {
                self.metrics.written.inc_by(lines.len() as u64);
                Delivery::Settled
            }
            Verdict::PartlyWritten { dropped, message } => {
                let dropped = dropped.unwrap_or(0).min(lines.len() as u64);
                self.metrics.written.inc_by(lines.len() as u64 - dropped);
                self.metrics.dropped.inc_by(dropped);
                self.metrics.error_now();
                tracing::error!(
                    sink = %self.name,
                    "{server} stored part of a batch and refused {dropped} of {} {items}: {message}",
                    lines.len()
                );
                Delivery::Settled
            }
            Verdict::Rejected { message } => {
                self.metrics.dropped.inc_by(lines.len() as u64);
                self.metrics.error_now();
                tracing::error!(
                    sink = %self.name,
                    "{server} refused {} {items} as malformed, dropped them: {message}",
                    lines.len()
                );
                Delivery::Settled
            }
            Verdict::TooLarge if lines.len() > 1 => {
                let half = lines.len() / 2;
                if self.batch.shrink_to(half) {
                    tracing::warn!(
                        sink = %self.name,
                        "request too large (413): sending at most {} {items} per request",
                        self.batch.lines
                    );
                }
                match self.deliver(&lines[..half]) {
                    Delivery::Settled => self.deliver(&lines[half..]),
                    retry => retry,
                }
            }
            Verdict::TooLarge => {
                self.metrics.dropped.inc_by(1);
                tracing::error!(
                    sink = %self.name,
                    "one of the {items} is larger than {server} accepts (413), dropped it; raise the server's largest request size"
                );
                Delivery::Settled
            }
            Verdict::Retry { after, message } => Delivery::Retry { after, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_capped_by_the_longest_wait() {
        let (backoff, longest) = (Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(retry_wait(None, backoff, longest), backoff);
        let three = Duration::from_secs(3);
        assert_eq!(retry_wait(Some(three), backoff, longest), three);
        let day = Duration::from_secs(86_400);
        assert_eq!(retry_wait(Some(day), backoff, longest), longest);
    }

    #[test]
    fn batches_halved_by_413_grow_back() {
        let mut batch = BatchSize::new(5000);
        assert_eq!(batch.delivered(), None, "at the configured size already");
        assert!(batch.shrink_to(2500));
        assert!(batch.shrink_to(1250));
        assert!(!batch.shrink_to(2500), "a larger half is no shrink");
        assert_eq!(batch.lines, 1250);
        let grown: Vec<Option<usize>> = (0..40).map(|_| batch.delivered()).collect();
        let sizes: Vec<usize> = grown.into_iter().flatten().collect();
        assert_eq!(sizes, [2500, 5000]);
        assert_eq!(batch.lines, 5000);
        // A single point too large for the server never goes below one.
        assert!(batch.shrink_to(0));
        assert_eq!(batch.lines, 1);
    }
}

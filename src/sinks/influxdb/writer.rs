//! The delivery thread of one InfluxDB sink: takes batches from the spool in order, one
//! request at a time, and acts on each answer (see `verdict`).

use super::endpoint::Endpoint;
use super::spool::Spool;
use super::verdict::{classify, Verdict};
use crate::sinks::self_metrics::SinkMetrics;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub struct Writer {
    pub name: String,
    pub endpoint: Endpoint,
    pub spool: Arc<Spool>,
    pub metrics: SinkMetrics,
    pub stop: Arc<AtomicBool>,
    pub gzip: bool,
    pub batch_lines: usize,
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

const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);
/// A failure that lasts is logged again this often, not at every attempt.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);

impl Writer {
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
                    .wait_for(self.batch_lines as u64, wait, &self.stop);
            }
            self.update_levels();
            let batch = match self.spool.take_batch(self.batch_lines) {
                Ok(Some(batch)) => batch,
                Ok(None) if stopping => return,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(sink = %self.name, "cannot read the spool: {error}");
                    self.sleep(delay);
                    continue;
                }
            };
            match self.deliver(&batch.lines) {
                Delivery::Settled => {
                    self.spool.commit(&batch);
                    delay = FIRST_RETRY_DELAY;
                    if let Some((since, _, _)) = failing_since.take() {
                        tracing::info!(
                            sink = %self.name,
                            "InfluxDB accepts writes again after {}; sending what was spooled",
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
                    self.sleep(after.unwrap_or(delay));
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
                "the spool is full: dropped the {evicted} oldest points; raise spool_max_mib or fix the database"
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
        match self.send(lines) {
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
                    "InfluxDB stored part of a batch and refused {dropped} of {} points: {message}",
                    lines.len()
                );
                Delivery::Settled
            }
            Verdict::Rejected { message } => {
                self.metrics.dropped.inc_by(lines.len() as u64);
                self.metrics.error_now();
                tracing::error!(
                    sink = %self.name,
                    "InfluxDB refused {} points as malformed, dropped them: {message}",
                    lines.len()
                );
                Delivery::Settled
            }
            Verdict::TooLarge if lines.len() > 1 => {
                let half = lines.len() / 2;
                if self.batch_lines > half {
                    self.batch_lines = half.max(1);
                    tracing::warn!(
                        sink = %self.name,
                        "request too large (413): sending at most {} points per request",
                        self.batch_lines
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
                    "a single point is larger than the server accepts (413), dropped it; raise the server's max-body-size"
                );
                Delivery::Settled
            }
            Verdict::Retry { after, message } => Delivery::Retry { after, message },
        }
    }

    fn send(&self, lines: &[String]) -> Verdict {
        let body = match self.body(lines) {
            Ok(body) => body,
            Err(error) => {
                return Verdict::Retry {
                    after: None,
                    message: format!("cannot compress a batch: {error}"),
                }
            }
        };
        let mut request = self
            .endpoint
            .agent
            .post(&self.endpoint.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if self.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(authorization) = &self.endpoint.authorization {
            request = request.header("Authorization", authorization);
        }
        match request.send(&body[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default();
                classify(status, retry_after.as_deref(), &text, SystemTime::now())
            }
            Err(error) => Verdict::Retry {
                after: None,
                message: format!(
                    "cannot reach InfluxDB at {}: {error}; points are kept and retried",
                    self.endpoint.url.split('?').next().unwrap_or_default()
                ),
            },
        }
    }

    fn body(&self, lines: &[String]) -> std::io::Result<Vec<u8>> {
        let size = lines.iter().map(String::len).sum();
        if !self.gzip {
            let mut body = Vec::with_capacity(size);
            for line in lines {
                body.extend_from_slice(line.as_bytes());
            }
            return Ok(body);
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(size / 4),
            flate2::Compression::fast(),
        );
        for line in lines {
            encoder.write_all(line.as_bytes())?;
        }
        encoder.finish()
    }
}

//! `/healthz` beside `/metrics`, for probes (a kubelet's cannot send the scrape token):
//! healthy while the interval loop closes intervals, and nothing else said.

use crate::accounting::IntervalReport;
use axum::http::StatusCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// When the last interval reached the sink, and how long it was.
#[derive(Default)]
pub struct Heartbeat {
    last_ms: AtomicU64,
    interval_ms: AtomicU64,
}

/// An interval loop this late is stuck: three intervals, and never under 10 s.
fn allowed_silence(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(10))
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Heartbeat {
    pub fn beat(&self, report: &IntervalReport) {
        let interval = report.end.duration_since(report.start).unwrap_or_default();
        self.interval_ms
            .store(interval.as_millis() as u64, Ordering::Relaxed);
        self.last_ms
            .store(millis(SystemTime::now()), Ordering::Relaxed);
    }

    /// 200 while intervals close in time; 503 before the first and when the loop stalls.
    pub fn status(&self, now: SystemTime) -> (StatusCode, String) {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last == 0 {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: no interval closed yet\n".into(),
            );
        }
        let silent = Duration::from_millis(millis(now).saturating_sub(last));
        let interval = Duration::from_millis(self.interval_ms.load(Ordering::Relaxed));
        if silent > allowed_silence(interval) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("stalled: no interval closed for {} s\n", silent.as_secs()),
            );
        }
        (StatusCode::OK, "ok\n".into())
    }
}

pub async fn healthz(
    axum::extract::State(heartbeat): axum::extract::State<Arc<Heartbeat>>,
) -> (StatusCode, String) {
    heartbeat.status(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> IntervalReport {
        let end = SystemTime::now();
        IntervalReport::of(end - Duration::from_secs(1), end, Vec::new())
    }

    #[test]
    fn healthy_only_between_the_first_interval_and_a_stall() {
        let heartbeat = Heartbeat::default();
        let now = SystemTime::now();
        assert_eq!(heartbeat.status(now).0, StatusCode::SERVICE_UNAVAILABLE);
        heartbeat.beat(&report());
        assert_eq!(heartbeat.status(now).0, StatusCode::OK);
        let stalled = heartbeat.status(now + Duration::from_secs(11));
        assert_eq!(stalled.0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            stalled.1.contains("no interval closed for 1"),
            "{}",
            stalled.1
        );
    }
}

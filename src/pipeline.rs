//! The interval loop: engine -> attribution -> accounting -> sinks, once per interval,
//! and a last time on shutdown so nothing counted is lost.

use crate::accounting::Accountant;
use crate::attribution::Attributor;
use crate::engine::Engine;
use crate::geo::Geo;
use crate::sinks::Sink;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Pipeline {
    pub engine: Box<dyn Engine>,
    pub attributor: Attributor,
    pub accountant: Accountant,
    pub sinks: Vec<Box<dyn Sink>>,
    /// Sinks a reload replaces (JSON lines, InfluxDB).
    pub reloadable: Vec<Box<dyn Sink>>,
    pub interval: Duration,
    pub reload: Option<Reload>,
}

/// SIGHUP: the configuration read again, applied without losing a count.
pub struct Reload {
    pub requested: Arc<AtomicBool>,
    pub load: Box<dyn FnMut() -> anyhow::Result<Reloaded> + Send>,
}

pub type Sinks = Vec<Box<dyn Sink>>;

pub struct Reloaded {
    pub interval: Duration,
    /// The GeoIP database as configured now (a new file, or none).
    pub geo: Option<Geo>,
    /// Starts the new reloadable sinks, once the old ones have let go of their spools.
    pub build: Box<dyn FnOnce() -> anyhow::Result<Sinks>>,
}

/// Step of the wait for the next interval, so a shutdown request is seen promptly.
const WAKE_EVERY: Duration = Duration::from_millis(50);

impl Pipeline {
    /// Runs until `shutdown` is set, then drains, writes and flushes one last time.
    pub fn run(mut self, shutdown: &AtomicBool) {
        loop {
            let boundary = next_boundary(SystemTime::now(), self.interval);
            while SystemTime::now() < boundary
                && !shutdown.load(Ordering::Relaxed)
                && !self.reload_requested()
            {
                let left = boundary
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                std::thread::sleep(left.min(WAKE_EVERY));
            }
            if shutdown.load(Ordering::Relaxed) {
                self.engine.stop();
                self.tick(SystemTime::now());
                for sink in self.sinks.iter_mut().chain(self.reloadable.iter_mut()) {
                    if let Err(error) = sink.flush() {
                        tracing::error!(sink = sink.name(), %error, "flush at shutdown failed");
                    }
                }
                return;
            }
            if self.reload_requested() {
                self.reload();
                continue;
            }
            self.tick(boundary);
        }
    }

    fn reload_requested(&self) -> bool {
        self.reload
            .as_ref()
            .is_some_and(|r| r.requested.load(Ordering::Relaxed))
    }

    /// Closes the running interval into the old sinks, then swaps in the new ones; a
    /// configuration that does not load leaves everything as it was.
    fn reload(&mut self) {
        let Some(reload) = self.reload.as_mut() else {
            return;
        };
        reload.requested.store(false, Ordering::Relaxed);
        let reloaded = match (reload.load)() {
            Ok(reloaded) => reloaded,
            Err(error) => {
                tracing::error!("configuration not reloaded: {error:#}; keeping the running one");
                return;
            }
        };
        self.tick(SystemTime::now());
        for sink in &mut self.reloadable {
            if let Err(error) = sink.flush() {
                tracing::error!(sink = sink.name(), %error, "flush at reload failed");
            }
        }
        self.reloadable.clear();
        self.interval = reloaded.interval;
        self.accountant.set_geo(reloaded.geo);
        match (reloaded.build)() {
            Ok(sinks) => {
                self.reloadable = sinks;
                tracing::info!(interval = ?self.interval, "configuration reloaded");
            }
            Err(error) => tracing::error!(
                "the reloaded configuration's sinks cannot start: {error:#}; JSON lines and InfluxDB are off until the next reload (spooled points wait)"
            ),
        }
    }

    fn tick(&mut self, end: SystemTime) {
        let observed = self.engine.drain();
        let attributed = self.attributor.attribute(observed);
        let report = self.accountant.close_interval(attributed, end);
        for sink in self.sinks.iter_mut().chain(self.reloadable.iter_mut()) {
            if let Err(error) = sink.write(&report) {
                tracing::error!(sink = sink.name(), %error, "write failed");
            }
        }
    }
}

/// Intervals end on wall-clock multiples of their length, so that every host and every
/// restart writes the same timestamps.
pub fn next_boundary(now: SystemTime, interval: Duration) -> SystemTime {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let step = interval.as_nanos().max(1);
    let next = (since_epoch.as_nanos() / step + 1) * step;
    UNIX_EPOCH + Duration::from_nanos(next as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_aligned_and_in_the_future() {
        let now = UNIX_EPOCH + Duration::from_millis(10_250);
        let next = next_boundary(now, Duration::from_secs(1));
        assert_eq!(next, UNIX_EPOCH + Duration::from_secs(11));
        let exact = UNIX_EPOCH + Duration::from_secs(11);
        assert_eq!(
            next_boundary(exact, Duration::from_secs(1)),
            UNIX_EPOCH + Duration::from_secs(12)
        );
        let five = next_boundary(now, Duration::from_secs(5));
        assert_eq!(five, UNIX_EPOCH + Duration::from_secs(15));
    }
}

//! The interval loop: engine -> attribution -> accounting -> sinks, once per interval,
//! and a last time on shutdown so nothing counted is lost.

use crate::accounting::Accountant;
use crate::attribution::Attributor;
use crate::capture::Capturing;
use crate::engine::Engine;
use crate::geo::Geo;
use crate::limits::{LimitSetup, LimitTargets, Limits};
use crate::rate_limited::Repeats;
use crate::requests::Requests;
use crate::sinks::Sink;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Pipeline {
    pub engine: Box<dyn Engine>,
    pub attributor: Attributor,
    pub accountant: Accountant,
    pub sinks: Vec<Box<dyn Sink>>,
    /// Sinks a reload replaces (JSON lines, InfluxDB).
    pub reloadable: Vec<Box<dyn Sink>>,
    pub interval: Duration,
    pub reload: Option<Reload>,
    /// Per sink, so that a lasting failure (a full disk) is not a line per interval.
    pub write_failures: HashMap<String, Repeats>,
    /// Intervals that took over half their length to close.
    pub slow_intervals: Repeats,
    /// The configured bandwidth limits, resolved again each interval.
    pub limits: Limits,
    /// What the engine enforces now.
    pub applied_limits: LimitTargets,
    /// Packet captures asked for (`netgraph capture`, alert rules), run one at a time.
    pub capturing: Capturing,
}

/// SIGHUP: the configuration read again, applied without losing a count.
pub struct Reload {
    pub load: Box<dyn FnMut() -> anyhow::Result<Reloaded> + Send>,
}

pub type Sinks = Vec<Box<dyn Sink>>;

pub struct Reloaded {
    pub interval: Duration,
    /// The GeoIP database as configured now (a new file, or none).
    pub geo: Option<Geo>,
    pub limits: LimitSetup,
    /// Starts the new reloadable sinks, once the old ones have let go of their spools.
    pub build: Box<dyn FnOnce() -> anyhow::Result<Sinks>>,
}

impl Pipeline {
    /// Runs until a shutdown is requested, then drains, writes and flushes one last time.
    pub fn run(mut self, requests: &Requests) {
        raise_priority();
        let mut boundary = next_boundary(SystemTime::now(), self.interval);
        loop {
            requests.wait_until(boundary);
            if requests.shutdown_requested() {
                self.capturing.stop(&mut *self.engine);
                self.engine.stop();
                self.tick(SystemTime::now());
                for sink in self.sinks.iter_mut().chain(self.reloadable.iter_mut()) {
                    if let Err(error) = sink.flush() {
                        tracing::error!(sink = sink.name(), "flush at shutdown failed: {error:#}");
                    }
                }
                return;
            }
            if requests.take_reload() {
                // A refused file changes nothing, not even the boundary: recomputing it
                // from now skipped the interval whose end had just passed.
                if self.reload() {
                    boundary = next_boundary(SystemTime::now(), self.interval);
                }
                continue;
            }
            self.tick(boundary);
            // Housekeeping waits while a shutdown is pending: the last report first.
            if !requests.shutdown_requested() {
                self.engine.maintain();
            }
            boundary = following(boundary, self.interval, SystemTime::now());
        }
    }

    /// Closes the running interval into the old sinks, then swaps in the new ones; a
    /// configuration that does not load leaves everything as it was (false).
    fn reload(&mut self) -> bool {
        let Some(reload) = self.reload.as_mut() else {
            return false;
        };
        let reloaded = match (reload.load)() {
            Ok(reloaded) => reloaded,
            Err(error) => {
                tracing::error!("configuration not reloaded: {error:#}; keeping the running one");
                return false;
            }
        };
        self.tick(SystemTime::now());
        for sink in &mut self.reloadable {
            if let Err(error) = sink.release() {
                tracing::error!(sink = sink.name(), "flush at reload failed: {error:#}");
            }
        }
        self.reloadable.clear();
        self.interval = reloaded.interval;
        self.accountant.set_geo(reloaded.geo);
        self.limits = Limits::new(
            reloaded.limits,
            self.limits.throttles().clone(),
            self.attributor.containers(),
        );
        self.enforce_limits();
        match (reloaded.build)() {
            Ok(sinks) => {
                self.reloadable = sinks;
                tracing::info!(interval = ?self.interval, "configuration reloaded");
            }
            Err(error) => tracing::error!(
                "the reloaded configuration's sinks cannot start: {error:#}; JSON lines and InfluxDB are off until the next reload (spooled points wait)"
            ),
        }
        true
    }

    /// Gives the engine who each limit covers now (units and cgroups come and go).
    pub fn enforce_limits(&mut self) {
        let targets = self.limits.targets();
        if targets == self.applied_limits {
            return;
        }
        match self.engine.set_limits(&targets) {
            Ok(()) => {
                if targets.limits != self.applied_limits.limits {
                    tracing::info!(limits = targets.limits.len(), "bandwidth limits in force");
                }
            }
            Err(reason) => tracing::error!("bandwidth limits not enforced: {reason}"),
        }
        self.applied_limits = targets;
    }

    fn tick(&mut self, end: SystemTime) {
        let started = Instant::now();
        self.enforce_limits();
        self.capturing
            .tick(&mut *self.engine, &self.attributor.containers());
        let observed = self.engine.drain();
        let drained = started.elapsed();
        let attributed = self.attributor.attribute(observed);
        self.capturing.name_flows(&attributed, &mut *self.engine);
        let attributed_at = started.elapsed();
        let report = self.accountant.close_interval(attributed, end);
        for sink in self.sinks.iter_mut().chain(self.reloadable.iter_mut()) {
            let failures = self
                .write_failures
                .entry(sink.name().to_string())
                .or_insert_with(Repeats::every_minute);
            match sink.write(&report) {
                Ok(()) => {
                    if let Some(held) = failures.clear() {
                        tracing::info!(sink = sink.name(), "writes succeed again{held}");
                    }
                }
                Err(error) => {
                    if let Some(held) = failures.check(&format!("{error:#}")) {
                        tracing::error!(sink = sink.name(), "write failed: {error:#}{held}");
                    }
                }
            }
        }
        let took = started.elapsed();
        if took > self.interval / 2 {
            // A busy hour is one line a minute, not one an interval.
            if let Some(held) = self.slow_intervals.check("slow") {
                tracing::warn!(
                    ?took,
                    engine = ?drained,
                    attribution = ?(attributed_at - drained),
                    "an interval took long to close{held}"
                );
            }
        }
    }
}

/// Nice value of the interval loop's thread: a host saturated by the traffic netgraph
/// measures (connection churn takes every core) must not starve the loop, or
/// intervals close late and SIGTERM waits.
const LOOP_NICE: i32 = -10;

/// Raises this thread's priority where allowed (root, CAP_SYS_NICE, or a unit's
/// `Nice=` that already did); elsewhere it runs as it is.
fn raise_priority() {
    if let Err(error) = crate::thread_priority::raise(LOOP_NICE) {
        tracing::info!(
            %error,
            "the interval loop keeps its priority (needs CAP_SYS_NICE or Nice={LOOP_NICE}); under a saturated CPU intervals may close late"
        );
    }
}

/// Intervals late by this many are given up (a suspended host, a clock step); fewer
/// are caught up, so a busy moment costs no point.
const CATCH_UP_AT_MOST: u32 = 5;

/// The boundary after `boundary`: the next one in turn, so that an interval that
/// closed late is not skipped; after a long stall or a clock step, the next from now.
pub fn following(boundary: SystemTime, interval: Duration, now: SystemTime) -> SystemTime {
    let next = boundary + interval;
    let behind = now.duration_since(next).unwrap_or_default();
    let ahead = next.duration_since(now).unwrap_or_default();
    if behind > interval * CATCH_UP_AT_MOST || ahead > interval {
        next_boundary(now, interval)
    } else {
        next
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

    #[test]
    fn a_late_interval_is_caught_up_not_skipped() {
        let second = Duration::from_secs(1);
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        // On time, and 2.5 s late: the next boundary in turn either way.
        assert_eq!(following(at(10_000), second, at(10_010)), at(11_000));
        assert_eq!(following(at(10_000), second, at(13_500)), at(11_000));
        // Far behind (a suspended host): from now.
        assert_eq!(following(at(10_000), second, at(60_200)), at(61_000));
        // The clock stepped back an hour: from now, not an hour's wait.
        assert_eq!(following(at(10_000), second, at(6_400)), at(7_000));
    }
}

#[cfg(test)]
mod loop_tests;

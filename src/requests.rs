//! Requests to the interval loop (stop; take up the configuration again), which wake it
//! at once. The loop used to wake 20 times a second to look for them, which was most of
//! netgraph's CPU on an idle host.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

#[derive(Clone, Default)]
pub struct Requests(Arc<Shared>);

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    shutdown: bool,
    reload: bool,
}

impl Requests {
    pub fn shutdown(&self) {
        self.set(|pending| pending.shutdown = true);
    }

    pub fn reload(&self) {
        self.set(|pending| pending.reload = true);
    }

    pub fn shutdown_requested(&self) -> bool {
        self.pending().shutdown
    }

    pub fn reload_requested(&self) -> bool {
        self.pending().reload
    }

    /// True once per reload request.
    pub fn take_reload(&self) -> bool {
        std::mem::take(&mut self.pending().reload)
    }

    /// Sleeps until `deadline` passes or a request is pending.
    pub fn wait_until(&self, deadline: SystemTime) {
        let mut pending = self.pending();
        while !pending.shutdown && !pending.reload {
            let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                return;
            };
            if left.is_zero() {
                return;
            }
            pending = match self.0.changed.wait_timeout(pending, left) {
                Ok((pending, _)) => pending,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// SIGTERM and SIGINT request a shutdown, SIGHUP a reload (from a thread of their own).
    pub fn follow_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let requests = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    match signal {
                        SIGHUP => requests.reload(),
                        _ => requests.shutdown(),
                    }
                }
            })?;
        Ok(())
    }

    fn set(&self, change: impl FnOnce(&mut Pending)) {
        change(&mut self.pending());
        self.0.changed.notify_all();
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        crate::locks::lock(&self.0.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_request_ends_the_wait_at_once() {
        let requests = Requests::default();
        let asking = requests.clone();
        let asked = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            asking.shutdown();
        });
        let started = Instant::now();
        requests.wait_until(SystemTime::now() + Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(requests.shutdown_requested());
        asked.join().unwrap();
    }

    #[test]
    fn a_reload_is_taken_once_and_the_deadline_ends_a_quiet_wait() {
        let requests = Requests::default();
        requests.reload();
        requests.wait_until(SystemTime::now() + Duration::from_secs(30));
        assert!(requests.take_reload());
        assert!(!requests.take_reload());
        let started = Instant::now();
        requests.wait_until(SystemTime::now() + Duration::from_millis(50));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(!requests.shutdown_requested());
    }
}

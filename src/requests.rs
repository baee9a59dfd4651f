//! Requests to the interval loop (stop; take up the configuration again), which wake it
//! at once. The loop used to wake 20 times a second to look for them, which was most of
//! netgraph's CPU on an idle host.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

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

    /// A reload whenever `path`'s content differs from what it was at the last look,
    /// every `every` (from a thread of its own). A mounted ConfigMap is replaced by a
    /// symbolic link's swap, which content catches where a modification time may not.
    pub fn follow_file(&self, path: PathBuf, every: Duration) -> std::io::Result<()> {
        let requests = self.clone();
        let mut seen = std::fs::read(&path).ok();
        std::thread::Builder::new()
            .name("config-watch".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                // A file being replaced may be missing for a moment: wait for the new one.
                let Ok(now) = std::fs::read(&path) else {
                    continue;
                };
                if seen.as_ref() != Some(&now) {
                    if seen.is_some() {
                        tracing::info!(path = %path.display(), "the configuration file changed; reloading");
                        requests.reload();
                    }
                    seen = Some(now);
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
    use std::time::Instant;

    /// A ConfigMap's volume: the file is a link through `..data`, a link to a directory
    /// of the current version, swapped atomically on a change.
    #[test]
    fn a_configmap_s_swap_is_a_reload_and_the_same_content_is_not() {
        let dir = std::env::temp_dir().join(format!("netgraph-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let version = |name: &str, text: &str| {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("netgraph.toml"), text).unwrap();
            let link = dir.join("..data_tmp");
            std::os::unix::fs::symlink(name, &link).unwrap();
            std::fs::rename(&link, dir.join("..data")).unwrap();
        };
        version("v1", "interval = \"1s\"\n");
        std::os::unix::fs::symlink("..data/netgraph.toml", dir.join("netgraph.toml")).unwrap();
        let requests = Requests::default();
        requests
            .follow_file(dir.join("netgraph.toml"), Duration::from_millis(20))
            .unwrap();
        version("v2", "interval = \"1s\"\n");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!requests.take_reload(), "the same content again");
        version("v3", "interval = \"2s\"\n");
        requests.wait_until(SystemTime::now() + Duration::from_secs(10));
        assert!(requests.take_reload());
        let _ = std::fs::remove_dir_all(&dir);
    }

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

//! Resolves flows to processes: socket table lookup, then socket inode to process.
//! Results are cached per flow; tables are refreshed only when a flow is unknown.

use super::host::Host;
use super::processes::{ProcessIdentity, ProcessTable};
use super::sockets::SocketTable;
use crate::traffic::Flow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Refreshes from hints are at most this frequent: a burst of new flows shares one scan.
pub const MIN_REFRESH_GAP: Duration = Duration::from_millis(5);
/// Drains a cached owner outlives its flow's last traffic.
const KEEP_IDLE: u64 = 3;
/// Drains a flow found ownerless stays so before it is looked up again.
const NEGATIVE_TTL: u64 = 5;
/// Bound on cached flows; beyond it the least recently used go first.
const MAX_CACHED: usize = 262_144;

/// What traffic names a socket by: a flow (capture engine) or a socket cookie (eBPF
/// engine, for sockets opened before it started).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketRef {
    Flow(Flow),
    Cookie(u64),
}

struct Cached {
    owner: Option<Arc<ProcessIdentity>>,
    resolved_at: u64,
    last_used: u64,
}

pub struct Resolver {
    host: Box<dyn Host>,
    sockets: SocketTable,
    processes: ProcessTable,
    last_refresh: Option<Instant>,
    cache: HashMap<SocketRef, Cached>,
    generation: u64,
    pub refreshes: u64,
}

impl Resolver {
    pub fn new(host: Box<dyn Host>) -> Resolver {
        Resolver {
            host,
            sockets: SocketTable::default(),
            processes: ProcessTable::default(),
            last_refresh: None,
            cache: HashMap::new(),
            generation: 0,
            refreshes: 0,
        }
    }

    pub fn until_refresh_allowed(&self) -> Duration {
        self.last_refresh
            .map(|at| MIN_REFRESH_GAP.saturating_sub(at.elapsed()))
            .unwrap_or_default()
    }

    fn refresh_sockets(&mut self) {
        self.sockets = self.host.sockets();
        self.last_refresh = Some(Instant::now());
        self.refreshes += 1;
    }

    fn refresh_all(&mut self) {
        self.refresh_sockets();
        self.processes.refresh_all(&*self.host);
    }

    fn socket(&self, socket: &SocketRef) -> Option<&super::SocketEntry> {
        match socket {
            SocketRef::Flow(flow) => self.sockets.lookup(flow),
            SocketRef::Cookie(cookie) => self.sockets.by_cookie(*cookie),
        }
    }

    fn find(&self, socket: &SocketRef) -> Option<Arc<ProcessIdentity>> {
        let entry = self.socket(socket)?;
        self.processes.owner(entry.inode).cloned()
    }

    /// New flows just seen by an engine: look them up now, while their process lives.
    /// A flow seen anew may be a reused address pair, so its old answer is not trusted.
    pub fn resolve_new(&mut self, flows: &[Flow]) {
        if flows.is_empty() {
            return;
        }
        let started = Instant::now();
        self.refresh_sockets();
        let inodes: Vec<u64> = flows
            .iter()
            .filter_map(|flow| self.sockets.lookup(flow).map(|s| s.inode))
            .collect();
        self.processes.find(&*self.host, &inodes);
        tracing::trace!(flows = flows.len(), took = ?started.elapsed(), "resolved new flows");
        for flow in flows {
            let socket = SocketRef::Flow(*flow);
            if let Some(owner) = self.find(&socket) {
                self.remember(socket, Some(owner));
            }
        }
    }

    /// Owners for one interval's sockets. Unknown ones get one refresh, then are ownerless.
    pub fn resolve_interval(&mut self, sockets: &[SocketRef]) -> Vec<Option<Arc<ProcessIdentity>>> {
        self.generation += 1;
        if sockets.iter().any(|socket| self.cached(socket).is_none()) {
            self.refresh_all();
        }
        let owners = sockets
            .iter()
            .map(|socket| match self.cached(socket) {
                Some(owner) => owner,
                None => {
                    let owner = self.find(socket);
                    self.remember(*socket, owner.clone());
                    owner
                }
            })
            .collect();
        self.collect();
        owners
    }

    fn cached(&mut self, socket: &SocketRef) -> Option<Option<Arc<ProcessIdentity>>> {
        let generation = self.generation;
        let entry = self.cache.get_mut(socket)?;
        if entry.owner.is_none() && generation - entry.resolved_at > NEGATIVE_TTL {
            return None;
        }
        entry.last_used = generation;
        Some(entry.owner.clone())
    }

    fn remember(&mut self, socket: SocketRef, owner: Option<Arc<ProcessIdentity>>) {
        self.cache.insert(
            socket,
            Cached {
                owner,
                resolved_at: self.generation,
                last_used: self.generation,
            },
        );
    }

    fn collect(&mut self) {
        let generation = self.generation;
        self.cache
            .retain(|_, entry| generation - entry.last_used <= KEEP_IDLE);
        if self.cache.len() > MAX_CACHED {
            let mut ages: Vec<u64> = self.cache.values().map(|e| e.last_used).collect();
            let cut = ages.len() - MAX_CACHED;
            let (_, threshold, _) = ages.select_nth_unstable(cut);
            let threshold = *threshold;
            self.cache.retain(|_, entry| entry.last_used > threshold);
        }
    }
}

#[cfg(test)]
mod tests;

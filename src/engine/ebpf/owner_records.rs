//! The owner records the kernel side keeps: per socket (`owners`, by cookie) and per
//! process (`processes`, by tgid). Looked up once per drain, and swept of records
//! nothing refers to any more.

use super::counters::{self, Counters};
use super::map_ops;
use super::plain_data;
use super::skeleton::{types, NetgraphMaps};
use crate::engine::KernelOwner;
use libbpf_rs::{MapCore, MapFlags, MapMut};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a sweep needs of a socket owner record: no name, so no allocation each.
pub struct SocketRecord {
    pub cookie: u64,
    pub tgid: u32,
    pub released: bool,
}

/// Every socket owner record in one pass.
pub fn socket_records(owners: &MapMut<'_>) -> Vec<SocketRecord> {
    map_ops::entries(owners)
        .iter()
        .filter_map(|(key, value)| {
            let cookie = u64::from_ne_bytes(key.get(..8)?.try_into().ok()?);
            let (tgid, released) = counters::parse_owner_state(value)?;
            Some(SocketRecord {
                cookie,
                tgid,
                released,
            })
        })
        .collect()
}

/// A socket's owner record: the owner, and whether the socket was released.
pub fn socket_owner(owners: &MapMut<'_>, cookie: u64) -> Option<(KernelOwner, bool)> {
    let value = owners.lookup(&cookie.to_ne_bytes(), MapFlags::ANY).ok()??;
    counters::parse_owner(&value)
}

fn process(processes: &MapMut<'_>, tgid: u32) -> Option<KernelOwner> {
    let value = processes
        .lookup(&tgid.to_ne_bytes(), MapFlags::ANY)
        .ok()??;
    counters::parse_owner(&value).map(|(owner, _)| owner)
}

/// Owner records read during one drain, each at most once.
pub struct OwnerLookups<'a> {
    maps: &'a NetgraphMaps<'static>,
    sockets: HashMap<u64, Option<KernelOwner>>,
    processes: HashMap<u32, Option<KernelOwner>>,
    cgroup_paths: HashMap<u64, Option<Arc<str>>>,
    exe_paths: HashMap<u32, Option<Arc<str>>>,
}

impl<'a> OwnerLookups<'a> {
    pub fn new(maps: &'a NetgraphMaps<'static>) -> Self {
        OwnerLookups {
            maps,
            sockets: HashMap::new(),
            processes: HashMap::new(),
            cgroup_paths: HashMap::new(),
            exe_paths: HashMap::new(),
        }
    }

    /// The socket's current owner.
    pub fn socket(&mut self, cookie: u64) -> Option<KernelOwner> {
        if !self.sockets.contains_key(&cookie) {
            let owner = socket_owner(&self.maps.owners, cookie).map(|(owner, _)| owner);
            let owner = owner.map(|owner| self.with_cgroup_path(owner));
            self.sockets.insert(cookie, owner);
        }
        self.sockets[&cookie].clone()
    }

    /// The process with this tgid, as recorded when it last moved traffic.
    pub fn process(&mut self, tgid: u32) -> Option<KernelOwner> {
        if !self.processes.contains_key(&tgid) {
            let owner = process(&self.maps.processes, tgid).map(|o| self.with_cgroup_path(o));
            self.processes.insert(tgid, owner);
        }
        self.processes[&tgid].clone()
    }

    /// Adds the paths the kernel side recorded when the owner's cgroup was made and
    /// when its program was executed.
    fn with_cgroup_path(&mut self, mut owner: KernelOwner) -> KernelOwner {
        let maps = self.maps;
        owner.exe = self
            .exe_paths
            .entry(owner.tgid)
            .or_insert_with(|| {
                let value = recorded(&maps.exe_paths, &owner.tgid.to_ne_bytes())?;
                c_string(&plain_data::read::<types::exe_path>(&value)?.path)
            })
            .clone();
        owner.cgroup_path = self
            .cgroup_paths
            .entry(owner.cgroup_id)
            .or_insert_with(|| {
                let value = recorded(&maps.cgroup_paths, &owner.cgroup_id.to_ne_bytes())?;
                c_string(&plain_data::read::<types::cgroup_path>(&value)?.path)
            })
            .clone();
        owner
    }
}

/// The value a kernel map holds for `key`, if any.
fn recorded(map: &MapMut<'_>, key: &[u8]) -> Option<Vec<u8>> {
    map.lookup(key, MapFlags::ANY).ok()?
}

/// A NUL-terminated path the kernel side recorded; `None` if empty.
fn c_string(chars: &[std::ffi::c_char]) -> Option<Arc<str>> {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&c| c != 0)
        .collect();
    (!bytes.is_empty()).then(|| Arc::from(String::from_utf8_lossy(&bytes).as_ref()))
}

/// Sweeps owner and process records nothing refers to. A record goes only when two
/// sweeps in a row find it unused: packets counted between a drain's read and a sweep
/// (a socket closed with data still queued) still find their owner, as the next drain
/// reads their counters before the next sweep.
#[derive(Default)]
pub struct Sweeper {
    unused_sockets: HashSet<u64>,
    unused_processes: HashSet<u32>,
}

impl Sweeper {
    /// Owner records of closed sockets with no counters left (closed without moving a
    /// packet), and process records no socket or counter refers to any more. One read
    /// of each map, then batched deletes: linear in the maps' size.
    pub fn sweep(&mut self, maps: &NetgraphMaps<'_>, counters: &Counters) {
        let tracked = counters.cookies();
        let mut referenced = counters.tgids();
        let mut unused_sockets = HashSet::new();
        let mut doomed = Vec::new();
        let owners = socket_records(&maps.owners);
        let owners_before = owners.len();
        for record in owners {
            let cookie = record.cookie;
            if !record.released || tracked.contains(&cookie) {
                referenced.insert(record.tgid);
            } else if self.unused_sockets.contains(&cookie) {
                doomed.push(cookie.to_ne_bytes().to_vec());
            } else {
                referenced.insert(record.tgid);
                unused_sockets.insert(cookie);
            }
        }
        let owners_deleted = map_ops::delete(&maps.owners, &doomed);
        let mut unused_processes = HashSet::new();
        let mut doomed = Vec::new();
        let mut processes_before = 0;
        for key in map_ops::keys(&maps.processes) {
            processes_before += 1;
            let Some(tgid) = key
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
            else {
                continue;
            };
            if referenced.contains(&tgid) {
                continue;
            }
            if self.unused_processes.contains(&tgid) {
                doomed.push(key);
            } else {
                unused_processes.insert(tgid);
            }
        }
        let processes_deleted = map_ops::delete(&maps.processes, &doomed);
        tracing::debug!(
            owners = owners_before - owners_deleted,
            processes = processes_before - processes_deleted,
            counters = counters.len(),
            "swept owner and process records"
        );
        self.unused_sockets = unused_sockets;
        self.unused_processes = unused_processes;
    }
}

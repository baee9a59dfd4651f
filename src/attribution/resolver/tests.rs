//! Attribution's rules on a host of the test's making: no root, no /proc.

use super::*;
use crate::attribution::host::Host;
use crate::attribution::SocketEntry;
use crate::traffic::Protocol;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Processes (identity, socket inodes) and sockets, changed by the test between calls,
/// and how often attribution read them.
#[derive(Default)]
struct World {
    sockets: Vec<SocketEntry>,
    processes: BTreeMap<u32, (ProcessIdentity, Vec<u64>)>,
    socket_reads: usize,
    fd_scans: usize,
    identity_reads: usize,
}

#[derive(Clone, Default)]
struct FakeHost(Arc<Mutex<World>>);

impl FakeHost {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }

    /// A process `pid` named `name` holding the connected TCP socket of `flow`.
    fn connect(&self, pid: u32, name: &str, inode: u64, flow: Flow) {
        let mut world = self.world();
        world.sockets.push(SocketEntry {
            protocol: flow.protocol,
            local: flow.local,
            remote: flow.remote,
            inode,
            uid: 1000,
            cookie: inode * 100,
        });
        let identity = ProcessIdentity {
            pid,
            name: name.into(),
            exe: None,
            uid: 1000,
            cgroup: None,
        };
        world
            .processes
            .entry(pid)
            .or_insert((identity, Vec::new()))
            .1
            .push(inode);
    }

    /// The process ends: its sockets close.
    fn exit(&self, pid: u32) {
        let mut world = self.world();
        if let Some((_, inodes)) = world.processes.remove(&pid) {
            world.sockets.retain(|s| !inodes.contains(&s.inode));
        }
    }
}

impl Host for FakeHost {
    fn sockets(&mut self) -> SocketTable {
        let mut world = self.world();
        world.socket_reads += 1;
        SocketTable::from_entries(world.sockets.clone())
    }

    fn pids_newest_first(&self) -> Vec<u32> {
        self.world().processes.keys().rev().copied().collect()
    }

    fn socket_inodes(&self, pid: u32) -> Option<Vec<u64>> {
        let mut world = self.world();
        world.fd_scans += 1;
        world.processes.get(&pid).map(|(_, inodes)| inodes.clone())
    }

    fn identity(&self, pid: u32) -> Option<ProcessIdentity> {
        let mut world = self.world();
        world.identity_reads += 1;
        world
            .processes
            .get(&pid)
            .map(|(identity, _)| identity.clone())
    }
}

fn flow(port: u16) -> Flow {
    let at = |text: &str| text.parse::<SocketAddr>().unwrap();
    Flow {
        protocol: Protocol::Tcp,
        local: at(&format!("10.0.0.1:{port}")),
        remote: at("192.0.2.7:443"),
    }
}

fn resolver(host: &FakeHost) -> Resolver {
    Resolver::new(Box::new(host.clone()))
}

fn owner_of(resolver: &mut Resolver, socket: SocketRef) -> Option<(u32, String)> {
    resolver.resolve_interval(&[socket])[0]
        .as_ref()
        .map(|p| (p.pid, p.name.clone()))
}

#[test]
fn a_short_lived_process_is_named_from_its_hint_after_it_ended() {
    let host = FakeHost::default();
    host.connect(500, "curl", 9, flow(40_000));
    let mut hinted = resolver(&host);
    hinted.resolve_new(&[flow(40_000)]);
    let mut unhinted = resolver(&host);
    host.exit(500);
    assert_eq!(
        owner_of(&mut hinted, SocketRef::Flow(flow(40_000))),
        Some((500, "curl".into()))
    );
    // Without the hint, the interval's end is too late: the process is gone.
    assert_eq!(owner_of(&mut unhinted, SocketRef::Flow(flow(40_000))), None);
}

#[test]
fn an_ownerless_flow_is_looked_up_again_only_after_a_few_intervals() {
    let host = FakeHost::default();
    let mut resolver = resolver(&host);
    let socket = SocketRef::Flow(flow(40_001));
    assert_eq!(owner_of(&mut resolver, socket), None);
    host.connect(600, "late", 11, flow(40_001));
    let reads = host.world().socket_reads;
    for _ in 0..NEGATIVE_TTL {
        assert_eq!(
            owner_of(&mut resolver, socket),
            None,
            "the negative answer holds"
        );
    }
    assert_eq!(host.world().socket_reads, reads, "and costs no scan");
    assert_eq!(owner_of(&mut resolver, socket), Some((600, "late".into())));
}

#[test]
fn a_reused_address_pair_takes_its_new_owner_from_the_hint() {
    let host = FakeHost::default();
    let mut resolver = resolver(&host);
    host.connect(10, "first", 1, flow(40_002));
    let socket = SocketRef::Flow(flow(40_002));
    assert_eq!(owner_of(&mut resolver, socket), Some((10, "first".into())));
    host.exit(10);
    host.connect(11, "second", 2, flow(40_002));
    assert_eq!(
        owner_of(&mut resolver, socket),
        Some((10, "first".into())),
        "a cached owner is not looked up every interval"
    );
    // The engine saw the pair anew: a new connection, looked up afresh.
    resolver.resolve_new(&[flow(40_002)]);
    assert_eq!(owner_of(&mut resolver, socket), Some((11, "second".into())));
}

#[test]
fn owners_are_forgotten_once_their_flow_is_idle() {
    let host = FakeHost::default();
    let mut resolver = resolver(&host);
    host.connect(20, "idle", 3, flow(40_003));
    let socket = SocketRef::Flow(flow(40_003));
    assert!(owner_of(&mut resolver, socket).is_some());
    host.exit(20);
    // Other traffic's intervals pass; this flow's owner stays cached only so long.
    for port in 0..=KEEP_IDLE as u16 {
        resolver.resolve_interval(&[SocketRef::Flow(flow(50_000 + port))]);
    }
    assert_eq!(owner_of(&mut resolver, socket), None);
}

#[test]
fn sockets_opened_before_the_engine_are_found_by_cookie() {
    let host = FakeHost::default();
    let mut resolver = resolver(&host);
    host.connect(30, "sshd", 4, flow(22));
    assert_eq!(
        owner_of(&mut resolver, SocketRef::Cookie(400)),
        Some((30, "sshd".into()))
    );
    assert_eq!(owner_of(&mut resolver, SocketRef::Cookie(401)), None);
}

#[test]
fn a_process_is_read_once_however_many_sockets_and_refreshes() {
    let host = FakeHost::default();
    let mut resolver = resolver(&host);
    for (inode, port) in [(5, 40_010), (6, 40_011), (7, 40_012)] {
        host.connect(40, "browser", inode, flow(port));
    }
    for port in 40_010..40_013 {
        assert!(owner_of(&mut resolver, SocketRef::Flow(flow(port))).is_some());
        // A flow no socket has forces a full refresh each interval.
        resolver.resolve_interval(&[SocketRef::Flow(flow(port + 100))]);
    }
    assert_eq!(host.world().identity_reads, 1);
}

#[test]
fn a_new_flow_s_owner_is_sought_newest_process_first_and_no_further() {
    let host = FakeHost::default();
    for pid in 100..200 {
        host.connect(pid, "old", u64::from(pid), flow(pid as u16));
    }
    host.connect(900, "new", 9000, flow(45_000));
    let mut resolver = resolver(&host);
    resolver.resolve_new(&[flow(45_000)]);
    assert_eq!(
        host.world().fd_scans,
        1,
        "only the newest process was scanned"
    );
    assert_eq!(
        owner_of(&mut resolver, SocketRef::Flow(flow(45_000))),
        Some((900, "new".into()))
    );
}

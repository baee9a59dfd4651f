use super::*;
use crate::accounting::SeriesKey;
use crate::traffic::Traffic;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netgraph-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn row(
    name: &str,
    uid: Option<u32>,
    interface: &str,
    cgroup: &str,
    sent: u64,
    recv: u64,
) -> ProcessRow {
    let mut last = Traffic::default();
    last.sent.bytes = sent;
    last.sent.packets = 1;
    last.recv.bytes = recv;
    last.recv.packets = 1;
    ProcessRow {
        key: SeriesKey {
            name: name.into(),
            uid,
            interface: interface.into(),
            container: None,
            reason: None,
        },
        attributed: uid.is_some(),
        pid: Some(1),
        exe: None,
        cgroup: (!cgroup.is_empty()).then(|| cgroup.to_string()),
        workload: None,
        last,
        total: last,
    }
}

fn report(second: u64, rows: Vec<ProcessRow>) -> IntervalReport {
    IntervalReport::of(
        UNIX_EPOCH + Duration::from_secs(second),
        UNIX_EPOCH + Duration::from_secs(second + 1),
        rows,
    )
}

/// Two hours of one-second intervals, starting on an hour boundary.
const START: u64 = 1_700_000_000 - 1_700_000_000 % 3600;

fn fill(store: &mut Store, seconds: u64) -> (u64, u64) {
    let (mut curl, mut all) = (0, 0);
    for s in 0..seconds {
        let rows = vec![
            row("curl", Some(1000), "eth0", "/user.slice", 100 + s % 7, 10),
            row("sshd", Some(0), "eth0", "/system.slice/ssh.service", 50, 5),
            row("unknown UDP", None, "wg0", "", 3, 4),
        ];
        curl += 100 + s % 7;
        all += 100 + s % 7 + 10 + 55 + 7;
        store.write(&report(START + s, rows)).unwrap();
    }
    (curl, all)
}

#[test]
fn sums_are_exact_at_every_resolution_and_survive_a_reopen() {
    let dir = scratch("exact");
    let retention = Retention {
        seconds: Duration::from_secs(10 * 86_400),
        ..Retention::default()
    };
    let mut store = Store::open(&dir, retention.clone()).unwrap();
    let (curl, all) = fill(&mut store, 7200);
    drop(store);
    let store = Store::open(&dir, retention).unwrap();
    let reader = store.reader().unwrap();
    let (from, to) = (START as i64, (START + 7200) as i64);
    let (resolution, totals) = reader.totals(from, to, GroupBy::Process, 10, None).unwrap();
    assert_eq!(resolution, 1);
    assert_eq!(totals[0].key, "curl");
    assert_eq!(totals[0].sent_bytes, curl);
    let sum: u64 = totals.iter().map(|t| t.sent_bytes + t.recv_bytes).sum();
    assert_eq!(sum, all);
    assert!(
        !totals
            .iter()
            .find(|t| t.key == "unknown UDP")
            .unwrap()
            .attributed
    );

    for (step, expected_points) in [(60, 120), (3600, 2)] {
        let history = reader
            .history(from, to, step, GroupBy::Process, 10, None)
            .unwrap();
        assert_eq!(history.points.len(), expected_points);
        let index = history.keys.iter().position(|k| k == "curl").unwrap();
        let summed: u64 = history.points.iter().map(|p| p.sent[index]).sum();
        assert_eq!(summed, curl, "step {step}");
    }
    let users = reader.totals(from, to, GroupBy::User, 10, None).unwrap().1;
    let keys: Vec<&str> = users.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["1000", "0", ""]);
    // Named where this host knows the user (root always).
    assert_eq!(users[1].names.as_deref(), Some("root"));
    assert_eq!(users[2].names, None);
    let cgroups = reader
        .totals(from, to, GroupBy::Cgroup, 10, None)
        .unwrap()
        .1;
    assert_eq!(cgroups[0].key, "/user.slice");
    let interfaces = reader
        .totals(from, to, GroupBy::Interface, 1, None)
        .unwrap()
        .1;
    assert_eq!(interfaces.len(), 1);
    let only = reader
        .history(
            from,
            to,
            3600,
            GroupBy::Interface,
            5,
            Some(Only {
                group_by: GroupBy::Process,
                key: "curl",
            }),
        )
        .unwrap();
    assert_eq!(only.keys, ["eth0"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expired_seconds_leave_minutes_and_hours_exact() {
    let dir = scratch("expire");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let (curl, _) = fill(&mut store, 7200);
    store.maintain((START + 7200) as i64).unwrap();
    let reader = store.reader().unwrap();
    let (from, to) = (START as i64, (START + 7200) as i64);
    let (resolution, totals) = reader.totals(from, to, GroupBy::Process, 10, None).unwrap();
    assert_eq!(resolution, 60, "the seconds of the first hour expired");
    assert_eq!(totals[0].sent_bytes, curl);
    // The first hour's seconds are gone: its history begins with its hour.
    assert_eq!(reader.recording_since().unwrap(), Some(START as i64));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_size_bound_holds_over_a_long_run() {
    let dir = scratch("bound");
    let retention = Retention {
        seconds: Duration::from_secs(100 * 86_400),
        max_bytes: 1 << 20,
        ..Retention::default()
    };
    let mut store = Store::open(&dir, retention).unwrap();
    for chunk in 0..20 {
        let transaction_rows: Vec<ProcessRow> = (0..50)
            .map(|i| row(&format!("p{i}"), Some(i), "eth0", "", 1000, 1000))
            .collect();
        for s in 0..200 {
            store
                .write(&report(START + chunk * 200 + s, transaction_rows.clone()))
                .unwrap();
        }
        store.maintain((START + chunk * 200 + 200) as i64).unwrap();
        assert!(
            store.live_bytes().unwrap() <= 1 << 20,
            "chunk {chunk}: {}",
            store.live_bytes().unwrap()
        );
    }
    let reader = store.reader().unwrap();
    let (_, totals) = reader
        .totals(
            START as i64,
            (START + 4000) as i64,
            GroupBy::Process,
            100,
            None,
        )
        .unwrap();
    assert_eq!(totals.len(), 50, "recent data is kept");
    let file = std::fs::metadata(store.path()).unwrap().len();
    assert!(
        file <= 2 << 20,
        "the file itself stays near the bound: {file}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_newer_schema_is_refused_clearly() {
    let dir = scratch("newer");
    let store = Store::open(&dir, Retention::default()).unwrap();
    store
        .connection
        .pragma_update(None, "user_version", 99)
        .unwrap();
    drop(store);
    let error = Store::open(&dir, Retention::default())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("schema version 99"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_young_store_answers_a_longer_range_from_its_finest_resolution() {
    let dir = scratch("young");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    // Ten minutes, starting in the middle of an hour.
    let mut curl = 0;
    for s in 0..600 {
        store
            .write(&report(
                START + 1800 + s,
                vec![row("curl", Some(1), "eth0", "", 10, 0)],
            ))
            .unwrap();
        curl += 10;
    }
    let reader = store.reader().unwrap();
    let (resolution, totals) = reader
        .totals(
            START as i64 + 2000,
            START as i64 + 7200,
            GroupBy::Process,
            5,
            None,
        )
        .unwrap();
    assert_eq!(resolution, 1);
    assert_eq!(
        totals[0].sent_bytes,
        10 * 400,
        "only the part of the range asked"
    );
    let (_, totals) = reader
        .totals(
            START as i64 - 86_400,
            START as i64 + 7200,
            GroupBy::Process,
            5,
            None,
        )
        .unwrap();
    assert_eq!(totals[0].sent_bytes, curl);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_young_store_charts_a_longer_range_at_fine_steps() {
    let dir = scratch("young-chart");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    for s in 0..120 {
        store
            .write(&report(
                START + 1800 + s,
                vec![row("curl", Some(1), "eth0", "", 10, 0)],
            ))
            .unwrap();
    }
    let reader = store.reader().unwrap();
    let to = (START + 1800 + 120) as i64;
    let history = reader
        .history(to - 3600, to, 12, GroupBy::Process, 5, None)
        .unwrap();
    assert_eq!((history.resolution, history.step), (1, 12));
    assert_eq!(history.points.len(), 10);
    // Its history begins with its first interval, to the second.
    assert_eq!(
        reader.recording_since().unwrap(),
        Some((START + 1800) as i64)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_store_without_peers_answers_a_process_s_peers_with_none() {
    let dir = scratch("no-peers");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    fill(&mut store, 10);
    let reader = store.reader().unwrap();
    let (from, to) = (START as i64, START as i64 + 10);
    let curl = Some(Only {
        group_by: GroupBy::Process,
        key: "curl",
    });
    let peers = reader.totals(from, to, GroupBy::Peer, 50, curl).unwrap().1;
    assert!(peers.is_empty());
    let domains = reader
        .history(from, to, 1, GroupBy::Domain, 8, curl)
        .unwrap();
    assert!(domains.keys.is_empty() && domains.points.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn series_are_grouped_by_container_pod_and_unit_named_as_the_runtime_answers() {
    let dir = scratch("workloads");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let path = "/machine.slice/libpod-e51ba2bf58d6c1f1.scope";
    let unnamed = Workload {
        unit: Some("libpod-e51ba2bf58d6c1f1.scope".into()),
        container_id: Some("e51ba2bf58d6".into()),
        ..Workload::default()
    };
    let named = Workload {
        container: Some("web".into()),
        pod: Some("web-7d4b9".into()),
        namespace: Some("shop".into()),
        ..unnamed.clone()
    };
    for (second, workload) in [(0, unnamed), (1, named)] {
        let mut nginx = row("nginx", Some(0), "eth0", path, 1000, 100);
        nginx.workload = Some(Arc::new(workload));
        let mut sshd = row("sshd", Some(0), "eth0", "/system.slice/ssh.service", 10, 1);
        sshd.workload = Some(Arc::new(Workload {
            unit: Some("ssh.service".into()),
            ..Workload::default()
        }));
        store
            .write(&report(START + second, vec![nginx, sshd]))
            .unwrap();
    }
    let reader = store.reader().unwrap();
    let (from, to) = (START as i64, START as i64 + 2);
    let key_of = |group_by| {
        let totals = reader.totals(from, to, group_by, 10, None).unwrap().1;
        totals
            .iter()
            .map(|t| (t.key.clone(), t.sent_bytes))
            .collect::<Vec<_>>()
    };
    // The series took the name the runtime gave, for its whole history.
    assert_eq!(
        key_of(GroupBy::Container),
        [("web".into(), 2000), (String::new(), 20)]
    );
    assert_eq!(
        key_of(GroupBy::Pod),
        [("web-7d4b9".into(), 2000), (String::new(), 20)]
    );
    assert_eq!(key_of(GroupBy::Namespace)[0], ("shop".into(), 2000));
    assert_eq!(
        key_of(GroupBy::Unit),
        [
            ("libpod-e51ba2bf58d6c1f1.scope".into(), 2000),
            ("ssh.service".into(), 20)
        ]
    );
    // Sums under several filters at once; a container by name or by (part of) its id.
    let sum = |filters: &[(GroupBy, &str)]| {
        let only: Vec<Only> = filters
            .iter()
            .map(|(group_by, key)| Only {
                group_by: *group_by,
                key,
            })
            .collect();
        reader.sum(from, to, &only).unwrap()
    };
    assert_eq!(sum(&[]), (2020, 202));
    assert_eq!(sum(&[(GroupBy::Container, "web")]), (2000, 200));
    assert_eq!(sum(&[(GroupBy::Container, "e51ba2")]), (2000, 200));
    assert_eq!(
        sum(&[(GroupBy::Container, "e51ba2bf58d6c1f1aaaa")]),
        (2000, 200)
    );
    assert_eq!(sum(&[(GroupBy::Container, "db")]), (0, 0));
    assert_eq!(
        sum(&[(GroupBy::Process, "sshd"), (GroupBy::User, "0")]),
        (20, 2)
    );
    assert_eq!(
        sum(&[(GroupBy::Process, "sshd"), (GroupBy::Interface, "wg0")]),
        (0, 0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn peer(process: &ProcessRow, address: Option<&str>, name: Option<&str>, sent: u64) -> PeerRow {
    let mut last = Traffic::default();
    last.sent.bytes = sent;
    last.sent.packets = 1;
    PeerRow {
        near: None,
        key: process.key.clone(),
        workload: None,
        peer: address.map(|a| a.parse().unwrap()),
        service: address.map(|_| crate::traffic::Service {
            protocol: crate::traffic::Protocol::Tcp,
            port: 443,
        }),
        name: name.map(Arc::from),
        country: None,
        pid: process.pid,
        last,
        total: last,
    }
}

#[test]
fn peers_are_kept_per_process_and_add_up_to_it_at_every_resolution() {
    let dir = scratch("peers");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let seconds = 2 * 3600;
    for s in 0..seconds {
        let curl = row("curl", Some(1000), "eth0", "", 300, 0);
        let sshd = row("sshd", Some(0), "eth0", "", 50, 0);
        let mut report = report(START + s, vec![curl.clone(), sshd.clone()]);
        report.peers = vec![
            peer(&curl, Some("192.0.2.10"), Some("files.example.org"), 200),
            peer(&curl, Some("192.0.2.11"), None, 60),
            peer(&curl, None, None, 40),
            peer(&sshd, Some("192.0.2.10"), Some("files.example.org"), 50),
        ];
        store.write(&report).unwrap();
    }
    let reader = store.reader().unwrap();
    let (from, to) = (START as i64, (START + seconds) as i64);
    // Before the seconds expire and after: minutes and hours hold the same sums.
    for (range, expected_resolution) in [((to - 600, to), 1), ((from, to), 1)] {
        let (resolution, peers) = reader
            .totals(range.0, range.1, GroupBy::Peer, 10, None)
            .unwrap();
        assert_eq!(resolution, expected_resolution);
        let span = (range.1 - range.0) as u64;
        let by_key: HashMap<&str, u64> = peers
            .iter()
            .map(|t| (t.key.as_str(), t.sent_bytes))
            .collect();
        assert_eq!(by_key["192.0.2.10"], 250 * span);
        assert_eq!(by_key["192.0.2.11"], 60 * span);
        assert_eq!(by_key["other"], 40 * span);
        let files = peers.iter().find(|t| t.key == "192.0.2.10").unwrap();
        assert_eq!(files.names.as_deref(), Some("files.example.org"));
        assert_eq!(files.services.as_deref(), Some("443/tcp"));
    }
    // A process's peers over the range add up to the process.
    let only = Only {
        group_by: GroupBy::Process,
        key: "curl",
    };
    let curl_peers = reader
        .totals(from, to, GroupBy::Domain, 10, Some(only))
        .unwrap()
        .1;
    let keys: Vec<&str> = curl_peers.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["files.example.org", "192.0.2.11", "other"]);
    let curl = reader
        .totals(from, to, GroupBy::Process, 10, None)
        .unwrap()
        .1;
    let curl_total = curl.iter().find(|t| t.key == "curl").unwrap().sent_bytes;
    assert_eq!(
        curl_peers.iter().map(|t| t.sent_bytes).sum::<u64>(),
        curl_total
    );
    // Who talked to a domain.
    let only = Only {
        group_by: GroupBy::Domain,
        key: "files.example.org",
    };
    let talkers = reader
        .totals(from, to, GroupBy::Process, 10, Some(only))
        .unwrap()
        .1;
    let talkers: Vec<(&str, u64)> = talkers
        .iter()
        .map(|t| (t.key.as_str(), t.sent_bytes))
        .collect();
    assert_eq!(talkers, [("curl", 200 * 7200), ("sshd", 50 * 7200)]);
    let history = reader
        .history(from, to, 3600, GroupBy::Domain, 5, None)
        .unwrap();
    assert_eq!(history.points.len(), 2);
    // Peers expire after their own retention, the process rows stay.
    store.retention.peers = Duration::from_secs(1800);
    store.maintain(to).unwrap();
    let peers = reader.totals(from, to, GroupBy::Peer, 10, None).unwrap().1;
    let kept: u64 = peers.iter().map(|t| t.sent_bytes).sum();
    assert!(
        kept <= 350 * 1800 + 350 * 3600,
        "peers beyond their retention: {kept}"
    );
    let processes = reader
        .totals(from, to, GroupBy::Process, 10, None)
        .unwrap()
        .1;
    assert_eq!(
        processes.iter().map(|t| t.sent_bytes).sum::<u64>(),
        350 * 7200
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alert_state_and_contacts_outlive_the_process() {
    let dir = scratch("alerts");
    let store = Store::open(&dir, Retention::default()).unwrap();
    let mut ledger = AlertLedger::open(&dir).unwrap();
    let first = ledger.rule("daily", 100).unwrap();
    assert_eq!(
        first,
        RuleState {
            since: 100,
            firing: false,
            period_start: 0
        }
    );
    ledger.set_firing("daily", true, 86_400).unwrap();
    ledger
        .add_contacts("new-peers", &[("curl".into(), "files.example".into())], 120)
        .unwrap();
    drop((ledger, store));
    let mut ledger = AlertLedger::open(&dir).unwrap();
    let again = ledger.rule("daily", 999).unwrap();
    assert_eq!(
        (again.since, again.firing, again.period_start),
        (100, true, 86_400)
    );
    assert!(ledger
        .contacts("new-peers")
        .unwrap()
        .contains(&("curl".to_string(), "files.example".to_string())));
    ledger.keep_only(&["new-peers"]).unwrap();
    assert_eq!(ledger.rule("daily", 999).unwrap().since, 999, "forgotten");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_store_is_moved_aside_and_history_goes_on() {
    for (case, content) in [
        (
            "garbage",
            b"this is no database at all, just text".repeat(200),
        ),
        (
            "header only",
            b"SQLite format 3\0"
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0xAB, 4000))
                .collect(),
        ),
    ] {
        let dir = scratch(&format!("damaged-{}", case.replace(' ', "-")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("netgraph.sqlite"), &content).unwrap();
        let mut store =
            Store::open(&dir, Retention::default()).unwrap_or_else(|e| panic!("{case}: {e:#}"));
        let aside = store.moved_aside().expect("moved aside").to_path_buf();
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("netgraph.sqlite.damaged-"),
            "{}",
            aside.display()
        );
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            content,
            "{case}: kept as it was"
        );
        // The fresh store takes history.
        store.write(&report(1_800_000_000, vec![])).unwrap();
        drop(store);
        let again = Store::open(&dir, Retention::default()).unwrap();
        assert!(again.moved_aside().is_none(), "{case}: sound now");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .connection
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// A scanner's interval: `process` touches `count` new addresses once each.
fn scan(second: u64, process: &ProcessRow, first: u32, count: u32) -> IntervalReport {
    let mut report = report(second, vec![process.clone()]);
    report.peers = (first..first + count)
        .map(|i| {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            peer(process, Some(&address), None, 10)
        })
        .collect();
    report
}

#[test]
fn peers_and_series_expire_with_their_samples_and_come_back_when_seen_again() {
    let dir = scratch("dimensions");
    let retention = Retention {
        peers: Duration::from_secs(2 * 3600),
        ..Retention::default()
    };
    let mut store = Store::open(&dir, retention).unwrap();
    let scanner = row("scanner", Some(0), "eth0", "", 10_000, 0);
    // A scan of 5,000 addresses in the first hour, then only a steady peer for five hours.
    for s in 0..50 {
        store
            .write(&scan(START + s, &scanner, s as u32 * 100, 100))
            .unwrap();
    }
    let steady = |s| {
        let mut report = report(START + s, vec![scanner.clone()]);
        report.peers = vec![peer(&scanner, Some("192.0.2.1"), None, 10)];
        report
    };
    for s in (3600..6 * 3600).step_by(60) {
        store.write(&steady(s)).unwrap();
    }
    assert_eq!(count(&store, "peers"), 5_001);
    store.maintain((START + 6 * 3600) as i64).unwrap();
    assert_eq!(
        count(&store, "peers"),
        1,
        "the scan's peers are gone with their samples"
    );
    // Writing goes on: the steady peer's id was kept, a scanned address seen again is new.
    store.write(&steady(6 * 3600)).unwrap();
    store
        .write(&scan(START + 6 * 3600 + 1, &scanner, 0, 1))
        .unwrap();
    let reader = store.reader().unwrap();
    let (from, to) = ((START + 5 * 3600) as i64, (START + 7 * 3600) as i64);
    let (_, peers) = reader.totals(from, to, GroupBy::Peer, 10, None).unwrap();
    let keys: Vec<&str> = peers.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["192.0.2.1", "10.0.0.0"]);
    assert_eq!(peers[0].sent_bytes, 10 * 61);
    // A series no sample refers to any more goes too.
    let mut store = store;
    store.retention.hours = Duration::from_secs(24 * 3600);
    store.retention.minutes = Duration::from_secs(3600);
    store
        .write(&report(
            START + 30 * 3600,
            vec![row("later", Some(1), "eth0", "", 1, 1)],
        ))
        .unwrap();
    store.maintain((START + 30 * 3600 + 60) as i64).unwrap();
    let names: Vec<String> = store
        .connection
        .prepare("SELECT name FROM series")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, ["later"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn over_its_bound_the_store_gives_up_detail_then_the_oldest_history_never_the_newest() {
    let dir = scratch("trim");
    let retention = Retention {
        max_bytes: 64 << 20,
        ..Retention::default()
    };
    let mut store = Store::open(&dir, retention).unwrap();
    // Thirty days of fifty processes, an interval each hour.
    let processes: Vec<ProcessRow> = (0..50)
        .map(|i| row(&format!("p{i}"), Some(i), "eth0", "", 1000, 1000))
        .collect();
    let days = 30;
    for hour in 0..days * 24 {
        store
            .write(&report(START + hour * 3600, processes.clone()))
            .unwrap();
    }
    let end = (START + days * 24 * 3600) as i64;
    let history = |store: &Store, from: i64, to: i64| {
        let reader = store.reader().unwrap();
        reader.sum(from, to, &[]).unwrap().0
    };
    let whole = days * 24 * 50 * 1000;
    assert_eq!(history(&store, START as i64, end), whole);
    let filled = store.live_bytes().unwrap();
    // A scanner: 20,000 peers in the last minute.
    let scanner = row("scanner", Some(0), "eth0", "", 10_000, 0);
    for s in 0..40 {
        store
            .write(&scan(end as u64 + s, &scanner, s as u32 * 500, 500))
            .unwrap();
    }
    let scanned = store.live_bytes().unwrap();
    // Room for the scan and half the hourly history (a third of what was filled).
    let bound = scanned - filled * 5 / 6;
    store.retention.max_bytes = bound;
    let mut steps = 0;
    while store.maintenance_step(end + 120).unwrap() == Step::More {
        steps += 1;
    }
    let kept = store.live_bytes().unwrap();
    assert!(steps > 1, "maintenance ran in steps");
    assert!(kept <= bound, "{filled} -> {scanned} -> {kept} > {bound}");
    // The newest days are whole, the oldest hour is gone, the scan's minutes are kept.
    let week = end - 7 * 86_400;
    assert_eq!(
        history(&store, week, end),
        7 * 24 * 50 * 1000,
        "the newest days"
    );
    assert_eq!(
        history(&store, START as i64, START as i64 + 3600),
        0,
        "the oldest hour"
    );
    assert!(
        history(&store, START as i64, end) > whole / 4,
        "never more than it must"
    );
    assert_eq!(
        count(&store, "peer_samples_1m"),
        20_000,
        "the scan by minute"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Peer names written with intervals are read back by the next open until their time
/// is up, the latest per address and process; maintenance forgets the rest.
#[test]
fn peer_names_outlive_the_process_until_their_time() {
    use crate::attribution::RememberedName;
    let dir = scratch("names");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let address: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    let name = |pid, name: &str, until| RememberedName {
        address,
        pid,
        name: name.into(),
        until,
    };
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    let mut first = IntervalReport::of(
        at(1000),
        at(1001),
        vec![row("curl", Some(0), "eth0", "", 1, 1)],
    );
    first.names = vec![
        name(None, "old.example", 1600),
        name(Some(42), "mine.example", 1300),
    ];
    store.write(&first).unwrap();
    let mut second = IntervalReport::of(at(1001), at(1002), Vec::new());
    second.names = vec![name(None, "new.example", 1700)];
    store.write(&second).unwrap();
    drop(store);

    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let mut kept = store.remembered_names(1200).unwrap();
    kept.sort_by_key(|n| n.pid);
    assert_eq!(
        kept,
        [
            name(None, "new.example", 1700),
            name(Some(42), "mine.example", 1300)
        ]
    );
    assert_eq!(
        store.remembered_names(1300).unwrap(),
        [name(None, "new.example", 1700)]
    );
    store.maintain(1650).unwrap();
    let rows: i64 = store
        .connection
        .query_row("SELECT count(*) FROM peer_names", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "expired names are deleted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// TCP health and drops are summed like bytes at every resolution: counts add up, the
/// RTT is the traffic-weighted mean and its largest; rows without them read as none.
#[test]
fn tcp_health_adds_up_at_every_resolution() {
    let dir = scratch("health");
    let retention = Retention {
        seconds: Duration::from_secs(60),
        ..Retention::default()
    };
    let mut store = Store::open(&dir, retention).unwrap();
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(START + s);
    for second in 0..7200 {
        let mut backup = row("backup", Some(0), "eth0", "", 9_000, 100);
        let tcp = &mut backup.last.tcp;
        tcp.retransmits = 1;
        tcp.retransmit_bytes = 1448;
        // A tenth of the time the path is slow.
        tcp.add_rtt(if second % 10 == 0 { 100_000 } else { 10_000 }, 9_100);
        if second % 100 == 0 {
            tcp.connects_refused = 1;
        }
        // A firewall drops a datagram of dns every ten seconds (dns has no TCP).
        let mut dns = row("dns", Some(0), "eth0", "", 80, 80);
        if second % 10 == 0 {
            dns.last
                .drops
                .add(crate::traffic::DropKind::Netfilter, 1, 80);
        }
        let report = IntervalReport::of(at(second), at(second + 1), vec![backup, dns]);
        store.write(&report).unwrap();
    }
    // Seconds beyond a minute are gone: the first hour is read from minutes and hours.
    store.maintain((START + 7200) as i64).unwrap();
    let reader = store.reader().unwrap();
    for (from, to) in [(0, 7200), (0, 3600), (3600 + 1800, 7200)] {
        let (from, to) = ((START + from) as i64, (START + to) as i64);
        let (_, totals) = reader.totals(from, to, GroupBy::Process, 10, None).unwrap();
        let backup = totals.iter().find(|t| t.key == "backup").unwrap();
        let tcp = backup.tcp.as_ref().unwrap();
        let seconds = (to - from) as u64;
        assert_eq!(tcp.retransmits, seconds, "{from}..{to}");
        assert_eq!(tcp.retransmit_bytes, seconds * 1448);
        assert_eq!(tcp.connect_failures, seconds / 100);
        assert_eq!(tcp.rtt_us, Some(19_000));
        assert_eq!(tcp.rtt_max_us, Some(100_000));
        assert_eq!(backup.drops, None);
        let dns = totals.iter().find(|t| t.key == "dns").unwrap();
        assert_eq!(dns.tcp, None);
        let drops = dns.drops.as_ref().unwrap();
        assert_eq!(
            (drops.packets, drops.netfilter, drops.bytes),
            (seconds / 10, seconds / 10, seconds / 10 * 80)
        );
    }
    // Per point of a chart too: ten-minute steps hold a slow second each ten.
    let (from, to) = ((START + 3600) as i64, (START + 7200) as i64);
    let history = reader
        .history(from, to, 600, GroupBy::Process, 10, None)
        .unwrap();
    let backup = history.keys.iter().position(|k| k == "backup").unwrap();
    let dns = history.keys.iter().position(|k| k == "dns").unwrap();
    for point in &history.points {
        assert_eq!(point.retransmits[backup], 600);
        assert_eq!(point.rtt_us[backup], Some(19_000));
        assert_eq!((point.retransmits[dns], point.rtt_us[dns]), (0, None));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

use super::*;
use crate::attribution::{AttributedTraffic, ProcessIdentity};
use crate::engine::InterfaceTraffic;
use crate::traffic::Protocol;
use std::time::UNIX_EPOCH;

fn process(pid: u32, name: &str) -> Owner {
    Owner::Process(Arc::new(ProcessIdentity {
        pid,
        name: name.into(),
        exe: Some(format!("/usr/bin/{name}")),
        uid: 1000,
        cgroup: None,
    }))
}

fn traffic(owner: Owner, sent: u64, recv: u64) -> AttributedTraffic {
    let mut t = Traffic::default();
    t.sent.add_packet(sent);
    t.recv.add_packet(recv);
    AttributedTraffic {
        owner,
        interface: "eth0".into(),
        ends: None,
        traffic: t,
        workload: None,
        peer_name: None,
        flow: None,
    }
}

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

#[test]
fn rows_merge_per_name_and_keep_the_busiest_pid() {
    let mut accountant = Accountant::new(at(0));
    let report = AttributedReport {
        traffic: vec![
            traffic(process(10, "curl"), 100, 10),
            traffic(process(11, "curl"), 500, 0),
            traffic(
                Owner::Unknown(Protocol::Udp, crate::attribution::Unowned::NoSocket),
                7,
                3,
            ),
        ],
        interfaces: vec![InterfaceTraffic::new("eth0".into())],
        lost: 0,
        names: Vec::new(),
        limits: Vec::new(),
    };
    let interval = accountant.close_interval(report, at(2));
    assert_eq!(interval.processes.len(), 2);
    let curl = interval
        .processes
        .iter()
        .find(|r| &*r.key.name == "curl")
        .unwrap();
    assert_eq!(curl.last.sent.bytes, 600);
    assert_eq!(curl.last.sent.packets, 2);
    assert_eq!(curl.pid, Some(11));
    assert!(curl.attributed);
    let bucket = interval.processes.iter().find(|r| !r.attributed).unwrap();
    assert_eq!(&*bucket.key.name, "unknown UDP");
    assert_eq!(bucket.key.uid, None);
    assert!((interval.kib_per_second(2048) - 1.0).abs() < 1e-9);
}

#[test]
fn totals_are_monotonic_and_quiet_series_emit_nothing() {
    let mut accountant = Accountant::new(at(0));
    let one = |sent| AttributedReport {
        traffic: vec![traffic(process(10, "curl"), sent, 0)],
        interfaces: vec![],
        lost: 0,
        names: Vec::new(),
        limits: Vec::new(),
    };
    accountant.close_interval(one(100), at(1));
    let second = accountant.close_interval(one(50), at(2));
    assert_eq!(second.processes[0].last.sent.bytes, 50);
    assert_eq!(second.processes[0].total.sent.bytes, 150);
    let quiet = accountant.close_interval(AttributedReport::default(), at(3));
    assert!(quiet.processes.is_empty());
    let third = accountant.close_interval(one(1), at(4));
    assert_eq!(third.processes[0].total.sent.bytes, 151);
    assert_eq!(third.start, at(3));
}

#[test]
fn interface_rows_merge_and_total() {
    let mut accountant = Accountant::new(at(0));
    let mut a = InterfaceTraffic::new("eth0".into());
    a.captured.sent.add_packet(100);
    a.capture.dropped = 2;
    let mut b = InterfaceTraffic::new("eth0".into());
    b.captured.sent.add_packet(50);
    b.capture.dropped = 1;
    let report = AttributedReport {
        traffic: vec![],
        interfaces: vec![a, b],
        lost: 3,
        names: Vec::new(),
        limits: Vec::new(),
    };
    let interval = accountant.close_interval(report, at(1));
    assert_eq!(interval.interfaces.len(), 1);
    assert_eq!(interval.interfaces[0].last.sent.bytes, 150);
    assert_eq!(interval.interfaces[0].capture.dropped, 3);
    assert_eq!((interval.lost, interval.lost_total), (3, 3));
}

#[test]
fn geoip_names_unattributed_ends_and_breaks_processes_down_by_country() {
    use crate::traffic::Ends;
    let dir = std::env::temp_dir().join(format!("netgraph-accounting-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("test.mmdb");
    crate::geo::write_test_database(
        &path,
        &["203.0.113.0/24=DE:Germany", "198.51.100.0/24=FR:France"],
    );
    let geo = crate::geo::Geo::open(&path, true).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let mut accountant = Accountant::new(at(0)).with_geo(geo).with_peers(20);
    let with_ends = |owner, sent, recv, far: &str| {
        let mut item = traffic(owner, sent, recv);
        item.ends = Some(Ends {
            near: "10.0.0.1".parse().unwrap(),
            far: far.parse().unwrap(),
            near_is_host: true,
            service: crate::traffic::Service::of(Protocol::Tcp, 40_000, 443),
        });
        item
    };
    let report = || AttributedReport {
        traffic: vec![
            with_ends(process(10, "curl"), 100, 10, "203.0.113.5"),
            with_ends(process(10, "curl"), 40, 4, "198.51.100.7"),
            with_ends(
                Owner::Unknown(Protocol::Icmp, crate::attribution::Unowned::NoSocket),
                84,
                84,
                "203.0.113.9",
            ),
            traffic(
                Owner::Unknown(Protocol::Udp, crate::attribution::Unowned::NoSocket),
                7,
                3,
            ),
        ],
        interfaces: vec![InterfaceTraffic::new("eth0".into())],
        lost: 0,
        names: Vec::new(),
        limits: Vec::new(),
    };
    accountant.close_interval(report(), at(1));
    let interval = accountant.close_interval(report(), at(2));
    let names: Vec<&str> = interval.processes.iter().map(|r| &*r.key.name).collect();
    assert_eq!(names, ["curl", "local-Germany", "unknown UDP"]);
    let countries: Vec<(&str, u64, u64, u64)> = interval
        .countries
        .iter()
        .map(|r| {
            (
                &*r.country,
                r.last.sent.bytes,
                r.last.recv.bytes,
                r.total.sent.bytes,
            )
        })
        .collect();
    assert_eq!(
        countries,
        [("France", 40, 4, 80), ("Germany", 100, 10, 200)]
    );
    let curl = &interval.processes[0];
    let by_country: u64 = interval.countries.iter().map(|r| r.last.sent.bytes).sum();
    assert_eq!(by_country, curl.last.sent.bytes);
    // Peers carry their country, service, the series' pid and totals.
    type Seen<'a> = (String, Option<&'a str>, String, Option<u32>, u64);
    let peers: Vec<Seen> = interval
        .peers
        .iter()
        .filter(|r| &*r.key.name == "curl")
        .map(|r| {
            (
                r.peer_label(),
                r.country.as_deref(),
                r.service.map(|s| s.to_string()).unwrap_or_default(),
                r.pid,
                r.total.sent.bytes,
            )
        })
        .collect();
    assert_eq!(
        peers,
        [
            (
                "203.0.113.5".into(),
                Some("Germany"),
                "443/tcp".into(),
                Some(10),
                200
            ),
            (
                "198.51.100.7".into(),
                Some("France"),
                "443/tcp".into(),
                Some(10),
                80
            ),
        ]
    );
}

#[test]
fn without_geoip_there_is_no_breakdown() {
    let mut accountant = Accountant::new(at(0));
    let mut item = traffic(
        Owner::Unknown(Protocol::Tcp, crate::attribution::Unowned::NoSocket),
        5,
        5,
    );
    item.ends = Some(crate::traffic::Ends {
        near: "10.0.0.1".parse().unwrap(),
        far: "203.0.113.5".parse().unwrap(),
        near_is_host: true,
        service: None,
    });
    let report = AttributedReport {
        traffic: vec![item],
        interfaces: Vec::new(),
        lost: 0,
        names: Vec::new(),
        limits: Vec::new(),
    };
    let interval = accountant.close_interval(report, at(1));
    assert_eq!(&*interval.processes[0].key.name, "unknown TCP");
    assert!(interval.countries.is_empty());
}

/// A scanner meets 500 new peers each minute: their totals go an hour after
/// each was last seen, and the table gives back what it held, so memory does not grow
/// with the peers ever met. A peer seen again within the hour keeps its totals.
#[test]
fn peers_idle_for_an_hour_are_forgotten() {
    use crate::traffic::Ends;
    let mut accountant = Accountant::new(at(0)).with_peers(2000);
    let to = |far: String, sent| {
        let mut item = traffic(process(10, "scanner"), sent, 0);
        item.ends = Some(Ends {
            near: "10.0.0.1".parse().unwrap(),
            far: far.parse().unwrap(),
            near_is_host: true,
            service: crate::traffic::Service::of(Protocol::Udp, 40_000, 9),
        });
        item
    };
    let report = |items| AttributedReport {
        traffic: items,
        interfaces: vec![InterfaceTraffic::new("eth0".into())],
        lost: 0,
        names: Vec::new(),
        limits: Vec::new(),
    };
    // One-minute intervals: 500 new peers each for two hours, and one steady peer.
    let mut peak = 0;
    for minute in 1..=120u64 {
        let mut items: Vec<_> = (0..500)
            .map(|i| to(format!("10.{}.{}.{}", minute, i / 250, i % 250), 64))
            .collect();
        items.push(to("192.0.2.1".into(), 100));
        let interval = accountant.close_interval(report(items), at(minute * 60));
        peak = peak.max(accountant.peer_totals.len());
        let steady = interval
            .peers
            .iter()
            .find(|row| row.peer == Some("192.0.2.1".parse().unwrap()))
            .unwrap();
        assert_eq!(steady.total.sent.bytes, 100 * minute, "kept while in use");
    }
    // An hour's peers (and this minute's), never more.
    let kept = accountant.peer_totals.len();
    assert!((30_000..=31_001).contains(&kept), "{kept}");
    assert_eq!(peak, kept);
    // Then the scanner stops: an hour later, only the steady peer is left, and the
    // table's memory went back.
    for minute in 121..=182u64 {
        accountant.close_interval(report(vec![to("192.0.2.1".into(), 100)]), at(minute * 60));
    }
    assert_eq!(accountant.peer_totals.len(), 1);
    assert!(
        accountant.peer_totals.capacity() < 4096,
        "{}",
        accountant.peer_totals.capacity()
    );
}

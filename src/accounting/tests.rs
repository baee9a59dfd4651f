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
        traffic: t,
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
            traffic(Owner::Unknown(Protocol::Udp), 7, 3),
        ],
        interfaces: vec![InterfaceTraffic::new("eth0".into())],
        lost: 0,
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
    };
    let interval = accountant.close_interval(report, at(1));
    assert_eq!(interval.interfaces.len(), 1);
    assert_eq!(interval.interfaces[0].last.sent.bytes, 150);
    assert_eq!(interval.interfaces[0].capture.dropped, 3);
    assert_eq!((interval.lost, interval.lost_total), (3, 3));
}

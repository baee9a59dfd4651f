//! The encoder checked against InfluxData's own parser (`influxdb-line-protocol`).

use super::*;
use crate::accounting::SeriesKey;
use crate::engine::CaptureStats;
use crate::traffic::{Counter, Traffic};
use influxdb_line_protocol::{parse_lines, FieldValue};
use std::time::Duration;

fn traffic(sent: u64, recv: u64) -> Traffic {
    let mut t = Traffic::default();
    t.sent.add_packet(sent);
    t.recv.add_packet(recv);
    t
}

fn report(names: &[&str], uid: Option<u32>) -> IntervalReport {
    let end = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
    IntervalReport {
        start: end - Duration::from_secs(2),
        end,
        processes: names
            .iter()
            .map(|name| ProcessRow {
                key: SeriesKey {
                    name: (*name).into(),
                    uid,
                    interface: "eth 0,x=y".into(),
                    container: None,
                    reason: None,
                },
                attributed: uid.is_some(),
                pid: uid.map(|_| 4242),
                exe: None,
                cgroup: None,
                workload: None,
                last: traffic(2048, 100),
                total: traffic(10_000, 500),
            })
            .collect(),
        countries: Vec::new(),
        peers: Vec::new(),
        interfaces: vec![InterfaceRow {
            interface: "wg0".into(),
            last: traffic(1, 2),
            total: traffic(1, 2),
            malformed: Counter::default(),
            non_ip: Counter::default(),
            overflow: Counter::default(),
            capture: CaptureStats {
                received: 9,
                dropped: 1,
                if_dropped: 0,
            },
        }],
        lost: 0,
        lost_total: 0,
        engine: Default::default(),
        names: Vec::new(),
        limits: Vec::new(),
    }
}

/// The value of field `key` of a line, if it has one.
fn field_of<'a>(line: &'a str, key: &str) -> Option<FieldValue<'a>> {
    let parsed = parse_lines(line).next().unwrap().unwrap();
    parsed
        .field_set
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v.clone())
}

fn tags_of(line: &str) -> Vec<(String, String)> {
    let parsed = parse_lines(line).next().unwrap().unwrap();
    parsed
        .series
        .tag_set
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn awkward_names_round_trip_through_the_reference_parser() {
    let names = [
        "plain",
        "with space",
        "a,comma",
        "key=value",
        "quote\"d",
        "back\\slash",
        "trailing\\",
        "\\,mixed =\\",
        "Web Content",
        "ünïcödé-進程",
        "line\nbreak",
    ];
    let report = report(&names, Some(1000));
    let lines = encode(&report, "host.example, inc");
    assert_eq!(lines.len(), names.len() + 1);
    for (line, name) in lines.iter().zip(names) {
        let tags = tags_of(line);
        let expected = name.replace('\n', " ").trim_end_matches('\\').to_string();
        assert_eq!(tags[0], ("name".into(), expected), "line: {line}");
        assert_eq!(tags[1], ("uid".into(), "1000".into()));
        assert_eq!(tags[2], ("device_name".into(), "eth 0,x=y".into()));
        assert_eq!(tags[3], ("hostname".into(), "host.example, inc".into()));
    }
}

#[test]
fn fields_have_the_schema_types_and_an_explicit_timestamp() {
    let lines = encode(&report(&["curl"], Some(0)), "h");
    let parsed = parse_lines(&lines[0]).next().unwrap().unwrap();
    assert_eq!(parsed.series.measurement.as_str(), "network_data");
    assert_eq!(parsed.timestamp, Some(1_700_000_000_500));
    let field = |key: &str| {
        field_of(&lines[0], key).unwrap_or_else(|| panic!("no field {key} in {}", lines[0]))
    };
    assert_eq!(field("pid"), FieldValue::I64(4242));
    assert_eq!(field("sent_bytes"), FieldValue::I64(10_000));
    assert_eq!(field("recv_bytes"), FieldValue::I64(500));
    assert_eq!(field("sent_bytes_last"), FieldValue::I64(2048));
    assert_eq!(field("recv_bytes_last"), FieldValue::I64(100));
    assert_eq!(field("sent_kbs"), FieldValue::F64(1.0));
    assert_eq!(field("recv_kbs"), FieldValue::F64(100.0 / 1024.0 / 2.0));

    let stats = parse_lines(&lines[1]).next().unwrap().unwrap();
    assert_eq!(stats.series.measurement.as_str(), "packet_stats");
    assert_eq!(stats.field_set[0].1, FieldValue::I64(9));
    assert_eq!(stats.field_set[1].1, FieldValue::I64(1));
}

#[test]
fn unattributed_rows_leave_out_the_uid_tag_and_the_pid() {
    let lines = encode(&report(&["unknown UDP"], None), "");
    let tags = tags_of(&lines[0]);
    assert_eq!(
        tags,
        vec![
            ("name".to_string(), "unknown UDP".to_string()),
            ("device_name".to_string(), "eth 0,x=y".to_string()),
        ]
    );
    assert!(!lines[0].contains("pid="));
}

#[test]
fn huge_counts_stay_signed_integers() {
    let mut report = report(&["x"], Some(1));
    report.processes[0].total.sent.bytes = u64::MAX;
    let lines = encode(&report, "h");
    let parsed = parse_lines(&lines[0]).next().unwrap().unwrap();
    assert!(parsed
        .field_set
        .iter()
        .any(|(k, v)| k.as_str() == "sent_bytes" && *v == FieldValue::I64(i64::MAX)));
}

#[test]
fn country_rows_become_network_country_points() {
    let mut report = report(&["curl"], Some(1000));
    report.countries.push(crate::accounting::CountryRow {
        workload: None,
        key: report.processes[0].key.clone(),
        country: "United States".into(),
        last: traffic(300, 40),
        total: traffic(900, 80),
    });
    let lines = encode(&report, "h");
    assert_eq!(lines.len(), 3, "process, country, interface");
    let parsed = parse_lines(&lines[1]).next().unwrap().unwrap();
    assert_eq!(parsed.series.measurement.as_str(), "network_country");
    assert_eq!(
        tags_of(&lines[1]).last().unwrap(),
        &("country".to_string(), "United States".to_string())
    );
    let fields: Vec<(String, FieldValue)> = parsed
        .field_set
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(
        fields,
        [
            ("sent_bytes".to_string(), FieldValue::I64(900)),
            ("recv_bytes".to_string(), FieldValue::I64(80)),
            ("sent_bytes_last".to_string(), FieldValue::I64(300)),
            ("recv_bytes_last".to_string(), FieldValue::I64(40)),
        ]
    );
}

#[test]
fn containers_and_pods_are_tags_only_where_set() {
    let mut report = report(&["nginx", "sshd"], Some(0));
    report.processes[0].workload = Some(std::sync::Arc::new(Workload {
        container_id: Some("e51ba2bf58d6".into()),
        container: Some("web".into()),
        pod: Some("web-7d4b9".into()),
        namespace: Some("shop".into()),
        ..Workload::default()
    }));
    report.processes[1].workload = Some(std::sync::Arc::new(Workload {
        unit: Some("ssh.service".into()),
        ..Workload::default()
    }));
    let lines = encode(&report, "host");
    let tags: Vec<String> = tags_of(&lines[0]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        tags,
        [
            "name",
            "uid",
            "device_name",
            "hostname",
            "container",
            "pod",
            "namespace"
        ]
    );
    assert!(lines[0].contains("container=web,pod=web-7d4b9,namespace=shop "));
    let plain: Vec<String> = tags_of(&lines[1]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(plain, ["name", "uid", "device_name", "hostname"]);
}

#[test]
fn peers_are_a_measurement_of_their_own() {
    let mut report = report(&["curl"], Some(1000));
    let key = report.processes[0].key.clone();
    for peer in [Some("2001:db8::1".parse().unwrap()), None] {
        report.peers.push(crate::accounting::PeerRow {
            near: None,
            key: key.clone(),
            workload: None,
            peer,
            service: peer.map(|_| crate::traffic::Service {
                protocol: crate::traffic::Protocol::Tcp,
                port: 443,
            }),
            name: peer.map(|_| "mirror.example.org".into()),
            country: None,
            pid: Some(4242),
            last: traffic(100, 10),
            total: traffic(300, 30),
        });
    }
    let lines = encode(&report, "host");
    let peers: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("network_peer"))
        .collect();
    assert_eq!(peers.len(), 2);
    let tags = tags_of(peers[0]);
    let peer = ("peer".to_string(), "2001:db8::1".to_string());
    let name = ("peer_name".to_string(), "mirror.example.org".to_string());
    let service = ("service".to_string(), "443/tcp".to_string());
    assert_eq!(tags[tags.len() - 3..], [peer, name, service]);
    assert!(peers[1].contains(",peer=other "), "{}", peers[1]);
    for field in ["pid=4242i", "sent_bytes=300i", "sent_bytes_last=100i"] {
        assert!(peers[0].contains(field), "{field}: {}", peers[0]);
    }
}

/// The one `network_health` line of an encoded interval.
fn the_health_line(lines: &[String]) -> &String {
    let health: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("network_health"))
        .collect();
    assert_eq!(health.len(), 1, "{lines:?}");
    health[0]
}

/// A series with TCP health gets a `network_health` line with its tags; others none.
#[test]
fn tcp_health_is_a_measurement_of_its_own_with_the_series_tags() {
    let mut report = report(&["curl", "quiet"], Some(0));
    let tcp = &mut report.processes[0].last.tcp;
    tcp.retransmits = 4;
    tcp.retransmit_bytes = 5792;
    tcp.connects_refused = 1;
    tcp.add_rtt(12_000, 1000);
    let lines = encode(&report, "h");
    let health = the_health_line(&lines);
    assert_eq!(tags_of(health), tags_of(&lines[0]));
    let field = |key: &str| field_of(health, key);
    assert_eq!(field("tcp_retransmits"), Some(FieldValue::I64(4)));
    assert_eq!(field("tcp_retransmit_bytes"), Some(FieldValue::I64(5792)));
    assert_eq!(field("tcp_rtt_us"), Some(FieldValue::I64(12_000)));
    assert_eq!(field("tcp_connect_failures"), Some(FieldValue::I64(1)));
    assert_eq!(field("tcp_connects_refused"), Some(FieldValue::I64(1)));
}

/// A series whose packets were dropped gets them on its `network_health` line, by
/// reason, even with no TCP health to tell.
#[test]
fn drops_go_on_the_health_line_by_reason() {
    use crate::traffic::DropKind;
    let mut report = report(&["dig", "quiet"], Some(0));
    let drops = &mut report.processes[0].last.drops;
    drops.add(DropKind::Netfilter, 7, 7 * 128);
    drops.add(DropKind::Socket, 2, 2 * 1500);
    let lines = encode(&report, "h");
    let health = the_health_line(&lines);
    let field = |key: &str| field_of(health, key);
    assert_eq!(field("drops"), Some(FieldValue::I64(9)));
    assert_eq!(field("drop_bytes"), Some(FieldValue::I64(3896)));
    assert_eq!(field("drops_netfilter"), Some(FieldValue::I64(7)));
    assert_eq!(field("drops_socket"), Some(FieldValue::I64(2)));
    assert_eq!(field("drops_queue"), Some(FieldValue::I64(0)));
    assert_eq!(field("tcp_retransmits"), Some(FieldValue::I64(0)));
}

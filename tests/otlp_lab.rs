//! OTLP metrics (needs root): netgraph's series reach a receiver that decodes them with
//! OpenTelemetry's own protobuf definitions (tests/flows/otlp_receiver.py, PyPI
//! `opentelemetry-proto`), named and labelled by the semantic conventions, with the
//! values of netgraph's JSON lines and the far end's count; neither an outage of the
//! receiver nor netgraph restarting during it loses an interval.

mod lab;

use lab::engines::EngineUnderTest;
use lab::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EBPF: EngineUnderTest = EngineUnderTest::Ebpf;
const BYTES: u64 = 3_000_000;

/// Every metric netgraph sends (docs/otlp.md), and its kind.
const CATALOGUE: &[(&str, &str)] = &[
    ("process.network.io", "sum"),
    ("netgraph.process.network.packets", "sum"),
    ("netgraph.country.network.io", "sum"),
    ("netgraph.peer.network.io", "sum"),
    ("system.network.io", "sum"),
    ("netgraph.capture.received", "sum"),
    ("netgraph.capture.dropped", "sum"),
    ("netgraph.capture.interface_dropped", "sum"),
    ("netgraph.engine.lost_events", "sum"),
    ("netgraph.engine.feature", "gauge"),
    ("netgraph.tcp.retransmitted_segments", "sum"),
    ("netgraph.tcp.retransmitted_bytes", "sum"),
    ("netgraph.tcp.connects", "sum"),
    ("netgraph.tcp.connect_failures", "sum"),
    ("netgraph.tcp.rtt", "gauge"),
    ("netgraph.tcp.rtt_max", "gauge"),
    ("netgraph.dropped_packets", "sum"),
    ("netgraph.dropped_bytes", "sum"),
    ("netgraph.limit.rate", "gauge"),
    ("netgraph.limit.holding", "gauge"),
    ("netgraph.limit.passed", "sum"),
    ("netgraph.limit.held", "sum"),
    ("netgraph.limit.held_packets", "sum"),
];

/// The receiver, killed with the test (or when an outage is wanted).
struct Receiver {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Starts it on `port` (0: any), appending what it decodes to `lines`.
    fn start(port: u16, lines: Arc<Mutex<Vec<Value>>>) -> Receiver {
        let mut child = Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/flows/otlp_receiver.py"
            ))
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = out
            .next()
            .and_then(Result::ok)
            .and_then(|line| line.trim().parse().ok())
            .expect(
                "the OTLP receiver says its port (scripts/test.sh installs opentelemetry-proto)",
            );
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(value);
                }
            }
        });
        Receiver { child, port, lines }
    }

    fn points(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.get("metric").is_some())
            .cloned()
            .collect()
    }

    fn requests(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.get("request").is_some())
            .cloned()
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn otlp_section(port: u16, extra: &str) -> String {
    format!(
        "[otlp]\nendpoint = \"http://127.0.0.1:{port}\"\nheaders = {{ \"X-Tenant\" = \"lab\" }}\n{extra}"
    )
}

/// A point's attribute as text (integers as their digits).
fn attribute(point: &Value, key: &str) -> Option<String> {
    match &point["attributes"][key] {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn points_of<'a>(points: &'a [Value], metric: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    points.iter().filter(move |p| p["metric"] == metric)
}

/// The interval a point ends, in the JSON lines' milliseconds.
fn end_ms(point: &Value) -> u64 {
    point["time"].as_u64().unwrap() / 1_000_000
}

/// The JSON field a direction's amount is in.
fn field(direction: &str, what: &str) -> String {
    let way = if direction == "transmit" {
        "sent"
    } else {
        "recv"
    };
    format!("{way}_{what}_last")
}

/// Whether a JSON process (or peer, country) line is the series a point's attributes name.
fn same_series(line: &Value, point: &Value) -> bool {
    let text = |key: &str| line[key].as_str().map(str::to_string);
    attribute(point, "process.executable.name") == text("name")
        && attribute(point, "network.interface.name") == text("interface")
        && attribute(point, "process.user.id") == line["uid"].as_u64().map(|u| u.to_string())
        && attribute(point, "netgraph.unattributed.reason") == text("reason")
}

/// Whether a JSON peer line is the peer a point's attributes name: its address, name
/// and service (`443/tcp`).
fn same_peer(line: &Value, point: &Value) -> bool {
    let service = attribute(point, "server.port")
        .zip(attribute(point, "network.transport"))
        .map(|(port, transport)| format!("{port}/{transport}"));
    attribute(point, "network.peer.address").as_deref() == line["peer_address"].as_str()
        && attribute(point, "netgraph.peer.name").as_deref() == line["peer_name"].as_str()
        && service.as_deref() == line["service"].as_str()
}

/// What the JSON lines of `kind` say a cumulative point should hold: the sum of `what`
/// in `direction` over the matching lines up to the point's interval.
fn json_total(
    records: &Records,
    kind: &str,
    point: &Value,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> u64 {
    let direction = attribute(point, "network.io.direction").unwrap();
    let field = field(&direction, what);
    records
        .of_type(kind)
        .filter(|line| line["timestamp_ms"].as_u64().unwrap() <= end_ms(point))
        .filter(|line| matches(line))
        .filter_map(|line| line[field.as_str()].as_u64())
        .sum()
}

/// The last (largest) value of a cumulative series of `metric` for process `name`,
/// where `extra` attributes match too.
fn last_value(points: &[Value], metric: &str, name: &str, extra: &[(&str, &str)]) -> Option<f64> {
    points_of(points, metric)
        .filter(|p| attribute(p, "process.executable.name").as_deref() == Some(name))
        .filter(|p| {
            extra
                .iter()
                .all(|(key, value)| attribute(p, key).as_deref() == Some(*value))
        })
        .max_by_key(|p| p["time"].as_u64().unwrap())
        .map(|p| p["value"].as_f64().unwrap())
}

/// Cumulative (the default): every metric of the catalogue arrives, of its kind and
/// with OpenTelemetry's attribute names, for an upload, a refused connect, datagrams
/// netfilter drops, a country and a limit; every process, interface, peer and country
/// point holds the JSON lines' running total up to its interval, and the upload's bytes
/// are the far end's.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn every_series_reaches_the_collector_with_the_json_lines_values() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    let (_, _, _, far) = lab.host_link();
    let receiver = Receiver::start(0, Arc::default());
    let port = receiver.port;
    let table = HostTable(format!("ngotlp{}", &lab.veth_a[2..]));
    apply_nft(
        &[],
        &format!(
            "table inet {table} {{
               counter blocked {{ }}
               chain output {{ type filter hook output priority 0; policy accept;
                 ip daddr {far} udp dport 7303 counter name blocked drop
               }}
             }}",
            table = table.0
        ),
    );
    lab.truth_in(&b, &[("carried", "input", "tcp dport 7301")]);
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{far}:7301")]);
    let geoip = lab.geoip_config(&[&format!("{far}/32=DE:Germany")]);
    let config = lab.path("otlp.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[peers]\nenabled = true\n\n[[limits]]\nname = \"uploads\"\nprocess = \"ng-otlp\"\negress = \"1 Gbit/s\"\n\n{}",
            std::fs::read_to_string(&geoip).unwrap(),
            otlp_section(port, "peers = 100\n"),
        ),
    )
    .unwrap();
    let netgraph = lab.netgraph_ebpf(&["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("sending metrics over OTLP", Duration::from_secs(5));
    lab.exec_on_host(
        "ng-otlp",
        &["tcp-send", &format!("{far}:7301"), &BYTES.to_string()],
    );
    // A closed port: the connect is refused, and the tool fails.
    let refused = Command::new(lab.tool("ng-refused"))
        .args(["tcp-send", &format!("{far}:7302"), "1000"])
        .output()
        .unwrap()
        .status;
    lab.exec_on_host(
        "ng-blocked",
        &["udp-trickle", &format!("{far}:7303"), "1", "100"],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let records = netgraph.stop();
    std::thread::sleep(Duration::from_millis(500));
    let points = receiver.points();
    let requests = receiver.requests();
    let truth = lab.truth_bytes_in(&b, "carried");
    let blocked = table.counter("blocked", "packets");
    let present: BTreeMap<&str, &str> = points
        .iter()
        .map(|p| (p["metric"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    let uploaded = last_value(
        &points,
        "process.network.io",
        "ng-otlp",
        &[("network.io.direction", "transmit")],
    );
    report(&format!(
        "OTLP (cumulative) to a receiver decoding with opentelemetry-proto: {} requests, {} points of {} metrics; ng-otlp sent {uploaded:?} bytes (JSON {}, far end {truth}); refused connect: {refused:?}",
        requests.len(),
        points.len(),
        present.len(),
        records.sum_all("ng-otlp", "sent_bytes_last"),
    ));
    assert!(
        !refused.success(),
        "the connect to a closed port did not fail"
    );
    assert!(requests.len() >= 3, "{requests:?}");
    for request in &requests {
        assert_eq!(request["path"], "/v1/metrics", "{request}");
        assert_eq!(
            request["content_type"], "application/x-protobuf",
            "{request}"
        );
        assert_eq!(request["encoding"], "gzip", "{request}");
        assert_eq!(request["tenant"], "lab", "the configured header: {request}");
    }
    let hostname = run("hostname", &[]).trim().to_string();
    for point in &points {
        assert_eq!(point["resource"]["service.name"], "netgraph", "{point}");
        assert_eq!(point["resource"]["host.name"], hostname.as_str(), "{point}");
        assert_eq!(point["scope"], "netgraph", "{point}");
        assert!(
            point["attributes"].get("process.pid").is_none(),
            "no pid in cumulative series: {point}"
        );
        if point["kind"] == "sum" {
            assert_eq!(point["temporality"], 2, "cumulative: {point}");
            assert_eq!(point["monotonic"], true, "{point}");
        }
    }
    for (metric, kind) in CATALOGUE {
        assert_eq!(
            present.get(metric),
            Some(kind),
            "{metric} as a {kind}: {present:?}"
        );
    }
    assert!(
        present.len() == CATALOGUE.len(),
        "only the catalogue: {present:?}"
    );

    // Each process, country and peer point against the JSON lines' running total.
    let mut compared = 0;
    for point in points_of(&points, "process.network.io") {
        let expected = json_total(&records, "process", point, "bytes", |l| {
            same_series(l, point)
        });
        assert_eq!(point["value"].as_u64(), Some(expected), "{point}");
        compared += 1;
    }
    for point in points_of(&points, "netgraph.process.network.packets") {
        let expected = json_total(&records, "process", point, "packets", |l| {
            same_series(l, point)
        });
        assert_eq!(point["value"].as_u64(), Some(expected), "{point}");
    }
    for point in points_of(&points, "system.network.io") {
        let expected = json_total(&records, "interface", point, "bytes", |l| {
            Some(l["interface"].as_str().unwrap().to_string())
                == attribute(point, "network.interface.name")
        });
        assert_eq!(point["value"].as_u64(), Some(expected), "{point}");
    }
    for point in points_of(&points, "netgraph.country.network.io") {
        let expected = json_total(&records, "country", point, "bytes", |l| {
            same_series(l, point)
                && attribute(point, "netgraph.country").as_deref() == l["country"].as_str()
        });
        assert_eq!(point["value"].as_u64(), Some(expected), "{point}");
    }
    for point in points_of(&points, "netgraph.peer.network.io") {
        let expected = json_total(&records, "peer", point, "bytes", |l| {
            same_series(l, point) && same_peer(l, point)
        });
        assert_eq!(point["value"].as_u64(), Some(expected), "{point}");
    }
    assert!(compared > 10, "too few process points: {compared}");

    // The upload: the far end's bytes, its peer with port and transport, its country.
    let uploaded = uploaded.expect("ng-otlp's bytes") as u64;
    EBPF.assert_share(
        "OTLP process.network.io of ng-otlp (far end's count)",
        uploaded,
        truth,
    );
    let peer = points_of(&points, "netgraph.peer.network.io")
        .find(|p| {
            attribute(p, "process.executable.name").as_deref() == Some("ng-otlp")
                && attribute(p, "network.peer.address") == Some(far.clone())
        })
        .expect("ng-otlp's peer series");
    assert_eq!(
        attribute(peer, "server.port").as_deref(),
        Some("7301"),
        "{peer}"
    );
    assert_eq!(
        attribute(peer, "network.transport").as_deref(),
        Some("tcp"),
        "{peer}"
    );
    let germany = last_value(
        &points,
        "netgraph.country.network.io",
        "ng-otlp",
        &[
            ("netgraph.country", "Germany"),
            ("network.io.direction", "transmit"),
        ],
    );
    assert_eq!(
        germany,
        Some(uploaded as f64),
        "the upload went to Germany: {:?}",
        points_of(&points, "netgraph.country.network.io").collect::<Vec<_>>()
    );

    // TCP health: one connect made, one refused; the RTT a gauge in seconds.
    let connect = last_value(&points, "netgraph.tcp.connects", "ng-otlp", &[]);
    assert_eq!(connect, Some(1.0), "ng-otlp's connect");
    let refused = last_value(
        &points,
        "netgraph.tcp.connect_failures",
        "ng-refused",
        &[("error.type", "refused")],
    );
    assert_eq!(refused, Some(1.0), "ng-refused's refused connect");
    for point in points_of(&points, "netgraph.tcp.rtt") {
        let rtt_us = records
            .of_type("process")
            .find(|l| same_series(l, point) && l["timestamp_ms"].as_u64() == Some(end_ms(point)))
            .and_then(|l| l["tcp_rtt_us"].as_f64())
            .expect("the JSON line of an RTT point");
        assert_eq!(point["unit"], "s", "{point}");
        assert!(
            (point["value"].as_f64().unwrap() - rtt_us / 1e6).abs() < 1e-9,
            "{point}"
        );
    }

    // Drops: every datagram netfilter dropped, on the process that sent it.
    let dropped = last_value(
        &points,
        "netgraph.dropped_packets",
        "ng-blocked",
        &[("netgraph.drop.layer", "netfilter")],
    );
    assert!(blocked >= 50, "too few drops to measure: {blocked}");
    assert_eq!(
        dropped,
        Some(blocked as f64),
        "netfilter's count of ng-blocked's drops"
    );
    assert_eq!(
        records.sum_all("ng-blocked", "drops_netfilter"),
        blocked,
        "the JSON lines' drops"
    );

    // The limit: its rate in bytes per second, and what it let through.
    let rate = points_of(&points, "netgraph.limit.rate")
        .find(|p| attribute(p, "netgraph.limit.direction").as_deref() == Some("egress"))
        .expect("the limit's rate");
    assert_eq!(
        attribute(rate, "netgraph.limit.name").as_deref(),
        Some("uploads")
    );
    assert_eq!(
        rate["value"].as_f64(),
        Some(125_000_000.0),
        "1 Gbit/s in bytes per second"
    );
    let features: BTreeSet<String> = points_of(&points, "netgraph.engine.feature")
        .filter(|p| p["value"].as_f64() == Some(1.0))
        .filter_map(|p| attribute(p, "netgraph.feature"))
        .collect();
    assert!(
        features.contains("tcp_health") && features.contains("drops"),
        "{features:?}"
    );
}

/// Delta: each interval's amount once, with the pid. The receiver stops for a while,
/// netgraph is restarted while it is away, and the receiver comes back: every interval
/// of both runs arrives exactly once, with the JSON lines' bytes, which are the far
/// end's.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn an_outage_and_a_restart_during_it_lose_no_interval() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    let (_, _, _, far) = lab.host_link();
    lab.truth_in(&b, &[("carried", "input", "udp dport 7311")]);
    lab.serve(
        &b,
        "ng-usink",
        &["udp-sink", &format!("{far}:7311"), "recv"],
    );
    let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
    let receiver = Receiver::start(0, lines.clone());
    let port = receiver.port;
    let state = lab.path("otlp-state");
    let config = lab.path("otlp.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = {:?}\n{}",
            state.display().to_string(),
            otlp_section(port, "temporality = \"delta\"\n")
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let steady = |seconds: &str| {
        Command::new(lab.tool("ng-steady"))
            .args(["udp-trickle", &format!("{far}:7311"), seconds, "500"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finish = |sender: Child| {
        let output = sender.wait_with_output().unwrap();
        assert!(output.status.success(), "the sender failed");
    };
    // The first run: the receiver goes away halfway through its traffic; its last
    // intervals stay spooled when it stops.
    let first = lab.netgraph_ebpf(&["--config", config]);
    let sender = steady("6");
    std::thread::sleep(Duration::from_millis(2500));
    drop(receiver);
    finish(sender);
    std::thread::sleep(Duration::from_millis(1500));
    let first_records = first.stop();
    // The second, on the same spool: the receiver comes back halfway through.
    let second = lab.netgraph_ebpf(&["--config", config]);
    let sender = steady("6");
    std::thread::sleep(Duration::from_millis(2500));
    let receiver = Receiver::start(port, lines);
    finish(sender);
    std::thread::sleep(Duration::from_millis(2500));
    let second_records = second.stop();
    std::thread::sleep(Duration::from_millis(500));
    let points = receiver.points();
    let truth = lab.truth_bytes_in(&b, "carried");

    // Every JSON line of the sender, of either run, against its one point.
    let mut expected: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for records in [&first_records, &second_records] {
        for line in records
            .of_type("process")
            .filter(|l| l["name"] == "ng-steady")
        {
            let bytes = line["sent_bytes_last"].as_u64().unwrap();
            if bytes > 0 {
                let key = (
                    line["timestamp_ms"].as_u64().unwrap(),
                    line["pid"].as_u64().unwrap(),
                );
                *expected.entry(key).or_default() = (bytes, 0);
            }
        }
    }
    let mut received: BTreeMap<(u64, u64), (u64, u64)> = BTreeMap::new();
    for point in points_of(&points, "process.network.io")
        .filter(|p| attribute(p, "process.executable.name").as_deref() == Some("ng-steady"))
        .filter(|p| attribute(p, "network.io.direction").as_deref() == Some("transmit"))
    {
        assert_eq!(point["temporality"], 1, "delta: {point}");
        let pid = attribute(point, "process.pid").expect("delta points have the pid");
        let entry = received
            .entry((end_ms(point), pid.parse().unwrap()))
            .or_default();
        entry.0 += point["value"].as_u64().unwrap();
        entry.1 += 1;
    }
    let exported: u64 = received.values().map(|(bytes, _)| bytes).sum();
    let counted: u64 = expected.values().map(|(bytes, _)| bytes).sum();
    report(&format!(
        "OTLP (delta) across an outage of the receiver and a restart of netgraph during it: {} intervals of ng-steady in the JSON lines, {} received; {exported} bytes exported, {counted} in the JSON lines, {truth} at the far end",
        expected.len(),
        received.len()
    ));
    assert!(
        first_records
            .log
            .contains("stay spooled for the next start"),
        "the first run kept its last intervals:\n{}",
        first_records.log
    );
    assert!(
        second_records
            .log
            .contains("spooled by an earlier run will be sent"),
        "the second run found the first's spool:\n{}",
        second_records.log
    );
    assert!(expected.len() >= 10, "too few intervals: {expected:?}");
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !received.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "intervals lost: {missing:?}");
    for (key, (bytes, count)) in &received {
        assert_eq!(*count, 1, "interval {key:?} sent {count} times");
        assert_eq!(
            expected.get(key).map(|e| e.0),
            Some(*bytes),
            "interval {key:?}"
        );
    }
    assert_eq!(
        exported, counted,
        "bytes: the receiver against the JSON lines"
    );
    EBPF.assert_share(
        "OTLP delta bytes of ng-steady (far end's count)",
        exported,
        truth,
    );
}

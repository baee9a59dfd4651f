//! Flows for the collectors teams run (needs root): IPFIX over UDP to Debian's nfcapd
//! (nfdump), read back with nfdump, and over TCP to a collector decoding with
//! python-ipfix and the template netgraph publishes (docs/ipfix.iespec); the bytes of
//! each flow equal netgraph's JSON peer lines, and those equal the far end's count.

mod lab;

use lab::engines::EngineUnderTest;
use lab::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EBPF: EngineUnderTest = EngineUnderTest::Ebpf;
const BYTES: u64 = 3_000_000;

/// The lab with a TCP sink at the far end (namespace b, reached from the host) on
/// `port`, a truth counter there, and a process `tool` that sends it BYTES from the
/// host; returns once the far end has them all.
fn transfer(lab: &mut Lab, tool: &str, port: u16) -> String {
    let b = lab.b.clone();
    let (_, _, _, far) = lab.host_link();
    lab.truth_in(&b, &[("carried", "input", &format!("tcp dport {port}"))]);
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{far}:{port}")]);
    lab.start_on_host(
        tool,
        &["tcp-send", &format!("{far}:{port}"), &BYTES.to_string()],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while lab.truth_bytes_in(&b, "carried") < BYTES {
        assert!(Instant::now() < deadline, "the transfer did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    far
}

/// The JSON peer lines' bytes of `tool` with `far`: (sent, received, sent packets).
fn json_bytes(records: &Records, tool: &str, far: &str) -> (u64, u64, u64) {
    let peers: Vec<&Value> = records
        .of_type("peer")
        .filter(|line| line["name"] == tool && line["peer_address"] == far)
        .collect();
    let sum = |field: &str| peers.iter().filter_map(|l| l[field].as_u64()).sum::<u64>();
    (
        sum("sent_bytes_last"),
        sum("recv_bytes_last"),
        sum("sent_packets_last"),
    )
}

/// A collector started by `command` (given a free UDP port of 127.0.0.1 to listen on)
/// with its output dropped, killed with the test.
fn udp_collector(dir: &std::path::Path, command: impl FnOnce(u16) -> Command) -> (Receiver, u16) {
    std::fs::create_dir_all(dir).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = command(port)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the collector runs (scripts/test.sh installs nfdump and pmacct)");
    // It binds at once; give it a moment to.
    std::thread::sleep(Duration::from_millis(500));
    (Receiver(child), port)
}

struct Nfcapd {
    collector: Receiver,
    dir: std::path::PathBuf,
    port: u16,
}

impl Nfcapd {
    fn start(dir: std::path::PathBuf) -> Nfcapd {
        let (collector, port) = udp_collector(&dir, |port| {
            let mut command = Command::new("nfcapd");
            command
                .args(["-w", dir.to_str().unwrap(), "-b", "127.0.0.1"])
                .args(["-p", &port.to_string()]);
            command
        });
        Nfcapd {
            collector,
            dir,
            port,
        }
    }

    /// Stops it (its current file is closed and kept), and reads every flow back with
    /// nfdump: (source, destination, source port, destination port, protocol, bytes,
    /// packets).
    fn stop_and_read(mut self) -> Vec<(String, String, u16, u16, String, u64, u64)> {
        let child = &mut self.collector.0;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
        let out = run(
            "nfdump",
            &[
                "-R",
                self.dir.to_str().unwrap(),
                "-q",
                "-N",
                "-o",
                "fmt:%sa|%da|%sp|%dp|%pr|%byt|%pkt",
            ],
        );
        out.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split('|').map(str::trim).collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.to_string(),
                    f.get(2)?.parse().ok()?,
                    f.get(3)?.parse().ok()?,
                    f.get(4)?.to_string(),
                    f.get(5)?.parse().ok()?,
                    f.get(6)?.parse().ok()?,
                ))
            })
            .collect()
    }
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn ipfix_over_udp_reaches_nfcapd_with_the_bytes_netgraph_counted() {
    require_root();
    let mut lab = Lab::new();
    let nfcapd = Nfcapd::start(lab.path("nfcapd"));
    let config = lab.path("ipfix.toml");
    std::fs::write(
        &config,
        format!("[ipfix]\ncollector = \"127.0.0.1:{}\"\n", nfcapd.port),
    )
    .unwrap();
    let netgraph = lab.netgraph_ebpf(&["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("exporting flows over IPFIX", Duration::from_secs(5));
    let far = transfer(&mut lab, "ng-flow", 7401);
    std::thread::sleep(Duration::from_millis(2500));
    let records = netgraph.stop();
    let truth = lab.truth_bytes_in(&lab.b, "carried");
    let flows = nfcapd.stop_and_read();
    let (sent, received, packets) = json_bytes(&records, "ng-flow", &far);
    let out: Vec<_> = flows.iter().filter(|f| f.1 == far && f.3 == 7401).collect();
    let back: Vec<_> = flows.iter().filter(|f| f.0 == far && f.2 == 7401).collect();
    let exported_out: u64 = out.iter().map(|f| f.5).sum();
    let exported_packets: u64 = out.iter().map(|f| f.6).sum();
    let exported_back: u64 = back.iter().map(|f| f.5).sum();
    report(&format!(
        "IPFIX over UDP to nfcapd: ng-flow to {far}:7401 in {} records: {exported_out} bytes ({exported_packets} packets) out, {exported_back} back; netgraph's JSON {sent} / {received}; the far end counted {truth}",
        out.len()
    ));
    assert!(
        !out.is_empty(),
        "no flow to {far}:7401 in nfdump's output: {flows:?}"
    );
    // nfdump -N shows the protocol's number.
    assert!(out.iter().all(|f| f.4 == "TCP" || f.4 == "6"), "{out:?}");
    assert_eq!(
        exported_out, sent,
        "bytes out: nfdump against the JSON lines"
    );
    assert_eq!(exported_packets, packets, "packets out");
    assert_eq!(exported_back, received, "bytes back");
    EBPF.assert_share(
        "IPFIX flow bytes out (far end's count)",
        exported_out,
        truth,
    );
}

/// The receiver, killed with the test.
struct Receiver(Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The receiver's JSON lines, as they come.
fn receive(child: &mut Child) -> (u16, Arc<Mutex<Vec<Value>>>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = lines
        .next()
        .and_then(Result::ok)
        .and_then(|line| line.trim().parse().ok())
        .expect("the IPFIX receiver says its port");
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                sink.lock().unwrap().push(value);
            }
        }
    });
    (port, received)
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn ipfix_over_tcp_names_the_process_with_the_published_template() {
    require_root();
    let mut lab = Lab::new();
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ipfix.iespec");
    let mut receiver = Receiver(
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/flows/ipfix_receiver.py"
            ))
            .arg(spec)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs"),
    );
    let (port, received) = receive(&mut receiver.0);
    let config = lab.path("ipfix.toml");
    std::fs::write(
        &config,
        format!("[ipfix]\ncollector = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\n"),
    )
    .unwrap();
    let netgraph = lab.netgraph_ebpf(&["--config", config.to_str().unwrap()]);
    let far = transfer(&mut lab, "ng-flowtcp", 7402);
    std::thread::sleep(Duration::from_millis(2500));
    let records = netgraph.stop();
    std::thread::sleep(Duration::from_millis(500));
    drop(receiver);
    let received = received.lock().unwrap().clone();
    let (sent, received_bytes, _) = json_bytes(&records, "ng-flowtcp", &far);
    let pids: std::collections::BTreeSet<u64> = records
        .of_type("peer")
        .filter(|line| line["name"] == "ng-flowtcp")
        .filter_map(|line| line["pid"].as_u64())
        .collect();
    let ours: Vec<&Value> = received
        .iter()
        .filter(|r| r["processName"] == "ng-flowtcp")
        .collect();
    let bytes_where = |direction: u64| -> u64 {
        ours.iter()
            .filter(|r| r["flowDirection"] == direction)
            .filter_map(|r| r["octetDeltaCount"].as_u64())
            .sum()
    };
    report(&format!(
        "IPFIX over TCP to python-ipfix with docs/ipfix.iespec: {} records of ng-flowtcp (pid {pids:?}): {} bytes out, {} back; netgraph's JSON {sent} / {received_bytes}",
        ours.len(),
        bytes_where(1),
        bytes_where(0)
    ));
    assert_eq!(
        received.iter().filter(|r| r["connection"] == true).count(),
        1,
        "one TCP connection"
    );
    assert!(!ours.is_empty(), "no record of ng-flowtcp: {received:?}");
    for record in &ours {
        assert!(
            pids.contains(&record["processId"].as_u64().unwrap()),
            "{record}"
        );
        assert_eq!(record["userId"], 0, "{record}");
        assert_eq!(record["protocolIdentifier"], 6, "{record}");
        let end = record["flowEndMilliseconds"].as_u64().unwrap();
        let start = record["flowStartMilliseconds"].as_u64().unwrap();
        // One interval, ending on its boundary (the first runs from start to the
        // first boundary after a whole one).
        assert!(
            end > start && end - start < 2000 && end % 1000 == 0,
            "{record}"
        );
        let far_field = if record["flowDirection"] == 1 {
            "destinationIPv4Address"
        } else {
            "sourceIPv4Address"
        };
        assert_eq!(record[far_field], far.as_str(), "{record}");
    }
    assert_eq!(
        bytes_where(1),
        sent,
        "bytes out: python-ipfix against the JSON lines"
    );
    assert_eq!(bytes_where(0), received_bytes, "bytes back");
}

/// pmacct's nfacctd, printing each flow as a JSON line with netgraph's elements as
/// declared by docs/pmacct-primitives.lst.
struct Nfacctd {
    _collector: Receiver,
    output: std::path::PathBuf,
    port: u16,
}

impl Nfacctd {
    fn start(dir: std::path::PathBuf) -> Nfacctd {
        let output = dir.join("flows.json");
        let config = dir.join("nfacctd.conf");
        let (collector, port) = udp_collector(&dir, |port| {
            std::fs::write(
                &config,
                format!(
                    "daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\n\
                     aggregate_primitives: {}/docs/pmacct-primitives.lst\nplugins: print\n\
                     aggregate: src_host, dst_host, dst_port, proto, process_name, process_id, user_id\n\
                     print_output: json\nprint_output_file: {}\nprint_output_file_append: true\n\
                     print_refresh_time: 1\n",
                    env!("CARGO_MANIFEST_DIR"),
                    output.display()
                ),
            )
            .unwrap();
            let mut command = Command::new("nfacctd");
            command.arg("-f").arg(&config);
            command
        });
        Nfacctd {
            _collector: collector,
            output,
            port,
        }
    }

    /// Every flow it printed.
    fn flows(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn pmacct_nfacctd_decodes_the_process_with_the_published_primitives() {
    require_root();
    let mut lab = Lab::new();
    let nfacctd = Nfacctd::start(lab.path("nfacctd"));
    let config = lab.path("ipfix.toml");
    std::fs::write(
        &config,
        format!("[ipfix]\ncollector = \"127.0.0.1:{}\"\n", nfacctd.port),
    )
    .unwrap();
    let netgraph = lab.netgraph_ebpf(&["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("exporting flows over IPFIX", Duration::from_secs(5));
    let far = transfer(&mut lab, "ng-pmacct", 7403);
    std::thread::sleep(Duration::from_millis(2500));
    let records = netgraph.stop();
    // Its print plugin writes what it holds each second.
    std::thread::sleep(Duration::from_millis(2500));
    let flows = nfacctd.flows();
    let (sent, received, _) = json_bytes(&records, "ng-pmacct", &far);
    let pids: std::collections::BTreeSet<String> = records
        .of_type("peer")
        .filter(|line| line["name"] == "ng-pmacct")
        .filter_map(|line| line["pid"].as_u64().map(|pid| pid.to_string()))
        .collect();
    let ours: Vec<&Value> = flows
        .iter()
        .filter(|flow| flow["process_name"] == "ng-pmacct")
        .collect();
    let bytes_to = |end: &str, field: &str| -> u64 {
        ours.iter()
            .filter(|flow| flow[field] == end)
            .filter_map(|flow| flow["bytes"].as_u64())
            .sum()
    };
    let (out, back) = (bytes_to(&far, "ip_dst"), bytes_to(&far, "ip_src"));
    report(&format!(
        "IPFIX to pmacct's nfacctd with docs/pmacct-primitives.lst: {} flows of ng-pmacct (pid {pids:?}): {out} bytes out, {back} back; netgraph's JSON {sent} / {received}",
        ours.len()
    ));
    assert!(!ours.is_empty(), "no flow of ng-pmacct: {flows:?}");
    for flow in &ours {
        let pid = flow["process_id"].as_str().unwrap_or_default();
        assert!(pids.contains(pid), "{flow}");
        assert_eq!(flow["user_id"], "0", "{flow}");
    }
    assert_eq!(out, sent, "bytes out: nfacctd against the JSON lines");
    assert_eq!(back, received, "bytes back");
}

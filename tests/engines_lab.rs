//! Both engines against IP-layer truth, in the namespace lab (needs root): each case is
//! written once and runs for the capture and the eBPF engine. Truth: nftables counters
//! in `a`, at the output hook for what was sent and at the input hook for what was
//! received. Cases only one engine can pass live in capture_lab.rs and ebpf_lab.rs.

mod lab;

use lab::engines::{for_both_engines, settle, EngineUnderTest};
use lab::*;

for_both_engines!(
    tcp_upload,
    tcp_download,
    udp_on_an_unconnected_socket_both_ways,
    ipv6_tcp_and_udp,
    loopback_names_both_ends,
    icmp_echo_with_payload,
    short_lived_processes,
    geoip_names_countries_of_unattributed_and_process_traffic,
    peers_add_up_to_their_process,
    a_scanner_keeps_its_top_peers_and_other,
);

fn tcp_upload(engine: EngineUnderTest) {
    let target = format!("{B4}:5001");
    engine.tcp_client_case(
        "bulk TCP upload",
        5001,
        &["tcp-sink", &target],
        "ng-up",
        &["tcp-send", &target, "3s"],
        true,
    );
}

fn tcp_download(engine: EngineUnderTest) {
    let target = format!("{B4}:5002");
    engine.tcp_client_case(
        "bulk TCP download",
        5002,
        &["tcp-source", &target, "3"],
        "ng-down",
        &["tcp-recv", &target],
        true,
    );
}

fn udp_on_an_unconnected_socket_both_ways(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[
        ("out", "output", "udp dport 5003"),
        ("in", "input", "udp sport 5003"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-echo", &["udp-echo", &format!("{B4}:5003")]);
    let netgraph = engine.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-udp",
        &[
            "udp-ping",
            &format!("{B4}:5003"),
            "3000",
            "512",
            "unconnected",
            "1000",
        ],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    engine.assert_share(
        "UDP unconnected, sent",
        records.sum("ng-udp", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    engine.assert_share(
        "UDP unconnected, received",
        records.sum("ng-udp", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("in"),
    );
}

fn ipv6_tcp_and_udp(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[
        ("tcp_out", "output", "meta nfproto ipv6 tcp dport 5004"),
        ("udp_out", "output", "meta nfproto ipv6 udp dport 5005"),
        ("udp_in", "input", "meta nfproto ipv6 udp sport 5005"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink6", &["tcp-sink", &format!("[{B6}]:5004")]);
    lab.serve(&b, "ng-echo6", &["udp-echo", &format!("[{B6}]:5005")]);
    let netgraph = engine.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-tcp6",
        &["tcp-send", &format!("[{B6}]:5004"), "2s"],
    );
    lab.exec(
        &lab.a,
        "ng-udp6",
        &[
            "udp-ping",
            &format!("[{B6}]:5005"),
            "2000",
            "512",
            "unconnected",
            "1000",
        ],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    engine.assert_share(
        "IPv6 TCP, sent",
        records.sum("ng-tcp6", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("tcp_out"),
    );
    engine.assert_share(
        "IPv6 UDP, sent",
        records.sum("ng-udp6", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("udp_out"),
    );
    engine.assert_share(
        "IPv6 UDP, received",
        records.sum("ng-udp6", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("udp_in"),
    );
}

fn loopback_names_both_ends(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    // On lo the output hook sees TCP super-packets that the device then splits, each
    // part with its own headers; the input hook sees the packets that crossed lo. The
    // capture engine sees what crossed; the eBPF engine counts where the output hook
    // does (issue #15 is about counting what crossed there too).
    lab.truth(&[
        ("out", "output", "oif lo tcp dport 5006"),
        ("in", "input", "iif lo tcp dport 5006"),
    ]);
    let a = lab.a.clone();
    lab.serve(&a, "ng-lsrv", &["tcp-sink", "127.0.0.1:5006"]);
    let netgraph = engine.start(&lab, &[]);
    lab.exec(&lab.a, "ng-lcli", &["tcp-send", "127.0.0.1:5006", "2s"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let sent_truth = match engine {
        EngineUnderTest::Capture => lab.truth_bytes("in"),
        EngineUnderTest::Ebpf => lab.truth_bytes("out"),
    };
    engine.assert_share(
        "loopback, client sent",
        records.sum("ng-lcli", "lo", "sent_bytes_last"),
        sent_truth,
    );
    engine.assert_share(
        "loopback, server received",
        records.sum("ng-lsrv", "lo", "recv_bytes_last"),
        lab.truth_bytes("in"),
    );
}

fn icmp_echo_with_payload(engine: EngineUnderTest) {
    let lab = Lab::new();
    lab.truth(&[
        ("requests", "output", "icmp type echo-request"),
        ("replies", "input", "icmp type echo-reply"),
    ]);
    let netgraph = engine.start(&lab, &[]);
    run(
        "ip",
        &[
            "netns", "exec", &lab.a, "ping", "-q", "-c", "10", "-i", "0.2", "-s", "1000", B4,
        ],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let ping_sent = records.sum("ping", &lab.veth_a, "sent_bytes_last");
    let ping_recv = records.sum("ping", &lab.veth_a, "recv_bytes_last");
    // ping's socket is open throughout, so its echoes are named exactly.
    assert_eq!(
        ping_sent,
        lab.truth_bytes("requests"),
        "echo requests named ping"
    );
    assert_eq!(
        ping_recv,
        lab.truth_bytes("replies"),
        "echo replies named ping"
    );
    // Background ICMPv6 (neighbour discovery, the peer's multicast reports) has no
    // exact truth here; conservation above holds it to what was counted.
    report(&format!(
        "{}, ICMP echo: 100% of {ping_sent} request bytes and {ping_recv} reply bytes named ping",
        engine.label()
    ));
}

/// 300 processes that each live for one 200 kB connection. The eBPF engine names
/// every byte; the capture engine, which must find each socket in /proc while the
/// process lives, names what it can and puts the rest in `unknown TCP`, losing none.
fn short_lived_processes(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 5007")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:5007")]);
    let netgraph = engine.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-short",
        &["short-lived", &format!("{B4}:5007"), "300", "200000"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let truth = lab.truth_bytes("out");
    let named = records.sum("ng-short", &lab.veth_a, "sent_bytes_last");
    let unknown = records.sum("unknown TCP", &lab.veth_a, "sent_bytes_last");
    report(&format!(
        "{}, 300 short-lived processes x 200 kB: {:.2}% attributed, {:.2}% in unknown TCP",
        engine.label(),
        share(named, truth) * 100.0,
        share(unknown, truth) * 100.0
    ));
    match engine {
        EngineUnderTest::Capture => assert_eq!(
            named + unknown,
            truth,
            "short-lived traffic is named or in unknown TCP, never lost"
        ),
        EngineUnderTest::Ebpf => {
            assert!(
                share(named, truth) >= 0.99,
                "only {named} of {truth} bytes named"
            );
            assert!(named <= truth);
            // Each row names its program, although its processes are gone from /proc
            // by the interval's end: the kernel side kept the path they were run by.
            let tool = lab.tool("ng-short");
            let rows: Vec<_> = records.rows("ng-short").collect();
            assert!(!rows.is_empty());
            for row in rows {
                assert_eq!(row["exe"], tool.to_str().unwrap(), "{row}");
            }
        }
    }
}

/// GeoIP with a test database: pings the kernel answers (no process) are named by the
/// country of their far end, and a process's traffic is broken down by country.
fn geoip_names_countries_of_unattributed_and_process_traffic(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[
        ("tcp_out", "output", "tcp dport 5008"),
        ("udp6_out", "output", "meta nfproto ipv6 udp dport 5009"),
    ]);
    // The far end counts the pings the kernel answered.
    lab.truth_in(
        &lab.b,
        &[
            ("requests", "output", "icmp type echo-request"),
            ("replies", "input", "icmp type echo-reply"),
        ],
    );
    let answering = engine.kernel_answering(&lab);
    let mut entries = vec![format!("{B4}/32=DE:Germany"), format!("{B6}/128=FR:France")];
    entries.extend(answering.geoip_entry.clone());
    let config = lab.geoip_config(&entries.iter().map(String::as_str).collect::<Vec<_>>());
    lab.geo_servers(5008);
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);
    // The eBPF engine hooks a new interface within a drain or two.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    lab.geo_clients(5008);
    lab.ping_from_b(&answering.target, 20, "0.2", 1000);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let kernel = format!("local-{}", answering.country);
    let received = records.sum(&kernel, &answering.interface, "recv_bytes_last");
    let sent = records.sum(&kernel, &answering.interface, "sent_bytes_last");
    report(&format!(
        "{}, GeoIP: pings answered by the kernel named {kernel}: {received} bytes in, {sent} out, of 20560 each",
        engine.label()
    ));
    assert_eq!(received, lab.truth_bytes_in(&lab.b, "requests"));
    assert_eq!(sent, lab.truth_bytes_in(&lab.b, "replies"));
    // 20 echo requests and 20 replies of 1028 bytes at the IP layer.
    assert_eq!((received, sent), (20 * 1028, 20 * 1028));
    let truth = [lab.truth_bytes("tcp_out"), lab.truth_bytes("udp6_out")];
    let sent = records.sent_by_country("ng-geo", &["Germany", "France"]);
    engine.assert_share("GeoIP, TCP to Germany", sent[0], truth[0]);
    engine.assert_share("GeoIP, UDP to France", sent[1], truth[1]);
}

/// With `[peers]`, each process's traffic by remote address: every interval the peer
/// rows of a series add up to it exactly, and each peer's bytes match what nftables
/// counted for that peer.
fn peers_add_up_to_their_process(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[
        ("tcp_out", "output", "tcp dport 5011"),
        ("udp6_out", "output", "meta nfproto ipv6 udp dport 5012"),
        ("udp6_in", "input", "meta nfproto ipv6 udp sport 5012"),
    ]);
    // What arrived at the far end, too.
    lab.truth_in(
        &lab.b.clone(),
        &[("tcp_arrived", "input", "tcp dport 5011")],
    );
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:5011")]);
    lab.serve(&b, "ng-echo6", &["udp-echo", &format!("[{B6}]:5012")]);
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\nper_process = 20\n").unwrap();
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);
    lab.exec(
        &lab.a,
        "ng-peer",
        &["tcp-send", &format!("{B4}:5011"), "1s"],
    );
    lab.exec(
        &lab.a,
        "ng-peer",
        &[
            "udp-ping",
            &format!("[{B6}]:5012"),
            "2000",
            "512",
            "unconnected",
            "1000",
        ],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();

    let series = assert_peers_add_up(&records);
    let peer_sent = |peer: &str, field: &str| -> u64 {
        records
            .of_type("peer")
            .filter(|l| l["name"] == "ng-peer" && l["peer_address"] == peer)
            .map(|l| l[field].as_u64().unwrap())
            .sum()
    };
    engine.assert_share(
        "peers, TCP to the IPv4 peer",
        peer_sent(B4, "sent_bytes_last"),
        lab.truth_bytes("tcp_out"),
    );
    engine.assert_share(
        "peers, TCP to the IPv4 peer (far end's count)",
        peer_sent(B4, "sent_bytes_last"),
        lab.truth_bytes_in(&lab.b, "tcp_arrived"),
    );
    engine.assert_share(
        "peers, UDP to the IPv6 peer, sent",
        peer_sent(B6, "sent_bytes_last"),
        lab.truth_bytes("udp6_out"),
    );
    engine.assert_share(
        "peers, UDP from the IPv6 peer, received",
        peer_sent(B6, "recv_bytes_last"),
        lab.truth_bytes("udp6_in"),
    );
    report(&format!(
        "{}, peers: {series} series-intervals, each one's peers add up to it exactly",
        engine.label()
    ));
}

/// Every interval, every series: its peer rows add up to its process row exactly.
/// Returns how many series-intervals there were.
fn assert_peers_add_up(records: &Records) -> usize {
    type Series = (u64, String, String, String, String);
    let series_of = |line: &serde_json::Value| -> Series {
        (
            line["timestamp_ms"].as_u64().unwrap(),
            line["name"].to_string(),
            line["uid"].to_string(),
            line["interface"].to_string(),
            line["container_id"].to_string(),
        )
    };
    let mut sums: std::collections::BTreeMap<Series, [u64; 4]> = Default::default();
    for (first, kind) in [(0, "process"), (2, "peer")] {
        for line in records.of_type(kind) {
            let sum = sums.entry(series_of(line)).or_default();
            sum[first] += line["sent_bytes_last"].as_u64().unwrap();
            sum[first + 1] += line["recv_bytes_last"].as_u64().unwrap();
        }
    }
    assert!(!sums.is_empty());
    for (series, [sent, recv, peers_sent, peers_recv]) in &sums {
        assert_eq!(
            (peers_sent, peers_recv),
            (sent, recv),
            "peers of {series:?} do not add up"
        );
    }
    sums.len()
}

/// One process sends a datagram to each of 5,000 addresses: every interval it keeps
/// its 20 largest peers and `other`, which together are exactly its traffic.
fn a_scanner_keeps_its_top_peers_and_other(engine: EngineUnderTest) {
    let lab = Lab::new();
    // The addresses lie behind `b`, which drops them: nftables in `a` counts them out.
    run(
        "ip",
        &["-n", &lab.a, "route", "add", "10.210.0.0/16", "via", B4],
    );
    lab.truth(&[("out", "output", "udp dport 7999")]);
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\nper_process = 20\n").unwrap();
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);
    let state = netgraph.state.clone();
    lab.exec(
        &lab.a,
        "ng-scan",
        &["udp-spray", "10.210.0.1", "5000", "7999", "100"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_peers_add_up(&records);
    let rows: Vec<&serde_json::Value> = records
        .of_type("peer")
        .filter(|l| l["name"] == "ng-scan")
        .collect();
    let intervals: std::collections::BTreeSet<u64> = rows
        .iter()
        .map(|l| l["timestamp_ms"].as_u64().unwrap())
        .collect();
    for interval in &intervals {
        let in_interval = rows
            .iter()
            .filter(|l| l["timestamp_ms"] == *interval)
            .count();
        assert!(in_interval <= 21, "{in_interval} peer rows in one interval");
    }
    assert!(rows.iter().any(|l| l["peer_address"] == "other"));
    let sent: u64 = rows
        .iter()
        .map(|l| l["sent_bytes_last"].as_u64().unwrap())
        .sum();
    engine.assert_share(
        "a scanner's 5,000 peers as its top 20 and other, sent",
        sent,
        lab.truth_bytes("out"),
    );
    // The store keeps what the lines carried: at most 21 peers per interval, the same sum.
    let store =
        netgraph::store::Store::open(&state, netgraph::store::Retention::default()).unwrap();
    let now = netgraph::store::seconds(std::time::SystemTime::now());
    let only = netgraph::store::Only {
        group_by: netgraph::store::GroupBy::Process,
        key: "ng-scan",
    };
    let (_, stored) = store
        .reader()
        .unwrap()
        .totals(
            now - 600,
            now + 1,
            netgraph::store::GroupBy::Peer,
            1000,
            Some(only),
        )
        .unwrap();
    assert!(
        stored.len() <= 21 * intervals.len(),
        "{} peers stored",
        stored.len()
    );
    assert_eq!(stored.iter().map(|t| t.sent_bytes).sum::<u64>(), sent);
    report(&format!(
        "{}, 5,000 peers of one process: {} peer rows over {} intervals, adding up exactly; {} peers in the store",
        engine.label(),
        rows.len(),
        intervals.len(),
        stored.len()
    ));
}

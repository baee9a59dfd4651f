//! Cases only the eBPF engine has, against IP-layer truth in the namespace lab (needs
//! root); the cases both engines share are in engines_lab.rs. Truth: nftables counters
//! at the output hook for what was sent and at the input hook for what was received,
//! where the engine's cgroup_skb programs sit too.

mod lab;

use lab::engines::{settle, EngineUnderTest};
use lab::*;
use std::time::Duration;

const EBPF: EngineUnderTest = EngineUnderTest::Ebpf;

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn tcp_full_duplex() {
    require_root();
    let target = format!("{B4}:6003");
    EBPF.tcp_client_case(
        "TCP full duplex",
        6003,
        &["tcp-duplex-serve", &target, "3"],
        "ng-dup",
        &["tcp-duplex", &target, "3"],
        true,
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn sendfile_splice_and_io_uring() {
    require_root();
    for (port, mode) in [(6004, "sendfile"), (6005, "splice"), (6006, "uring")] {
        let target = format!("{B4}:{port}");
        let client = format!("ng-{mode}");
        EBPF.tcp_client_case(
            &format!("TCP via {mode}"),
            port,
            &["tcp-sink", &target],
            &client,
            &["tcp-send", &target, "2s", mode],
            false,
        );
    }
    let target = format!("{B4}:6007");
    EBPF.tcp_client_case(
        "TCP received via io_uring",
        6007,
        &["tcp-source", &target, "2"],
        "ng-urecv",
        &["tcp-recv", &target, "uring"],
        true,
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn udp_connected_and_small_packet_flood() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("con_out", "output", "udp dport 6012"),
        ("con_in", "input", "udp sport 6012"),
        ("flood_out", "output", "udp dport 6014"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-echo", &["udp-echo", &format!("{B4}:6012")]);
    lab.serve(&b, "ng-usink", &["udp-sink", &format!("{B4}:6014"), "recv"]);
    let netgraph = EBPF.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-ucon",
        &[
            "udp-ping",
            &format!("{B4}:6012"),
            "2000",
            "512",
            "connected",
        ],
    );
    lab.exec(
        &lab.a,
        "ng-flood",
        &["udp-flood", &format!("{B4}:6014"), "3", "64", "connected"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    EBPF.assert_share(
        "UDP connected, sent",
        records.sum("ng-ucon", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("con_out"),
    );
    EBPF.assert_share(
        "UDP connected, received",
        records.sum("ng-ucon", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("con_in"),
    );
    EBPF.assert_share(
        "UDP 64-byte flood at full rate, sent",
        records.sum("ng-flood", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("flood_out"),
    );
    assert_eq!(records.lost_events(), 0, "no event lost under the flood");
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn sendmmsg_and_recvmmsg() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("out", "output", "udp dport 6015"),
        ("in", "input", "udp dport 6016"),
    ]);
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.serve(&b, "ng-usink", &["udp-sink", &format!("{B4}:6015"), "recv"]);
    lab.serve(&a, "ng-rmmsg", &["udp-sink", &format!("{A4}:6016"), "mmsg"]);
    let netgraph = EBPF.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-smmsg",
        &["udp-flood", &format!("{B4}:6015"), "2", "512", "mmsg"],
    );
    lab.exec(
        &lab.b,
        "ng-flood",
        &["udp-flood", &format!("{A4}:6016"), "2", "512", "connected"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    EBPF.assert_share(
        "sendmmsg, sent",
        records.sum("ng-smmsg", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    EBPF.assert_share(
        "recvmmsg, received",
        records.sum("ng-rmmsg", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn raw_ip_socket() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("raw_out", "output", "meta l4proto 253"),
        ("raw_in", "input", "meta l4proto 253"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-rawecho", &["raw-echo"]);
    let netgraph = EBPF.start(&lab, &[]);
    lab.exec(&lab.a, "ng-raw", &["raw-ping", B4, "500", "256"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    EBPF.assert_share(
        "raw IP protocol 253, sent",
        records.sum("ng-raw", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("raw_out"),
    );
    EBPF.assert_share(
        "raw IP protocol 253, received",
        records.sum("ng-raw", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("raw_in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn accepted_sockets_belong_to_the_server() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("in", "input", "tcp dport 6040"),
        ("out", "output", "tcp sport 6040"),
    ]);
    let a = lab.a.clone();
    lab.serve(&a, "ng-acc", &["tcp-sink", &format!("{A4}:6040")]);
    let netgraph = EBPF.start(&lab, &[]);
    lab.exec(
        &lab.b,
        "ng-client",
        &["tcp-send", &format!("{A4}:6040"), "2s"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    EBPF.assert_share(
        "accepted connection, received by the server",
        records.sum("ng-acc", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("in"),
    );
    EBPF.assert_share(
        "accepted connection, sent by the server",
        records.sum("ng-acc", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn socket_used_by_a_forked_child() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 6050")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6050")]);
    let netgraph = EBPF.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-fork",
        &["fork-send", &format!("{B4}:6050"), "2s"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let truth = lab.truth_bytes("out");
    let child = records.sum("ng-child", &lab.veth_a, "sent_bytes_last");
    let parent = records.sum("ng-fork", &lab.veth_a, "sent_bytes_last");
    EBPF.assert_share(
        "socket inherited across fork, sent by the child",
        child,
        truth,
    );
    assert_eq!(
        child + parent,
        truth,
        "parent (handshake) and child (data) together are all of it"
    );
}

/// One socket on two interfaces, closed right after its last datagram: the first
/// interface's packets are counted in the socket's own storage and the other's in the
/// kernel map, and what the storage held at close is handed over to the map. Each
/// interface exact, against where the packets left and where they arrived.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn one_socket_on_two_interfaces_closed_at_once() {
    require_root();
    let mut lab = Lab::new();
    let veth_out = format!("oifname \"{}\" udp dport 6071", lab.veth_a);
    lab.truth(&[
        ("veth_out", "output", &veth_out),
        ("lo_out", "output", "oif lo udp dport 6072"),
        ("lo_in", "input", "iif lo udp dport 6072"),
    ]);
    let b = lab.b.clone();
    lab.truth_in(&b, &[("far_in", "input", "udp dport 6071")]);
    lab.serve(&b, "ng-far", &["udp-sink", &format!("{B4}:6071"), "recv"]);
    let a = lab.a.clone();
    lab.serve(&a, "ng-near", &["udp-sink", "127.0.0.1:6072", "recv"]);
    let netgraph = EBPF.start(&lab, &[]);
    for _ in 0..3 {
        lab.exec(
            &lab.a,
            "ng-alt",
            &[
                "udp-alternate",
                &format!("{B4}:6071"),
                "127.0.0.1:6072",
                "2000",
                "300",
            ],
        );
    }
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let veth = lab.truth_bytes("veth_out");
    assert_eq!(
        veth,
        lab.truth_bytes_in(&b, "far_in"),
        "the link lost nothing"
    );
    assert_eq!(veth, 3 * 1000 * 328, "every datagram left on the veth");
    assert_eq!(lab.truth_bytes("lo_out"), lab.truth_bytes("lo_in"));
    assert_eq!(
        records.sum("ng-alt", &lab.veth_a, "sent_bytes_last"),
        veth,
        "the veth's share, to the byte"
    );
    assert_eq!(
        records.sum("ng-alt", "lo", "sent_bytes_last"),
        lab.truth_bytes("lo_out"),
        "loopback's share, to the byte"
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn container_like_process_is_tagged() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("in", "input", "tcp dport 6070")]);
    let a = lab.a.clone();
    lab.serve(&a, "ng-sink", &["tcp-sink", &format!("{A4}:6070")]);
    let cgroup = lab.cgroup(&format!("netgraph-test-{}", lab.b));
    let netgraph = EBPF.start(&lab, &[]);
    // In its own network namespace (b) and its own cgroup, as in a container.
    let child = lab.spawn_in_cgroup(
        &lab.b,
        &cgroup,
        "ng-cont",
        &["tcp-send", &format!("{A4}:6070"), "2s"],
    );
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let rows: Vec<_> = records.rows("ng-cont").collect();
    assert!(!rows.is_empty(), "the container's process is reported");
    for row in &rows {
        assert_eq!(row["cgroup"], cgroup.as_str(), "tagged with its cgroup");
        assert_eq!(
            row["interface"],
            lab.veth_b.as_str(),
            "its interface, named inside its namespace"
        );
    }
    EBPF.assert_share(
        "process in its own namespace and cgroup, sent",
        records.sum("ng-cont", &lab.veth_b, "sent_bytes_last"),
        lab.truth_bytes("in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn no_loss_under_a_ten_second_flood() {
    require_root();
    flood_loses_nothing("10-second 64-byte UDP flood, sent", "");
}

/// With peers on, the flood's every packet is keyed by its two ends, and checked for
/// DNS on the way in: still nothing lost, and its peers add up to it.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn no_loss_under_a_ten_second_flood_with_peers() {
    require_root();
    let records = flood_loses_nothing(
        "10-second 64-byte UDP flood with peers on, sent",
        "[peers]\nenabled = true\n",
    );
    let flood = |kind: &str| -> u64 {
        records
            .of_type(kind)
            .filter(|l| l["name"] == "ng-flood")
            .map(|l| l["sent_bytes_last"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        flood("peer"),
        flood("process"),
        "the flood's peers add up to it"
    );
}

/// A 10-second 64-byte UDP flood from `a` to `b` with `config`: no event lost, the
/// bytes within 1% of nftables'.
fn flood_loses_nothing(what: &str, config: &str) -> Records {
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "udp dport 6080")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-usink", &["udp-sink", &format!("{B4}:6080"), "mmsg"]);
    let path = lab.path("flood.toml");
    std::fs::write(&path, config).unwrap();
    let netgraph = EBPF.start(&lab, &["--config", path.to_str().unwrap()]);
    lab.exec(
        &lab.a,
        "ng-flood",
        &["udp-flood", &format!("{B4}:6080"), "10", "64", "mmsg"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_eq!(records.lost_events(), 0, "the engine lost nothing");
    assert!(!records.log.contains("maps full"));
    EBPF.assert_share(
        what,
        records.sum("ng-flood", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    records
}

/// Without CAP_BPF/CAP_PERFMON the eBPF engine is refused: `auto` says so and captures,
/// an explicit `ebpf` stops with the reason.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn falls_back_to_capture_when_ebpf_is_refused() {
    require_root();
    let lab = Lab::new();
    let capture_only = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all,+net_raw,+net_admin",
        "--ambient-caps=-all,+net_raw,+net_admin",
        "--bounding-set=-all,+net_raw,+net_admin",
    ];
    let netgraph = lab.netgraph_as(&capture_only, &["--engine", "auto", "-i", "lo"]);
    netgraph.wait_for_log("netgraph running", Duration::from_secs(10));
    let log = netgraph.stop().log;
    assert!(
        log.contains("eBPF engine unavailable"),
        "no fallback line:\n{log}"
    );
    assert!(
        log.contains("CAP_BPF"),
        "the fallback line names the fix:\n{log}"
    );
    assert!(
        log.contains("engine=\"capture\""),
        "did not fall back:\n{log}"
    );

    let output = std::process::Command::new(capture_only[0])
        .args(&capture_only[1..])
        .args([env!("CARGO_BIN_EXE_netgraph"), "run", "--engine", "ebpf"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "--engine ebpf must fail when refused"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the eBPF engine cannot run") && stderr.contains("CAP_BPF"),
        "{stderr}"
    );
}

/// The documented minimal capabilities are enough for the eBPF engine.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn runs_unprivileged_with_the_documented_capabilities() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 6090")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6090")]);
    // Exactly the capabilities the systemd unit grants.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/netgraph.service"
    ))
    .unwrap();
    let caps = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .expect("the unit grants ambient capabilities")
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    let caps = caps.as_str();
    let plus = |list: &str| {
        format!(
            "-all,{}",
            list.split(',')
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let (inh, amb, bound) = (
        format!("--inh-caps={}", plus(caps)),
        format!("--ambient-caps={}", plus(caps)),
        format!("--bounding-set={}", plus(caps)),
    );
    let wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &inh,
        &amb,
        &bound,
    ];
    let netgraph = lab.netgraph_as(&wrapper, &["--engine", "ebpf"]);
    netgraph.wait_for_log("netgraph running", Duration::from_secs(10));
    lab.exec(&lab.a, "ng-up", &["tcp-send", &format!("{B4}:6090"), "2s"]);
    settle();
    let records = netgraph.stop();
    // Without CAP_SYS_ADMIN the lab namespace's interfaces cannot be entered to be
    // named (they are if<N>@netns<inode>): the process's traffic is what counts here.
    EBPF.assert_share(
        "as nobody with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH",
        records.sum_all("ng-up", "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

/// Traffic no local socket moved (the kernel answering pings, ARP) is counted on its
/// interface, in the unknown buckets and as non-IP frames.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn traffic_without_a_socket_is_counted_per_interface() {
    require_root();
    let lab = Lab::new();
    let (host_end, _, host_address, _) = lab.host_link();
    let netgraph = EBPF.start(&lab, &[]);
    netgraph.wait_for_log("netgraph running", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    lab.ping_from_b(&host_address, 20, "0.2", 1000);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    // 20 echo requests in, 20 replies out, 1028 bytes each at the IP layer.
    let received = records.sum("unknown ICMP", &host_end, "recv_bytes_last");
    let sent = records.sum("unknown ICMP", &host_end, "sent_bytes_last");
    report(&format!("eBPF engine, the kernel's own ICMP (no socket): {received} bytes in, {sent} out, of 20560 each"));
    assert_eq!((received, sent), (20 * 1028, 20 * 1028));
    assert!(
        records.interface_sum(&host_end, "non_ip_packets") > 0,
        "ARP is counted as non-IP"
    );
}

/// Replies the kernel sends while netgraph drains are counted once. (Interfaces read
/// after sockets: a reply counted by its socket hook and TC in between was reported as
/// no socket's traffic, and again with its socket at the next drain.) Many drains
/// while a ping flood is answered: each is a chance to double one.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn replies_sent_while_netgraph_drains_are_counted_once() {
    require_root();
    let lab = Lab::new();
    let (host_end, _, host_address, _) = lab.host_link();
    let b = lab.b.clone();
    lab.truth_in(
        &b,
        &[
            ("requests", "output", "icmp type echo-request"),
            ("replies", "input", "icmp type echo-reply"),
        ],
    );
    let netgraph = EBPF.start(&lab, &["--interval", "100ms"]);
    std::thread::sleep(Duration::from_millis(500));
    lab.ping_from_b(&host_address, 3000, "0.001", 1000);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let (requests, replies) = (
        lab.truth_bytes_in(&b, "requests"),
        lab.truth_bytes_in(&b, "replies"),
    );
    let received = records.sum("unknown ICMP", &host_end, "recv_bytes_last");
    let sent = records.sum("unknown ICMP", &host_end, "sent_bytes_last");
    report(&format!(
        "eBPF engine, a ping flood answered across {} drains: {received} bytes in, {sent} out; the far end sent {requests}, received {replies}",
        records
            .interfaces()
            .filter(|l| l["interface"] == host_end.as_str())
            .count()
    ));
    assert_eq!(requests, 3000 * 1028, "the far end sent every request");
    assert_eq!((received, sent), (requests, replies));
}

/// netgraph's interface programs hand every packet on: a second instance (or any
/// program or tc filter after them) still sees it. (They returned "pass", which ended
/// the chain: the second instance counted none of the pings it received.)
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn interface_hooks_hand_packets_on_to_whatever_comes_after() {
    require_root();
    let lab = Lab::new();
    let (host_end, _, host_address, _) = lab.host_link();
    let b = lab.b.clone();
    lab.truth_in(&b, &[("requests", "output", "icmp type echo-request")]);
    let first = EBPF.start(&lab, &[]);
    let second = EBPF.start(&lab, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    lab.ping_from_b(&host_address, 20, "0.2", 1000);
    settle();
    let (first, second) = (first.stop(), second.stop());
    let truth = lab.truth_bytes_in(&b, "requests");
    assert_eq!(truth, 20 * 1028, "the far end sent 20 echo requests");
    for (which, records) in [("first", &first), ("second", &second)] {
        records.assert_conservation();
        let received = records.interface_sum(&host_end, "recv_bytes_last");
        report(&format!(
            "eBPF engine, {which} of two instances: {received} bytes received on {host_end}, of {truth}"
        ));
        assert_eq!(received, truth, "{which} instance");
    }
}

/// A GeoIP database replaced on disk (as geoipupdate does) is taken up on SIGHUP.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn sighup_takes_up_a_new_geoip_database() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("tcp_out", "output", "tcp dport 6040")]);
    let config = lab.geoip_config(&[&format!("{B4}/32=DE:Germany")]);
    lab.geo_servers(6040);
    let netgraph =
        lab.netgraph_on_host(&["--engine", "ebpf", "--config", config.to_str().unwrap()]);
    lab.exec(&lab.a, "ng-geo", &["tcp-send", &format!("{B4}:6040"), "1s"]);
    settle();
    lab.geoip_config(&[&format!("{B4}/32=AT:Austria")]);
    netgraph.signal(libc::SIGHUP);
    netgraph.wait_for_log("configuration reloaded", Duration::from_secs(5));
    lab.exec(&lab.a, "ng-geo", &["tcp-send", &format!("{B4}:6040"), "1s"]);
    settle();
    let records = netgraph.stop();
    let sent = records.sent_by_country("ng-geo", &["Germany", "Austria"]);
    report(&format!(
        "eBPF engine, GeoIP database replaced and SIGHUP: {} bytes to Germany before, {} to Austria after",
        sent[0], sent[1]
    ));
    assert!(sent[0] > 0 && sent[1] > 0, "both databases used: {sent:?}");
    EBPF.assert_share(
        "GeoIP across a reload",
        sent[0] + sent[1],
        lab.truth_bytes("tcp_out"),
    );
}

/// Under `ip netns exec` (a fresh /sys without the cgroup mount), netgraph mounts
/// cgroup v2 itself and runs the eBPF engine, instead of falling back to capture.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn runs_the_ebpf_engine_under_ip_netns_exec() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 6095")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6095")]);
    let netgraph = lab.netgraph(&["--engine", "ebpf"]);
    let log = netgraph.log();
    assert!(
        log.contains("engine=\"ebpf\""),
        "not the eBPF engine:\n{log}"
    );
    assert!(
        log.contains("mounted one at /run/netgraph/cgroup2"),
        "{log}"
    );
    lab.exec(&lab.a, "ng-up", &["tcp-send", &format!("{B4}:6095"), "1s"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    EBPF.assert_share(
        "under ip netns exec, sent",
        records.sum("ng-up", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

/// A process sending IPv4/UDP datagrams it builds itself through an AF_PACKET socket
/// (as DHCP clients and packet generators do) is named, with the bytes the far end
/// received; a process reading every frame of an interface through a packet socket (as
/// tcpdump does) while a TCP download runs counts nothing, and the download's receiver
/// keeps all of its bytes.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn packet_socket_senders_are_named_and_packet_readers_count_nothing_twice() {
    require_root();
    let mut lab = Lab::new();
    let (host_end, b_end, host_address, b_address) = lab.host_link();
    let b = lab.b.clone();
    lab.truth_in(&b, &[("framed", "input", "udp dport 6302")]);
    lab.truth(&[("download", "input", "tcp sport 6303")]);
    lab.serve(&b, "ng-source", &["tcp-source", &format!("{B4}:6303"), "2"]);
    let a = lab.a.clone();
    let veth_a = lab.veth_a.clone();
    lab.start_until(&a, "ng-tap", &["packet-recv", &veth_a, "6"], "listening");
    let mac = run(
        "ip",
        &[
            "netns",
            "exec",
            &b,
            "cat",
            &format!("/sys/class/net/{b_end}/address"),
        ],
    );
    let netgraph = EBPF.start(&lab, &[]);
    let sender = std::process::Command::new(lab.tool("ng-packet"))
        .args([
            "packet-send",
            &host_end,
            mac.trim(),
            &format!("{host_address}:6301"),
            &format!("{b_address}:6302"),
            "500",
            "1000",
        ])
        .output()
        .unwrap();
    assert!(
        sender.status.success(),
        "{}",
        String::from_utf8_lossy(&sender.stderr)
    );
    lab.exec(&a, "ng-recv", &["tcp-recv", &format!("{B4}:6303"), "read"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let framed = lab.truth_bytes_in(&b, "framed");
    assert_eq!(framed, 500 * 1028, "every datagram arrived");
    EBPF.assert_share(
        "an AF_PACKET sender's IPv4/UDP, sent (far end's count)",
        records.sum("ng-packet", &host_end, "sent_bytes_last"),
        framed,
    );
    EBPF.assert_share(
        "a TCP download while a packet socket reads every frame, received",
        records.sum("ng-recv", &veth_a, "recv_bytes_last"),
        lab.truth_bytes("download"),
    );
    let tapped: u64 = records
        .rows("ng-tap")
        .map(|r| r["sent_bytes_last"].as_u64().unwrap() + r["recv_bytes_last"].as_u64().unwrap())
        .sum();
    assert_eq!(tapped, 0, "the packet socket's reader is counted nothing");
}

/// Why unattributed traffic has no process: the host routes `a` to `b` (forwarded),
/// its kernel answers `b`'s pings (kernel), and `b` sends UDP to a host port nobody
/// listens on (no listener). With [peers] on, the eBPF engine records each packet's
/// ends and tells these apart.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn unattributed_traffic_says_why() {
    require_root();
    let mut lab = Lab::new();
    let (host_end, _, host_address, b_address) = lab.host_link();
    let a = lab.a.clone();
    let b = lab.b.clone();
    let subnet: u64 = lab.veth_a[2..].parse::<u64>().unwrap_or(0) % 250;
    let a_prefix = format!("10.205.{subnet}");
    let host_a_end = format!("vj{}", &lab.veth_a[2..]);
    lab.link_namespace_to_host(
        &a,
        &host_a_end,
        &format!("vi{}", &lab.veth_a[2..]),
        &a_prefix,
    );
    let b_prefix = b_address.rsplit_once('.').unwrap().0.to_string();
    run(
        "ip",
        &[
            "-n",
            &a,
            "route",
            "add",
            &format!("{b_prefix}.0/24"),
            "via",
            &format!("{a_prefix}.1"),
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &b,
            "route",
            "add",
            &format!("{a_prefix}.0/24"),
            "via",
            &format!("{b_prefix}.1"),
        ],
    );
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
    let _restore = RestoreFile("/proc/sys/net/ipv4/ip_forward", forwarding);
    lab.truth_in(
        &b,
        &[
            ("routed", "input", "udp dport 6401"),
            ("closed", "output", "udp dport 6402"),
        ],
    );
    lab.serve(
        &b,
        "ng-usink",
        &["udp-sink", &format!("{b_address}:6401"), "recv"],
    );
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\n").unwrap();
    let netgraph = EBPF.start(&lab, &["--config", config.to_str().unwrap()]);
    lab.exec(
        &a,
        "ng-routed",
        &["udp-trickle", &format!("{b_address}:6401"), "1", "500"],
    );
    lab.ping_from_b(&host_address, 10, "0.05", 1000);
    lab.exec(
        &b,
        "ng-closed",
        &[
            "udp-flood",
            &format!("{host_address}:6402"),
            "1",
            "500",
            "unconnected",
        ],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let by_reason = |name: &str, interface: &str, reason: &str, field: &str| -> u64 {
        records
            .processes()
            .filter(|l| l["name"] == name && l["interface"] == interface && l["reason"] == reason)
            .map(|l| l[field].as_u64().unwrap())
            .sum()
    };
    let routed = lab.truth_bytes_in(&b, "routed");
    let forwarded = (
        by_reason("unknown UDP", &host_a_end, "forwarded", "recv_bytes_last"),
        by_reason("unknown UDP", &host_end, "forwarded", "sent_bytes_last"),
    );
    let kernel = (
        by_reason("unknown ICMP", &host_end, "kernel", "recv_bytes_last"),
        by_reason("unknown ICMP", &host_end, "kernel", "sent_bytes_last"),
    );
    let closed = lab.truth_bytes_in(&b, "closed");
    let no_listener = by_reason("unknown UDP", &host_end, "no listener", "recv_bytes_last");
    report(&format!(
        "unattributed, why: forwarded {} in and {} out of {routed} routed; kernel ICMP {} in, {} out (10 pings of 1028 bytes and the port-unreachable replies); no listener {no_listener} of {closed}",
        forwarded.0, forwarded.1, kernel.0, kernel.1
    ));
    assert_eq!(forwarded, (routed, routed));
    assert_eq!(kernel.0, 10 * 1028, "the pings the kernel answered");
    assert!(kernel.1 >= 10 * 1028, "the kernel's replies");
    EBPF.assert_share(
        "UDP to a closed port, unattributed as no listener",
        no_listener,
        closed,
    );
}

struct RestoreFile(&'static str, String);

impl Drop for RestoreFile {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0, &self.1);
    }
}

/// Traffic without an owner in another network namespace (`a`'s kernel answering `b`'s
/// pings, through a socket of its own) is named on the interface it crossed there, as
/// attributed traffic is, not `if<N>` (an index only means something in its namespace).
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn unowned_traffic_in_a_namespace_names_its_interface() {
    require_root();
    let lab = Lab::new();
    let netgraph = EBPF.start(&lab, &[]);
    lab.ping_from_b(A4, 10, "0.05", 1000);
    settle();
    let records = netgraph.stop();
    let replies: Vec<&serde_json::Value> = records
        .processes()
        .filter(|l| l["name"] == "unknown ICMP" && l["sent_bytes_last"].as_u64() > Some(0))
        .filter(|l| {
            l["interface"]
                .as_str()
                .is_some_and(|i| !i.starts_with("vh"))
        })
        .collect();
    let on_veth: u64 = replies
        .iter()
        .filter(|l| l["interface"] == lab.veth_a.as_str())
        .map(|l| l["sent_bytes_last"].as_u64().unwrap())
        .sum();
    report(&format!(
        "a namespace's kernel replies: {on_veth} bytes named on {} (interfaces seen: {:?})",
        lab.veth_a,
        replies
            .iter()
            .map(|l| l["interface"].to_string())
            .collect::<Vec<_>>()
    ));
    // The 10 echo replies, and whatever neighbour discovery the kernel sent there.
    assert!(on_veth >= 10 * 1028, "{replies:?}");
    // Each namespace's own kernel traffic is named on its own veth.
    let lab_interfaces = [lab.veth_a.as_str(), lab.veth_b.as_str()];
    assert!(
        replies
            .iter()
            .all(|l| lab_interfaces.iter().any(|i| l["interface"] == *i)),
        "{replies:?}"
    );
}

//! The eBPF engine against IP-layer truth, in the namespace lab (needs root).
//! Truth: nftables counters at the output hook for what was sent and at the input
//! hook for what was received, where the engine's cgroup_skb programs sit too.

mod lab;

use lab::*;
use std::time::Duration;

/// Within 1% of the truth, as the issue asks.
fn assert_within(what: &str, attributed: u64, truth: u64) {
    let share = share(attributed, truth);
    report(&format!(
        "eBPF engine, {what}: {:.2}% of {truth} bytes attributed",
        share * 100.0
    ));
    assert!(
        (0.99..=1.01).contains(&share),
        "{what}: {attributed} attributed of {truth} ({:.2}%)",
        share * 100.0
    );
}

fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// Runs a one-way or two-way TCP workload from `a` to a server in `b` and checks both
/// directions of the client's traffic.
fn tcp_client_case(
    what: &str,
    port: u16,
    server: &[&str],
    client: &str,
    client_args: &[&str],
    check_recv: bool,
) {
    let mut lab = Lab::new();
    let (out, inbound) = (format!("tcp dport {port}"), format!("tcp sport {port}"));
    lab.truth(&[("out", "output", &out), ("in", "input", &inbound)]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-server", server);
    let netgraph = lab.netgraph_ebpf(&[]);
    lab.exec(&lab.a, client, client_args);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_within(
        &format!("{what}, sent"),
        records.sum(client, &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    if check_recv {
        assert_within(
            &format!("{what}, received"),
            records.sum(client, &lab.veth_a, "recv_bytes_last"),
            lab.truth_bytes("in"),
        );
    }
    assert_eq!(records.lost_events(), 0);
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn tcp_upload() {
    require_root();
    let target = format!("{B4}:6001");
    tcp_client_case(
        "TCP upload",
        6001,
        &["tcp-sink", &target],
        "ng-up",
        &["tcp-send", &target, "3s"],
        true,
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn tcp_download() {
    require_root();
    let target = format!("{B4}:6002");
    tcp_client_case(
        "TCP download",
        6002,
        &["tcp-source", &target, "3"],
        "ng-down",
        &["tcp-recv", &target],
        true,
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn tcp_full_duplex() {
    require_root();
    let target = format!("{B4}:6003");
    tcp_client_case(
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
        tcp_client_case(
            &format!("TCP via {mode}"),
            port,
            &["tcp-sink", &target],
            &client,
            &["tcp-send", &target, "2s", mode],
            false,
        );
    }
    let target = format!("{B4}:6007");
    tcp_client_case(
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
fn ipv6_tcp_and_udp() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("tcp_out", "output", "meta nfproto ipv6 tcp dport 6010"),
        ("udp_out", "output", "meta nfproto ipv6 udp dport 6011"),
        ("udp_in", "input", "meta nfproto ipv6 udp sport 6011"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink6", &["tcp-sink", &format!("[{B6}]:6010")]);
    lab.serve(&b, "ng-echo6", &["udp-echo", &format!("[{B6}]:6011")]);
    let netgraph = lab.netgraph_ebpf(&[]);
    lab.exec(
        &lab.a,
        "ng-tcp6",
        &["tcp-send", &format!("[{B6}]:6010"), "2s"],
    );
    lab.exec(
        &lab.a,
        "ng-udp6",
        &["udp-ping", &format!("[{B6}]:6011"), "2000", "512"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_within(
        "IPv6 TCP, sent",
        records.sum("ng-tcp6", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("tcp_out"),
    );
    assert_within(
        "IPv6 UDP, sent",
        records.sum("ng-udp6", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("udp_out"),
    );
    assert_within(
        "IPv6 UDP, received",
        records.sum("ng-udp6", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("udp_in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn udp_connected_unconnected_and_small_packet_flood() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("con_out", "output", "udp dport 6012"),
        ("con_in", "input", "udp sport 6012"),
        ("unc_out", "output", "udp dport 6013"),
        ("unc_in", "input", "udp sport 6013"),
        ("flood_out", "output", "udp dport 6014"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-echo", &["udp-echo", &format!("{B4}:6012")]);
    lab.serve(&b, "ng-echo2", &["udp-echo", &format!("{B4}:6013")]);
    lab.serve(&b, "ng-usink", &["udp-sink", &format!("{B4}:6014"), "recv"]);
    let netgraph = lab.netgraph_ebpf(&[]);
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
        "ng-uunc",
        &["udp-ping", &format!("{B4}:6013"), "2000", "512"],
    );
    lab.exec(
        &lab.a,
        "ng-flood",
        &["udp-flood", &format!("{B4}:6014"), "3", "64", "connected"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_within(
        "UDP connected, sent",
        records.sum("ng-ucon", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("con_out"),
    );
    assert_within(
        "UDP connected, received",
        records.sum("ng-ucon", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("con_in"),
    );
    assert_within(
        "UDP unconnected, sent",
        records.sum("ng-uunc", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("unc_out"),
    );
    assert_within(
        "UDP unconnected, received",
        records.sum("ng-uunc", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("unc_in"),
    );
    assert_within(
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
    let netgraph = lab.netgraph_ebpf(&[]);
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
    assert_within(
        "sendmmsg, sent",
        records.sum("ng-smmsg", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    assert_within(
        "recvmmsg, received",
        records.sum("ng-rmmsg", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn icmp_echo_and_raw_ip_socket() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("requests", "output", "icmp type echo-request"),
        ("replies", "input", "icmp type echo-reply"),
        ("raw_out", "output", "meta l4proto 253"),
        ("raw_in", "input", "meta l4proto 253"),
    ]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-rawecho", &["raw-echo"]);
    let netgraph = lab.netgraph_ebpf(&[]);
    run(
        "ip",
        &[
            "netns", "exec", &lab.a, "ping", "-q", "-c", "10", "-i", "0.2", "-s", "1000", B4,
        ],
    );
    lab.exec(&lab.a, "ng-raw", &["raw-ping", B4, "500", "256"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_within(
        "ICMP echo requests",
        records.sum("ping", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("requests"),
    );
    assert_within(
        "ICMP echo replies",
        records.sum("ping", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("replies"),
    );
    assert_within(
        "raw IP protocol 253, sent",
        records.sum("ng-raw", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("raw_out"),
    );
    assert_within(
        "raw IP protocol 253, received",
        records.sum("ng-raw", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("raw_in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn loopback_names_both_ends() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("out", "output", "oif lo tcp dport 6020"),
        ("in", "input", "iif lo tcp dport 6020"),
    ]);
    let a = lab.a.clone();
    lab.serve(&a, "ng-lsrv", &["tcp-sink", "127.0.0.1:6020"]);
    let netgraph = lab.netgraph_ebpf(&[]);
    lab.exec(&lab.a, "ng-lcli", &["tcp-send", "127.0.0.1:6020", "2s"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_within(
        "loopback, client sent",
        records.sum("ng-lcli", "lo", "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    assert_within(
        "loopback, server received",
        records.sum("ng-lsrv", "lo", "recv_bytes_last"),
        lab.truth_bytes("in"),
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
    let netgraph = lab.netgraph_ebpf(&[]);
    lab.exec(
        &lab.b,
        "ng-client",
        &["tcp-send", &format!("{A4}:6040"), "2s"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    assert_within(
        "accepted connection, received by the server",
        records.sum("ng-acc", &lab.veth_a, "recv_bytes_last"),
        lab.truth_bytes("in"),
    );
    assert_within(
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
    let netgraph = lab.netgraph_ebpf(&[]);
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
    assert_within(
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

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn short_lived_processes_are_all_named() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 6060")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6060")]);
    let netgraph = lab.netgraph_ebpf(&[]);
    lab.exec(
        &lab.a,
        "ng-short",
        &["short-lived", &format!("{B4}:6060"), "300", "200000"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let truth = lab.truth_bytes("out");
    let named = records.sum("ng-short", &lab.veth_a, "sent_bytes_last");
    report(&format!(
        "eBPF engine, 300 short-lived processes x 200 kB: {:.2}% attributed",
        share(named, truth) * 100.0
    ));
    assert!(
        share(named, truth) >= 0.99,
        "only {named} of {truth} bytes named"
    );
    assert!(named <= truth);
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
    let netgraph = lab.netgraph_ebpf(&[]);
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
    assert_within(
        "process in its own namespace and cgroup, sent",
        records.sum("ng-cont", &lab.veth_b, "sent_bytes_last"),
        lab.truth_bytes("in"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn no_loss_under_a_ten_second_flood() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "udp dport 6080")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-usink", &["udp-sink", &format!("{B4}:6080"), "mmsg"]);
    let netgraph = lab.netgraph_ebpf(&[]);
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
    assert_within(
        "10-second 64-byte UDP flood, sent",
        records.sum("ng-flood", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
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
    assert_within(
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
    let netgraph = lab.netgraph_ebpf(&[]);
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

/// GeoIP with a test database: the kernel's own ICMP replies (no socket) are named by
/// the countries of their ends, and a process's traffic is broken down by country.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn geoip_names_countries_of_unattributed_and_process_traffic() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("tcp_out", "output", "tcp dport 6020"),
        ("udp6_out", "output", "meta nfproto ipv6 udp dport 6021"),
    ]);
    let (host_end, _, host_address, b_address) = lab.host_link();
    let config = lab.geoip_config(&[
        &format!("{B4}/32=DE:Germany"),
        &format!("{B6}/128=FR:France"),
        &format!("{b_address}/32=JP:Japan"),
    ]);
    lab.geo_servers(6020);
    let netgraph =
        lab.netgraph_on_host(&["--engine", "ebpf", "--config", config.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1500));
    lab.geo_clients(6020);
    lab.ping_from_b(&host_address, 20, "0.2", 1000);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let received = records.sum("local-Japan", &host_end, "recv_bytes_last");
    let sent = records.sum("local-Japan", &host_end, "sent_bytes_last");
    report(&format!(
        "eBPF engine, GeoIP: the kernel's ICMP named local-Japan: {received} bytes in, {sent} out, of 20560 each"
    ));
    let on_host_end: Vec<String> = records
        .processes()
        .filter(|l| l["interface"] == host_end.as_str())
        .map(|l| {
            format!(
                "{} {} {}",
                l["name"], l["sent_bytes_last"], l["recv_bytes_last"]
            )
        })
        .collect();
    assert_eq!(
        (received, sent),
        (20 * 1028, 20 * 1028),
        "rows on {host_end}: {on_host_end:?}"
    );
    let truth = [lab.truth_bytes("tcp_out"), lab.truth_bytes("udp6_out")];
    let sent = records.sent_by_country("ng-geo", &["Germany", "France"]);
    assert_within("GeoIP, TCP to Germany", sent[0], truth[0]);
    assert_within("GeoIP, UDP to France", sent[1], truth[1]);
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
    assert_within(
        "GeoIP across a reload",
        sent[0] + sent[1],
        lab.truth_bytes("tcp_out"),
    );
}

//! Cases only the capture engine has, against IP-layer truth in the namespace lab
//! (needs root); the cases both engines share are in engines_lab.rs.

mod lab;

use lab::engines::{settle, EngineUnderTest};
use lab::*;
use std::time::Duration;

const CAPTURE: EngineUnderTest = EngineUnderTest::Capture;

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn malformed_packets_are_counted_and_harmless() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 5008")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:5008")]);
    let mut netgraph = lab.netgraph(&["--engine", "capture"]);
    let injected = lab.exec(&lab.b, "ng-inject", &["inject", &lab.veth_b, "50"]);
    assert_eq!(injected.trim(), "frames=300");
    lab.exec(
        &lab.a,
        "ng-after",
        &["tcp-send", &format!("{B4}:5008"), "1s"],
    );
    settle();
    assert!(netgraph.is_running(), "netgraph died on malformed packets");
    let records = netgraph.stop();
    records.assert_conservation();
    assert_eq!(records.interface_sum(&lab.veth_a, "malformed_packets"), 300);
    CAPTURE.assert_share(
        "traffic after malformed packets",
        records.sum("ng-after", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn interface_added_while_running_is_captured() {
    require_root();
    let mut lab = Lab::new();
    let netgraph = lab.netgraph(&["--engine", "capture"]);
    let (late_a, late_b) = (format!("{}x", lab.veth_a), format!("{}x", lab.veth_b));
    lab.link(&late_a, &late_b, "10.202.0", "fd00:202:");
    lab.truth(&[(
        "out",
        "output",
        &format!("oifname \"{late_a}\" tcp dport 5007"),
    )]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", "10.202.0.2:5007"]);
    netgraph.wait_for_log(
        &format!("capturing interface={late_a}"),
        Duration::from_secs(5),
    );
    lab.exec(&lab.a, "ng-late", &["tcp-send", "10.202.0.2:5007", "1s"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    CAPTURE.assert_share(
        "interface added while running",
        records.sum("ng-late", &late_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_full_ring_is_counted_and_named_with_its_fix() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    let target = format!("{B4}:5009");
    lab.serve(&b, "ng-usink", &["udp-sink", &target, "mmsg"]);
    let netgraph = lab.netgraph(&["--engine", "capture", "--buffer-mib", "1"]);
    // A stopped reader: the kernel fills the 1 MiB ring and drops the rest.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(netgraph.pid() as i32, libc::SIGSTOP) };
    let flooded = lab.exec(
        &lab.a,
        "ng-flood",
        &["udp-flood", &target, "1", "64", "mmsg"],
    );
    // SAFETY: as above.
    unsafe { libc::kill(netgraph.pid() as i32, libc::SIGCONT) };
    assert!(flooded.contains("bytes="), "{flooded}");
    netgraph.wait_for_log("capture ring full", Duration::from_secs(5));
    let log = netgraph.log();
    let records = netgraph.stop();
    let dropped = records.interface_sum(&lab.veth_a, "ps_drop");
    assert!(dropped > 0, "the full ring's drops are reported");
    let warning = log
        .lines()
        .find(|line| line.contains("capture ring full"))
        .unwrap();
    assert!(
        warning.contains("raise --buffer-mib (now 1 MiB)") && warning.contains(&lab.veth_a),
        "{warning}"
    );
}

/// A tun interface has no link-layer header (it is read from the network header on):
/// a process's UDP through it, each datagram sent back by the tun's far end, is
/// counted exactly both ways.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_tun_interface_without_link_headers_is_counted_both_ways() {
    require_root();
    let mut lab = Lab::new();
    let tun = format!("{}t", lab.veth_a);
    // A minimal /dev may lack the tun device node; the kernel has the driver.
    if !std::path::Path::new("/dev/net/tun").exists() {
        run("mkdir", &["-p", "/dev/net"]);
        run("mknod", &["/dev/net/tun", "c", "10", "200"]);
    }
    let a = lab.a.clone();
    lab.serve(&a, "ng-tun", &["tun-reflect", &tun]);
    run(
        "ip",
        &["-n", &a, "addr", "add", "10.204.0.1/24", "dev", &tun],
    );
    run("ip", &["-n", &a, "link", "set", &tun, "up"]);
    lab.truth(&[
        (
            "out",
            "output",
            &format!("oifname \"{tun}\" udp dport 6106"),
        ),
        ("in", "input", &format!("iifname \"{tun}\" udp sport 6106")),
    ]);
    let netgraph = lab.netgraph(&["--engine", "capture"]);
    netgraph.wait_for_log(
        &format!("capturing interface={tun}"),
        Duration::from_secs(5),
    );
    // The run takes milliseconds; held open a second, its socket is still in /proc
    // when a loaded host gets round to naming it (this test is about the decoding).
    let pinged = lab.exec(
        &lab.a,
        "ng-tunping",
        &[
            "udp-ping",
            "10.204.0.2:6106",
            "300",
            "400",
            "connected",
            "1000",
        ],
    );
    assert_eq!(
        pinged.trim(),
        "bytes=120000 echoed=120000",
        "the tun's far end answered all"
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let (out, back) = (lab.truth_bytes("out"), lab.truth_bytes("in"));
    assert_eq!(
        out,
        300 * 428,
        "300 datagrams of 400 bytes left through {tun}"
    );
    assert_eq!(back, out, "all came back");
    assert_eq!(records.sum("ng-tunping", &tun, "sent_bytes_last"), out);
    assert_eq!(records.sum("ng-tunping", &tun, "recv_bytes_last"), back);
    assert_eq!(records.interface_sum(&tun, "non_ip_packets"), 0);
}

/// Traffic routed through the host to a port a local process also listens on: namespace
/// `a` (where netgraph captures) routes between `b` and a third namespace, whose client
/// sends to `b`. Every byte is counted as forwarded, none as the local listener's.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn forwarded_traffic_is_never_given_to_a_local_listener() {
    require_root();
    let mut lab = Lab::new();
    // The third namespace, removed with the test whatever happens.
    struct Namespace(String);
    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }
    let c = Namespace(format!("{}c", lab.b));
    let (in_c, in_a) = (format!("{}c", lab.veth_b), format!("{}r", lab.veth_a));
    run("ip", &["netns", "add", &c.0]);
    run("ip", &["-n", &c.0, "link", "set", "lo", "up"]);
    run(
        "ip",
        &["link", "add", &in_c, "type", "veth", "peer", "name", &in_a],
    );
    for (dev, ns, address) in [
        (&in_c, &c.0, "10.202.0.2/24"),
        (&in_a, &lab.a, "10.202.0.1/24"),
    ] {
        run("ip", &["link", "set", dev, "netns", ns]);
        run("ip", &["-n", ns, "addr", "add", address, "dev", dev]);
        run("ip", &["-n", ns, "link", "set", dev, "up"]);
    }
    run(
        "ip",
        &["-n", &c.0, "route", "add", "default", "via", "10.202.0.1"],
    );
    run(
        "ip",
        &["-n", &lab.b, "route", "add", "10.202.0.0/24", "via", A4],
    );
    run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.a,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ],
    );
    // What reached the far end, and a listener on the same port where netgraph runs.
    lab.truth_in(&lab.b.clone(), &[("arrived", "input", "tcp dport 9101")]);
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.serve(&b, "ng-far", &["tcp-sink", &format!("{B4}:9101")]);
    lab.serve(&a, "ng-trap", &["tcp-sink", "0.0.0.0:9101"]);
    let netgraph = CAPTURE.start(&lab, &[]);
    lab.exec(
        &c.0,
        "ng-fwd",
        &["tcp-send", &format!("{B4}:9101"), "3000000"],
    );
    settle();
    let records = netgraph.stop();
    let trapped = records.sum_all("ng-trap", "sent_bytes_last")
        + records.sum_all("ng-trap", "recv_bytes_last");
    // Toward b: sent on a's link to b.
    let forwarded: u64 = records
        .processes()
        .filter(|l| l["reason"] == "forwarded" && l["interface"] == lab.veth_a.as_str())
        .map(|l| l["sent_bytes_last"].as_u64().unwrap())
        .sum();
    let truth = lab.truth_bytes_in(&b, "arrived");
    report(&format!(
        "capture engine, routed through the host to a port a local process listens on: {forwarded} of {truth} bytes counted as forwarded, {trapped} given to the listener"
    ));
    assert_eq!(trapped, 0, "the local listener was given forwarded traffic");
    CAPTURE.assert_share("forwarded TCP", forwarded, truth);
}

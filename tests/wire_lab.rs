//! Bytes and packets as the wire carried them (needs root), on both engines. The veth
//! between `a` and `b` is set up so that offloaded packets cross it as segments, as on
//! a NIC: the sender's TSO off (software GSO cuts each large packet into MTU-sized
//! segments at the device), the receiver's GRO on (segments are merged again). The
//! truth is taken where segments are: nftables in the receiving namespace with its GRO
//! off, or in the sending namespace when its stack makes the segments itself.

mod lab;

use lab::engines::{for_both_engines, settle, EngineUnderTest};
use lab::*;

for_both_engines!(
    tcp_upload_cut_into_segments,
    tcp_upload_cut_into_segments_ipv6,
    tcp_uploads_by_sendfile_and_io_uring,
    tcp_download_merged_by_gro,
    udp_segmentation_offload,
);

/// Within 0.1% of the far end's count, bytes and packets.
fn assert_wire(engine: EngineUnderTest, what: &str, counted: (u64, u64), truth: (u64, u64)) {
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    let (bytes, packets) = (ratio(counted.0, truth.0), ratio(counted.1, truth.1));
    report(&format!(
        "{}, {what}: {:.4} of the wire's bytes ({} of {}), {:.4} of its packets ({} of {})",
        engine.label(),
        bytes,
        counted.0,
        truth.0,
        packets,
        counted.1,
        truth.1
    ));
    for (unit, share) in [("bytes", bytes), ("packets", packets)] {
        assert!(
            (0.999..=1.001).contains(&share),
            "{}, {what}: {unit} {share:.4} of the wire's",
            engine.label()
        );
    }
}

fn sent(records: &Records, name: &str, interface: &str) -> (u64, u64) {
    (
        records.sum(name, interface, "sent_bytes_last"),
        records.sum(name, interface, "sent_packets_last"),
    )
}

fn received(records: &Records, name: &str, interface: &str) -> (u64, u64) {
    (
        records.sum(name, interface, "recv_bytes_last"),
        records.sum(name, interface, "recv_packets_last"),
    )
}

/// `client` in `a` uploads to a sink in `b` on `port` at `target`; `a`'s veth segments
/// in software. The wire's truth: what `b` received, packet by packet.
fn upload_case(engine: EngineUnderTest, what: &str, port: u16, target: &str, client: &[&str]) {
    let mut lab = Lab::new();
    lab.offloads(&lab.a.clone(), &lab.veth_a.clone(), &["tso", "off"]);
    let rule = format!("tcp dport {port}");
    let b = lab.b.clone();
    lab.truth_in(&b, &[("arrived", "input", &rule)]);
    lab.truth(&[("handed_down", "output", &rule)]);
    lab.serve(&b, "ng-sink", &["tcp-sink", target]);
    let netgraph = engine.start(&lab, &[]);
    lab.exec(&lab.a, "ng-wire", client);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let wire = (
        lab.truth_bytes_in(&b, "arrived"),
        lab.truth_packets_in(&b, "arrived"),
    );
    let near = (
        lab.truth_bytes("handed_down"),
        lab.truth_packets_in(&lab.a, "handed_down"),
    );
    report(&format!(
        "{what}: the stack handed down {} packets, the wire carried {}; counted where the stack hands them down: {:.4} of the wire's bytes",
        near.1,
        wire.1,
        near.0 as f64 / wire.0.max(1) as f64
    ));
    assert_wire(engine, what, sent(&records, "ng-wire", &lab.veth_a), wire);
}

fn tcp_upload_cut_into_segments(engine: EngineUnderTest) {
    let target = format!("{B4}:6201");
    upload_case(
        engine,
        "TCP upload cut into segments",
        6201,
        &target,
        &["tcp-send", &target, "33554432"],
    );
}

fn tcp_upload_cut_into_segments_ipv6(engine: EngineUnderTest) {
    let target = format!("[{B6}]:6202");
    upload_case(
        engine,
        "TCP upload over IPv6 cut into segments",
        6202,
        &target,
        &["tcp-send", &target, "33554432"],
    );
}

fn tcp_uploads_by_sendfile_and_io_uring(engine: EngineUnderTest) {
    for (mode, port) in [("sendfile", 6203), ("uring", 6204)] {
        let target = format!("{B4}:{port}");
        upload_case(
            engine,
            &format!("TCP upload by {mode} cut into segments"),
            port,
            &target,
            &["tcp-send", &target, "33554432", mode],
        );
    }
}

/// `b` sends in segments (its TSO off: software GSO cuts them at its veth), `a` merges
/// them (GRO on). The wire's truth is the frame counters of `b`'s veth, less their link
/// header, whose size is measured first with pings of known size (a veth counts it or
/// not depending on the path its peer receives by).
fn tcp_download_merged_by_gro(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.offloads(&b, &lab.veth_b.clone(), &["tso", "off"]);
    lab.offloads(&a, &lab.veth_a.clone(), &["gro", "on"]);
    lab.truth(&[("merged", "input", "tcp sport 6205")]);
    run("ip", &["netns", "exec", &b, "ping", "-c", "2", "-q", A4]);
    let before = lab.transmitted(&b, &lab.veth_b);
    let pings = 200;
    run(
        "ip",
        &[
            "netns",
            "exec",
            &b,
            "ping",
            "-c",
            &pings.to_string(),
            "-i",
            "0.002",
            "-s",
            "1000",
            "-q",
            A4,
        ],
    );
    let after = lab.transmitted(&b, &lab.veth_b);
    // 1,028 IP bytes a ping; a stray neighbour message adds under a byte a ping.
    let per_ping = (after.0 - before.0) as f64 / pings as f64 - 1028.0;
    let link_header = match per_ping {
        x if (0.0..3.0).contains(&x) => 0,
        x if (14.0..17.0).contains(&x) => 14,
        x => panic!("{x} link-header bytes a frame"),
    };
    lab.serve(&b, "ng-source", &["tcp-source", &format!("{B4}:6205"), "2"]);
    let netgraph = engine.start(&lab, &[]);
    let before = lab.transmitted(&b, &lab.veth_b);
    lab.exec(&a, "ng-wire", &["tcp-recv", &format!("{B4}:6205"), "read"]);
    settle();
    let after = lab.transmitted(&b, &lab.veth_b);
    let records = netgraph.stop();
    records.assert_conservation();
    let frames = after.1 - before.1;
    let wire = (after.0 - before.0 - link_header * frames, frames);
    report(&format!(
        "TCP download merged by GRO: the stack received {} packets, the wire carried {}; counted where the stack receives them: {:.4} of the wire's bytes",
        lab.truth_packets_in(&a, "merged"),
        wire.1,
        lab.truth_bytes("merged") as f64 / wire.0.max(1) as f64
    ));
    assert_wire(
        engine,
        "TCP download merged by GRO",
        received(&records, "ng-wire", &lab.veth_a),
        wire,
    );
}

/// A sender using UDP_SEGMENT: each send leaves as 1,400-byte datagrams.
fn udp_segmentation_offload(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.offloads(
        &lab.a.clone(),
        &lab.veth_a.clone(),
        &["tso", "off", "tx-udp-segmentation", "off"],
    );
    let b = lab.b.clone();
    lab.truth_in(&b, &[("arrived", "input", "udp dport 6206")]);
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:6206"), "recv"]);
    let netgraph = engine.start(&lab, &[]);
    lab.exec(
        &lab.a,
        "ng-wire",
        &["udp-flood", &format!("{B4}:6206"), "2", "14000", "gso"],
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let wire = (
        lab.truth_bytes_in(&b, "arrived"),
        lab.truth_packets_in(&b, "arrived"),
    );
    assert_wire(
        engine,
        "UDP with UDP_SEGMENT",
        sent(&records, "ng-wire", &lab.veth_a),
        wire,
    );
}

//! Microbenchmarks of the hot paths, per packet or per line: decoding a captured frame,
//! counting it in the flow table, finding its socket, the accounting update, and
//! encoding one line of line protocol. `cargo bench --bench hot_paths`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use netgraph::accounting::Accountant;
use netgraph::attribution::hot_path::SocketLookup;
use netgraph::attribution::{AttributedReport, AttributedTraffic, Owner, ProcessIdentity};
use netgraph::engine::capture::hot_path::CapturePath;
use netgraph::engine::InterfaceTraffic;
use netgraph::sinks::line_protocol;
use netgraph::traffic::Traffic;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

const OWN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// A full-size TCP segment from this host on the `index`th connection.
fn tcp_frame(index: u16) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2(OWN_MAC, [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40_000 + index, 443, 1, 65_535);
    let payload = vec![0u8; 1448];
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();
    frame
}

/// A 64-byte UDP datagram arriving, as in the flood workload of `bench/run.py`.
fn udp_frame() -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], OWN_MAC)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .udp(40_000, 6103);
    let payload = vec![0u8; 64];
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, &payload).unwrap();
    frame
}

fn capture(c: &mut Criterion) {
    let mut group = c.benchmark_group("capture");
    group.throughput(Throughput::Elements(1));
    let local = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let frame = tcp_frame(0);
    let path = CapturePath::ethernet(OWN_MAC, local);
    group.bench_function("decode one TCP/IPv4 frame", |b| {
        b.iter(|| black_box(path.decode(black_box(&frame))))
    });
    let frames: Vec<Vec<u8>> = (0..1000).map(tcp_frame).collect();
    let mut path = CapturePath::ethernet(OWN_MAC, local);
    let mut next = 0;
    group.bench_function("decode and count one frame (1000 flows)", |b| {
        b.iter(|| {
            path.count(black_box(&frames[next]));
            next = (next + 1) % frames.len();
        })
    });
    black_box(path.drain());
    let mut path = CapturePath::ethernet(OWN_MAC, local);
    group.bench_function("decode and count one frame (one flow)", |b| {
        b.iter(|| path.count(black_box(&frame)))
    });
    black_box(path.drain());
    let datagram = udp_frame();
    let mut path = CapturePath::ethernet(OWN_MAC, local);
    group.bench_function("decode and count one 64-byte datagram (one flow)", |b| {
        b.iter(|| path.count(black_box(&datagram)))
    });
    black_box(path.drain());
    group.finish();
}

fn attribution(c: &mut Criterion) {
    let mut group = c.benchmark_group("attribution");
    group.throughput(Throughput::Elements(1));
    let sockets = SocketLookup::with_connections(10_000);
    let flows: Vec<_> = (0..10_000).map(SocketLookup::flow).collect();
    let mut next = 0;
    group.bench_function("find a flow's socket among 10000", |b| {
        b.iter(|| {
            black_box(sockets.lookup(black_box(&flows[next])));
            next = (next + 1) % flows.len();
        })
    });
    group.finish();
}

fn interval(processes: u32) -> AttributedReport {
    let traffic = (0..processes)
        .map(|pid| {
            let mut traffic = Traffic::default();
            traffic.sent.add_packet(1500);
            traffic.recv.add_packet(60);
            AttributedTraffic {
                owner: Owner::Process(Arc::new(ProcessIdentity {
                    pid,
                    name: format!("process-{pid}"),
                    exe: None,
                    uid: 1000,
                    cgroup: None,
                })),
                interface: "eth0".into(),
                ends: None,
                traffic,
                workload: None,
                peer_name: None,
                flow: None,
            }
        })
        .collect();
    AttributedReport {
        traffic,
        interfaces: vec![InterfaceTraffic::new("eth0".into())],
        ..Default::default()
    }
}

fn accounting(c: &mut Criterion) {
    let mut group = c.benchmark_group("accounting");
    const ROWS: u32 = 1000;
    group.throughput(Throughput::Elements(ROWS.into()));
    let mut accountant = Accountant::new(UNIX_EPOCH);
    let mut second = 0;
    group.bench_function("close an interval, per process row (1000 rows)", |b| {
        b.iter_batched(
            || interval(ROWS),
            |report| {
                second += 1;
                black_box(
                    accountant.close_interval(report, UNIX_EPOCH + Duration::from_secs(second)),
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn line_protocol_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("line protocol");
    const ROWS: u32 = 1000;
    group.throughput(Throughput::Elements(ROWS.into()));
    let report = Accountant::new(UNIX_EPOCH)
        .close_interval(interval(ROWS), UNIX_EPOCH + Duration::from_secs(1));
    group.bench_function("encode one network_data line", |b| {
        b.iter(|| {
            black_box(line_protocol::encode(
                black_box(&report),
                "web-1.example.org",
            ))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    capture,
    attribution,
    accounting,
    line_protocol_encoding
);
criterion_main!(benches);

//! How fast the store answers the page's and the API's history queries over a month
//! with a million peers (bench/history.sh runs it; not a test).
//!
//! Builds, or reuses, a store of DAYS days of one-minute intervals: fifty processes with
//! a steady peer each, and a scanner that meets new addresses every minute, a million
//! over the month. Then times each query the page makes for that month, one at a time,
//! and two at once (readers do not wait for each other).
//!
//! usage: history_bench STATE_DIRECTORY [DAYS] [PEERS]

use netgraph::accounting::{IntervalReport, PeerRow, ProcessRow, SeriesKey};
use netgraph::store::{GroupBy, Only, Readers, Retention, Store};
use netgraph::traffic::{Protocol, Service, Traffic};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROCESSES: u32 = 50;

type Query = Box<dyn Fn() + Send + Sync>;

fn traffic(bytes: u64) -> Traffic {
    let mut traffic = Traffic::default();
    traffic.sent.bytes = bytes;
    traffic.sent.packets = 1;
    traffic.recv.bytes = bytes / 2;
    traffic.recv.packets = 1;
    traffic
}

fn process(index: u32) -> ProcessRow {
    let name = if index == 0 {
        "scanner".to_string()
    } else {
        format!("app-{index}")
    };
    ProcessRow {
        key: SeriesKey {
            name: name.into(),
            uid: Some(1000 + index),
            interface: "eth0".into(),
            container: None,
            reason: None,
        },
        attributed: true,
        pid: Some(index + 100),
        exe: None,
        cgroup: None,
        workload: None,
        last: traffic(100_000),
        total: traffic(100_000),
    }
}

fn peer(process: &ProcessRow, address: u32, bytes: u64) -> PeerRow {
    PeerRow {
        near: None,
        key: process.key.clone(),
        workload: None,
        peer: Some(std::net::IpAddr::V4(address.into())),
        service: Some(Service {
            protocol: Protocol::Tcp,
            port: 443,
        }),
        name: None,
        country: None,
        pid: process.pid,
        last: traffic(bytes),
        total: traffic(bytes),
    }
}

fn build(state: &std::path::Path, days: u64, peers: u64, end: u64) {
    let retention = Retention {
        max_bytes: 8 << 30,
        ..Retention::default()
    };
    let mut store = Store::open(state, retention).unwrap();
    let minutes = days * 1440;
    let per_minute = peers.div_ceil(minutes);
    let processes: Vec<ProcessRow> = (0..PROCESSES).map(process).collect();
    let started = Instant::now();
    for minute in 0..minutes {
        let start = end - (minutes - minute) * 60;
        let mut report = IntervalReport::of(
            UNIX_EPOCH + Duration::from_secs(start),
            UNIX_EPOCH + Duration::from_secs(start + 60),
            processes.clone(),
        );
        for (index, row) in processes.iter().enumerate().skip(1) {
            report
                .peers
                .push(peer(row, 0xc000_0200 + index as u32, 90_000));
        }
        for n in 0..per_minute {
            let address = 0x0a00_0000 + (minute * per_minute + n) as u32;
            report.peers.push(peer(&processes[0], address, 1_000));
        }
        store.write(&report).unwrap();
        if minute % 1440 == 0 {
            eprintln!(
                "day {} of {days} ({:.0} s)",
                minute / 1440,
                started.elapsed().as_secs_f64()
            );
        }
    }
    store.maintain(end as i64).unwrap();
    eprintln!(
        "built in {:.0} s: {} MiB live",
        started.elapsed().as_secs_f64(),
        store.live_bytes().unwrap() >> 20
    );
}

/// Best of three, in seconds.
fn time<T>(mut query: impl FnMut() -> T) -> f64 {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(query());
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let state = std::path::PathBuf::from(
        args.get(1)
            .expect("usage: history_bench STATE [DAYS] [PEERS]"),
    );
    let days: u64 = args.get(2).map_or(30, |d| d.parse().unwrap());
    let peers: u64 = args.get(3).map_or(1_000_000, |p| p.parse().unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let end = now - now % 60;
    if !state.join("netgraph.sqlite").exists() {
        build(&state, days, peers, end);
    }
    let readers = Arc::new(Readers::new(state.join("netgraph.sqlite")));
    let (from, to) = ((end - days * 86_400) as i64, end as i64 + 1);
    let step = (to - from) / 200;
    let queries: Vec<(&str, Query)> = {
        let r = readers.clone();
        let totals = move |group_by: GroupBy| {
            let r = r.clone();
            Box::new(move || {
                r.with(|reader| reader.totals(from, to, group_by, 20, None))
                    .unwrap();
            }) as Query
        };
        let r = readers.clone();
        let history = move |group_by: GroupBy| {
            let r = r.clone();
            Box::new(move || {
                r.with(|reader| reader.history(from, to, step, group_by, 10, None))
                    .unwrap();
            }) as Query
        };
        let r = readers.clone();
        let scanner_peers = Box::new(move || {
            let only = Only {
                group_by: GroupBy::Process,
                key: "scanner",
            };
            r.with(|reader| reader.totals(from, to, GroupBy::Peer, 20, Some(only)))
                .unwrap();
        }) as Query;
        vec![
            ("totals by process", totals(GroupBy::Process)),
            ("totals by peer", totals(GroupBy::Peer)),
            ("totals by domain", totals(GroupBy::Domain)),
            ("the scanner's peers", scanner_peers),
            ("history by process (200 points)", history(GroupBy::Process)),
            ("history by peer (200 points)", history(GroupBy::Peer)),
        ]
    };
    println!("| query over {days} days, {peers} peers | seconds (best of 3) |");
    println!("|---|---|");
    let mut alone = 0.0;
    for (name, query) in &queries {
        let seconds = time(query);
        alone += seconds;
        println!("| {name} | {seconds:.3} |");
    }
    // Every query at once, from as many threads: the wall time against their sum.
    let queries = Arc::new(queries);
    let started = Instant::now();
    let threads: Vec<_> = (0..queries.len())
        .map(|i| {
            let queries = queries.clone();
            std::thread::spawn(move || (queries[i].1)())
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    println!(
        "| all {} at once (sum alone {alone:.3}) | {:.3} |",
        queries.len(),
        started.elapsed().as_secs_f64()
    );
}

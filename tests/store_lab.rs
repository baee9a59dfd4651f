//! The embedded store under a scanner (needs root): a year of history, a small
//! `max_size_mib`, and a process that sprays datagrams at thousands of addresses while
//! the peer breakdown is on. The store stays within its bound by giving up its oldest
//! history, never the newest, and no interval is late while it does.

mod lab;

use lab::*;
use netgraph::accounting::{IntervalReport, ProcessRow, SeriesKey};
use netgraph::store::{Reader, Retention, Store};
use netgraph::traffic::Traffic;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PROCESSES: u64 = 50;
const BYTES_EACH: u64 = 1000;

fn row(index: u64) -> ProcessRow {
    let mut last = Traffic::default();
    last.sent.bytes = BYTES_EACH;
    last.sent.packets = 1;
    ProcessRow {
        key: SeriesKey {
            name: format!("old-{index}").into(),
            uid: Some(index as u32),
            interface: "eth0".into(),
            container: None,
            reason: None,
        },
        attributed: true,
        pid: Some(1),
        exe: None,
        cgroup: None,
        workload: None,
        last,
        total: last,
    }
}

/// A year of hourly intervals of fifty processes, ending an hour before `now`; returns
/// the first hour and the live bytes written.
fn fill_a_year(state: &std::path::Path, now: u64) -> (u64, u64) {
    let mut store = Store::open(state, Retention::default()).unwrap();
    let end = now - now % 3600 - 3600;
    let first = end - 365 * 86_400;
    let processes: Vec<ProcessRow> = (0..PROCESSES).map(row).collect();
    for hour in (first..end).step_by(3600) {
        store
            .write(&IntervalReport::of(
                UNIX_EPOCH + Duration::from_secs(hour),
                UNIX_EPOCH + Duration::from_secs(hour + 1),
                processes.clone(),
            ))
            .unwrap();
    }
    (first, store.live_bytes().unwrap())
}

fn sent(reader: &Reader, from: u64, to: u64) -> u64 {
    reader.sum(from as i64, to as i64, &[]).unwrap().0
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_scanner_past_the_size_bound_costs_the_oldest_history_and_no_interval() {
    require_root();
    let lab = Lab::new();
    let state = lab.path("store-state");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (first, filled) = fill_a_year(&state, now);
    // Room for about half the hourly table (a third of what was filled; the per-minute
    // and per-second rows go first) and the scan.
    let bound_mib = ((filled / 3 / 2) >> 20) + 3;
    run(
        "ip",
        &["-n", &lab.a, "route", "add", "10.210.0.0/16", "via", B4],
    );
    let config = lab.path("store.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[web]\nenabled = false\n[store]\nmax_size_mib = {bound_mib}\n\
             [peers]\nenabled = true\nper_process = 200\n",
            state.display()
        ),
    )
    .unwrap();
    let netgraph = lab.netgraph_ebpf(&["--config", config.to_str().unwrap()]);
    // Thirty seconds of a scanner: 1,000 new addresses a second.
    let started = Instant::now();
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(30) {
        let first_address = std::net::Ipv4Addr::from(0x0ad2_0000 + round * 1000).to_string();
        lab.exec(
            &lab.a,
            "ng-scan",
            &["udp-spray", &first_address, "1000", "7999", "100"],
        );
        round += 1;
        std::thread::sleep(Duration::from_millis(1000));
    }
    // The maintenance after the scan: it runs once a minute.
    let deadline = Instant::now() + Duration::from_secs(90);
    while netgraph.log().matches("reached its size bound").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second maintenance:\n{}",
            netgraph.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let records = netgraph.stop();
    let widest = records.widest_gap_ms();
    let scanned: u64 = records.sum_all("ng-scan", "sent_bytes_last");

    let store = Store::open(&state, Retention::default()).unwrap();
    let live = store.live_bytes().unwrap();
    let reader = store.reader().unwrap();
    let end = now - now % 3600 - 3600;
    let year = PROCESSES * BYTES_EACH * 365 * 24;
    let kept = sent(&reader, first, end);
    let month = sent(&reader, end - 30 * 86_400, end);
    let oldest_hour = sent(&reader, first, first + 3600);
    let scan_kept = {
        let only = netgraph::store::Only {
            group_by: netgraph::store::GroupBy::Process,
            key: "ng-scan",
        };
        reader
            .sum(now as i64 - 60, now as i64 + 3600, &[only])
            .unwrap()
            .0
    };
    report(&format!(
        "store bound {bound_mib} MiB over a year of history ({} MiB filled) and a 30-s scan of \
         {round},000 addresses: {:.1} MiB live after, {:.0}% of the year kept (the last 30 days whole: {}), \
         oldest hour {}, the scan's {scan_kept} of {scanned} bytes kept, widest gap between intervals {widest} ms",
        filled >> 20,
        live as f64 / 1048576.0,
        kept as f64 * 100.0 / year as f64,
        month == PROCESSES * BYTES_EACH * 30 * 24,
        if oldest_hour == 0 { "gone" } else { "kept" },
    ));
    assert!(live <= bound_mib << 20, "{live} bytes live");
    assert_eq!(month, PROCESSES * BYTES_EACH * 30 * 24, "the newest month");
    assert_eq!(oldest_hour, 0, "the oldest hour is kept past the bound");
    assert!(
        kept >= year / 4,
        "more history dropped than needed: {kept} of {year}"
    );
    assert_eq!(scan_kept, scanned, "the scan's own history");
    assert!(
        widest <= 2_000,
        "an interval came {widest} ms after the one before"
    );
}

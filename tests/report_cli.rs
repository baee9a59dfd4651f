//! `netgraph report` on a store with known traffic: the binary, as a user runs it,
//! reading the store file; totals per day and per billing month, as a table, JSON and
//! CSV, add up to what was written.

use netgraph::accounting::{IntervalReport, ProcessRow, SeriesKey};
use netgraph::store::{Retention, Store};
use netgraph::traffic::Traffic;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

fn row(name: &str, sent: u64, recv: u64) -> ProcessRow {
    let mut last = Traffic::default();
    last.sent.bytes = sent;
    last.recv.bytes = recv;
    ProcessRow {
        key: SeriesKey {
            name: name.into(),
            uid: Some(1000),
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

/// 2026-10-10 00:00 UTC: a day on which nothing changes clocks.
const DAY0: u64 = 1_791_590_400;

/// Runs the report; `--url` names no daemon unless `args` give one, so the store is read.
fn report(config: &std::path::Path, args: &[&str]) -> String {
    report_in("UTC", config, args)
}

/// The same in time zone `tz`.
fn report_in(tz: &str, config: &std::path::Path, args: &[&str]) -> String {
    let url = if args.contains(&"--url") {
        Vec::new()
    } else {
        vec!["--url", "http://127.0.0.1:1"]
    };
    let output = Command::new(env!("CARGO_BIN_EXE_netgraph"))
        .arg("report")
        .args(["-c", config.to_str().unwrap()])
        .args(url)
        .args(args)
        .env("TZ", tz)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn daily_and_monthly_totals_add_up_to_what_was_stored() {
    let dir = std::env::temp_dir().join(format!("netgraph-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    // Ten days, one interval an hour: curl 1 MB up and 3 MB down a day, sshd 24 kB.
    for hour in 0..240u64 {
        let rows = vec![
            row("curl", 1_000_000 / 24, 3_000_000 / 24),
            row("sshd", 1000, 0),
        ];
        store.write(&interval(DAY0 + hour * 3600, rows)).unwrap();
    }
    drop(store);
    let config = billing_config(&dir);
    let (from, to) = (DAY0.to_string(), (DAY0 + 10 * 86_400).to_string());

    let daily: Value = serde_json::from_str(&report(
        &config,
        &["--from", &from, "--to", &to, "--daily", "--json"],
    ))
    .unwrap();
    let rows = daily.as_array().unwrap();
    let days: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["period"].as_str().unwrap()).collect();
    assert_eq!(days.len(), 10, "{days:?}");
    for row in rows.iter().filter(|r| r["key"] == "curl") {
        assert_eq!(row["sent_bytes"], 24 * (1_000_000 / 24), "{row}");
        assert_eq!(row["recv_bytes"], 24 * (3_000_000 / 24), "{row}");
    }
    for row in rows.iter().filter(|r| r["key"] == "(all)") {
        assert_eq!(
            row["total_bytes"],
            24 * (1_000_000 / 24 + 3_000_000 / 24) + 24_000,
            "{row}"
        );
        assert!(
            row["projected_bytes"].is_null(),
            "a day that is over: {row}"
        );
    }

    // Without --to, up to now: everything since the first day.
    let since: Value =
        serde_json::from_str(&report(&config, &["--from", &from, "--json"])).unwrap();
    let all = since
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "(all)")
        .unwrap();
    assert_eq!(all["total_bytes"], 10 * (24 * (4_000_000 / 24) + 24_000));

    // Billing months from the 15th: the ten days from 10 October fall in two.
    let monthly = report(
        &config,
        &["--from", &from, "--to", &to, "--monthly", "--csv"],
    );
    let lines: Vec<&str> = monthly.lines().collect();
    assert_eq!(
        lines[0],
        "period,start,end,process,sent_bytes,recv_bytes,total_bytes,projected_bytes"
    );
    let all: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains(",(all),"))
        .collect();
    assert_eq!(all.len(), 2, "{monthly}");
    assert!(all[0].starts_with("2026-09-15 to 2026-10-14,"), "{monthly}");
    assert!(all[1].starts_with("2026-10-15 to 2026-11-14,"), "{monthly}");
    let total: u64 = all
        .iter()
        .map(|l| l.split(',').nth(6).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 10 * (24 * (4_000_000 / 24) + 24_000));

    // The table a person reads, grouped by user.
    let table = report(&config, &["--from", &from, "--to", &to, "--by", "user"]);
    assert!(table.starts_with("period"), "{table}");
    assert!(table.contains("1000") && table.contains("(all)"), "{table}");

    // From a running daemon's API, the same figures.
    let store = Store::open(&dir, Retention::default()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = netgraph::web::ApiState {
        live: netgraph::sinks::live::SharedLive::default(),
        reader: Some(std::sync::Arc::new(store.readers())),
        alerts: Default::default(),
        billing_day: 1,
    };
    netgraph::web::start(format!("127.0.0.1:{port}").parse().unwrap(), None, state).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let from_daemon = report(
        &config,
        &[
            "--from", &from, "--to", &to, "--daily", "--json", "--url", &url,
        ],
    );
    assert_eq!(serde_json::from_str::<Value>(&from_daemon).unwrap(), daily);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_store_and_a_bad_grouping_are_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("netgraph-report-empty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("netgraph.toml");
    std::fs::write(
        &config,
        format!("state_directory = \"{}\"\n", dir.display()),
    )
    .unwrap();
    for (args, expected) in [
        (vec!["--today"], "no store at"),
        (
            vec!["--today", "--by", "planet"],
            "--by planet: give one of",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_netgraph"))
            .arg("report")
            .args([
                "-c",
                config.to_str().unwrap(),
                "--url",
                "http://127.0.0.1:1",
            ])
            .args(&args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(expected), "{args:?}: {error}");
        // One plain line for a person, not a log record.
        assert!(
            error.starts_with("netgraph: ") && error.lines().count() == 1,
            "{args:?}: {error}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// One interval of `sent`/`recv` bytes for `name` at `t`.
fn interval(t: u64, rows: Vec<ProcessRow>) -> IntervalReport {
    IntervalReport::of(
        UNIX_EPOCH + Duration::from_secs(t),
        UNIX_EPOCH + Duration::from_secs(t + 1),
        rows,
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("netgraph-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn billing_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("netgraph.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[report]\nbilling_day = 15\n",
            dir.display()
        ),
    )
    .unwrap();
    config
}

/// The `(all)` rows of a JSON report: (period, start, end, total bytes).
fn totals(text: &str) -> Vec<(String, u64, u64, u64)> {
    let rows: Value = serde_json::from_str(text).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] == "(all)")
        .map(|r| {
            (
                r["period"].as_str().unwrap().to_string(),
                r["start"].as_u64().unwrap(),
                r["end"].as_u64().unwrap(),
                r["total_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// 2026-09-15 00:00 in Berlin (22:00 UTC the day before, summer time).
const BERLIN_SEP_15: u64 = 1_789_423_200;

/// Two months of hourly traffic in Europe/Berlin, across the end of summer time (25
/// October 2026 has 25 hours), with billing months from the 15th: every day's and every
/// month's total is the sum of the raw rows between its local midnights.
#[test]
fn two_months_across_a_clock_change_in_berlin() {
    let dir = temp_dir("report-berlin");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let mut raw: Vec<(u64, u64)> = Vec::new(); // (t, bytes) of every row
    for hour in 0..(61 * 24 + 1) {
        let t = BERLIN_SEP_15 + hour * 3600;
        let (curl, sshd) = (
            (1000 + hour % 7 * 100, 5000 + hour % 11 * 10),
            (hour % 5, 0),
        );
        store
            .write(&interval(
                t,
                vec![row("curl", curl.0, curl.1), row("sshd", sshd.0, sshd.1)],
            ))
            .unwrap();
        raw.push((t, curl.0 + curl.1 + sshd.0 + sshd.1));
    }
    drop(store);
    let config = billing_config(&dir);
    let sum = |start: u64, end: u64| -> u64 {
        raw.iter()
            .filter(|(t, _)| (start..end).contains(t))
            .map(|(_, b)| b)
            .sum()
    };
    let days = totals(&report_in(
        "Europe/Berlin",
        &config,
        &[
            "--from",
            "2026-09-15",
            "--to",
            "2026-11-15",
            "--daily",
            "--json",
        ],
    ));
    assert_eq!(days.len(), 61, "{days:?}");
    for (label, start, end, total) in &days {
        assert_eq!(*total, sum(*start, *end), "{label}");
        // Local midnight: 22:00 UTC in summer time, 23:00 UTC after.
        let midnight_utc = if *start <= 1_792_879_200 { 22 } else { 23 };
        assert_eq!(
            start % 86_400,
            midnight_utc * 3600,
            "{label} starts at local midnight"
        );
        let hours = if label == "2026-10-25" { 25 } else { 24 };
        assert_eq!(end - start, hours * 3600, "{label} lasts {hours} hours");
    }
    assert_eq!(
        days.iter().map(|d| d.3).sum::<u64>(),
        sum(BERLIN_SEP_15, days.last().unwrap().2)
    );

    let months = totals(&report_in(
        "Europe/Berlin",
        &config,
        &[
            "--from",
            "2026-09-15",
            "--to",
            "2026-11-15",
            "--monthly",
            "--json",
        ],
    ));
    let labels: Vec<&str> = months.iter().map(|m| m.0.as_str()).collect();
    assert_eq!(
        labels,
        ["2026-09-15 to 2026-10-14", "2026-10-15 to 2026-11-14"]
    );
    // 15 October 00:00 CEST and 15 November 00:00 CET.
    assert_eq!(months[0].2, 1_792_015_200);
    assert_eq!(months[1].2, 1_794_697_200);
    for (label, start, end, total) in &months {
        assert_eq!(*total, sum(*start, *end), "{label}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The running billing month's projection is the documented formula: the bytes so far
/// times the month's length over the time elapsed.
#[test]
fn the_running_month_is_projected_from_its_pace() {
    use chrono::{Datelike, TimeZone, Utc};
    let dir = temp_dir("report-projection");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let now = Utc::now();
    let date = now.date_naive();
    let this_15th = date.with_day(15).unwrap();
    let start_date = if date >= this_15th {
        this_15th
    } else {
        this_15th - chrono::Months::new(1)
    };
    let start = Utc
        .from_utc_datetime(&start_date.and_hms_opt(0, 0, 0).unwrap())
        .timestamp() as u64;
    let end = Utc
        .from_utc_datetime(
            &(start_date + chrono::Months::new(1))
                .and_hms_opt(0, 0, 0)
                .unwrap(),
        )
        .timestamp() as u64;
    let mut written = 0;
    let mut t = start;
    while t + 3600 < now.timestamp() as u64 {
        store
            .write(&interval(t, vec![row("curl", 7_000, 3_000)]))
            .unwrap();
        written += 10_000;
        t += 3600;
    }
    if written == 0 {
        // The month began less than an hour ago: nothing is projected yet.
        store
            .write(&interval(start, vec![row("curl", 7_000, 3_000)]))
            .unwrap();
    }
    drop(store);
    let config = billing_config(&dir);
    let before = Utc::now().timestamp() as u64;
    let text = report(&config, &["--month", "--json"]);
    let after = Utc::now().timestamp() as u64 + 1;
    let rows: Value = serde_json::from_str(&text).unwrap();
    let all = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "(all)")
        .unwrap();
    assert_eq!(all["start"], start);
    assert_eq!(all["end"], end);
    if written == 0 {
        assert!(all["projected_bytes"].is_null(), "{all}");
        return;
    }
    assert_eq!(all["total_bytes"], written);
    let projected = all["projected_bytes"].as_u64().unwrap();
    let at =
        |now: u64| (written as f64 * (end - start) as f64 / (now - start) as f64).round() as u64;
    assert!(
        (at(after)..=at(before)).contains(&projected),
        "{projected} not between {} and {}",
        at(after),
        at(before)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Santiago's clocks go from 00:00 to 01:00 on 6 September 2026: that day has no
/// midnight. It starts at 01:00 local time and has 23 hours.
#[test]
fn a_day_without_a_midnight_in_santiago() {
    const SEP_5_MIDNIGHT: u64 = 1_788_580_800; // 2026-09-05 00:00 -04
    const SEP_6_ONE_AM: u64 = 1_788_667_200; // 2026-09-06 01:00 -03
    const SEP_7_MIDNIGHT: u64 = 1_788_750_000; // 2026-09-07 00:00 -03
    let dir = temp_dir("report-santiago");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    for hour in 0..(3 * 24) {
        let t = SEP_5_MIDNIGHT + hour * 3600;
        store
            .write(&interval(t, vec![row("curl", 1000, 0)]))
            .unwrap();
    }
    drop(store);
    let config = billing_config(&dir);
    let text = report_in(
        "America/Santiago",
        &config,
        &[
            "--from",
            "2026-09-05",
            "--to",
            "2026-09-08",
            "--daily",
            "--json",
        ],
    );
    let days = totals(&text);
    assert_eq!(
        days[..2],
        [
            (
                "2026-09-05".to_string(),
                SEP_5_MIDNIGHT,
                SEP_6_ONE_AM,
                24_000
            ),
            (
                "2026-09-06".to_string(),
                SEP_6_ONE_AM,
                SEP_7_MIDNIGHT,
                23_000
            ),
        ],
        "{text}"
    );
}

/// By peer, each address with the names it had, in the table, CSV and JSON.
/// A series' traffic with one named peer.
fn peer_row(
    series: &ProcessRow,
    address: &str,
    name: &str,
    last: Traffic,
) -> netgraph::accounting::PeerRow {
    netgraph::accounting::PeerRow {
        near: None,
        key: series.key.clone(),
        workload: None,
        peer: Some(address.parse().unwrap()),
        service: None,
        name: Some(name.into()),
        country: None,
        pid: Some(1),
        last,
        total: last,
    }
}

/// The report of DAY0 by peer: a table, or `--csv` or `--json`.
fn report_by_peer(config: &std::path::Path, format: &str) -> String {
    let (from, to) = (DAY0.to_string(), (DAY0 + 86_400).to_string());
    let mut args = vec!["--from", from.as_str(), "--to", to.as_str(), "--by", "peer"];
    args.extend((!format.is_empty()).then_some(format));
    report(config, &args)
}

#[test]
fn peers_are_reported_with_their_names() {
    let dir = temp_dir("report-peers");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let curl = row("curl", 3000, 0);
    for hour in 0..24u64 {
        let mut report = interval(DAY0 + hour * 3600, vec![curl.clone()]);
        let mut last = Traffic::default();
        last.sent.bytes = 3000;
        last.sent.packets = 3;
        report.peers = vec![peer_row(&curl, "192.0.2.10", "files.example.org", last)];
        store.write(&report).unwrap();
    }
    drop(store);
    let config = billing_config(&dir);
    let table = report_by_peer(&config, "");
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("peer") && header.contains("name"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("192.0.2.10") && l.contains("files.example.org")),
        "{table}"
    );
    let csv = report_by_peer(&config, "--csv");
    assert!(
        csv.starts_with("period,start,end,peer,names,sent_bytes"),
        "{csv}"
    );
    assert!(
        csv.contains(",192.0.2.10,files.example.org,72000,"),
        "{csv}"
    );
    let json: Value = serde_json::from_str(&report_by_peer(&config, "--json")).unwrap();
    assert_eq!(json[0]["names"], "files.example.org", "{json}");
}

/// By peer, with TCP health stored: the table adds RTT, the retransmitted share of the
/// packets sent and failed connects; CSV and JSON carry the same figures.
#[test]
fn peers_are_reported_with_their_tcp_health() {
    let dir = temp_dir("report-health");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let mut backup = row("backup", 1_448_000, 0);
    backup.last.sent.packets = 1000;
    backup.last.tcp.retransmits = 5;
    backup.last.tcp.connects_timed_out = 1;
    backup.last.tcp.add_rtt(42_000, 1_448_000);
    for hour in 0..4u64 {
        let mut report = interval(DAY0 + hour * 3600, vec![backup.clone()]);
        report.peers = vec![peer_row(
            &backup,
            "192.0.2.20",
            "vault.example.org",
            backup.last,
        )];
        store.write(&report).unwrap();
    }
    drop(store);
    let config = billing_config(&dir);
    let table = report_by_peer(&config, "");
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("RTT") && header.contains("retrans") && header.contains("failed"),
        "{table}"
    );
    let line = table.lines().find(|l| l.contains("192.0.2.20")).unwrap();
    assert!(
        line.contains("42.0 ms") && line.contains("0.50 %") && line.ends_with(" 4"),
        "{table}"
    );
    let csv = report_by_peer(&config, "--csv");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("projected_bytes,rtt_us,retransmits,retransmit_percent,connect_failures"),
        "{csv}"
    );
    assert!(csv.contains(",42000,20,0.500,4\n"), "{csv}");
    let json: Value = serde_json::from_str(&report_by_peer(&config, "--json")).unwrap();
    assert_eq!(json[0]["tcp"]["rtt_us"], 42_000, "{json}");
    assert_eq!(json[0]["tcp"]["retransmits"], 20, "{json}");
}

/// By peer, with drops stored: the table adds a dropped column naming the layer that
/// dropped most; CSV and JSON carry the same figures; rows without drops stay blank.
#[test]
fn peers_are_reported_with_their_drops() {
    let dir = temp_dir("report-drops");
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let mut resolver = row("resolver", 64_000, 0);
    resolver
        .last
        .drops
        .add(netgraph::traffic::DropKind::Netfilter, 30, 30 * 128);
    resolver
        .last
        .drops
        .add(netgraph::traffic::DropKind::Socket, 2, 2 * 128);
    let quiet = row("quiet", 1_000, 0);
    for hour in 0..2u64 {
        let mut report = interval(DAY0 + hour * 3600, vec![resolver.clone(), quiet.clone()]);
        report.peers = vec![
            peer_row(&resolver, "192.0.2.53", "dns.example.org", resolver.last),
            peer_row(&quiet, "192.0.2.80", "web.example.org", quiet.last),
        ];
        store.write(&report).unwrap();
    }
    drop(store);
    let config = billing_config(&dir);
    let table = report_by_peer(&config, "");
    assert!(
        table.lines().next().unwrap().ends_with("dropped"),
        "{table}"
    );
    let line = table.lines().find(|l| l.contains("192.0.2.53")).unwrap();
    assert!(line.ends_with(" 64 (netfilter)"), "{table}");
    let quiet_line = table.lines().find(|l| l.contains("192.0.2.80")).unwrap();
    assert!(!quiet_line.contains("netfilter"), "{table}");
    let csv = report_by_peer(&config, "--csv");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",drops,drops_netfilter"),
        "{csv}"
    );
    assert!(csv.contains(",64,60\n"), "{csv}");
    let json: Value = serde_json::from_str(&report_by_peer(&config, "--json")).unwrap();
    let dns = json
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == "192.0.2.53")
        .unwrap();
    assert_eq!(dns["drops"]["packets"], 64, "{json}");
    assert_eq!(dns["drops"]["socket"], 4, "{json}");
}

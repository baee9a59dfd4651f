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
        .env("TZ", "UTC")
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
        let start = DAY0 + hour * 3600;
        let report = IntervalReport {
            start: UNIX_EPOCH + Duration::from_secs(start),
            end: UNIX_EPOCH + Duration::from_secs(start + 1),
            processes: vec![
                row("curl", 1_000_000 / 24, 3_000_000 / 24),
                row("sshd", 1000, 0),
            ],
            countries: Vec::new(),
            peers: Vec::new(),
            interfaces: Vec::new(),
            lost: 0,
            lost_total: 0,
        };
        store.write(&report).unwrap();
    }
    drop(store);
    let config = dir.join("netgraph.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[report]\nbilling_day = 15\n",
            dir.display()
        ),
    )
    .unwrap();
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
        reader: Some(std::sync::Arc::new(std::sync::Mutex::new(
            store.reader().unwrap(),
        ))),
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
    }
    let _ = std::fs::remove_dir_all(&dir);
}

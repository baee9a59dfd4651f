//! The embedded store, its API and the page: known data through the API; real traffic
//! in the namespace lab shown in headless Debian chromium; kill -9 and restarts.

mod lab;
mod servers;

use lab::*;
use netgraph::accounting::{IntervalReport, ProcessRow, SeriesKey};
use netgraph::sinks::live::SharedLive;
use netgraph::store::{Retention, Store};
use netgraph::traffic::Traffic;
use serde_json::Value;
use servers::free_port;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = ureq::get(url).config().http_status_as_error(false).build();
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn row(name: &str, uid: Option<u32>, interface: &str, sent: u64, recv: u64) -> ProcessRow {
    let mut last = Traffic::default();
    last.sent.bytes = sent;
    last.recv.bytes = recv;
    ProcessRow {
        key: SeriesKey {
            name: name.into(),
            uid,
            interface: interface.into(),
            container: None,
            reason: None,
        },
        attributed: uid.is_some(),
        pid: None,
        exe: None,
        cgroup: Some(format!("/{name}.service")),
        workload: None,
        last,
        total: last,
    }
}

/// The page and its API on a free loopback port, reading `store`; returns the port.
fn serve_store(store: &Store, token: Option<&str>) -> u16 {
    let port = free_port();
    let state = netgraph::web::ApiState {
        live: SharedLive::default(),
        reader: Some(Arc::new(store.readers())),
        alerts: Default::default(),
        billing_day: 1,
    };
    netgraph::web::start(
        format!("127.0.0.1:{port}").parse().unwrap(),
        token.map(Into::into),
        state,
    )
    .unwrap();
    port
}

/// Ten minutes of known traffic, queried through the HTTP API as the page does.
#[test]
fn the_api_answers_each_query_on_known_data() {
    let dir = std::env::temp_dir().join(format!("netgraph-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let start = 1_800_000_000; // on an hour boundary
    for second in 0..600u64 {
        let report = IntervalReport::of(
            UNIX_EPOCH + Duration::from_secs(start + second),
            UNIX_EPOCH + Duration::from_secs(start + second + 1),
            vec![
                row("firefox", Some(1000), "wlan0", 1000, 9000),
                row("sshd", Some(0), "eth0", 200, 100),
                row("unknown UDP", None, "eth0", 5, 5),
            ],
        );
        store.write(&report).unwrap();
    }
    let port = serve_store(&store, Some("s3cret"));
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let (from, to) = (start, start + 600);

    let (status, _) = get(&format!("{base}/totals?from={from}&to={to}"), None);
    assert_eq!(status, 401, "a configured token is required");
    let token = Some("s3cret");
    let (status, totals) = get(&format!("{base}/totals?from={from}&to={to}"), token);
    assert_eq!(status, 200, "{totals}");
    let rows = totals["rows"].as_array().unwrap();
    assert_eq!(rows[0]["key"], "firefox");
    assert_eq!(rows[0]["sent_bytes"], 600_000);
    assert_eq!(rows[0]["recv_bytes"], 5_400_000);
    assert_eq!(rows[2]["key"], "unknown UDP");
    assert_eq!(rows[2]["attributed"], false);
    // When history begins, for the page (nothing drawn before) and projections.
    assert_eq!(totals["recorded_since"], start);
    // A quarter of an hour of a store ten minutes old: one-second points, none before.
    let (_, history) = get(
        &format!("{base}/history?from={}&to={to}&step=3", to - 900),
        token,
    );
    assert_eq!(history["resolution"], 1, "{history}");
    assert_eq!(history["recorded_since"], start);
    let first = history["points"][0]["t"].as_u64().unwrap();
    assert!(first >= start, "a point before recording began: {history}");

    let (_, users) = get(
        &format!("{base}/totals?from={from}&to={to}&group_by=user&top=2"),
        token,
    );
    let keys: Vec<&str> = users["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["1000", "0"]);
    let (_, interfaces) = get(
        &format!("{base}/totals?from={from}&to={to}&group_by=interface"),
        token,
    );
    assert_eq!(interfaces["rows"][1]["key"], "eth0");
    assert_eq!(interfaces["rows"][1]["sent_bytes"], 600 * 205);
    let (_, containers) = get(
        &format!("{base}/totals?from={from}&to={to}&group_by=cgroup&top=1"),
        token,
    );
    assert_eq!(containers["rows"][0]["key"], "/firefox.service");

    let (_, history) = get(
        &format!("{base}/history?from={from}&to={to}&step=60&top=2"),
        token,
    );
    assert_eq!(history["step"], 60);
    assert_eq!(history["keys"], serde_json::json!(["firefox", "sshd"]));
    let points = history["points"].as_array().unwrap();
    assert_eq!(points.len(), 10);
    assert!(points
        .iter()
        .all(|p| p["sent"][0] == 60_000 && p["recv"][1] == 6_000));

    let (_, only) = get(
        &format!("{base}/history?from={from}&to={to}&step=600&group_by=interface&process=sshd"),
        token,
    );
    assert_eq!(only["keys"], serde_json::json!(["eth0"]));
    assert_eq!(only["points"][0]["sent"][0], 120_000);

    let (status, error) = get(&format!("{base}/totals?from={to}&to={from}"), token);
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("must be before"));
    let (status, error) = get(&format!("{base}/totals?group_by=planet"), token);
    assert_eq!(status, 400);
    assert!(
        error["error"].is_string(),
        "malformed parameters answer JSON: {error}"
    );
    let (status, error) = get(&format!("{base}/totals?from=yesterday"), token);
    assert_eq!(status, 400);
    assert!(error["error"].is_string(), "{error}");
    let (status, error) = get(&format!("{base}/totals?token=s3cre"), None);
    assert_eq!(status, 401);
    assert!(error["error"].is_string(), "{error}");
    let (status, _) = get(&format!("{base}/totals?token=s3cret"), None);
    assert_eq!(status, 200, "the token in the query");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first hour of a new user: a store ten minutes old, shown in chromium. The
/// default range (1 hour) and 15 minutes are drawn from fine points, with no bucket
/// before recording began; nothing is projected from ten minutes; on a phone's screen
/// the page does not scroll sideways and no chart's labels overlap.
#[test]
#[ignore = "needs Debian chromium and node; scripts/test.sh installs them"]
fn the_first_hour_in_chromium() {
    let dir = std::env::temp_dir().join(format!("netgraph-first-hour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir, Retention::default()).unwrap();
    let now = UNIX_EPOCH.elapsed().unwrap().as_secs();
    let start = now - 600;
    for second in start..now {
        let report = IntervalReport::of(
            UNIX_EPOCH + Duration::from_secs(second),
            UNIX_EPOCH + Duration::from_secs(second + 1),
            vec![
                {
                    // A lossy, distant backup server: TCP health to show.
                    let mut backup = row("backup-agent", Some(1000), "eth0", 3_000_000, 20_000);
                    backup.last.sent.packets = 2000;
                    backup.last.tcp.retransmits = 10;
                    backup.last.tcp.add_rtt(42_000, 3_020_000);
                    backup
                },
                {
                    // A firewall drops some of its packets: drops to show.
                    let mut firefox = row("firefox", Some(1000), "wlan0", 40_000, 900_000);
                    firefox
                        .last
                        .drops
                        .add(netgraph::traffic::DropKind::Netfilter, 3, 3 * 1500);
                    firefox
                },
            ],
        );
        store.write(&report).unwrap();
    }
    let port = serve_store(&store, None);
    let screenshot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../web-first-hour-phone.png");
    let seen = lab::browser::first_hour(&format!("http://127.0.0.1:{port}/"), &screenshot);
    report(&format!(
        "first hour in chromium: 1 h drawn at {} s per point from {}, 15 min at {} s from {} (recording began {start}); projections {}; phone: page {} px wide, charts {}, overlapping labels {}",
        seen["hour"]["step"],
        seen["hour"]["first"],
        seen["quarter"]["step"],
        seen["quarter"]["first"],
        seen["usage"]["projections"],
        seen["phone"]["scrollWidth"],
        seen["phone"]["svgWidths"],
        seen["phone"]["overlaps"],
    ));
    for (range, longest_step) in [("hour", 60), ("quarter", 15)] {
        let step = seen[range]["step"].as_u64().unwrap();
        let first = seen[range]["first"].as_u64().unwrap();
        assert!(
            (1..=longest_step).contains(&step),
            "{range}: {step} s per point"
        );
        // The first bucket drawn holds the first sample: none lies before it.
        assert!(
            first <= start && start < first + step,
            "{range}: first bucket {first}, recording began {start}: {seen}"
        );
    }
    assert_eq!(seen["usage"]["projections"], 0, "{seen}");
    assert_eq!(seen["usage"]["monthProjection"], 0, "{seen}");
    assert!(
        seen["usage"]["text"].as_str().unwrap().contains("so far"),
        "{seen}"
    );
    assert_eq!(seen["wide"]["overlaps"], serde_json::json!([]), "{seen}");
    let health_of = |name: &str| {
        seen["health"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["health"].clone())
    };
    assert_eq!(
        health_of("backup-agent"),
        Some(serde_json::json!("42.0 ms · 0.50 % retr")),
        "{seen}"
    );
    // Three packets dropped each second by a firewall, over the range shown.
    let firefox = health_of("firefox").unwrap();
    let dropped: u64 = firefox
        .as_str()
        .and_then(|text| text.strip_suffix(" dropped (netfilter)"))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("firefox's health: {firefox}"));
    assert!(
        dropped % 3 == 0 && (3..=1800).contains(&dropped),
        "{dropped} dropped"
    );
    assert!(
        seen["phone"]["scrollWidth"].as_u64().unwrap() <= 390,
        "the page scrolls sideways on a phone: {seen}"
    );
    assert_eq!(seen["phone"]["overlaps"], serde_json::json!([]), "{seen}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A base64 token, with the `/`, `+` and `=` that must survive percent-encoding.
const BASE64_TOKEN: &str = "Zm9v/YmFy+YmF6==";

/// The page's configuration, and `more` (other sections).
fn web_config(lab: &Lab, port: u16, more: &str) -> String {
    let path = lab.path("web.toml");
    std::fs::write(
        &path,
        format!("[web]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{BASE64_TOKEN}\"\n{more}"),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

/// Real traffic, then the page in headless chromium: the process is listed with the
/// totals netgraph counted, the chart draws, a click shows the process's history.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn the_page_shows_real_traffic_in_chromium() {
    require_root();
    let mut lab = Lab::new();
    let port = free_port();
    let metrics_port = free_port();
    let config = web_config(
        &lab,
        port,
        &format!(
            "[prometheus]\nlisten = \"127.0.0.1:{metrics_port}\"\ntoken = \"{BASE64_TOKEN}\"\n"
        ),
    );
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:8101")]);
    let netgraph = lab.netgraph_on_host(&["--engine", "ebpf", "--config", &config]);
    lab.exec(&lab.a, "ng-web", &["tcp-send", &format!("{B4}:8101"), "2s"]);
    std::thread::sleep(Duration::from_millis(2500));

    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../web-page.png");
    // The token as a browser sends it: percent-encoded.
    let url = format!(
        "http://127.0.0.1:{port}/?token={}",
        BASE64_TOKEN
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    );
    let seen = lab::browser::show(&url, "process", "ng-web", &screenshot);
    let (_, reasons) = get(
        &format!("http://127.0.0.1:{port}/api/v1/totals?from=-3600&group_by=reason&top=20"),
        Some(BASE64_TOKEN),
    );
    let (_, status) = get(
        &format!("http://127.0.0.1:{port}/api/v1/status"),
        Some(BASE64_TOKEN),
    );
    // /metrics asks for its token as the page does.
    let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let refused = lab::run(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", &metrics_url],
    );
    assert_eq!(refused, "401", "/metrics without its token");
    let metrics = lab::run(
        "curl",
        &[
            "-sf",
            "-H",
            &format!("Authorization: Bearer {BASE64_TOKEN}"),
            &metrics_url,
        ],
    );
    let records = netgraph.stop();
    let sent = records.sum_all("ng-web", "sent_bytes_last");
    let recv = records.sum_all("ng-web", "recv_bytes_last");
    report(&format!(
        "web page in chromium: ng-web listed with {} sent (netgraph counted {sent}); chart series {}; screenshot {}",
        seen["sent"],
        seen["chartSeries"],
        screenshot.display()
    ));
    assert_eq!(seen["sent"], sent);
    assert_eq!(seen["recv"], recv);
    assert!(seen["chartSeries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "ng-web"));
    assert_eq!(seen["detailName"], "ng-web");
    assert_eq!(seen["detailSent"], sent);
    // A TCP sender: its round-trip time is drawn beside its history, per interface.
    assert!(
        !seen["detailRtt"].as_array().unwrap().is_empty(),
        "no RTT chart for ng-web: {seen}"
    );
    // The unattributed share by reason, as the API has it.
    let expected: Vec<(String, u64)> = reasons["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["key"] != "")
        .map(|r| {
            let bytes = r["sent_bytes"].as_u64().unwrap() + r["recv_bytes"].as_u64().unwrap();
            (r["key"].as_str().unwrap().to_string(), bytes)
        })
        .collect();
    let shown: Vec<(String, u64)> = seen["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_string(),
                r["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        !shown.is_empty(),
        "the page breaks the unattributed share down: {seen}"
    );
    // Each reason says in words why that traffic has no process.
    for reason in seen["reasons"].as_array().unwrap() {
        let why = reason["why"].as_str().unwrap_or("");
        assert!(
            why.split_whitespace().count() >= 4 && why != reason["reason"],
            "no words for {reason}"
        );
    }
    for (reason, bytes) in &shown {
        let api = expected.iter().find(|(r, _)| r == reason).map(|(_, b)| *b);
        assert!(
            api.is_some_and(|api| api >= *bytes),
            "{reason}: page {bytes}, API {api:?}"
        );
    }
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    // The README's picture of the page is this screenshot:
    // NETGRAPH_SCREENSHOT=docs/page.png cargo test --release --test web_lab -- --ignored
    if let Ok(keep) = std::env::var("NETGRAPH_SCREENSHOT") {
        std::fs::copy(&screenshot, keep).unwrap();
    }
    assert_engine_shown(&status, &seen, &metrics);
}

/// The engine and each optional feature, the same in /api/v1/status, on the page (its
/// name, and a line of what it cannot see for each degraded feature) and in Prometheus.
fn assert_engine_shown(status: &Value, seen: &Value, metrics: &str) {
    assert_eq!(status["engine"], "ebpf", "{status}");
    assert_eq!(seen["engine"], "eBPF", "{seen}");
    let features = status["features"].as_array().unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for name in [
        "owner_tracepoints",
        "socket_counts",
        "device_netns",
        "path_tracepoints",
        "interface_hooks",
    ] {
        assert!(names.contains(&name), "{name} missing from {status}");
    }
    let limits = seen["limits"].as_str().unwrap();
    for feature in features {
        let (name, state) = (
            feature["name"].as_str().unwrap(),
            feature["state"].as_str().unwrap(),
        );
        let loses = feature["loses"].as_str().unwrap();
        // What is lost is on the page exactly where something is.
        assert_eq!(
            limits.contains(loses) && !loses.is_empty(),
            !loses.is_empty(),
            "{name}: {limits}"
        );
        let line = format!(
            "netgraph_engine_feature{{engine=\"ebpf\",feature=\"{name}\",state=\"{state}\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} not in /metrics");
    }
    report(&format!(
        "engine on the page: {} ({} feature(s) degraded)",
        seen["engine"],
        features.iter().filter(|f| f["loses"] != "").count()
    ));
}

/// kill -9 while writing, three times, then a clean restart: the store is sound and
/// keeps what was written before.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn kill_nine_and_restarts_keep_a_sound_store() {
    require_root();
    let mut lab = Lab::new();
    let state = lab.path("store-state");
    let config = lab.path("store.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[web]\nenabled = false\n",
            state.display()
        ),
    )
    .unwrap();
    let config = config.to_string_lossy().into_owned();
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:8201"), "recv"]);
    let mut counted = 0;
    for round in 0..4 {
        let netgraph = lab.netgraph_on_host(&["--engine", "ebpf", "--config", &config]);
        lab.exec(
            &lab.a,
            "ng-store",
            &["udp-flood", &format!("{B4}:8201"), "2", "200", "connected"],
        );
        std::thread::sleep(Duration::from_millis(1200 + 170 * round));
        let records = if round < 3 {
            netgraph.kill()
        } else {
            netgraph.stop()
        };
        counted += records.sum_all("ng-store", "sent_bytes_last");
    }
    let store = Store::open(&state, Retention::default()).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.integrity_check().unwrap(), "ok");
    let now = netgraph::store::seconds(std::time::SystemTime::now());
    let (_, totals) = reader
        .totals(
            now - 600,
            now + 1,
            netgraph::store::GroupBy::Process,
            100,
            None,
        )
        .unwrap();
    let stored = totals
        .iter()
        .find(|t| t.key == "ng-store")
        .map_or(0, |t| t.sent_bytes);
    report(&format!(
        "store after 3 kill -9 and a restart: sound; {stored} of {counted} bytes counted by the runs are stored"
    ));
    // Each kill struck over a second after the traffic, once its intervals were stored.
    assert!(counted > 0);
    assert_eq!(stored, counted, "stored: {totals:?}");
}

/// A store file turned to garbage while netgraph was down: the next start moves it
/// aside (kept, named with the time), starts a fresh store, says so in one line and in
/// a metric, and the page's API answers with the new history.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_damaged_store_is_moved_aside_and_history_goes_on() {
    require_root();
    let mut lab = Lab::new();
    let state = lab.path("damaged-state");
    std::fs::create_dir_all(&state).unwrap();
    let garbage = b"not a database, a disk's worth of noise ".repeat(1000);
    std::fs::write(state.join("netgraph.sqlite"), &garbage).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let config = lab.path("damaged.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n[prometheus]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
            state.display()
        ),
    )
    .unwrap();
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:8202"), "recv"]);
    let netgraph =
        lab.netgraph_on_host(&["--engine", "ebpf", "--config", &config.to_string_lossy()]);
    lab.exec(
        &lab.a,
        "ng-afresh",
        &["udp-flood", &format!("{B4}:8202"), "1", "200", "connected"],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let (status, totals) = get(
        &format!("http://127.0.0.1:{port}/api/v1/totals?from=-600&group_by=process&top=50"),
        None,
    );
    let metrics = lab::run(
        "curl",
        &["-sf", &format!("http://127.0.0.1:{metrics_port}/metrics")],
    );
    let log = netgraph.log();
    let records = netgraph.stop();
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("netgraph.sqlite.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside once: {aside:?}");
    assert_eq!(std::fs::read(state.join(&aside[0])).unwrap(), garbage);
    assert!(log.contains("moved aside to"), "{log}");
    assert!(
        metrics.contains("netgraph_store_moved_aside_total 1"),
        "{metrics}"
    );
    assert_eq!(status, 200, "{totals}");
    let stored = totals["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "ng-afresh")
        .map_or(0, |r| r["sent_bytes"].as_u64().unwrap());
    let counted = records.sum_all("ng-afresh", "sent_bytes_last");
    report(&format!(
        "damaged store moved aside to {}; the new store has {stored} of {counted} bytes counted so far",
        aside[0]
    ));
    assert!(stored > 0 && stored <= counted, "{stored} of {counted}");
}

/// Peers and domains everywhere: two processes look their server up in the lab's DNS
/// (dnsmasq), one downloads from `files.lab.test`, one uploads to `backup.lab.test`.
/// Each one's bytes by peer name equal nftables' count, in netgraph's JSON lines, the
/// API (a process's peers, the domains of the host), the page in chromium (a click on
/// the process shows its peers and domains) and InfluxDB's `network_peer`.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn peers_and_domains_reach_the_api_the_page_and_influxdb() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("files_in", "input", "tcp sport 8301"),
        ("backup_out", "output", "tcp dport 8302"),
    ]);
    let _dns = lab::dns::LabDns::start(
        &lab,
        &[
            format!("--host-record=files.lab.test,{B4}"),
            format!("--host-record=backup.lab.test,{B6}"),
        ],
    );
    let influx = servers::Influx::start(&lab.path(""), servers::InfluxOptions::default());
    influx.query("CREATE DATABASE peers");
    let port = free_port();
    let config = lab.path("peers-web.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{BASE64_TOKEN}\"\n\
             [peers]\nenabled = true\n\
             [[influxdb]]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"peers\"\nflush_interval = \"500ms\"\n",
            influx.url
        ),
    )
    .unwrap();
    let b = lab.b.clone();
    lab.serve(&b, "ng-source", &["tcp-source", &format!("{B4}:8301"), "2"]);
    lab.serve(&b, "ng-sink6", &["tcp-sink", &format!("[{B6}]:8302")]);
    let netgraph =
        lab.netgraph_on_host(&["--engine", "ebpf", "--config", config.to_str().unwrap()]);
    lab.exec(
        &lab.a,
        "ng-files",
        &["tcp-recv", "files.lab.test:8301", "read"],
    );
    lab.exec(
        &lab.a,
        "ng-backup",
        &["tcp-send", "backup.lab.test:8302", "2s"],
    );
    std::thread::sleep(Duration::from_millis(2500));

    // The API: a process's peers over the range, and the host's domains.
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let token = Some(BASE64_TOKEN);
    let (status, files_peers) = get(
        &format!("{base}/totals?from=-600&group_by=peer&process=ng-files"),
        token,
    );
    assert_eq!(status, 200, "{files_peers}");
    let b4_row = files_peers["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == B4)
        .cloned()
        .unwrap_or_else(|| panic!("{files_peers}"));
    assert_eq!(b4_row["names"], "files.lab.test", "{b4_row}");
    assert!(
        b4_row["services"].as_str().unwrap().contains("8301/tcp"),
        "{b4_row}"
    );
    let (_, domains) = get(
        &format!("{base}/totals?from=-600&group_by=domain&top=50"),
        token,
    );
    let domain = |key: &str, field: &str| -> u64 {
        domains["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == key)
            .and_then(|r| r[field].as_u64())
            .unwrap_or(0)
    };
    // Who talked to a domain: the download, and its lookup (dnsmasq on the same address).
    let (_, talkers) = get(
        &format!("{base}/totals?from=-600&group_by=process&only_by=domain&only=backup.lab.test"),
        token,
    );
    assert_eq!(talkers["rows"][0]["key"], "ng-backup", "{talkers}");

    // The page: the domains view, and a click on the process shows its peers.
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../web-peers.png");
    let url = format!(
        "http://127.0.0.1:{port}/?token={}",
        BASE64_TOKEN
            .replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    );
    let by_domain = lab::browser::show(&url, "domain", "files.lab.test", &screenshot);
    let files_process = lab::browser::show(&url, "process", "ng-files", &screenshot);
    std::thread::sleep(Duration::from_millis(1500));
    let records = netgraph.stop();

    let json_peer = |name: &str, peer_name: &str, field: &str| -> u64 {
        records
            .of_type("peer")
            .filter(|l| l["name"] == name && l["peer_name"] == peer_name)
            .map(|l| l[field].as_u64().unwrap())
            .sum()
    };
    let files_json = json_peer("ng-files", "files.lab.test", "recv_bytes_last");
    let backup_json = json_peer("ng-backup", "backup.lab.test", "sent_bytes_last");
    let files_truth = lab.truth_bytes("files_in");
    let backup_truth = lab.truth_bytes("backup_out");
    let influx_sum = |name: &str, peer_name: &str, field: &str| -> u64 {
        influx.scalar(
            "peers",
            &format!(
                "SELECT sum({field}) FROM network_peer WHERE \"name\" = '{name}' AND peer_name = '{peer_name}'"
            ),
        ) as u64
    };
    let files_influx = influx_sum("ng-files", "files.lab.test", "recv_bytes_last");
    let backup_influx = influx_sum("ng-backup", "backup.lab.test", "sent_bytes_last");
    let page_peer = files_process["detailPeers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == B4)
        .cloned()
        .unwrap_or_else(|| panic!("{files_process}"));
    report(&format!(
        "peers everywhere: ng-files from files.lab.test {files_json} bytes in JSON, {} by the API, {} on the page, {files_influx} in InfluxDB, {files_truth} by nftables; ng-backup to backup.lab.test {backup_json} / {} / {backup_influx} / {backup_truth}",
        b4_row["recv_bytes"], page_peer["recv"], domain("backup.lab.test", "sent_bytes")
    ));
    for (what, counted, truth) in [
        ("files.lab.test, JSON", files_json, files_truth),
        ("backup.lab.test, JSON", backup_json, backup_truth),
    ] {
        let share = share(counted, truth);
        assert!(
            (0.99..=1.01).contains(&share),
            "{what}: {counted} of {truth}"
        );
    }
    // The download's peer row holds the lookup too (dnsmasq is the same address):
    // the API and the page show the process's whole traffic with that address.
    let files_all = records
        .of_type("peer")
        .filter(|l| l["name"] == "ng-files" && l["peer_address"] == B4)
        .map(|l| l["recv_bytes_last"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(b4_row["recv_bytes"], files_all);
    assert_eq!(page_peer["recv"], files_all);
    assert_eq!(page_peer["names"], "files.lab.test");
    assert!(files_process["detailDomains"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d == "files.lab.test"));
    assert_eq!(by_domain["detailName"], "domain files.lab.test");
    assert_eq!(domain("backup.lab.test", "sent_bytes"), backup_json);
    assert_eq!(files_influx, files_json);
    assert_eq!(backup_influx, backup_json);
}

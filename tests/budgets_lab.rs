//! Budgets with real traffic (needs root): a daily quota that fires one webhook POST
//! (through a receiver that refuses the first attempts), not again after a restart,
//! with its Prometheus gauge past 1.0; a rate rule that fires and clears; `netgraph
//! report` from the running daemon equal to its own JSON lines; the page's usage view in
//! chromium with the API's figures; first contacts noticed once per new peer after the
//! learning period, also across a restart.

mod lab;
mod servers;

use lab::webhook::Webhook;
use lab::*;
use serde_json::Value;
use servers::free_port;
use std::time::{Duration, Instant};

/// The value of `metric{rule="RULE"}` on netgraph's Prometheus endpoint.
fn gauge(port: u16, metric: &str, rule: &str) -> Option<f64> {
    let text = ureq::get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let prefix = format!("{metric}{{rule=\"{rule}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
}

fn wait_for_gauge(port: u16, metric: &str, rule: &str, test: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let value = gauge(port, metric, rule);
        if let Some(value) = value.filter(|v| test(*v)) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{metric}{{rule=\"{rule}\"}} stayed at {value:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until Prometheus has NetgraphAlertFiring firing for `rule`.
fn wait_for_prometheus_alert(prometheus: &servers::Prometheus, rule: &str) {
    let query = format!(
        "ALERTS{{alertname=\"NetgraphAlertFiring\", alertstate=\"firing\", rule=\"{rule}\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = prometheus.query(&query);
        if answer["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            report(&format!("Prometheus fires NetgraphAlertFiring for {rule}"));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never fired for {rule}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `netgraph report` as a user runs it, its output as JSON.
fn netgraph_report(config: &str, args: &[&str]) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_netgraph"))
        .args(["report", "-c", config])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn api_usage(port: u16) -> Value {
    let text = ureq::get(&format!(
        "http://127.0.0.1:{port}/api/v1/usage?group_by=process"
    ))
    .call()
    .unwrap()
    .body_mut()
    .read_to_string()
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn write_config(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.path(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn today() -> String {
    // The lab's local time is netgraph's: both read TZ and /etc/localtime.
    chrono::Local::now().format("%Y-%m-%d").to_string()
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn quota_fires_once_across_a_restart_and_a_rate_fires_and_clears() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[
        ("quota_out", "output", "tcp dport 7101"),
        ("quota_in", "input", "tcp sport 7101"),
    ]);
    let b = lab.b.clone();
    // The far end of the link counts what the wire carried, both ways.
    lab.truth_in(
        &b,
        &[
            ("quota_arrived", "input", "tcp dport 7101"),
            ("quota_left", "output", "tcp sport 7101"),
        ],
    );
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:7101")]);
    lab.serve(&b, "ng-sink2", &["tcp-sink", &format!("{B4}:7102")]);
    // The first two attempts get 503: the notice must still arrive, once.
    let webhook = Webhook::start(2);
    let prometheus = free_port();
    let web = free_port();
    let state = lab.path("alert-state");
    let ran = lab.path("command-ran");
    let config = write_config(
        &lab,
        "alerts.toml",
        &format!(
            r#"state_directory = "{state}"
[prometheus]
listen = "127.0.0.1:{prometheus}"
[web]
listen = "127.0.0.1:{web}"
[alerts]
webhook = "{url}"
[[alerts.rule]]
name = "lab-daily"
process = "ng-quota"
limit = "5 MB"
per = "day"
[[alerts.rule]]
name = "lab-rate"
process = "ng-rate"
traffic = "sent"
rate = "1 MB/s"
held = "2s"
command = ["sh", "-c", "echo \"$NETGRAPH_RULE $NETGRAPH_STATE $(cat)\" >> {ran}"]
"#,
            state = state.display(),
            url = webhook.url,
            ran = ran.display()
        ),
    );
    let netgraph = lab.netgraph_ebpf(&["--config", &config]);
    assert_eq!(
        wait_for_gauge(prometheus, "netgraph_quota_used_ratio", "lab-daily", |_| {
            true
        }),
        0.0
    );
    // The shipped alerting rules, on a real Prometheus scraping netgraph.
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("grafana/prometheus/netgraph-alerts.yml");
    let scraper = servers::Prometheus::start_with_rules(
        &lab.path(""),
        &format!("127.0.0.1:{prometheus}"),
        Some(&rules),
    );

    // 6 MB in one go crosses 5 MB once.
    lab.exec(
        &lab.a,
        "ng-quota",
        &["tcp-send", &format!("{B4}:7101"), "6000000"],
    );
    let fired = webhook.wait_for("lab-daily", 1, Duration::from_secs(20));
    let notice = &fired[0];
    assert_eq!(notice["state"], "firing", "{notice}");
    assert_eq!(notice["kind"], "quota");
    assert_eq!(notice["scope"]["process"], "ng-quota");
    assert_eq!(notice["limit_bytes"], 5_000_000);
    assert_eq!(notice["period"]["per"], "day");
    assert_eq!(notice["period"]["label"], today());
    let used = notice["used_bytes"].as_u64().unwrap();
    let truth = lab.truth_bytes("quota_out") + lab.truth_bytes("quota_in");
    let wire = lab.truth_bytes_in(&b, "quota_arrived") + lab.truth_bytes_in(&b, "quota_left");
    assert_eq!(truth, wire, "both ends of the link agree");
    assert!(
        (5_000_000..=truth).contains(&used),
        "used {used} at firing, {truth} on the wire"
    );
    assert!(webhook.refused.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let ratio = wait_for_gauge(prometheus, "netgraph_quota_used_ratio", "lab-daily", |v| {
        v >= 1.0
    });
    report(&format!(
        "quota 5 MB/day: fired at {used} bytes ({truth} on the wire by the end), gauge {ratio:.3}, after two refused POSTs"
    ));
    assert_eq!(
        gauge(prometheus, "netgraph_alert_firing", "lab-daily"),
        Some(1.0)
    );
    wait_for_prometheus_alert(&scraper, "lab-daily");

    // A rate at full speed for 4 s (held 2 s) fires, then 2 s of silence clear it.
    lab.exec(
        &lab.a,
        "ng-rate",
        &["tcp-send", &format!("{B4}:7102"), "4s"],
    );
    let rate = webhook.wait_for("lab-rate", 2, Duration::from_secs(20));
    assert_eq!(rate[0]["state"], "firing", "{}", rate[0]);
    assert!(rate[0]["rate_bytes_per_second"].as_f64().unwrap() >= 1e6);
    assert_eq!(rate[0]["limit_bytes_per_second"], 1e6);
    assert_eq!(rate[0]["held_seconds"], 2.0);
    assert_eq!(rate[1]["state"], "cleared", "{}", rate[1]);
    // The rule's command ran for both, with the notice in its environment and input.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ran_lines = loop {
        let text = std::fs::read_to_string(&ran).unwrap_or_default();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<&str> = ran_lines.lines().collect();
    assert_eq!(lines.len(), 2, "{ran_lines}");
    assert!(lines[0].starts_with("lab-rate firing {"), "{ran_lines}");
    assert!(lines[1].starts_with("lab-rate cleared {"), "{ran_lines}");
    let document: Value = serde_json::from_str(lines[0].splitn(3, ' ').nth(2).unwrap()).unwrap();
    assert_eq!(document["rule"], "lab-rate");
    wait_for_gauge(prometheus, "netgraph_alert_firing", "lab-rate", |v| {
        v == 0.0
    });

    // More bytes in the same day: nothing more.
    lab.exec(
        &lab.a,
        "ng-quota",
        &["tcp-send", &format!("{B4}:7101"), "1000000"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let daemon = format!("http://127.0.0.1:{web}");
    let today_by_process = netgraph_report(&config, &["--today", "--json", "--url", &daemon]);
    let usage = api_usage(web);
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../usage-view.png");
    let seen = lab::browser::usage(&daemon, &screenshot);
    let records = netgraph.stop();
    // The log line of each notice.
    for needle in [
        "alert lab-daily: process ng-quota used",
        "alert lab-rate: process ng-rate sent at",
        "alert lab-rate cleared: process ng-rate sent below",
    ] {
        assert!(
            records.log.contains(needle),
            "no {needle:?} in the log:\n{}",
            records.log
        );
    }
    assert_eq!(
        webhook.of_rule("lab-daily").len(),
        1,
        "{:?}",
        webhook.received()
    );

    // The report from the running daemon: the bytes of netgraph's own JSON lines.
    let counted = records.sum_all("ng-quota", "sent_bytes_last")
        + records.sum_all("ng-quota", "recv_bytes_last");
    let reported = today_by_process
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "ng-quota")
        .unwrap_or_else(|| panic!("no ng-quota in {today_by_process}"));
    assert_eq!(reported["total_bytes"], counted, "{reported}");
    let wire = lab.truth_bytes_in(&b, "quota_arrived") + lab.truth_bytes_in(&b, "quota_left");
    assert_eq!(
        counted, wire,
        "ng-quota's bytes as the far end counted them"
    );
    report(&format!(
        "netgraph report --today from the daemon: ng-quota {counted} bytes, as its JSON lines counted"
    ));

    // The usage view in chromium: today's bar of ng-quota and the quota's figures, as
    // the API has them.
    let keys: Vec<&str> = usage["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    let today_bar = usage["daily"].as_array().unwrap().last().unwrap();
    assert_eq!(today_bar["label"], today());
    let index = keys.iter().position(|k| *k == "ng-quota").unwrap();
    let api_bytes =
        today_bar["sent"][index].as_u64().unwrap() + today_bar["recv"][index].as_u64().unwrap();
    assert_eq!(api_bytes, counted, "the API's day of ng-quota");
    let shown = |chart: &str, period: &Value| -> Option<u64> {
        seen[chart].as_array().unwrap().iter().find_map(|s| {
            (s["key"] == "ng-quota" && s["period"] == *period).then(|| s["bytes"].as_u64().unwrap())
        })
    };
    assert_eq!(
        shown("daily", &today_bar["label"]),
        Some(api_bytes),
        "{seen}"
    );
    let month_bar = usage["monthly"].as_array().unwrap().last().unwrap();
    let month_bytes =
        month_bar["sent"][index].as_u64().unwrap() + month_bar["recv"][index].as_u64().unwrap();
    assert_eq!(
        shown("monthly", &month_bar["label"]),
        Some(month_bytes),
        "{seen}"
    );
    assert_eq!(usage["daily"].as_array().unwrap().len(), 31);
    assert_eq!(usage["monthly"].as_array().unwrap().len(), 12);
    let quota = seen["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["rule"] == "lab-daily")
        .unwrap_or_else(|| panic!("lab-daily not listed: {seen}"));
    let api_quota = usage["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["rule"] == "lab-daily")
        .unwrap();
    assert_eq!(quota["used"].as_f64(), api_quota["used"].as_f64());
    assert_eq!(quota["used"].as_f64(), Some(counted as f64));
    assert_eq!(quota["limit"].as_f64(), Some(5_000_000.0));
    assert_eq!(quota["firing"], true);
    report(&format!(
        "usage view in chromium: today's ng-quota bar {api_bytes} bytes, quota lab-daily {} of {} shown; screenshot {}",
        quota["used"],
        quota["limit"],
        screenshot.display()
    ));

    // Restarted on the same store: the day's bytes are read back, the alert is not sent again.
    let restarted = lab.netgraph_ebpf(&["--config", &config]);
    let ratio = wait_for_gauge(prometheus, "netgraph_quota_used_ratio", "lab-daily", |v| {
        v >= 1.0
    });
    assert!(
        ratio >= 1.4,
        "the day's 7 MB read back from the store: {ratio}"
    );
    assert_eq!(
        gauge(prometheus, "netgraph_alert_firing", "lab-daily"),
        Some(1.0)
    );
    lab.exec(
        &lab.a,
        "ng-quota",
        &["tcp-send", &format!("{B4}:7101"), "1000000"],
    );
    // SIGHUP with one more rule: it starts, the fired one is not sent again, and the
    // reloaded quota counts the day from the store.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}[[alerts.rule]]\nname = \"lab-added\"\nprocess = \"ng-quota\"\nlimit = \"1 GB\"\nper = \"month\"\n"),
    )
    .unwrap();
    restarted.signal(libc::SIGHUP);
    restarted.wait_for_log("configuration reloaded", Duration::from_secs(10));
    let added = wait_for_gauge(prometheus, "netgraph_quota_used_ratio", "lab-added", |v| {
        v > 0.0
    });
    assert!(
        (0.007..0.01).contains(&added),
        "the month's 8 MB of 1 GB: {added}"
    );
    std::thread::sleep(Duration::from_secs(2));
    restarted.stop();
    let daily: Vec<Value> = webhook.of_rule("lab-daily");
    assert_eq!(
        daily.len(),
        1,
        "sent again after a restart or a reload: {daily:?}"
    );
    assert_eq!(webhook.of_rule("lab-rate").len(), 2);
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn first_contacts_after_the_learning_period() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:7103")]);
    lab.serve(&b, "ng-sink6", &["tcp-sink", &format!("[{B6}]:7104")]);
    let webhook = Webhook::start(0);
    let state = lab.path("contact-state");
    let config = write_config(
        &lab,
        "contacts.toml",
        &format!(
            r#"state_directory = "{state}"
[peers]
enabled = true
[[alerts.rule]]
name = "new-peers"
process = "ng-contact"
first_contact = "peer"
learning = "6s"
webhook = "{url}"
"#,
            state = state.display(),
            url = webhook.url
        ),
    );
    let started = Instant::now();
    let netgraph = lab.netgraph_ebpf(&["--config", &config]);
    let to_b4 = format!("{B4}:7103");
    let to_b6 = format!("[{B6}]:7104");
    // Learnt: B4, while learning.
    lab.exec(&lab.a, "ng-contact", &["tcp-send", &to_b4, "200000"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the lab was too slow to talk within the learning period"
    );
    std::thread::sleep(
        Duration::from_secs(6).saturating_sub(started.elapsed()) + Duration::from_secs(1),
    );
    // After learning: B4 again is known, B6 is new (twice: one notice); another process
    // is out of the rule's scope.
    lab.exec(&lab.a, "ng-contact", &["tcp-send", &to_b4, "200000"]);
    lab.exec(&lab.a, "ng-contact", &["tcp-send", &to_b6, "200000"]);
    lab.exec(&lab.a, "ng-contact", &["tcp-send", &to_b6, "200000"]);
    lab.exec(&lab.a, "ng-other", &["tcp-send", &to_b6, "200000"]);
    let notices = webhook.wait_for("new-peers", 1, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    netgraph.stop();
    let notices_now = webhook.of_rule("new-peers");
    assert_eq!(notices_now.len(), 1, "{notices_now:?}");
    let notice = &notices[0];
    assert_eq!(notice["kind"], "first_contact");
    assert_eq!(notice["process"], "ng-contact");
    assert_eq!(notice["contact"], B6);
    assert_eq!(notice["peer_address"], B6);
    assert_eq!(notice["service"], "7104/tcp");
    report(&format!("first contact: {}", notice["message"]));

    // Restarted: the contacts are remembered, the learning period is over.
    let restarted = lab.netgraph_ebpf(&["--config", &config]);
    lab.exec(&lab.a, "ng-contact", &["tcp-send", &to_b6, "200000"]);
    lab.exec(&lab.a, "ng-contact", &["tcp-send", &to_b4, "200000"]);
    std::thread::sleep(Duration::from_secs(3));
    restarted.stop();
    assert_eq!(
        webhook.of_rule("new-peers").len(),
        1,
        "{:?}",
        webhook.received()
    );
}

//! The Grafana dashboards: their structure, and every InfluxQL and PromQL panel query
//! executed against real servers after real traffic (Grafana itself cannot be installed
//! here). Flux has no engine here: its panels are checked for the original's queries.

mod lab;
mod servers;

use lab::*;
use serde_json::Value;
use servers::*;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

fn dashboard(name: &str) -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("grafana/dashboards/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn panels(board: &Value) -> &Vec<Value> {
    board["panels"].as_array().unwrap()
}

/// (panel title, query text) of every panel target that queries the data source.
fn queries(board: &Value, key: &str) -> Vec<(String, String)> {
    panels(board)
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(move |t| {
                    t[key]
                        .as_str()
                        .map(|q| (p["title"].as_str().unwrap().to_string(), q.to_string()))
                })
        })
        .collect()
}

const TITLES: [&str; 15] = [
    "Bytes sent per process",
    "Bytes received per process",
    "Hourly totals (sent, received, total)",
    "Top processes",
    "Traffic per interface",
    "Unattributed share",
    "Packet statistics (capture engine)",
    "Bytes sent per container",
    "Bytes sent per pod",
    "Top destinations (peers)",
    "Usage this month (per process)",
    "TCP retransmissions per process",
    "TCP round-trip time per process",
    "Failed TCP connects per process",
    "Packets dropped per process",
];

/// Panels of the PromQL dashboard alone, after the shared ones.
const PROMQL_TITLES: [&str; 1] = ["Quota use (alert rules)"];

#[test]
fn dashboards_are_well_formed() {
    let mut uids = HashSet::new();
    for (name, datasource_type) in [
        ("netgraph-influxql", "influxdb"),
        ("netgraph-flux", "influxdb"),
        ("netgraph-promql", "prometheus"),
    ] {
        let board = dashboard(name);
        assert_eq!(board["uid"], name);
        assert!(uids.insert(board["uid"].as_str().unwrap().to_string()));
        let variables = board["templating"]["list"].as_array().unwrap();
        let variable = |n: &str| variables.iter().find(|v| v["name"] == n);
        let picker = variable("datasource").expect("a data source variable");
        assert_eq!(picker["type"], "datasource");
        assert_eq!(picker["query"], datasource_type);
        for name in ["host", "container", "pod", "namespace"] {
            let found = variable(name).unwrap_or_else(|| panic!("a {name} variable"));
            assert_eq!(found["datasource"]["uid"], "${datasource}");
        }
        let titles: Vec<&str> = panels(&board)
            .iter()
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        let mut expected = TITLES.to_vec();
        if name == "netgraph-promql" {
            expected.extend(PROMQL_TITLES);
        }
        assert_eq!(titles, expected, "{name}");
        let usage = panels(&board)
            .iter()
            .find(|p| p["title"] == "Usage this month (per process)")
            .unwrap();
        assert_eq!(usage["timeFrom"], "now/M", "{name}: the month so far");
        let mut ids = HashSet::new();
        for panel in panels(&board) {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: duplicate panel id"
            );
            let grid = &panel["gridPos"];
            assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
            assert_eq!(panel["datasource"]["type"], datasource_type);
            assert_eq!(panel["datasource"]["uid"], "${datasource}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(
                !targets.is_empty(),
                "{name}: {} has no query",
                panel["title"]
            );
            for target in targets {
                let source = &target["datasource"];
                let expression = source["uid"] == "__expr__";
                assert!(expression || source["uid"] == "${datasource}");
                assert!(target["refId"].is_string());
            }
        }
    }
    let provisioning = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/provisioning");
    let providers = std::fs::read_to_string(provisioning.join("dashboards/netgraph.yaml")).unwrap();
    assert!(
        providers.contains("apiVersion: 1")
            && providers.contains("path: /var/lib/grafana/dashboards/netgraph")
    );
    let sources = std::fs::read_to_string(provisioning.join("datasources/netgraph.yaml")).unwrap();
    for needle in ["type: influxdb", "version: Flux", "type: prometheus"] {
        assert!(sources.contains(needle), "datasources lack {needle}");
    }
}

/// The original README's four Flux queries, step by step after `range`.
const SEED_FLUX: [&[&str]; 4] = [
    &[
        r#"filter(fn: (r) => (r._measurement == "network_data" and (r._field == "sent_bytes_last" or r._field == "recv_bytes_last")))"#,
        r#"keep(columns: ["_time","_value", "_field"])"#,
        "aggregateWindow(every: 1h, fn: sum, createEmpty: true)",
        r#"group(columns: ["_time","_field"])"#,
        r#"pivot(rowKey:["_time"], columnKey: ["_field"], valueColumn: "_value")"#,
        "group(columns: [])",
        "map(fn: (r) => ({r with total_sum: (r.sent_bytes_last + r.recv_bytes_last)}))",
    ],
    &[
        r#"filter(fn: (r) => (r._measurement == "packet_stats"))"#,
        "aggregateWindow(every: 1h, fn: sum, createEmpty: true)",
    ],
    &[
        r#"filter(fn: (r) => (r._measurement == "network_data" and (r._field == "recv_bytes_last")))"#,
        r#"keep(columns: ["_time","_value", "name"])"#,
        "aggregateWindow(every: 1h, fn: sum, createEmpty: true)",
    ],
    &[
        r#"filter(fn: (r) => (r._measurement == "network_data" and (r._field == "sent_bytes_last")))"#,
        r#"keep(columns: ["_time","_value", "name"])"#,
        "aggregateWindow(every: 1h, fn: sum, createEmpty: true)",
    ],
];

#[test]
fn the_flux_dashboard_carries_the_original_queries() {
    let board = dashboard("netgraph-flux");
    let texts: Vec<Vec<String>> = queries(&board, "query")
        .into_iter()
        .map(|(_, q)| {
            q.lines()
                .map(|l| l.trim().trim_start_matches("|>").trim().to_string())
                .collect()
        })
        .collect();
    for seed in SEED_FLUX {
        let found = texts.iter().any(|steps| {
            steps[0].starts_with("from(bucket:")
                && steps[1] == "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
                && steps[2].contains("r.hostname")
                && steps[3..] == seed.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]
        });
        assert!(found, "no panel runs the original query {seed:?}");
    }
    for (title, query) in queries(&board, "query") {
        let opened = query.matches('(').count();
        assert_eq!(
            opened,
            query.matches(')').count(),
            "{title}: unbalanced parentheses"
        );
        assert_eq!(
            query.matches('[').count(),
            query.matches(']').count(),
            "{title}"
        );
        assert_eq!(
            query.matches('{').count(),
            query.matches('}').count(),
            "{title}"
        );
    }
}

/// The container, pod and namespace variables as Grafana expands "All".
fn all_workloads(query: &str) -> String {
    query
        .replace("$container", ".*")
        .replace("$pod", ".*")
        .replace("$namespace", ".*")
}

/// Grafana's macros, as it would expand them for "the last hour".
fn influxql(query: &str, host: &str) -> String {
    all_workloads(query)
        .replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1s")
        .replace("$host", host)
}

fn promql(query: &str, host: &str) -> String {
    all_workloads(query)
        .replace("$__rate_interval", "1m")
        .replace("$__range", "10m")
        .replace("$host", host)
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0.0)
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn every_panel_query_runs_against_real_servers() {
    require_root();
    let mut lab = Lab::new();
    let (_, _, host_address, b_address) = lab.host_link();
    let mut podman = lab::podman::Podman::start(&lab.path(""), &lab.b.clone());
    let influx = Influx::start(&lab.path(""), InfluxOptions::default());
    influx.query("CREATE DATABASE netgraph");
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let prometheus = Prometheus::start(&lab.path(""), &target);
    let vm = VictoriaMetrics::start_scraping(&lab.path(""), Some(&target));
    let config = lab.path("dash.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"dash-host\"\nstate_directory = \"{}\"\n[prometheus]\nlisten = \"{target}\"\npeers = 50\n\
             [peers]\nenabled = true\n\
             [[influxdb]]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"netgraph\"\nflush_interval = \"500ms\"\n\
             [containers]\ndocker_api = [{:?}]\n\
             [[alerts.rule]]\nname = \"dash-quota\"\nprocess = \"ng-dash\"\nlimit = \"1 GB\"\nper = \"day\"\n",
            lab.path("state").display(),
            influx.url,
            podman.socket.display().to_string()
        ),
    )
    .unwrap();
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:7901"), "recv"]);
    lab.serve(
        &b,
        "ng-sink",
        &["udp-sink", &format!("{b_address}:7902"), "recv"],
    );
    let netgraph =
        lab.netgraph_on_host(&["--engine", "ebpf", "--config", &config.to_string_lossy()]);
    // Both scrapers must see the counters grow, not be born at their final value.
    for (server, base) in [
        ("Prometheus", &prometheus.url),
        ("VictoriaMetrics", &vm.url),
    ] {
        wait_until_up(server, base);
    }
    // A container of a Kubernetes pod, as the kubelet labels it.
    podman.run(
        &format!("ng-pod-{}", lab.b),
        &[
            "io.kubernetes.pod.name=shop-api-7d4b9",
            "io.kubernetes.pod.namespace=shop",
            "io.kubernetes.container.name=api",
        ],
        &[
            "/ng-cont",
            "udp-trickle",
            &format!("{b_address}:7902"),
            "3",
            "1000",
        ],
    );
    // Paced, so that the scrapers are not starved of CPU while it runs.
    lab.exec(
        &lab.a,
        "ng-dash",
        &["udp-trickle", &format!("{B4}:7901"), "4", "1000"],
    );
    // TCP with health to tell: a transfer (its RTT) and a connect that is refused.
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:7903")]);
    lab.exec(
        &lab.a,
        "ng-dash-tcp",
        &["tcp-send", &format!("{B4}:7903"), "200000"],
    );
    let refused = lab.spawn(
        &lab.a,
        "ng-dash-tcp",
        &["tcp-send", &format!("{B4}:7904"), "1"],
    );
    assert!(!refused.wait_with_output().unwrap().status.success());
    // Datagrams a firewall drops on their way out: drops to tell.
    apply_nft(
        &["ip", "netns", "exec", &lab.a],
        "table inet dashdrops {
           chain output {
             type filter hook output priority 0; policy accept;
             udp dport 7905 counter drop
           }
         }",
    );
    lab.exec(
        &lab.a,
        "ng-dash-drop",
        &["udp-trickle", &format!("{B4}:7905"), "1", "100"],
    );
    // The kernel answering pings has no socket: unattributed traffic for that panel.
    lab.ping_from_b(&host_address, 10, "0.1", 56);
    std::thread::sleep(Duration::from_secs(4));

    let board = dashboard("netgraph-promql");
    for (server, base) in [
        ("Prometheus", &prometheus.url),
        ("VictoriaMetrics", &vm.url),
    ] {
        let values: Value = ureq::get(&format!("{base}/api/v1/label/instance/values"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap();
        assert!(
            values["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == &Value::from(target.clone())),
            "{server}: host variable: {values}"
        );
        for (title, query) in queries(&board, "expr") {
            let query = promql(&query, &target);
            let answer = match server {
                "Prometheus" => prometheus.query(&query),
                _ => vm.query(&query),
            };
            let result = answer["data"]["result"].as_array().unwrap();
            assert!(
                !result.is_empty(),
                "{server}, {title}: no series for {query}"
            );
            match title.as_str() {
                "Bytes sent per process" | "Top processes" | "Usage this month (per process)" => {
                    assert!(
                        result
                            .iter()
                            .any(|s| s["metric"]["name"] == "ng-dash"
                                && number(&s["value"][1]) > 0.0),
                        "{server}, {title}: ng-dash missing in {answer}"
                    )
                }
                "Unattributed share" => {
                    let share = number(&result[0]["value"][1]);
                    assert!(share > 0.0 && share < 1.0, "{server}: share {share}");
                }
                "Bytes sent per container" => assert!(
                    result.iter().any(|s| s["metric"]["container"] == "api"),
                    "{server}, {title}: the pod's container missing in {answer}"
                ),
                "Bytes sent per pod" => assert!(
                    result.iter().any(|s| s["metric"]["pod"] == "shop-api-7d4b9"
                        && s["metric"]["namespace"] == "shop"),
                    "{server}, {title}: the pod missing in {answer}"
                ),
                "Top destinations (peers)" => assert!(
                    result
                        .iter()
                        .any(|s| s["metric"]["peer"] == B4 && number(&s["value"][1]) > 0.0),
                    "{server}, {title}: ng-dash's peer missing in {answer}"
                ),
                "Failed TCP connects per process" => assert!(
                    result.iter().any(|s| s["metric"]["name"] == "ng-dash-tcp"
                        && s["metric"]["kind"] == "refused"),
                    "{server}, {title}: the refused connect missing in {answer}"
                ),
                "Packets dropped per process" => assert!(
                    result.iter().any(|s| s["metric"]["name"] == "ng-dash-drop"
                        && s["metric"]["layer"] == "netfilter"),
                    "{server}, {title}: ng-dash-drop's drops missing in {answer}"
                ),
                "TCP round-trip time per process" => {
                    assert!(
                        result.iter().any(|s| s["metric"]["name"] == "ng-dash-tcp"
                            && number(&s["value"][1]) > 0.0),
                        "{server}, {title}: ng-dash-tcp's RTT missing in {answer}"
                    )
                }
                "Quota use (alert rules)" => assert!(
                    result.iter().any(|s| s["metric"]["rule"] == "dash-quota"
                        && number(&s["value"][1]) > 0.0
                        && number(&s["value"][1]) < 1.0),
                    "{server}, {title}: dash-quota missing in {answer}"
                ),
                _ => {}
            }
        }
        report(&format!(
            "dashboards: every PromQL panel query answers on {server}"
        ));
    }

    let records = netgraph.stop();
    let board = dashboard("netgraph-influxql");
    let host_values = influx.query_db("netgraph", &query_of_variable(&board, "host"));
    assert!(
        host_values.to_string().contains("dash-host"),
        "{host_values}"
    );
    for variable in ["container", "pod", "namespace"] {
        let query = influxql(&query_of_variable(&board, variable), "dash-host");
        let values = influx.query_db("netgraph", &query).to_string();
        let expected = match variable {
            "container" => "api",
            "pod" => "shop-api-7d4b9",
            _ => "shop",
        };
        assert!(values.contains(expected), "{variable}: {values}");
    }
    let sent = records.sum_all("ng-dash", "sent_bytes_last") as f64;
    let pod_sent: f64 = records
        .processes()
        .filter(|l| l["pod"] == "shop-api-7d4b9")
        .map(|l| number(&l["sent_bytes_last"]))
        .sum();
    assert!(pod_sent > 0.0, "the pod's container was not named");
    let all: f64 = records
        .processes()
        .map(|l| number(&l["sent_bytes_last"]) + number(&l["recv_bytes_last"]))
        .sum();
    for (title, query) in queries(&board, "query") {
        let query = influxql(&query, "dash-host");
        let answer = influx.query_db("netgraph", &query);
        let series = answer["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(!series.is_empty(), "{title}: no series for {query}");
        let column_sum = |series: &[Value], column: &str| -> f64 {
            series
                .iter()
                .map(|s| {
                    let index = s["columns"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .position(|c| c == column)
                        .unwrap();
                    s["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|row| number(&row[index]))
                        .sum::<f64>()
                })
                .sum()
        };
        match title.as_str() {
            "Bytes sent per process" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| s["tags"]["name"] == "ng-dash")
                    .cloned()
                    .collect();
                assert_eq!(column_sum(&ours, "sum"), sent, "{title}");
            }
            "Top processes" | "Usage this month (per process)" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| s["tags"]["name"] == "ng-dash")
                    .cloned()
                    .collect();
                assert_eq!(column_sum(&ours, "sent"), sent, "{title}");
            }
            "Hourly totals (sent, received, total)" => {
                assert_eq!(column_sum(&series, "total"), all, "{title}");
            }
            "Bytes sent per container" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| s["tags"]["container"] == "api")
                    .cloned()
                    .collect();
                assert_eq!(column_sum(&ours, "sum"), pod_sent, "{title}");
            }
            "Top destinations (peers)" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| s["tags"]["peer"] == B4)
                    .cloned()
                    .collect();
                let to_b4: f64 = records
                    .of_type("peer")
                    .filter(|l| l["peer_address"] == B4)
                    .map(|l| number(&l["sent_bytes_last"]))
                    .sum();
                assert!(to_b4 >= sent, "ng-dash's bytes go to {B4}");
                assert_eq!(column_sum(&ours, "sent"), to_b4, "{title}");
            }
            "Failed TCP connects per process" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| s["tags"]["name"] == "ng-dash-tcp")
                    .cloned()
                    .collect();
                assert_eq!(column_sum(&ours, "sum"), 1.0, "{title}");
            }
            "Packets dropped per process" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| s["tags"]["name"] == "ng-dash-drop")
                    .cloned()
                    .collect();
                let dropped: f64 = records
                    .rows("ng-dash-drop")
                    .map(|l| number(&l["drops_netfilter"]))
                    .sum();
                assert!(
                    dropped >= 50.0,
                    "ng-dash-drop's datagrams were dropped: {dropped}"
                );
                assert_eq!(column_sum(&ours, "sum"), dropped, "{title}");
            }
            "Bytes sent per pod" => {
                let ours: Vec<Value> = series
                    .iter()
                    .filter(|s| {
                        s["tags"]["pod"] == "shop-api-7d4b9" && s["tags"]["namespace"] == "shop"
                    })
                    .cloned()
                    .collect();
                assert_eq!(column_sum(&ours, "sum"), pod_sent, "{title}");
            }
            _ => {}
        }
    }
    report("dashboards: every InfluxQL panel query answers on InfluxDB 1.6 with the expected sums");
}

fn wait_until_up(server: &str, base: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer: Value = ureq::post(&format!("{base}/api/v1/query"))
            .send_form([("query", "up{job=\"netgraph\"}")])
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        if number(&answer["data"]["result"][0]["value"][1]) == 1.0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{server} never scraped netgraph"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn query_of_variable(board: &Value, name: &str) -> String {
    board["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap()["query"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The shipped Prometheus alerting rules: valid for promtool, and each fires (or not)
/// on test series as tests/prometheus/netgraph-alerts.test.yml expects.
#[test]
#[ignore = "needs promtool (Debian's prometheus); scripts/test.sh installs it"]
fn prometheus_alerting_rules_check_and_fire_on_test_series() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (args, dir) in [
        (
            vec!["check", "rules", "grafana/prometheus/netgraph-alerts.yml"],
            root.to_path_buf(),
        ),
        (
            vec!["test", "rules", "netgraph-alerts.test.yml"],
            root.join("tests/prometheus"),
        ),
    ] {
        let output = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(dir)
            .output()
            .expect("promtool runs (scripts/test.sh installs Debian's prometheus)");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "promtool {args:?}:\n{text}");
        assert!(text.contains("SUCCESS"), "{text}");
    }
}

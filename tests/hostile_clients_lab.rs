//! Slow and hostile clients of the page and /metrics (needs root for the lab): 2,000
//! partial requests held by an unprivileged user against a netgraph limited to 1,024
//! descriptors, while it writes to InfluxDB. No point may be lost, and a prompt client
//! is served within a second throughout.

mod lab;
mod servers;

use lab::*;
use servers::*;
use std::time::{Duration, Instant};

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn slow_clients_cost_no_point_and_no_prompt_client() {
    require_root();
    let mut lab = Lab::new();
    let influx = Influx::start(&lab.path(""), InfluxOptions::default());
    influx.query("CREATE DATABASE lab");
    let (web, metrics) = (free_port(), free_port());
    let config = lab.path("hostile.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[web]\nlisten = \"127.0.0.1:{web}\"\n\
             [prometheus]\nlisten = \"127.0.0.1:{metrics}\"\n\
             [[influxdb]]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"lab\"\n\
             flush_interval = \"1s\"\njitter = 0.0\nmax_retry_delay = \"2s\"\n",
            lab.path("hostile.state").display(),
            influx.url
        ),
    )
    .unwrap();
    // The descriptor limit the issue was found with (no LimitNOFILE).
    let netgraph = lab.netgraph_as(
        &["prlimit", "--nofile=1024:1024"],
        &["--engine", "ebpf", "--config", config.to_str().unwrap()],
    );
    netgraph.wait_for_log("netgraph running", Duration::from_secs(10));
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:7901"), "recv"]);
    let mut trickle = lab.spawn(
        &lab.a,
        "ng-trickle",
        &["udp-trickle", &format!("{B4}:7901"), "24", "300"],
    );

    let targets = format!("127.0.0.1:{web},127.0.0.1:{metrics}");
    let mut slow = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(lab.tool("ng-slow"))
        .args(["slow-clients", &targets, "2000", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(slow.stdout.as_mut().unwrap()),
        &mut first,
    )
    .unwrap();
    assert_eq!(first.trim(), "started", "the slow clients did not start");

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .into();
    let (mut probes, mut slowest) = (0, Duration::ZERO);
    let until = Instant::now() + Duration::from_secs(18);
    while Instant::now() < until {
        for url in [
            format!("http://127.0.0.1:{web}/"),
            format!("http://127.0.0.1:{metrics}/metrics"),
        ] {
            let asked = Instant::now();
            let mut response = agent
                .get(&url)
                .call()
                .unwrap_or_else(|e| panic!("{url} during the flood: {e}"));
            let body = response.body_mut().read_to_string().unwrap();
            assert!(!body.is_empty());
            slowest = slowest.max(asked.elapsed());
            probes += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let output = slow.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(trickle.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(3));
    let records = netgraph.stop();

    let expected = records.rows("ng-trickle").count() as f64;
    let points = influx.scalar(
        "lab",
        "SELECT count(sent_bytes_last) FROM network_data WHERE \"name\" = 'ng-trickle'",
    );
    report(&format!(
        "2,000 slow partial requests as nobody against a netgraph with 1,024 descriptors: \
         {points} of {expected} points reached InfluxDB; {probes} prompt requests, the slowest \
         answered in {} ms; slow clients {}",
        slowest.as_millis(),
        said.trim()
    ));
    assert!(expected > 15.0, "the trickle was not counted");
    assert_eq!(points, expected, "points lost on the way to InfluxDB");
    assert!(slowest < Duration::from_secs(1));
    assert!(
        !records.log.contains("Too many open files"),
        "{}",
        records.log
    );
}

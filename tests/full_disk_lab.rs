//! A full disk under the state directory (needs root: a small tmpfs). Points keep
//! flowing to InfluxDB from memory, the failure is logged once per sink rather than
//! every interval, its end is logged, and no temporary file is left behind.

mod lab;
mod servers;

use lab::*;
use servers::*;
use std::process::Command;
use std::time::Duration;

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_full_disk_loses_no_point_and_logs_once() {
    require_root();
    let mut lab = Lab::new();
    let state = lab.path("small-disk");
    std::fs::create_dir_all(&state).unwrap();
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=2m",
            "tmpfs",
            state.to_str().unwrap(),
        ],
    );
    let _mounted = Tmpfs(state.clone());
    let influx = Influx::start(&lab.path(""), InfluxOptions::default());
    influx.query("CREATE DATABASE lab");
    let config = lab.path("disk.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[web]\nenabled = false\n\
             [[influxdb]]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"lab\"\n\
             flush_interval = \"1s\"\njitter = 0.0\n",
            state.display(),
            influx.url
        ),
    )
    .unwrap();
    let netgraph =
        lab.netgraph_on_host(&["--engine", "ebpf", "--config", config.to_str().unwrap()]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:7951"), "recv"]);
    let mut trickle = lab.spawn(
        &lab.a,
        "ng-disk",
        &["udp-trickle", &format!("{B4}:7951"), "16", "300"],
    );
    std::thread::sleep(Duration::from_secs(2));
    // Fill the disk: dd stops with "No space left on device".
    let filler = state.join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
        ])
        .stderr(std::process::Stdio::null())
        .status();
    std::thread::sleep(Duration::from_secs(8));
    let full_log = netgraph.log();
    std::fs::remove_file(&filler).unwrap();
    assert!(trickle.wait().unwrap().success());
    std::thread::sleep(Duration::from_secs(3));
    let records = netgraph.stop();

    let failures = |sink: &str| {
        full_log
            .lines()
            .filter(|l| l.contains("write failed") && l.contains(&format!("sink=\"{sink}\"")))
            .count()
    };
    let expected = records.rows("ng-disk").count() as f64;
    let points = influx.scalar(
        "lab",
        "SELECT count(sent_bytes_last) FROM network_data WHERE \"name\" = 'ng-disk'",
    );
    let leftovers: Vec<String> = walk(&state)
        .into_iter()
        .filter(|p| p.ends_with(".tmp"))
        .collect();
    report(&format!(
        "full disk for 8 s under the state directory: {points} of {expected} points reached InfluxDB; \
         write failures logged: influxdb {}, store {}; temporary files left: {}",
        failures("influxdb"),
        failures("store"),
        leftovers.len()
    ));
    // A sink's appends can fit in its file's last, partly filled block for a while, so
    // which sink meets the full disk first varies; one of them must.
    assert!(
        failures("influxdb") + failures("store") >= 1,
        "the full disk was not noticed:\n{full_log}"
    );
    assert!(
        failures("influxdb") <= 1 && failures("store") <= 1,
        "{full_log}"
    );
    assert!(
        records.log.contains("writes succeed again"),
        "{}",
        records.log
    );
    assert_eq!(points, expected, "points lost to the full disk");
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

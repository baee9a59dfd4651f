//! netgraph as a cluster runs it: the DaemonSet manifest's privileges and mounts, and
//! netgraph's own image (packaging/container) run by podman with exactly those
//! privileges, counting a host process's traffic with the eBPF engine (needs root).

mod lab;
mod servers;

use lab::engines::{settle, EngineUnderTest};
use lab::podman::podman;
use lab::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const MANIFEST: &str = "packaging/kubernetes/netgraph-daemonset.yaml";

/// The manifest's documents, read by Debian's python3-yaml.
fn manifest() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MANIFEST);
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
        ])
        .arg(&path)
        .output()
        .expect("python3 runs (scripts/test.sh installs python3-yaml)");
    assert!(
        output.status.success(),
        "{MANIFEST}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn daemonset(documents: &[Value]) -> &Value {
    documents
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet")
}

/// The netgraph container's capabilities to add.
fn capabilities(pod: &Value) -> Vec<String> {
    pod["containers"][0]["securityContext"]["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_daemonset_has_exactly_the_privileges_and_mounts_it_needs() {
    let documents = manifest();
    let set = daemonset(&documents);
    assert_eq!(set["apiVersion"], "apps/v1");
    let template = &set["spec"]["template"];
    assert_eq!(
        set["spec"]["selector"]["matchLabels"],
        template["metadata"]["labels"]
    );
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9810");
    let pod = &template["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(
        security["privileged"], false,
        "capabilities, not privileged"
    );
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut granted = capabilities(pod);
    granted.sort();
    assert_eq!(
        granted,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "NET_ADMIN",
            "NET_RAW",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_NICE",
            "SYS_PTRACE"
        ]
    );
    // The unit's capabilities are all there (the DaemonSet adds SYS_ADMIN and SYS_NICE).
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/netgraph.service"),
    )
    .unwrap();
    let ambient = unit
        .lines()
        .find_map(|l| l.strip_prefix("AmbientCapabilities="))
        .unwrap();
    for capability in ambient.split_whitespace() {
        let name = capability.trim_start_matches("CAP_");
        assert!(granted.iter().any(|g| g == name), "{name} missing");
    }
    let mounts: Vec<(String, bool)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"] == true,
            )
        })
        .collect();
    let host_paths: Vec<(String, String)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["hostPath"].is_object())
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["hostPath"]["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (path, read_only) in [
        ("/sys/fs/cgroup", true),
        ("/sys/fs/bpf", false),
        ("/run/containerd", true),
        ("/var/lib/netgraph", false),
        ("/etc/netgraph", true),
    ] {
        assert!(
            mounts.contains(&(path.to_string(), read_only)),
            "{path} (read-only: {read_only}) in {mounts:?}"
        );
    }
    for path in [
        "/sys/fs/cgroup",
        "/sys/fs/bpf",
        "/run/containerd",
        "/var/lib/netgraph",
    ] {
        assert!(
            host_paths.iter().any(|(_, p)| p == path),
            "hostPath {path} in {host_paths:?}"
        );
    }
    // The page stays on the node's loopback; /metrics is for Prometheus.
    let config = documents.iter().find(|d| d["kind"] == "ConfigMap").unwrap()["data"]
        ["netgraph.toml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(config.contains("listen = \"127.0.0.1:9800\""), "{config}");
    assert!(config.contains("listen = \"0.0.0.0:9810\""), "{config}");
    let path = std::env::temp_dir().join(format!("netgraph-daemonset-{}.toml", std::process::id()));
    std::fs::write(&path, &config).unwrap();
    let checked = netgraph::config::Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(
        checked.is_ok(),
        "the ConfigMap's configuration: {:?}",
        checked.err()
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn its_image_counts_host_processes_with_the_ebpf_engine() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 7401")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:7401")]);
    let image = format!("localhost/netgraph:{}", lab.b);
    let built =
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container/build.sh"))
            .arg(&image)
            .env("NETGRAPH_BINARY", env!("CARGO_BIN_EXE_netgraph"))
            .output()
            .unwrap();
    assert!(
        built.status.success(),
        "build.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let size: u64 = podman(&["image", "inspect", "--format", "{{.Size}}", &image])
        .trim()
        .parse()
        .unwrap();

    // The DaemonSet's privileges, as podman flags.
    let documents = manifest();
    let pod = &daemonset(&documents)["spec"]["template"]["spec"];
    assert_eq!(
        (pod["hostPID"].clone(), pod["hostNetwork"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    let caps = format!("--cap-add={}", capabilities(pod).join(","));
    let (web, metrics) = (servers::free_port(), servers::free_port());
    let config = lab.path("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[web]\nlisten = \"127.0.0.1:{web}\"\n[prometheus]\nlisten = \"127.0.0.1:{metrics}\"\n"
        ),
    )
    .unwrap();
    let state = lab.path("agent-state");
    std::fs::create_dir_all(&state).unwrap();
    let name = format!("ng-agent-{}", lab.b);
    let config_mount = format!("{}:/etc/netgraph/netgraph.toml:ro", config.display());
    let state_mount = format!("{}:/var/lib/netgraph", state.display());
    let line = [
        "podman",
        "--runtime",
        "runc",
        "--cgroup-manager",
        "cgroupfs",
        "run",
        "--rm",
        "--name",
        &name,
        "--pid=host",
        "--network=host",
        "--cap-drop=all",
        &caps,
        "--security-opt",
        "seccomp=unconfined",
        "--read-only",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro,rbind",
        "-v",
        "/sys/fs/bpf:/sys/fs/bpf",
        "--tmpfs",
        "/run/netgraph",
        "-v",
        &config_mount,
        "-v",
        &state_mount,
        &image,
    ];
    let netgraph = lab.netgraph_from(&line, &["--config", "/etc/netgraph/netgraph.toml"]);
    netgraph.wait_for_log("netgraph running", std::time::Duration::from_secs(20));
    let log = netgraph.log();
    assert!(
        log.contains("engine=\"ebpf\""),
        "not the eBPF engine:\n{log}"
    );
    lab.exec(&lab.a, "ng-up", &["tcp-send", &format!("{B4}:7401"), "1s"]);
    settle();
    let records = netgraph.stop();
    let _ = podman(&["rmi", "-f", &image]);
    records.assert_conservation();
    EngineUnderTest::Ebpf.assert_share(
        &format!(
            "netgraph in its own image ({:.1} MB) under podman with the DaemonSet's privileges, a host process's upload",
            size as f64 / 1e6
        ),
        records.sum("ng-up", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

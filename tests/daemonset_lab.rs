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

/// Kubernetes' own schemas, strict (no unknown field), for every version we support
/// (`kubernetes-validate` from PyPI; scripts/test.sh installs it).
#[test]
fn the_manifests_are_valid_for_kubernetes_1_28_to_1_37() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MANIFEST);
    for minor in 28..=37 {
        let output = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k"])
            .arg(format!("1.{minor}.0"))
            .arg(&path)
            .output()
            .expect("kubernetes-validate runs (scripts/test.sh installs it from PyPI)");
        assert!(
            output.status.success(),
            "Kubernetes 1.{minor}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("a {kind}"))
}

/// The ConfigMap's netgraph.toml.
fn configmap(documents: &[Value]) -> String {
    find(documents, "ConfigMap")["data"]["netgraph.toml"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_daemonset_is_what_a_production_cluster_admits() {
    let documents = manifest();
    // Pod Security: the privileges below are the "privileged" level, said explicitly.
    let labels = &find(&documents, "Namespace")["metadata"]["labels"];
    for mode in ["enforce", "audit", "warn"] {
        assert_eq!(
            labels[format!("pod-security.kubernetes.io/{mode}")],
            "privileged"
        );
    }
    let account = find(&documents, "ServiceAccount");
    assert_eq!(account["automountServiceAccountToken"], false);
    let set = daemonset(&documents);
    let template = &set["spec"]["template"];
    assert_eq!(
        set["spec"]["selector"]["matchLabels"],
        template["metadata"]["labels"]
    );
    let pod = &template["spec"];
    assert_eq!(pod["serviceAccountName"], account["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    // A release's tag, not `latest`: IfNotPresent then means that release.
    assert_eq!(
        container["image"],
        format!("netgraph:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        template["metadata"]["annotations"]
            ["container.apparmor.security.beta.kubernetes.io/netgraph"],
        "unconfined"
    );
    // A ConfigMap change is taken up by the running pods.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--reload-on-change"), "{args:?}");
    // Probes on the cheap endpoint, which needs no token, with room to answer.
    for probe in ["livenessProbe", "readinessProbe"] {
        let probe = &container[probe];
        assert_eq!(probe["httpGet"]["path"], "/healthz");
        assert_eq!(probe["httpGet"]["port"], 9821);
        assert!(probe["timeoutSeconds"].as_u64().unwrap() >= 2);
    }
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
    let host_paths: Vec<String> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str().map(str::to_string))
        .collect();
    for (path, read_only) in [
        ("/sys/fs/cgroup", true),
        ("/sys/fs/bpf", false),
        ("/run/containerd", true),
        ("/run/k3s/containerd", true),
        ("/var/lib/netgraph", false),
        ("/etc/netgraph", true),
        ("/etc/netgraph-metrics", true),
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
        "/run/k3s/containerd",
        "/var/lib/netgraph-daemonset",
    ] {
        assert!(
            host_paths.iter().any(|p| p == path),
            "hostPath {path} in {host_paths:?}"
        );
    }
    // Nothing shared with the .deb on the same node: its state directory and ports.
    assert!(!host_paths.iter().any(|p| p == "/var/lib/netgraph"));
    let config = configmap(&documents);
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/netgraph.toml"),
    )
    .unwrap();
    for port in [":9800", ":9810"] {
        assert!(!config.contains(port), "{port} is the .deb's: {config}");
        assert!(packaged.contains(port), "the .deb uses {port}");
    }
    // The page stays on the node's loopback; /metrics needs the secret's token.
    assert!(config.contains("listen = \"127.0.0.1:9820\""), "{config}");
    assert!(config.contains("listen = \"0.0.0.0:9821\""), "{config}");
    assert!(
        config.contains("token_file = \"/etc/netgraph-metrics/token\""),
        "{config}"
    );
    let secret = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["secret"].is_object())
        .expect("the metrics token's secret");
    assert_eq!(secret["secret"]["secretName"], "netgraph-metrics");
    assert!(config.contains("/run/k3s/containerd/containerd.sock"));
    // Checked as `netgraph check` would in the pod, with the secret where it is mounted.
    let path = std::env::temp_dir().join(format!("netgraph-daemonset-{}.toml", std::process::id()));
    let token = path.with_extension("token");
    std::fs::write(&token, "a-token-from-the-secret").unwrap();
    let config = config.replace("/etc/netgraph-metrics/token", token.to_str().unwrap());
    std::fs::write(&path, &config).unwrap();
    let parsed = netgraph::config::Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(&token).unwrap();
    assert!(
        parsed.is_ok(),
        "the ConfigMap's configuration: {:?}",
        parsed.err()
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
    // The ConfigMap's volume as the kubelet lays it out: the file a link through
    // `..data`, swapped to a new directory on a change.
    let configmap = lab.path("agent-configmap");
    let version = |name: &str, text: &str| {
        std::fs::create_dir_all(configmap.join(name)).unwrap();
        std::fs::write(configmap.join(name).join("netgraph.toml"), text).unwrap();
        let link = configmap.join("..data_tmp");
        std::os::unix::fs::symlink(name, &link).unwrap();
        std::fs::rename(&link, configmap.join("..data")).unwrap();
    };
    let agent_config = format!(
        "[web]\nlisten = \"127.0.0.1:{web}\"\n[prometheus]\nlisten = \"127.0.0.1:{metrics}\"\ntoken_file = \"/etc/netgraph-metrics/token\"\n"
    );
    version("v1", &agent_config);
    std::os::unix::fs::symlink("..data/netgraph.toml", configmap.join("netgraph.toml")).unwrap();
    let secret = lab.path("agent-secret");
    std::fs::create_dir_all(&secret).unwrap();
    const TOKEN: &str = "daemonset-lab-token-0123456789";
    std::fs::write(secret.join("token"), TOKEN).unwrap();
    let state = lab.path("agent-state");
    std::fs::create_dir_all(&state).unwrap();
    let name = format!("ng-agent-{}", lab.b);
    let config_mount = format!("{}:/etc/netgraph:ro", configmap.display());
    let secret_mount = format!("{}:/etc/netgraph-metrics:ro", secret.display());
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
        &secret_mount,
        "-v",
        &state_mount,
        &image,
    ];
    let netgraph = lab.netgraph_from(
        &line,
        &[
            "--config",
            "/etc/netgraph/netgraph.toml",
            "--reload-on-change",
        ],
    );
    netgraph.wait_for_log("netgraph running", std::time::Duration::from_secs(20));
    let log = netgraph.log();
    assert!(
        log.contains("engine=\"ebpf\""),
        "not the eBPF engine:\n{log}"
    );
    // The probes' endpoint answers without the token; /metrics only with it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let get = |path: &str, token: Option<&str>| {
        let mut request = ureq::get(format!("http://127.0.0.1:{metrics}{path}"))
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    };
    assert_eq!(get("/healthz", None), (200, "ok\n".to_string()));
    assert_eq!(get("/metrics", None).0, 401);
    let (status, text) = get("/metrics", Some(TOKEN));
    assert_eq!(status, 200);
    assert!(text.contains("netgraph_"), "{text}");
    // A ConfigMap change reaches the running pod: taken up as on SIGHUP.
    version("v2", &format!("{agent_config}\n[peers]\nenabled = true\n"));
    netgraph.wait_for_log("configuration reloaded", std::time::Duration::from_secs(10));
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

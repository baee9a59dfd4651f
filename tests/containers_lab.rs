//! Containers named with their bytes (needs root): real podman containers, run from
//! an image built here, send to a lab namespace through the host; the far end counts
//! what arrived.

mod lab;
mod servers;

use lab::engines::{settle, EngineUnderTest};
use lab::podman::Podman;
use lab::*;
use serde_json::Value;
use std::time::Duration;

const EBPF: EngineUnderTest = EngineUnderTest::Ebpf;

fn rows_of<'a>(records: &'a Records, container: &'a str) -> Vec<&'a Value> {
    records
        .processes()
        .filter(|row| row["container"] == container)
        .collect()
}

fn sent(rows: &[&Value]) -> u64 {
    rows.iter()
        .map(|row| row["sent_bytes_last"].as_u64().unwrap())
        .sum()
}

fn http_get(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn podman_containers_are_named_with_their_bytes() {
    require_root();
    let mut lab = Lab::new();
    let (_, _, _, b_address) = lab.host_link();
    let tag = lab.b.clone();
    lab.truth_in(
        &lab.b.clone(),
        &[
            ("web", "input", "tcp dport 7301"),
            ("web_udp", "input", "udp dport 7302"),
            ("db", "input", "tcp dport 7303"),
            ("db_udp", "input", "udp dport 7304"),
            ("short", "input", "tcp dport 7305"),
        ],
    );
    let b = lab.b.clone();
    for port in [7301, 7303, 7305] {
        lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{b_address}:{port}")]);
    }
    for port in [7302, 7304] {
        lab.serve(
            &b,
            "ng-usink",
            &["udp-sink", &format!("{b_address}:{port}"), "recv"],
        );
    }
    let mut podman = Podman::start(&lab.path(""), &tag);
    let config = podman.config(&lab.path("containers.toml"));
    let (web_port, metrics_port) = (servers::free_port(), servers::free_port());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!(
        "[web]\nlisten = \"127.0.0.1:{web_port}\"\n[prometheus]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let netgraph = EBPF.start(&lab, &["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("following a container runtime", Duration::from_secs(10));

    let mut ids = Vec::new();
    for (name, tcp, udp) in [("web", 7301, 7302), ("db", 7303, 7304)] {
        // A second's pause first: the runtime names a container from its event stream,
        // which a loaded host (the whole suite at once) may deliver late; a row counted
        // before the name arrives carries the id only. The short-lived container below
        // is the case without the pause.
        let script = format!(
            "/bin/busybox sleep 1 && /ng-cont tcp-send {b_address}:{tcp} 2000000 && /ng-cont udp-trickle {b_address}:{udp} 1 700"
        );
        let container = format!("ng-{name}-{tag}");
        let id = podman.run(&container, &[], &["/bin/busybox", "sh", "-c", &script]);
        ids.push((container, id, name.to_string(), format!("{name}_udp")));
    }
    let short = format!("ng-short-{tag}");
    let short_id = podman.run(
        &short,
        &[],
        &[
            "/ng-cont",
            "tcp-send",
            &format!("{b_address}:7305"),
            "300000",
        ],
    );
    let lived = podman.lifetime(&short);
    assert!(lived < Duration::from_secs(1), "{short} lived {lived:?}");
    ids.push((short.clone(), short_id, "short".into(), String::new()));
    settle();
    std::thread::sleep(Duration::from_millis(2500));
    let web = format!("ng-web-{tag}");
    let api = http_get(&format!(
        "http://127.0.0.1:{web_port}/api/v1/totals?from=-600&group_by=container&top=100"
    ));
    let metrics = http_get(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    let screenshot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../containers-page.png");
    let seen = lab::browser::show(
        &format!("http://127.0.0.1:{web_port}/"),
        "container",
        &web,
        &screenshot,
    );
    let records = netgraph.stop();
    records.assert_conservation();

    // The page and the API show the container with the bytes netgraph counted.
    let api: Value = serde_json::from_str(&api).unwrap();
    let api_sent = |container: &str| {
        api["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["key"] == container)
            .map(|row| row["sent_bytes"].as_u64().unwrap())
    };
    assert_eq!(
        api_sent(&web),
        Some(sent(&rows_of(&records, &web))),
        "{api}"
    );
    assert_eq!(seen["sent"], sent(&rows_of(&records, &web)));
    let series = seen["chartSeries"].to_string();
    for (container, ..) in &ids {
        assert!(
            series.contains(container.as_str()),
            "chart by container: {series}"
        );
    }
    report(&format!(
        "web page in chromium, chart by container: {web} listed with {} sent; series {series}; screenshot {}",
        seen["sent"],
        screenshot.display()
    ));
    // Prometheus: the process counters carry the container label.
    let exported: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("netgraph_process_transmitted_bytes_total{"))
        .filter(|line| line.contains(&format!("container=\"{web}\"")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(exported, sent(&rows_of(&records, &web)), "{metrics}");

    for (container, id, tcp, udp) in &ids {
        let rows = rows_of(&records, container);
        assert!(
            !rows.is_empty(),
            "no rows named {container}:\n{}",
            records.log
        );
        for row in &rows {
            assert_eq!(row["container_id"], &id[..12], "{row}");
            assert_eq!(row["image"], podman.image.as_str(), "{row}");
            assert_eq!(row["name"], "ng-cont", "{row}");
        }
        let mut truth = lab.truth_bytes_in(&lab.b, tcp);
        if !udp.is_empty() {
            truth += lab.truth_bytes_in(&lab.b, udp);
        }
        let what = if *container == short {
            format!(
                "podman container {container} (lived {} ms), sent (far end's count)",
                lived.as_millis()
            )
        } else {
            format!("podman container {container}, sent (far end's count)")
        };
        EBPF.assert_share(&what, sent(&rows), truth);
    }
}

/// A containerd container created with the kubelet's labels: its traffic carries its
/// pod, namespace and container name in JSON, InfluxDB, Prometheus and the API.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn containerd_pods_are_named_from_the_kubelets_labels() {
    require_root();
    let mut lab = Lab::new();
    let (_, _, _, b_address) = lab.host_link();
    let tag = lab.b.clone();
    lab.truth_in(&lab.b.clone(), &[("pod", "input", "udp dport 7310")]);
    let b = lab.b.clone();
    lab.serve(
        &b,
        "ng-usink",
        &["udp-sink", &format!("{b_address}:7310"), "recv"],
    );
    let podman = Podman::start(&lab.path(""), &tag);
    let containerd = lab::containerd::Containerd::start(&lab.path("containerd"), &podman);
    let influx = servers::Influx::start(&lab.path(""), servers::InfluxOptions::default());
    influx.query("CREATE DATABASE lab");
    let (web_port, metrics_port) = (servers::free_port(), servers::free_port());
    let config = lab.path("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "[containers]\ndocker_api = []\ncontainerd = [{:?}]\n\
             [web]\nlisten = \"127.0.0.1:{web_port}\"\n\
             [prometheus]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
             [[influxdb]]\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"lab\"\nflush_interval = \"500ms\"\n",
            containerd.socket.display().to_string(),
            influx.url
        ),
    )
    .unwrap();
    let netgraph = EBPF.start(&lab, &["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("following a container runtime", Duration::from_secs(10));
    // A container id as the CRI makes them.
    let id = format!("{:016x}{:048x}", std::process::id(), 0x5eed_u64);
    let (pod, namespace) = ("shop-api-7d4b9", "shop");
    containerd.run(
        &id,
        &[
            &format!("io.kubernetes.pod.name={pod}"),
            &format!("io.kubernetes.pod.namespace={namespace}"),
            "io.kubernetes.container.name=api",
        ],
        &[
            "/ng-cont",
            "udp-trickle",
            &format!("{b_address}:7310"),
            "2",
            "800",
        ],
    );
    settle();
    std::thread::sleep(Duration::from_millis(2500));
    let api = |group: &str| -> Value {
        serde_json::from_str(&http_get(&format!(
            "http://127.0.0.1:{web_port}/api/v1/totals?from=-600&group_by={group}&top=100"
        )))
        .unwrap()
    };
    let (by_pod, by_namespace) = (api("pod"), api("namespace"));
    let metrics = http_get(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    let records = netgraph.stop();
    records.assert_conservation();

    let rows: Vec<&Value> = records
        .processes()
        .filter(|row| row["pod"] == pod)
        .collect();
    assert!(!rows.is_empty(), "no rows of pod {pod}:\n{}", records.log);
    for row in &rows {
        assert_eq!(row["namespace"], namespace, "{row}");
        assert_eq!(row["container"], "api", "{row}");
        assert_eq!(row["container_id"], &id[..12], "{row}");
        assert_eq!(row["image"], podman.image.as_str(), "{row}");
    }
    let counted = sent(&rows);
    EBPF.assert_share(
        "containerd container of pod shop/shop-api-7d4b9, sent (far end's count)",
        counted,
        lab.truth_bytes_in(&lab.b, "pod"),
    );
    let total_of = |answer: &Value, key: &str| {
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["key"] == key)
            .map(|row| row["sent_bytes"].as_u64().unwrap())
    };
    assert_eq!(total_of(&by_pod, pod), Some(counted), "{by_pod}");
    assert_eq!(
        total_of(&by_namespace, namespace),
        Some(counted),
        "{by_namespace}"
    );
    let exported: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("netgraph_process_transmitted_bytes_total{"))
        .filter(|line| {
            line.contains(&format!("pod=\"{pod}\"")) && line.contains("namespace=\"shop\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(exported, counted, "{metrics}");
    let stored = influx.scalar(
        "lab",
        &format!(
            "SELECT sum(sent_bytes_last) FROM network_data WHERE \"pod\" = '{pod}' AND \"namespace\" = '{namespace}' AND \"container\" = 'api'"
        ),
    );
    assert_eq!(stored, counted as f64, "InfluxDB's sum for the pod");
    report(&format!(
        "containerd pod {namespace}/{pod}: {counted} bytes in JSON, the API (by pod and namespace), Prometheus and InfluxDB alike"
    ));
}

/// A process in a systemd unit's cgroup is named after the unit. (systemd is not this
/// machine's init, so `systemd-run` cannot make the unit: the lab makes the cgroup
/// where systemd would, `<slice>/<unit>.service`.)
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_process_in_a_units_cgroup_is_named_after_the_unit() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 7320")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:7320")]);
    let slice = format!("netgraph-test-{}.slice", lab.b);
    lab.cgroup(&slice);
    let unit = format!("ng-backup-{}.service", lab.b);
    let cgroup = lab.cgroup(&format!("{slice}/{unit}"));
    let netgraph = EBPF.start(&lab, &[]);
    let child = lab.spawn_in_cgroup(
        &lab.a,
        &cgroup,
        "ng-unit",
        &["tcp-send", &format!("{B4}:7320"), "1s"],
    );
    assert!(child.wait_with_output().unwrap().status.success());
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let rows: Vec<&Value> = records.rows("ng-unit").collect();
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row["unit"], unit.as_str(), "{row}");
        assert_eq!(row["container"], Value::Null, "{row}");
    }
    EBPF.assert_share(
        &format!("process in the unit {unit}, sent"),
        records.sum("ng-unit", &lab.veth_a, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
}

/// A transient unit made by `systemd-run`, in a podman container whose init is systemd
/// (the host's own files as its root, through an overlay): its process is named after
/// the unit and the container. systemd there keeps its units in its own (v1) hierarchy,
/// as on hybrid hosts; netgraph reads the unit from there.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_systemd_run_unit_in_a_systemd_container_is_named_after_it() {
    require_root();
    let mut lab = Lab::new();
    let (_, _, _, b_address) = lab.host_link();
    let b = lab.b.clone();
    lab.truth_in(&b, &[("arrived", "input", "tcp dport 7330")]);
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{b_address}:7330")]);
    let tool = lab.tool("ng-sysunit");
    let lab_dir = tool.parent().unwrap().to_string_lossy().into_owned();
    let name = format!("ng-systemd-{}", lab.b);
    let _ = lab::podman::podman(&["rm", "-f", &name]);
    let volume = format!("{lab_dir}:{lab_dir}");
    lab::podman::podman(&[
        "run",
        "-d",
        "--name",
        &name,
        "--systemd=always",
        "--network",
        "host",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "--mount",
        "type=tmpfs,destination=/tmp,notmpcopyup",
        "--mount",
        "type=tmpfs,destination=/run,notmpcopyup",
        "-v",
        &volume,
        "--rootfs",
        "/:O",
        "/lib/systemd/systemd",
        // Only up to basic.target: the host's own services (databases, container
        // engines) would otherwise start inside too, and one that hangs keeps the
        // boot "starting" past any deadline (CI saw that on a fresh machine).
        "--unit=basic.target",
    ]);
    let _remove = RemoveContainer(name.clone());
    // systemd is up once it answers (degraded is up: some host units cannot start here).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !lab::podman::podman_output(&["exec", &name, "systemctl", "is-system-running"])
        .is_some_and(|state| ["running", "degraded"].contains(&state.trim()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "systemd did not come up in {name}; its jobs: {:?}",
            lab::podman::podman_output(&["exec", &name, "systemctl", "list-jobs"])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let unit = format!("ng-sysunit-{}.service", lab.b);
    let netgraph = EBPF.start(&lab, &[]);
    let target = format!("{b_address}:7330");
    lab::podman::podman(&[
        "exec",
        &name,
        "systemd-run",
        "--wait",
        "--unit",
        &unit,
        tool.to_str().unwrap(),
        "tcp-send",
        &target,
        "2s",
    ]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let rows: Vec<&Value> = records.rows("ng-sysunit").collect();
    assert!(!rows.is_empty(), "{}", records.log);
    for row in &rows {
        assert_eq!(row["unit"], unit.as_str(), "{row}");
        assert!(row["container_id"].is_string(), "{row}");
    }
    EBPF.assert_share(
        &format!("systemd-run unit {unit} in a systemd container, sent (far end's count)"),
        records.sum_all("ng-sysunit", "sent_bytes_last"),
        lab.truth_bytes_in(&b, "arrived"),
    );
}

struct RemoveContainer(String);

impl Drop for RemoveContainer {
    fn drop(&mut self) {
        let _ = lab::podman::podman_output(&["rm", "-f", "-t", "1", &self.0]);
    }
}

/// Docker itself (Debian's docker.io, a daemon of the lab's own): a container that
/// sends for a second and a short one (300 kB) are named with their names, ids and
/// image, from the Docker Engine API, with the bytes the far end counted.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn docker_containers_are_named_from_dockers_own_api() {
    require_root();
    let mut lab = Lab::new();
    let (_, _, _, b_address) = lab.host_link();
    let b = lab.b.clone();
    lab.truth_in(
        &b,
        &[
            ("long", "input", "tcp dport 7341"),
            ("short", "input", "tcp dport 7342"),
        ],
    );
    for port in [7341, 7342] {
        lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{b_address}:{port}")]);
    }
    let mut docker = lab::docker::Docker::start(&lab.path(""));
    let config = lab.path("docker.toml");
    std::fs::write(
        &config,
        format!(
            "[containers]\ndocker_api = [\"{}\"]\ncontainerd = []\n",
            docker.socket.display()
        ),
    )
    .unwrap();
    let netgraph = EBPF.start(&lab, &["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("following a container runtime", Duration::from_secs(10));
    let mut ran = Vec::new();
    for (what, port, amount) in [("long", 7341, "1s"), ("short", 7342, "300000")] {
        let name = format!("ng-docker-{what}-{b}");
        let target = format!("{b_address}:{port}");
        let id = docker.run(&name, &["/ng-cont", "tcp-send", &target, amount]);
        ran.push((name, id, what));
    }
    settle();
    std::thread::sleep(Duration::from_millis(1500));
    let records = netgraph.stop();
    records.assert_conservation();
    for (name, id, what) in &ran {
        let rows = rows_of(&records, name);
        assert!(!rows.is_empty(), "no rows named {name}:\n{}", records.log);
        for row in &rows {
            assert_eq!(row["container_id"], &id[..12], "{row}");
            assert_eq!(row["image"], docker.image.as_str(), "{row}");
        }
        EBPF.assert_share(
            &format!("Docker container {name}, sent (far end's count)"),
            sent(&rows),
            lab.truth_bytes_in(&b, what),
        );
    }
}

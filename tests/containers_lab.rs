//! Containers named with their bytes (needs root): real podman containers, run from
//! an image built here, send to a lab namespace through the host; the far end counts
//! what arrived.

mod lab;

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
    let netgraph = EBPF.start(&lab, &["--config", config.to_str().unwrap()]);
    netgraph.wait_for_log("following a container runtime", Duration::from_secs(10));

    let mut ids = Vec::new();
    for (name, tcp, udp) in [("web", 7301, 7302), ("db", 7303, 7304)] {
        let script = format!(
            "/ng-cont tcp-send {b_address}:{tcp} 2000000 && /ng-cont udp-trickle {b_address}:{udp} 1 700"
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
    std::thread::sleep(Duration::from_millis(1500));
    let records = netgraph.stop();
    records.assert_conservation();

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

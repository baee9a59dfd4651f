//! `netgraph capture` and the alert rules' captures against the namespace lab (needs
//! root): tshark reads the pcapng files; the packets and bytes of the captured
//! process's flow equal what nftables counted at the far end of the link.

mod lab;

use lab::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `netgraph capture`, its log in a file.
struct Capture {
    child: Child,
    log: PathBuf,
}

impl Capture {
    fn start(lab: &Lab, args: &[&str]) -> Capture {
        Capture::start_behind(lab, &[], args)
    }

    /// Started behind a launcher (`ip netns exec NS`).
    fn start_behind(lab: &Lab, launcher: &[&str], args: &[&str]) -> Capture {
        let log = lab.path(&format!("capture-{}.log", args.join("_").replace('/', "_")));
        let mut line: Vec<&str> = launcher.to_vec();
        line.push(env!("CARGO_BIN_EXE_netgraph"));
        let child = Command::new(line[0])
            .args(&line[1..])
            .arg("capture")
            .args(args)
            .env("RUST_LOG", "netgraph=info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let capture = Capture { child, log };
        capture.wait_for("capture started", Duration::from_secs(15));
        capture
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) {
        let started = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                started.elapsed() < timeout,
                "no {needle:?} from netgraph capture:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for it to end by itself; returns its log.
    fn wait(mut self, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(status.success(), "netgraph capture failed:\n{log}");
                return log;
            }
            assert!(
                started.elapsed() < timeout,
                "netgraph capture did not end:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it as Ctrl-C does; returns its log.
    fn interrupt(self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.wait(Duration::from_secs(15))
    }
}

/// One packet as tshark reads it.
#[derive(Debug)]
struct Packet {
    length: u64,
    comment: String,
    interface: String,
    /// pcapng's direction flags: 1 inbound, 2 outbound.
    direction: u32,
    ports: (u16, u16),
}

fn tshark(file: &Path) -> Vec<Packet> {
    let output = Command::new("tshark")
        .args([
            "-r",
            file.to_str().unwrap(),
            "-T",
            "fields",
            "-E",
            "separator=|",
        ])
        .args([
            "-e",
            "frame.len",
            "-e",
            "frame.comment",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.packet_flags_direction",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .expect("tshark (apt-get install tshark)");
    assert!(
        output.status.success(),
        "tshark cannot read {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('|').collect();
            let number = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let direction = fields
                .get(3)
                .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
                .unwrap_or(0);
            Packet {
                length: number(0),
                comment: fields.get(1).unwrap_or(&"").to_string(),
                interface: fields.get(2).unwrap_or(&"").to_string(),
                direction,
                ports: (number(4) as u16, number(5) as u16),
            }
        })
        .collect()
}

/// A capture file against the far end's two nftables counters in namespace `ns`.
struct Compared {
    packets: Vec<Packet>,
    bytes: u64,
    far_packets: u64,
    far_bytes: u64,
}

fn compare(lab: &Lab, ns: &str, counters: [&str; 2], file: &Path) -> Compared {
    let packets = tshark(file);
    Compared {
        bytes: packets.iter().map(|p| p.length).sum(),
        packets,
        far_packets: counters.iter().map(|c| lab.truth_packets_in(ns, c)).sum(),
        far_bytes: counters.iter().map(|c| lab.truth_bytes_in(ns, c)).sum(),
    }
}

/// Every packet the far end counted, and its bytes, no more.
fn assert_equal(packets: usize, bytes: u64, far_packets: u64, far_bytes: u64, log: &str) {
    assert_eq!(packets as u64, far_packets, "packets\n{log}");
    assert_eq!(bytes, far_bytes, "bytes\n{log}");
}

/// Shapes what `b` sends (the downloads) to a rate the capture keeps up with whatever
/// the machine, without cutting offloaded packets (the burst holds the largest).
fn shape_far_end(lab: &Lab, device: &str, rate: &str) {
    let command = format!(
        "netns exec {} tc qdisc add dev {device} root tbf rate {rate} burst 1mb latency 100ms",
        lab.b
    );
    let args: Vec<&str> = command.split(' ').collect();
    run("ip", &args);
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_process_capture_holds_every_packet_of_its_flow_and_nothing_else() {
    require_root();
    process_capture("eBPF", "200mbit", false);
}

/// The capture engine, in namespace a: the flow table's flows, named by attribution
/// each second, pick the packets.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn the_capture_engine_captures_a_process_by_its_flows() {
    require_root();
    process_capture("capture engine", "100mbit", true);
}

fn process_capture(engine: &str, rate: &str, capture_engine: bool) {
    let mut lab = Lab::new();
    let b = lab.b.clone();
    shape_far_end(&lab, &lab.veth_b, rate);
    // At the far end: what b sent to and received from each client.
    lab.truth_in(
        &b,
        &[
            ("mine_out", "output", "tcp sport 6301"),
            ("mine_in", "input", "tcp dport 6301"),
            ("other_out", "output", "tcp sport 6302"),
        ],
    );
    lab.serve(&b, "ng-src", &["tcp-source", &format!("{B4}:6301"), "2"]);
    lab.serve(&b, "ng-src2", &["tcp-source", &format!("{B4}:6302"), "2"]);
    let file = lab.path("download.pcapng");
    let a = lab.a.clone();
    let (launcher, engine_option): (Vec<&str>, &str) = if capture_engine {
        (vec!["ip", "netns", "exec", &a], "capture")
    } else {
        (vec![], "ebpf")
    };
    let capture = Capture::start_behind(
        &lab,
        &launcher,
        &[
            "--engine",
            engine_option,
            "--process",
            "ng-dl",
            "--for",
            "60s",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    // One after the other, each with the whole link (at once, one may starve the other).
    let mine = lab.spawn(&lab.a, "ng-dl", &["tcp-recv", &format!("{B4}:6301")]);
    let pid = mine.id();
    let mine = mine.wait_with_output().unwrap();
    let other = lab
        .spawn(&lab.a, "ng-other", &["tcp-recv", &format!("{B4}:6302")])
        .wait_with_output()
        .unwrap();
    assert!(mine.status.success() && other.status.success());
    // What is still in flight (the last ACKs) is copied before Ctrl-C ends it.
    // On the capture engine the flows are named each second.
    std::thread::sleep(Duration::from_millis(if capture_engine {
        2500
    } else {
        500
    }));
    let log = capture.interrupt();
    let compared = compare(&lab, &b, ["mine_out", "mine_in"], &file);
    let Compared {
        packets,
        bytes,
        far_packets,
        far_bytes,
    } = compared;
    let received = packets.iter().filter(|p| p.direction == 1).count() as u64;
    report(&format!(
        "Capture, process, {engine}: {} packets ({bytes} bytes) of ng-dl in the pcapng, the far end counted {far_packets} ({far_bytes} bytes) on its flow; the other download's {} bytes absent",
        packets.len(),
        lab.truth_bytes_in(&b, "other_out")
    ));
    assert!(
        far_bytes > 10_000_000,
        "the download was too small to say anything: {far_bytes} bytes"
    );
    assert_equal(packets.len(), bytes, far_packets, far_bytes, &log);
    assert_eq!(
        received,
        lab.truth_packets_in(&b, "mine_out"),
        "received packets are marked inbound"
    );
    let expected = format!("process=ng-dl pid={pid} uid=0 direction=");
    for packet in &packets {
        assert!(
            packet.comment.starts_with(&expected),
            "comment {:?} does not name ng-dl ({pid})",
            packet.comment
        );
        assert_eq!(packet.interface, lab.veth_a, "named as netgraph names it");
        assert!(
            packet.ports.0 == 6301 || packet.ports.1 == 6301,
            "another flow's packet: {packet:?}"
        );
    }
    assert!(
        log.contains(&format!(
            "netgraph: {far_packets} packets ({far_bytes} bytes) of process ng-dl"
        )),
        "the summary tells what was written:\n{log}"
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_peer_capture_ends_at_its_time_with_only_that_peers_packets() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    shape_far_end(&lab, &lab.veth_b, "200mbit");
    let (_, _, _, far) = lab.host_link();
    lab.truth_in(
        &b,
        &[
            ("lab_out", "output", "tcp sport 6303"),
            ("lab_in", "input", "tcp dport 6303"),
        ],
    );
    lab.serve(&b, "ng-src", &["tcp-source", &format!("{B4}:6303"), "1"]);
    lab.serve(&b, "ng-src2", &["tcp-source", &format!("{far}:6304"), "1"]);
    let file = lab.path("peer.pcapng");
    let started = Instant::now();
    let capture = Capture::start(
        &lab,
        &["--peer", B4, "--for", "6s", "-w", file.to_str().unwrap()],
    );
    // The same kind of download from the lab's address and from the host link's.
    lab.exec(&lab.a, "ng-dl", &["tcp-recv", &format!("{B4}:6303")]);
    lab.exec_on_host("ng-dl2", &["tcp-recv", &format!("{far}:6304")]);
    let log = capture.wait(Duration::from_secs(30));
    let took = started.elapsed();
    let packets = tshark(&file);
    let bytes: u64 = packets.iter().map(|p| p.length).sum();
    let far_bytes = lab.truth_bytes_in(&b, "lab_out") + lab.truth_bytes_in(&b, "lab_in");
    report(&format!(
        "Capture, peer {B4}: {} packets ({bytes} bytes), the far end counted {far_bytes}; ended by itself after {took:?} of --for 6s",
        packets.len()
    ));
    assert!(log.contains("ended because its time was up"), "{log}");
    assert!(
        took < Duration::from_secs(12),
        "a 6 s capture took {took:?}"
    );
    assert_eq!(bytes, far_bytes, "{log}");
    assert!(
        packets
            .iter()
            .all(|p| p.comment.starts_with("process=ng-dl pid=")),
        "only the lab peer's client: {packets:?}"
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_quota_that_fires_writes_a_capture_of_its_scope() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    let (_, _, _, far) = lab.host_link();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{far}:6305")]);
    let config = lab.path("capture.toml");
    std::fs::write(
        &config,
        "[alerts]\ncapture_max_mib = 2\n[[alerts.rule]]\nname = \"daily cap\"\nprocess = \"ng-quota\"\nlimit = \"5 MB\"\nper = \"day\"\ncapture = \"3s\"\n",
    )
    .unwrap();
    let netgraph = lab.netgraph_ebpf(&["--config", config.to_str().unwrap()]);
    lab.start_on_host("ng-quota", &["tcp-send", &format!("{far}:6305"), "8s"]);
    lab.start_on_host("ng-bystander", &["tcp-send", &format!("{far}:6305"), "8s"]);
    netgraph.wait_for_log("capture done", Duration::from_secs(20));
    let state = netgraph.state.clone();
    let records = netgraph.stop();
    let captures: Vec<PathBuf> = std::fs::read_dir(state.join("captures"))
        .expect("a captures directory in the state directory")
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(captures.len(), 1, "{captures:?}\n{}", records.log);
    let name = captures[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        name.starts_with("daily_cap-") && name.ends_with("Z.pcapng"),
        "{name}"
    );
    let size = std::fs::metadata(&captures[0]).unwrap().len();
    let packets = tshark(&captures[0]);
    report(&format!(
        "Capture, alert: the quota fired and wrote {name}: {} packets of ng-quota, {size} bytes (capture_max_mib = 2)",
        packets.len()
    ));
    assert!(!packets.is_empty(), "{}", records.log);
    assert!(size <= 2 << 20, "{size} bytes: over capture_max_mib");
    assert!(
        packets
            .iter()
            .all(|p| p.comment.starts_with("process=ng-quota pid=")),
        "another process's packet in the rule's capture"
    );
    assert!(records.log.contains("capture started"), "{}", records.log);
}

/// `--engine auto` where the kernel (here: NETGRAPH_EBPF_WITHOUT) refuses the eBPF
/// engine's copy: the capture engine captures instead, as exactly.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn auto_captures_with_the_capture_engine_where_ebpf_cannot() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    let (_, far_device, _, far) = lab.host_link();
    shape_far_end(&lab, &far_device, "100mbit");
    lab.truth_in(
        &b,
        &[
            ("host_out", "output", "tcp sport 6306"),
            ("host_in", "input", "tcp dport 6306"),
        ],
    );
    lab.serve(&b, "ng-src", &["tcp-source", &format!("{far}:6306"), "2"]);
    let file = lab.path("fallback.pcapng");
    let capture = Capture::start_behind(
        &lab,
        &["env", "NETGRAPH_EBPF_WITHOUT=packet_capture"],
        &[
            "--process",
            "ng-hostdl",
            "--for",
            "60s",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    lab.exec_on_host("ng-hostdl", &["tcp-recv", &format!("{far}:6306")]);
    std::thread::sleep(Duration::from_millis(2500));
    let log = capture.interrupt();
    let compared = compare(&lab, &b, ["host_out", "host_in"], &file);
    let Compared {
        packets,
        bytes,
        far_packets,
        far_bytes,
    } = compared;
    report(&format!(
        "Capture, auto without eBPF's copy: the capture engine wrote {} packets ({bytes} bytes) of ng-hostdl, the far end counted {far_packets} ({far_bytes} bytes)",
        packets.len()
    ));
    assert!(
        log.contains("capturing with the capture engine"),
        "the fallback is said:\n{log}"
    );
    assert!(far_bytes > 10_000_000, "too small a download: {far_bytes}");
    assert_equal(packets.len(), bytes, far_packets, far_bytes, &log);
    assert!(
        packets
            .iter()
            .all(|p| p.comment.starts_with("process=ng-hostdl pid=")),
        "another process's packet"
    );
}

/// `--container NAME`: a podman container's packets (its cgroups, followed as the
/// runtime names it), and not those of the same kind of process outside it.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_container_capture_holds_its_packets_and_nothing_else() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    let (_, _, _, far) = lab.host_link();
    lab.truth_in(
        &b,
        &[
            ("cont_in", "input", "tcp dport 6307"),
            ("cont_out", "output", "tcp sport 6307"),
            ("host_in", "input", "tcp dport 6308"),
        ],
    );
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{far}:6307")]);
    lab.serve(&b, "ng-sink2", &["tcp-sink", &format!("{far}:6308")]);
    let tag = lab.b.clone();
    let mut podman = lab::podman::Podman::start(&lab.path(""), &tag);
    let container = format!("ng-captured-{tag}");
    let config = podman.config(&lab.path("containers.toml"));
    let file = lab.path("container.pcapng");
    let capture = Capture::start(
        &lab,
        &[
            "--config",
            config.to_str().unwrap(),
            "--container",
            &container,
            "--for",
            "60s",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    // The same tool outside the container, at the same time.
    lab.start_on_host("ng-cont", &["tcp-send", &format!("{far}:6308"), "6s"]);
    // It sends once the runtime has named it and its cgroup is in the capture's scope.
    podman.run(
        &container,
        &[],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            &format!("/bin/busybox sleep 3; /ng-cont tcp-send {far}:6307 8000000"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let log = capture.interrupt();
    let compared = compare(&lab, &b, ["cont_in", "cont_out"], &file);
    let Compared {
        packets,
        bytes,
        far_packets,
        far_bytes,
    } = compared;
    report(&format!(
        "Capture, container {container}: {} packets ({bytes} bytes), the far end counted {far_packets} ({far_bytes} bytes); the same tool outside it sent {} bytes, absent",
        packets.len(),
        lab.truth_bytes_in(&b, "host_in")
    ));
    assert!(far_bytes >= 8_000_000, "{far_bytes}");
    assert_equal(packets.len(), bytes, far_packets, far_bytes, &log);
    let named = format!(" container={container} direction=");
    assert!(
        packets
            .iter()
            .all(|p| p.comment.starts_with("process=ng-cont pid=") && p.comment.contains(&named)),
        "each comment names the container: {:?}",
        packets.first().map(|p| &p.comment)
    );
}

/// `--pid N`: one process's packets, not those of another process of the same name.
/// The pid is known before the process connects: a shell that waits, then becomes the
/// client.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_pid_capture_takes_that_process_and_not_its_namesake() {
    require_root();
    let mut lab = Lab::new();
    let (a, b) = (lab.a.clone(), lab.b.clone());
    shape_far_end(&lab, &lab.veth_b, "200mbit");
    lab.truth_in(
        &b,
        &[
            ("pid_out", "output", "tcp sport 6309"),
            ("pid_in", "input", "tcp dport 6309"),
        ],
    );
    lab.serve(&b, "ng-src", &["tcp-source", &format!("{B4}:6309"), "2"]);
    lab.serve(&b, "ng-src2", &["tcp-source", &format!("{B4}:6310"), "2"]);
    let tool = lab.tool("ng-pidcli");
    let client = Command::new("ip")
        .args(["netns", "exec", &a, "sh", "-c"])
        .arg(format!(
            "sleep 3; exec {} tcp-recv {B4}:6309",
            tool.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = client.id();
    let file = lab.path("pid.pcapng");
    let capture = Capture::start(
        &lab,
        &[
            "--pid",
            &pid.to_string(),
            "--for",
            "60s",
            "-w",
            file.to_str().unwrap(),
        ],
    );
    let client = client.wait_with_output().unwrap();
    assert!(client.status.success());
    // Its namesake, another process, after it.
    lab.exec(&a, "ng-pidcli", &["tcp-recv", &format!("{B4}:6310")]);
    std::thread::sleep(Duration::from_millis(500));
    let log = capture.interrupt();
    let compared = compare(&lab, &b, ["pid_in", "pid_out"], &file);
    let Compared {
        packets,
        bytes,
        far_packets,
        far_bytes,
    } = compared;
    report(&format!(
        "Capture, pid {pid}: {} packets ({bytes} bytes) of that ng-pidcli, the far end counted {far_packets} ({far_bytes} bytes); its namesake's absent",
        packets.len()
    ));
    assert!(far_bytes > 10_000_000, "{far_bytes}");
    assert_equal(packets.len(), bytes, far_packets, far_bytes, &log);
    let expected = format!("process=ng-pidcli pid={pid} ");
    assert!(
        packets
            .iter()
            .all(|p| p.comment.starts_with(&expected) && p.ports.0 != 6310 && p.ports.1 != 6310),
        "the namesake's packets, or another owner: {:?}",
        packets.iter().find(|p| !p.comment.starts_with(&expected))
    );
}

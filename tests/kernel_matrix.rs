//! The kernel matrix (needs root): the eBPF engine on Debian's kernels from 5.10 to the
//! newest, each booted in QEMU (TCG), and on this host's kernel with each fallback
//! forced by NETGRAPH_EBPF_WITHOUT. Everywhere the same workloads
//! (tests/kernel_matrix/scenario.sh): bulk TCP up and down, UDP, 300 short-lived
//! processes, a server's accepted connection and loopback, each against nftables
//! counters in the namespace where netgraph's hooks sit and at the far end of the veth
//! (loopback has none), within 1% either way.

mod lab;

use lab::{report, require_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// (truth counter, process, interface, field): what each workload's process must have.
const WORKLOADS: [(&str, &str, &str, &str); 8] = [
    ("up", "ng-up", "ngm-va", "sent_bytes_last"),
    ("down", "ng-down", "ngm-va", "recv_bytes_last"),
    ("udp_out", "ng-udp", "ngm-va", "sent_bytes_last"),
    ("udp_in", "ng-udp", "ngm-va", "recv_bytes_last"),
    ("short", "ng-short", "ngm-va", "sent_bytes_last"),
    ("accepted", "ng-acc", "ngm-va", "recv_bytes_last"),
    ("loopback", "ng-lo", "lo", "sent_bytes_last"),
    ("limited", "ng-limited", "ngm-va", "sent_bytes_last"),
];

/// The scenario's limit on ng-limited (400 kB/s).
const LIMIT_BYTES_PER_SECOND: f64 = 400_000.0;
/// What may pass beyond the rate at once: the limit's backlog (250 ms of it) and one
/// offloaded packet let in at its edge.
const LIMIT_BACKLOG: f64 = LIMIT_BYTES_PER_SECOND / 4.0 + 65_536.0;

const FEATURES: [&str; 8] = [
    "owner_tracepoints",
    "socket_counts",
    "device_netns",
    "path_tracepoints",
    "interface_hooks",
    "tcp_health",
    "drops",
    "packet_capture",
];

/// What one run of the scenario printed.
#[derive(Default)]
struct Outcome {
    /// Feature name -> (state, detail) as `netgraph check` said.
    features: BTreeMap<String, (String, String)>,
    truth: BTreeMap<String, u64>,
    /// The same workloads counted at the far end of the veth.
    far: BTreeMap<String, u64>,
    lines: Vec<Value>,
    /// How long the limited process ran, to its last byte's acknowledgement.
    limited_ms: u64,
    /// Datagrams netfilter dropped on their way out (`@dropped N`).
    dropped: u64,
    /// What `netgraph capture --process ng-up` wrote: packets and bytes, and the
    /// packets it said were lost.
    captured: Option<(u64, u64)>,
    capture_lost: u64,
    /// `@error` and `@log` lines (warnings and errors of netgraph's log), but for
    /// the runs the kernel skipped, which netgraph reports as lost.
    problems: Vec<String>,
    /// Runs of tracing programs the kernel skipped, per program, as netgraph
    /// warned of them.
    skipped: BTreeMap<String, u64>,
    done: bool,
}

impl Outcome {
    fn parse(output: &str) -> Outcome {
        let mut outcome = Outcome::default();
        for line in output.lines() {
            // A guest's console may end lines with \r.
            let line = line.trim_end_matches('\r');
            if let Some(json) = line.strip_prefix("@json ") {
                if let Ok(value) = serde_json::from_str(json) {
                    outcome.lines.push(value);
                }
            } else if let Some(rest) = line.strip_prefix("@truth ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(bytes)) = (words.next(), words.next()) {
                    outcome
                        .truth
                        .insert(name.into(), bytes.parse().unwrap_or(0));
                }
            } else if let Some(rest) = line.strip_prefix("@far ") {
                let mut words = rest.split_whitespace();
                if let (Some(name), Some(bytes)) = (words.next(), words.next()) {
                    outcome.far.insert(name.into(), bytes.parse().unwrap_or(0));
                }
            } else if let Some(rest) = line.strip_prefix("@feature ") {
                let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                let (state, detail) = rest.split_once(' ').unwrap_or((rest, ""));
                outcome
                    .features
                    .insert(name.into(), (state.into(), detail.into()));
            } else if let Some(skipped) = skipped_runs(line) {
                for (program, count) in skipped {
                    *outcome.skipped.entry(program).or_default() += count;
                }
            } else if line.starts_with("@error") || line.starts_with("@log") {
                outcome.problems.push(line.into());
            } else if let Some(ms) = line.strip_prefix("@limited_ms ") {
                outcome.limited_ms = ms.trim().parse().unwrap_or(0);
            } else if let Some(packets) = line.strip_prefix("@dropped ") {
                outcome.dropped = packets.trim().parse().unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("@capture") {
                let mut words = rest.split_whitespace().map(|w| w.parse::<u64>().ok());
                if let (Some(Some(packets)), Some(Some(bytes))) = (words.next(), words.next()) {
                    outcome.captured = Some((packets, bytes));
                }
                outcome.capture_lost = words.next().flatten().unwrap_or(0);
            } else if line == "@done" {
                outcome.done = true;
            }
        }
        outcome
    }

    fn attributed(&self, name: &str, interface: &str, field: &str) -> u64 {
        self.lines
            .iter()
            .filter(|l| l["type"] == "process" && l["name"] == name && l["interface"] == interface)
            .filter_map(|l| l[field].as_u64())
            .sum()
    }

    /// Skipped runs of the programs whose name starts with `prefix`.
    fn skipped_of(&self, prefix: &str) -> u64 {
        self.skipped
            .iter()
            .filter(|(program, _)| program.starts_with(prefix))
            .map(|(_, count)| count)
            .sum()
    }

    /// Every skipped run netgraph warned of is in its engine rows' lost events.
    fn check_skipped_are_lost(&self, label: &str, failures: &mut Vec<String>) {
        let warned: u64 = self.skipped.values().sum();
        let lost: u64 = self
            .lines
            .iter()
            .filter(|l| l["type"] == "engine")
            .filter_map(|l| l["lost_events"].as_u64())
            .sum();
        if lost < warned {
            failures.push(format!(
                "{label}: the kernel skipped {warned} runs ({:?}) but the engine rows lost only {lost} events",
                self.skipped
            ));
        }
    }

    fn feature(&self, name: &str) -> (&str, &str) {
        self.features
            .get(name)
            .map(|(state, detail)| (state.as_str(), detail.as_str()))
            .unwrap_or(("missing", ""))
    }

    /// A health field summed over a process's rows.
    fn health(&self, name: &str, field: &str) -> u64 {
        self.lines
            .iter()
            .filter(|l| l["type"] == "process" && l["name"] == name)
            .filter_map(|l| l[field].as_u64())
            .sum()
    }

    /// Where TCP health is counted: the upload's connect made once, the connect to a
    /// closed port refused once; where it is not, no health at all.
    fn check_health(&self, label: &str, failures: &mut Vec<String>) {
        let counted = [
            ("ng-up", "tcp_connects"),
            ("ng-refused", "tcp_connects_refused"),
        ]
        .map(|(name, field)| (name, field, self.health(name, field)));
        let expected = if self.feature("tcp_health").0 == "used" {
            1
        } else {
            0
        };
        // A connect's state change the kernel skipped (and netgraph reported) is the
        // only one allowed to be missing.
        let skipped = self.skipped_of("health_on_state");
        for (name, field, found) in counted {
            if found > expected || found + skipped < expected {
                failures.push(format!(
                    "{label}: {name} {field} = {found}, expected {expected}"
                ));
            }
        }
        // Where drops are counted, every datagram netfilter dropped, on its process;
        // where not, none.
        let dropped = self.health("ng-dropped", "drops_netfilter");
        let expected = if self.feature("drops").0 == "used" {
            self.dropped
        } else {
            0
        };
        let skipped = self.skipped_of("drops_on_free");
        if self.dropped < 50 || dropped > expected || dropped + skipped < expected {
            failures.push(format!(
                "{label}: ng-dropped drops_netfilter = {dropped}, expected {expected} (netfilter dropped {}, the kernel skipped {skipped} runs)",
                self.dropped
            ));
        }
    }

    /// The capture of ng-up holds exactly the upload's bytes both ways, as the far end
    /// of the link counted them.
    fn check_capture(&self, label: &str, failures: &mut Vec<String>) {
        let far = self.far.get("up").copied().unwrap_or(0)
            + self.far.get("up_back").copied().unwrap_or(0);
        match self.captured {
            Some((packets, bytes)) if packets > 0 && bytes == far => {}
            other => failures.push(format!(
                "{label}: the capture of ng-up wrote {other:?} (packets, bytes; {} packets lost), the far end counted {far} bytes",
                self.capture_lost
            )),
        }
    }

    /// The limited process reached the far end at its limit's rate over the time it
    /// ran: at most the rate over that time plus one backlog, at least 80% of the rate
    /// over it (its connect and close take a little of the time).
    fn check_limit(&self, label: &str, failures: &mut Vec<String>) {
        let far = self.far.get("limited").copied().unwrap_or(0) as f64;
        let seconds = self.limited_ms as f64 / 1000.0;
        let most = LIMIT_BYTES_PER_SECOND * seconds + LIMIT_BACKLOG;
        let least = 0.8 * LIMIT_BYTES_PER_SECOND * seconds;
        if seconds < 4.0 || !(least..=most).contains(&far) {
            failures.push(format!(
                "{label}: the limited process reached the far end with {far} bytes in {seconds} s, not {least:.0}..{most:.0} (400 kB/s)"
            ));
        }
    }

    /// Each workload's share of the truth; a failure per workload outside 1%, but for
    /// the workloads `lost` names (the documented cost of the path), which are only shown.
    fn shares(&self, label: &str, lost: &[&str], failures: &mut Vec<String>) -> Vec<f64> {
        WORKLOADS
            .iter()
            .map(|(counter, process, interface, field)| {
                let truth = self.truth.get(*counter).copied().unwrap_or(0);
                let attributed = self.attributed(process, interface, field);
                let share = if truth == 0 {
                    0.0
                } else {
                    attributed as f64 / truth as f64
                };
                // Packets a limit holds back passed netfilter's output hook before the
                // limit refused them: only the far end saw what left.
                let held_back = *counter == "limited";
                if truth == 0
                    || (!held_back && !(0.99..=1.01).contains(&share) && !lost.contains(counter))
                {
                    failures.push(format!(
                        "{label}: {counter} ({process} on {interface}): {attributed} of {truth} bytes ({:.2}%)",
                        share * 100.0
                    ));
                }
                // What the wire carried, counted at the other end of the link.
                let mut shown = share;
                if let Some(&far) = self.far.get(*counter) {
                    let far_share = if far == 0 { 0.0 } else { attributed as f64 / far as f64 };
                    if far == 0 || (!(0.99..=1.01).contains(&far_share) && !lost.contains(counter)) {
                        failures.push(format!(
                            "{label}: {counter} ({process} on {interface}): {attributed} of the far end's {far} bytes ({:.2}%)",
                            far_share * 100.0
                        ));
                    }
                    if held_back {
                        shown = far_share;
                    }
                }
                shown
            })
            .collect()
    }
}

/// One table row: the run, each feature's state, each workload's share.
fn table_row(label: &str, outcome: &Outcome, shares: &[f64]) -> String {
    let features: Vec<String> = FEATURES
        .iter()
        .map(|name| {
            let (state, detail) = outcome.feature(name);
            let how = if detail.contains("classic TC") {
                "tc"
            } else if detail.contains("(tcx)") {
                "tcx"
            } else if detail.contains("raw tracepoints") {
                "raw"
            } else if detail.contains("accept(2) tracepoints only") {
                "accept"
            } else {
                ""
            };
            if how.is_empty() {
                state.to_string()
            } else {
                format!("{state}:{how}")
            }
        })
        .collect();
    let shares: Vec<String> = shares.iter().map(|s| format!("{s:.4}")).collect();
    // The capture of ng-up: its packets, and its bytes' share of the far end's.
    let far = outcome.far.get("up").copied().unwrap_or(0)
        + outcome.far.get("up_back").copied().unwrap_or(0);
    let capture = match outcome.captured {
        Some((packets, bytes)) if far > 0 => {
            format!("{packets} pkts, {:.4}", bytes as f64 / far as f64)
        }
        _ => "-".to_string(),
    };
    format!(
        "| {label} | {} | {} | {capture} |",
        features.join(" | "),
        shares.join(" | ")
    )
}

fn table_header() -> String {
    let workloads: Vec<&str> = WORKLOADS.iter().map(|w| w.0).collect();
    format!(
        "kernel matrix, share of the far end's bytes per workload:\n| kernel / forced off | {} | {} | capture of up |",
        FEATURES.join(" | "),
        workloads.join(" | ")
    )
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_netgraph"))
        .parent()
        .unwrap()
        .join("examples/labtraffic")
}

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel_matrix")
}

/// On this host's kernel, the scenario with each fallback forced: every path each
/// older or stricter kernel takes is run here too, on every run.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn each_fallback_on_this_host_is_exact() {
    require_root();
    // (NETGRAPH_EBPF_WITHOUT, feature -> state the run must show with a word of its
    // detail, workloads whose loss is the documented cost of that path)
    type Variant<'a> = (&'a str, &'a [(&'a str, &'a str, &'a str)], &'a [&'a str]);
    let variants: [Variant; 6] = [
        (
            "",
            &[
                ("owner_tracepoints", "used", ""),
                ("tcp_health", "used", ""),
                ("drops", "used", ""),
                ("packet_capture", "used", ""),
            ],
            &[],
        ),
        (
            "typed_tracepoints",
            &[
                ("owner_tracepoints", "used", "raw tracepoints"),
                ("socket_counts", "absent", ""),
                // Health and drops from their classic tracepoints instead.
                ("tcp_health", "used", "classic"),
                ("drops", "used", "classic"),
            ],
            &[],
        ),
        (
            // What Linux 5.10-6.1 runs: the accept syscalls, no kfunc, classic TC.
            "socket_tracepoints,device_netns,tcx",
            &[
                ("owner_tracepoints", "used", "accept(2)"),
                ("socket_counts", "absent", ""),
                ("device_netns", "absent", ""),
                ("interface_hooks", "used", "classic TC"),
            ],
            &[],
        ),
        (
            // No tracepoint at all: an accepted socket in another namespace is found
            // by nothing (sock_diag asks netgraph's own namespace).
            "owner_tracepoints",
            &[("owner_tracepoints", "absent", "")],
            &["accepted"],
        ),
        (
            "socket_counts,interface_hooks,path_tracepoints",
            &[
                ("socket_counts", "absent", ""),
                ("interface_hooks", "absent", ""),
                ("path_tracepoints", "absent", ""),
            ],
            &[],
        ),
        (
            "tcp_health,drops",
            &[("tcp_health", "absent", ""), ("drops", "absent", "")],
            &[],
        ),
    ];
    let mut failures = Vec::new();
    let mut rows = vec![table_header()];
    for (without, expected, lost) in variants {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-matrix-host");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let output = Command::new("sh")
            .arg(scenario_dir().join("scenario.sh"))
            .env("NETGRAPH", env!("CARGO_BIN_EXE_netgraph"))
            .env("LABTRAFFIC", examples())
            .env("WORK", &work)
            .env("NETGRAPH_EBPF_WITHOUT", without)
            .output()
            .expect("sh runs the scenario");
        let output = String::from_utf8_lossy(&output.stdout).into_owned();
        let label = format!(
            "host {} without [{}]",
            procfs_release(),
            if without.is_empty() { "-" } else { without }
        );
        let outcome = Outcome::parse(&output);
        check_run(&label, &outcome, &output, expected, &mut failures);
        outcome.check_health(&label, &mut failures);
        outcome.check_skipped_are_lost(&label, &mut failures);
        outcome.check_limit(&label, &mut failures);
        outcome.check_capture(&label, &mut failures);
        let shares = outcome.shares(&label, lost, &mut failures);
        rows.push(table_row(&label, &outcome, &shares));
    }
    report(&rows.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Debian's kernels, oldest to newest, each in a VM.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn debian_kernels_from_5_10_to_the_newest_are_exact() {
    require_root();
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("..");
    let cache = target.join("kernels");
    let fetched = Command::new("bash")
        .arg(scenario_dir().join("kernels.sh"))
        .arg(&cache)
        .output()
        .expect("bash runs kernels.sh");
    assert!(
        fetched.status.success(),
        "cannot fetch the matrix's kernels from Debian's archive: {}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    let kernels: Vec<(String, PathBuf)> = String::from_utf8_lossy(&fetched.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, dir)| (name.to_string(), PathBuf::from(dir)))
        .collect();
    assert!(
        kernels.len() >= 4,
        "the matrix needs at least 4 kernels, got {kernels:?}"
    );
    let mut failures = Vec::new();
    let mut rows = vec![table_header()];
    for (name, dir) in &kernels {
        let initramfs = cache.join(format!("{name}.initramfs.gz"));
        let built = Command::new("bash")
            .arg(scenario_dir().join("initramfs.sh"))
            .arg(dir)
            .arg(&initramfs)
            .arg(env!("CARGO_BIN_EXE_netgraph"))
            .arg(examples())
            .output()
            .expect("bash runs initramfs.sh");
        assert!(
            built.status.success(),
            "cannot build the initramfs for {name}: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let started = Instant::now();
        // A TCG boot fails now and then early on: once more before it counts.
        let mut output = boot(dir, &initramfs);
        if !Outcome::parse(&output).done {
            output = boot(dir, &initramfs);
        }
        let outcome = Outcome::parse(&output);
        let label = format!("Linux {name} (VM, {} s)", started.elapsed().as_secs());
        let expected = expected_by_version(name);
        let expected: Vec<(&str, &str, &str)> = expected
            .iter()
            .map(|(a, b, c)| (*a, b.as_str(), *c))
            .collect();
        check_run(&label, &outcome, &output, &expected, &mut failures);
        outcome.check_health(&label, &mut failures);
        outcome.check_skipped_are_lost(&label, &mut failures);
        outcome.check_limit(&label, &mut failures);
        outcome.check_capture(&label, &mut failures);
        let shares = outcome.shares(&label, &[], &mut failures);
        rows.push(table_row(&label, &outcome, &shares));
    }
    report(&rows.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// What a kernel of this version must choose when nothing refuses anything: the
/// tracepoints from 6.3, the kfunc from 6.2, tcx from 6.6.
fn expected_by_version(name: &str) -> Vec<(&'static str, String, &'static str)> {
    let mut numbers = name
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    let used = |yes: bool| if yes { "used" } else { "absent" }.to_string();
    vec![
        (
            "owner_tracepoints",
            used(true),
            if version >= (6, 3) {
                "typed"
            } else {
                "accept(2)"
            },
        ),
        ("socket_counts", used(version >= (6, 3)), ""),
        ("device_netns", used(version >= (6, 2)), ""),
        ("path_tracepoints", used(true), ""),
        (
            "interface_hooks",
            used(true),
            if version >= (6, 6) {
                "(tcx)"
            } else {
                "classic TC"
            },
        ),
        // Typed tracepoints (Linux 5.5+) on tracepoints of 4.16: every kernel of the
        // matrix.
        ("tcp_health", used(true), "typed"),
        // kfree_skb says why since 5.17.
        (
            "drops",
            used(version >= (5, 17)),
            if version >= (5, 17) { "typed" } else { "" },
        ),
        // bpf_perf_event_output from cgroup_skb: every kernel of the matrix.
        ("packet_capture", used(true), ""),
    ]
}

/// The run ended, netgraph complained of nothing, and each feature is as expected.
/// The programs and counts of a warning that the kernel skipped runs
/// (`... programs=drops_on_free_typed:1,owner_on_send:2 ...`).
fn skipped_runs(line: &str) -> Option<Vec<(String, u64)>> {
    if !line.starts_with("@log") || !line.contains("skipped runs of netgraph's tracing programs") {
        return None;
    }
    let list = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("programs="))?;
    list.split(',')
        .map(|pair| {
            let (program, count) = pair.split_once(':')?;
            Some((program.to_string(), count.parse().ok()?))
        })
        .collect()
}

fn check_run(
    label: &str,
    outcome: &Outcome,
    output: &str,
    expected: &[(&str, &str, &str)],
    failures: &mut Vec<String>,
) {
    if !outcome.done || !outcome.problems.is_empty() {
        let tail: Vec<&str> = output
            .lines()
            .filter(|l| !l.starts_with("@json"))
            .rev()
            .take(40)
            .collect();
        failures.push(format!(
            "{label}: the scenario did not end cleanly; its output ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    for (feature, state, word) in expected {
        let (found, detail) = outcome.feature(feature);
        if found != *state || !detail.contains(word) {
            failures.push(format!(
                "{label}: {feature} is {found} ({detail}), expected {state} {word}"
            ));
        }
    }
}

/// Boots a kernel with the matrix's initramfs; its console is the scenario's output.
fn boot(kernel: &Path, initramfs: &Path) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "1G"])
        .args(["-nic", "none", "-no-reboot", "-display", "none"])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(kernel.join("vmlinuz"))
        .arg("-initrd")
        .arg(initramfs)
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 runs (scripts/test.sh installs qemu-system-x86)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    // A guest that hangs is ended: the run then fails as not done.
    let deadline = Instant::now() + Duration::from_secs(600);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.wait();
    reader.join().unwrap_or_default()
}

fn procfs_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn a_warning_of_skipped_runs_is_read_per_program() {
    let line = "@log 2026-12-04T04:39:11Z  WARN netgraph::engine::ebpf: the kernel skipped runs of netgraph's tracing programs (an interrupt came while one ran on the same CPU): some events were not recorded missed=3 programs=drops_on_free_typed:1,owner_on_send:2";
    assert_eq!(
        skipped_runs(line),
        Some(vec![
            ("drops_on_free_typed".into(), 1),
            ("owner_on_send".into(), 2)
        ])
    );
    assert_eq!(skipped_runs("@log WARN something else programs=a:1"), None);
}

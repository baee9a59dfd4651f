//! The namespace test lab: two network namespaces joined by a veth pair, real processes
//! moving traffic, nftables counters as the IP-layer truth, netgraph running in `a`.
#![allow(dead_code)]

pub mod browser;
pub mod containerd;
pub mod dns;
pub mod docker;
pub mod engines;
pub mod podman;
pub mod webhook;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const A4: &str = "10.201.0.1";
pub const B4: &str = "10.201.0.2";
pub const A6: &str = "fd00:201::1";
pub const B6: &str = "fd00:201::2";

/// Lab tests need root (namespaces, capture, eBPF). They are `#[ignore]`d, so a plain
/// `cargo test` reports them as ignored, never as passed; `scripts/test.sh` runs them as
/// root with `--include-ignored`. Run without root, they fail and say why.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "lab tests need root (network namespaces, packet capture, eBPF): run scripts/test.sh as root"
    );
}

/// Appends a measured figure to target/lab-report.txt, which CI prints at the end.
pub fn report(line: &str) {
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../lab-report.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The TCP sockets of namespace `ns` that `filter` selects, with their internals
/// (`ss -tin FILTER`), one field per item: `rtt:52.1/0.4`, `bytes_acked:1234`, ...
pub fn ss_fields(ns: &str, filter: &[&str]) -> Vec<String> {
    let mut line = vec!["netns", "exec", ns, "ss", "-tinH"];
    line.extend(filter);
    run("ip", &line)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Loads nftables `rules` (behind `launcher`, such as `ip netns exec NS`).
pub fn apply_nft(launcher: &[&str], rules: &str) {
    let line: Vec<&str> = launcher.iter().copied().chain(["nft", "-f", "-"]).collect();
    let mut nft = Command::new(line[0])
        .args(&line[1..])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    nft.stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft rejected:\n{rules}");
}

/// An nftables table `table` of counters: (name, hook `input` or `output`, match).
pub fn truth_rules(table: &str, counters: &[(&str, &str, &str)]) -> String {
    let mut rules = format!("table inet {table} {{\n");
    for (name, _, _) in counters {
        rules += &format!("  counter {name} {{ }}\n");
    }
    for hook in ["input", "output"] {
        rules += &format!("  chain {hook} {{ type filter hook {hook} priority 0; policy accept;\n");
        for (name, _, matcher) in counters.iter().filter(|(_, h, _)| *h == hook) {
            rules += &format!("    {matcher} counter name {name}\n");
        }
        rules += "  }\n";
    }
    rules + "}\n"
}

pub struct Lab {
    /// Labs run one at a time: parallel full-speed workloads would measure each other.
    _serial: std::sync::MutexGuard<'static, ()>,
    pub a: String,
    pub b: String,
    /// The veth end in `a`, the interface netgraph reports.
    pub veth_a: String,
    pub veth_b: String,
    dir: PathBuf,
    children: Vec<Child>,
    cgroups: Vec<PathBuf>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Lab {
    pub fn new() -> Lab {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("netgraph-lab-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            _serial: SERIAL.lock().unwrap_or_else(|p| p.into_inner()),
            a: format!("nga{id}"),
            b: format!("ngb{id}"),
            veth_a: format!("va{id}"),
            veth_b: format!("vb{id}"),
            dir,
            children: Vec::new(),
            cgroups: Vec::new(),
        };
        for ns in [&lab.a, &lab.b] {
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        lab.link(
            &lab.veth_a.clone(),
            &lab.veth_b.clone(),
            "10.201.0",
            "fd00:201:",
        );
        lab
    }

    /// Adds a veth pair between the namespaces, `PREFIX4.1/24` and `PREFIX6:1/64` in `a`.
    pub fn link(&self, in_a: &str, in_b: &str, prefix4: &str, prefix6: &str) {
        run(
            "ip",
            &["link", "add", in_a, "type", "veth", "peer", "name", in_b],
        );
        for (dev, ns, host) in [(in_a, &self.a, "1"), (in_b, &self.b, "2")] {
            run("ip", &["link", "set", dev, "netns", ns]);
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{prefix4}.{host}/24"),
                    "dev",
                    dev,
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{prefix6}:{host}/64"),
                    "dev",
                    dev,
                    "nodad",
                ],
            );
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// A veth pair between the host's namespace (`in_host`, `PREFIX4.1/24`) and `b`
    /// (`PREFIX4.2/24`), IPv4 only so that no background IPv6 traffic crosses it.
    /// It goes away with `b`.
    pub fn link_to_host(&self, in_host: &str, in_b: &str, prefix4: &str) {
        self.link_namespace_to_host(&self.b, in_host, in_b, prefix4);
    }

    /// A veth between the host's namespace and `ns`: the host is `<prefix4>.1`, `ns`
    /// is `<prefix4>.2` (IPv4 only).
    pub fn link_namespace_to_host(&self, ns: &str, in_host: &str, in_ns: &str, prefix4: &str) {
        let in_b = in_ns;
        run(
            "ip",
            &["link", "add", in_host, "type", "veth", "peer", "name", in_b],
        );
        run("ip", &["link", "set", in_b, "netns", ns]);
        let ns = ns.to_string();
        for (ns, dev, host) in [(None, in_host, "1"), (Some(&ns), in_b, "2")] {
            let mut ip = vec!["ip"];
            if let Some(ns) = ns {
                ip = vec!["ip", "netns", "exec", ns, "ip"];
            }
            let sysctl = format!("net.ipv6.conf.{dev}.disable_ipv6=1");
            let mut sysctl_cmd: Vec<&str> = ip[..ip.len() - 1].to_vec();
            sysctl_cmd.extend(["sysctl", "-q", "-w", &sysctl]);
            run(sysctl_cmd[0], &sysctl_cmd[1..]);
            let address = format!("{prefix4}.{host}/24");
            let mut add: Vec<&str> = ip.clone();
            add.extend(["addr", "add", &address, "dev", dev]);
            run(add[0], &add[1..]);
            let mut up: Vec<&str> = ip.clone();
            up.extend(["link", "set", dev, "up"]);
            run(up[0], &up[1..]);
        }
    }

    /// A link between the host's namespace and `b` on a subnet of its own (a lab torn
    /// down a moment ago may still hold its addresses): (host end, b end, host's
    /// address, b's address).
    pub fn host_link(&self) -> (String, String, String, String) {
        let (host_end, b_end) = (
            format!("vh{}", &self.veth_a[2..]),
            format!("vk{}", &self.veth_b[2..]),
        );
        let subnet: u64 = self.veth_a[2..].parse::<u64>().unwrap_or(0) % 250;
        let prefix = format!("10.204.{subnet}");
        self.link_to_host(&host_end, &b_end, &prefix);
        (
            host_end,
            b_end,
            format!("{prefix}.1"),
            format!("{prefix}.2"),
        )
    }

    /// Pings `target` from namespace `b` (the kernel answers: traffic with no socket).
    pub fn ping_from_b(&self, target: &str, count: u32, interval: &str, size: u32) {
        let (count, size) = (count.to_string(), size.to_string());
        run(
            "ip",
            &[
                "netns", "exec", &self.b, "ping", "-q", "-c", &count, "-i", interval, "-s", &size,
                target,
            ],
        );
    }

    /// Installs nftables counters in `a`: (name, hook, match), hook `input` or `output`.
    pub fn truth(&self, counters: &[(&str, &str, &str)]) {
        self.truth_in(&self.a, counters);
    }

    /// Installs nftables counters in namespace `ns` (`b`: the far end of the link).
    pub fn truth_in(&self, ns: &str, counters: &[(&str, &str, &str)]) {
        apply_nft(
            &["ip", "netns", "exec", ns],
            &truth_rules("truth", counters),
        );
    }

    /// Bytes counted by a truth counter.
    pub fn truth_bytes(&self, name: &str) -> u64 {
        self.truth_bytes_in(&self.a, name)
    }

    /// Bytes counted by a truth counter in namespace `ns`.
    pub fn truth_bytes_in(&self, ns: &str, name: &str) -> u64 {
        self.truth_counter(ns, name, "bytes")
    }

    /// Packets a truth counter in namespace `ns` saw.
    pub fn truth_packets_in(&self, ns: &str, name: &str) -> u64 {
        self.truth_counter(ns, name, "packets")
    }

    /// One figure (`bytes` or `packets`) of an nftables truth counter.
    fn truth_counter(&self, ns: &str, name: &str, figure: &str) -> u64 {
        let json = run(
            "ip",
            &[
                "netns", "exec", ns, "nft", "-j", "list", "counter", "inet", "truth", name,
            ],
        );
        let value: Value = serde_json::from_str(&json).unwrap();
        value["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|item| item["counter"][figure].as_u64())
            .unwrap_or_else(|| panic!("no counter {name} in {json}"))
    }

    /// Sets offloads of an interface in namespace `ns` (`ethtool -K DEV FEATURE on|off ...`).
    pub fn offloads(&self, ns: &str, device: &str, features: &[&str]) {
        let mut args = vec!["netns", "exec", ns, "ethtool", "-K", device];
        args.extend(features);
        run("ip", &args);
    }

    /// (bytes, packets) an interface in namespace `ns` has transmitted, as its driver
    /// counts them: after segmentation, each frame with its link header.
    pub fn transmitted(&self, ns: &str, device: &str) -> (u64, u64) {
        let read = |what: &str| -> u64 {
            let path = format!("/sys/class/net/{device}/statistics/{what}");
            run("ip", &["netns", "exec", ns, "cat", &path])
                .trim()
                .parse()
                .unwrap()
        };
        (read("tx_bytes"), read("tx_packets"))
    }

    /// A scratch file path inside the lab's directory (configs, certificates, data).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a GeoIP test database (entries `NETWORK=ISO:Name`, written with Debian's
    /// libmaxmind-db-writer-perl) and a configuration that uses it with the per-process
    /// breakdown on; returns the configuration's path.
    pub fn geoip_config(&self, entries: &[&str]) -> PathBuf {
        let database = self.path("test-country.mmdb");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/geoip/write_database.pl");
        let mut args = vec![script, database.to_str().unwrap()];
        args.extend(entries);
        run("perl", &args);
        let config = self.path("geoip.toml");
        std::fs::write(
            &config,
            format!(
                "[geoip]\ndatabase = {:?}\ncountries_per_process = true\n",
                database.display().to_string()
            ),
        )
        .unwrap();
        config
    }

    /// Servers for the GeoIP workload in `b`: TCP on its IPv4 address at `port`, UDP
    /// echo on its IPv6 address at `port + 1`.
    pub fn geo_servers(&mut self, port: u16) {
        let b = self.b.clone();
        self.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:{port}")]);
        let udp = format!("[{B6}]:{}", port + 1);
        self.serve(&b, "ng-echo6", &["udp-echo", &udp]);
    }

    /// The GeoIP workload: `ng-geo` in `a` sends TCP to `b`'s IPv4 address for a
    /// second, then 3000 UDP datagrams to its IPv6 address, the socket held open a second
    /// after (so that the capture engine finds it on a loaded host too).
    pub fn geo_clients(&self, port: u16) {
        self.exec(
            &self.a,
            "ng-geo",
            &["tcp-send", &format!("{B4}:{port}"), "1s"],
        );
        let udp = format!("[{B6}]:{}", port + 1);
        self.exec(
            &self.a,
            "ng-geo",
            &["udp-ping", &udp, "3000", "512", "unconnected", "1000"],
        );
    }

    /// A copy of the traffic generator under its own name, so it is its own process name.
    /// A link to labtraffic under `name` (the process's name). A hard link opens no file
    /// for writing: a copy's descriptor, inherited by a child another thread forked at
    /// that moment, made exec of the new tool fail with ETXTBSY. A copy only where the
    /// lab directory is on another filesystem.
    pub fn tool(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        if !path.exists() && std::fs::hard_link(labtraffic(), &path).is_err() {
            std::fs::copy(labtraffic(), &path).unwrap();
        }
        path
    }

    /// Starts a tool in a namespace and waits until it says it is listening.
    pub fn serve(&mut self, ns: &str, tool: &str, args: &[&str]) {
        self.start_until(ns, tool, args, "listening");
    }

    /// Starts a tool in a namespace, kept until the lab ends, and waits for its first
    /// line to be `ready`.
    pub fn start_until(&mut self, ns: &str, tool: &str, args: &[&str], ready: &str) {
        let mut child = self.spawn(ns, tool, args);
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), ready, "{tool} did not start");
        self.children.push(child);
    }

    pub fn spawn(&self, ns: &str, tool: &str, args: &[&str]) -> Child {
        self.spawn_with(&["ip", "netns", "exec", ns], tool, args)
    }

    /// Starts a tool behind a launcher command, output piped.
    fn spawn_with(&self, launcher: &[&str], tool: &str, args: &[&str]) -> Child {
        self.command_with(launcher, tool, args).spawn().unwrap()
    }

    fn command_with(&self, launcher: &[&str], tool: &str, args: &[&str]) -> Command {
        let mut command = Command::new(launcher[0]);
        command
            .args(&launcher[1..])
            .arg(self.tool(tool))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Runs a tool to its end and returns what it printed.
    pub fn exec(&self, ns: &str, tool: &str, args: &[&str]) -> String {
        self.exec_with_env(ns, tool, args, &[])
    }

    /// Runs a tool to its end in the host's namespace (the test's own), and returns what
    /// it printed.
    pub fn exec_on_host(&self, tool: &str, args: &[&str]) -> String {
        let output = self.command_with(&["env"], tool, args).output().unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a tool to its end with `env` set, and returns what it printed.
    pub fn exec_with_env(
        &self,
        ns: &str,
        tool: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        let output = self
            .command_with(&["ip", "netns", "exec", ns], tool, args)
            .envs(env.iter().copied())
            .spawn()
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts netgraph in namespace `a` and waits until it runs (the capture engine
    /// sees the interfaces of its own namespace).
    pub fn netgraph(&self, extra: &[&str]) -> Netgraph {
        let netgraph = self.netgraph_as(&["ip", "netns", "exec", &self.a], extra);
        netgraph.wait_for_log("netgraph running", Duration::from_secs(10));
        netgraph
    }

    /// Starts netgraph in the host's namespace, as a service runs (the eBPF engine sees
    /// the sockets of every namespace), and waits until it runs.
    pub fn netgraph_on_host(&self, extra: &[&str]) -> Netgraph {
        let netgraph = self.netgraph_as(&[], extra);
        netgraph.wait_for_log("netgraph running", Duration::from_secs(10));
        netgraph
    }

    /// Starts netgraph on the host with the eBPF engine, and checks that it is the one.
    pub fn netgraph_ebpf(&self, extra: &[&str]) -> Netgraph {
        let mut args = vec!["--engine", "ebpf"];
        args.extend(extra);
        let netgraph = self.netgraph_on_host(&args);
        let log = netgraph.log();
        assert!(
            log.contains("engine=\"ebpf\""),
            "not the eBPF engine:\n{log}"
        );
        netgraph
    }

    /// Starts netgraph behind a wrapper command (such as `setpriv ...`), without waiting.
    pub fn netgraph_as(&self, wrapper: &[&str], extra: &[&str]) -> Netgraph {
        let mut line = wrapper.to_vec();
        line.push(env!("CARGO_BIN_EXE_netgraph"));
        self.netgraph_from(&line, extra)
    }

    /// Starts netgraph by `line` (a command line that ends in netgraph, such as a
    /// container runtime's `run ... IMAGE`), without waiting.
    pub fn netgraph_from(&self, line: &[&str], extra: &[&str]) -> Netgraph {
        let run = NEXT.fetch_add(1, Ordering::Relaxed);
        let out = self.dir.join(format!("netgraph-{run}.jsonl"));
        let err = self.dir.join(format!("netgraph-{run}.log"));
        let mut command = Command::new(line[0]);
        command.args(&line[1..]);
        // Writable by whoever the wrapper runs netgraph as (nobody, in some tests).
        let state = self.dir.join(format!("state-{run}"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        command.args(["run", "--json"]);
        if !extra.contains(&"--interval") {
            command.args(["--interval", "1s"]);
        }
        let child = command
            .args(extra)
            // Each run keeps its store (and spools) in the lab, never in /var/lib.
            .env("STATE_DIRECTORY", &state)
            .env("RUST_LOG", "netgraph=debug")
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Netgraph {
            child,
            out,
            err,
            state,
        }
    }

    /// A fresh cgroup v2 group, removed with the lab; returns its path below the root.
    pub fn cgroup(&mut self, name: &str) -> String {
        let root = netgraph::cgroup::cgroup2_root().expect("cgroup v2 is mounted");
        let path = root.join(name);
        std::fs::create_dir_all(&path).unwrap();
        self.cgroups.push(path);
        format!("/{name}")
    }

    /// Starts a tool in a namespace inside a cgroup, as a container runtime would.
    pub fn spawn_in_cgroup(&self, ns: &str, cgroup: &str, tool: &str, args: &[&str]) -> Child {
        let root = netgraph::cgroup::cgroup2_root().unwrap();
        let procs = root
            .join(cgroup.trim_start_matches('/'))
            .join("cgroup.procs");
        // Join the cgroup first: inside `ip netns exec` /sys is remounted without it.
        let script = format!(
            "echo $$ > {} && exec ip netns exec {ns} \"$0\" \"$@\"",
            procs.display()
        );
        self.spawn_with(&["sh", "-c", &script], tool, args)
    }
}

impl Lab {
    /// Starts a tool in the host's namespace, stopped with the lab.
    pub fn start_on_host(&mut self, tool: &str, args: &[&str]) {
        let child = self.spawn_with(&["env"], tool, args);
        self.children.push(child);
    }

    /// Starts a tool in the host's namespace inside a cgroup, stopped with the lab.
    pub fn start_in_cgroup_on_host(&mut self, cgroup: &str, tool: &str, args: &[&str]) {
        let root = netgraph::cgroup::cgroup2_root().unwrap();
        let procs = root
            .join(cgroup.trim_start_matches('/'))
            .join("cgroup.procs");
        let script = format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display());
        let child = self.spawn_with(&["sh", "-c", &script], tool, args);
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // Children before their parents.
        for cgroup in self.cgroups.iter().rev() {
            let _ = std::fs::remove_dir(cgroup);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn labtraffic() -> PathBuf {
    let netgraph = Path::new(env!("CARGO_BIN_EXE_netgraph"));
    let path = netgraph.parent().unwrap().join("examples/labtraffic");
    assert!(
        path.exists(),
        "{} missing: cargo test builds examples",
        path.display()
    );
    path
}

pub struct Netgraph {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    /// Its state directory (the store), unless the configuration names another.
    pub state: PathBuf,
}

impl Netgraph {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "netgraph never logged {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (SIGHUP to reload).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Kills netgraph with SIGKILL (no chance to flush) and returns the lines it wrote.
    pub fn kill(mut self) -> Records {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let text = std::fs::read_to_string(&self.out).unwrap();
        // The last line may have been cut short.
        let lines = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Records {
            lines,
            log: self.log(),
        }
    }

    /// Stops netgraph with SIGTERM, as systemd would, and returns every line it wrote.
    pub fn stop(self) -> Records {
        self.stop_within(Duration::from_secs(10))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Like `stop`, failing unless netgraph exits within `limit` of the signal.
    pub fn stop_within(mut self, limit: Duration) -> Records {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "netgraph exited with {status}:\n{}",
                    self.log()
                );
                break;
            }
            if Instant::now() >= deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "netgraph ignored SIGTERM for {limit:?}; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&self.out).unwrap();
        let lines = text
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
            })
            .collect();
        Records {
            lines,
            log: self.log(),
        }
    }
}

impl Drop for Netgraph {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Records {
    pub lines: Vec<Value>,
    pub log: String,
}

impl Records {
    /// Lines of one `type` (`process`, `peer`, `country`, `interface`, `engine`).
    pub fn of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["type"] == kind)
    }

    /// The widest gap between two intervals, by their engine lines, in milliseconds.
    pub fn widest_gap_ms(&self) -> u64 {
        let mut stamps: Vec<u64> = self
            .of_type("engine")
            .map(|l| l["timestamp_ms"].as_u64().unwrap())
            .collect();
        stamps.sort_unstable();
        stamps.windows(2).map(|w| w[1] - w[0]).max().unwrap()
    }

    pub fn processes(&self) -> impl Iterator<Item = &Value> {
        self.lines.iter().filter(|l| l["type"] == "process")
    }

    /// Events the engine reported it could not record, over the whole run.
    pub fn lost_events(&self) -> u64 {
        self.lines
            .iter()
            .filter(|l| l["type"] == "engine")
            .map(|l| l["lost_events"].as_u64().unwrap())
            .sum()
    }

    /// Every line of a process name.
    pub fn rows<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.processes().filter(move |l| l["name"] == name)
    }

    /// Sum of a per-interval field over a process's `country` lines for one country.
    pub fn country_sum(&self, name: &str, country: &str, field: &str) -> u64 {
        self.lines
            .iter()
            .filter(|l| l["type"] == "country" && l["name"] == name && l["country"] == country)
            .map(|l| l[field].as_u64().unwrap())
            .sum()
    }

    /// What a process sent to each country, which must add up to all it sent.
    pub fn sent_by_country(&self, name: &str, countries: &[&str]) -> Vec<u64> {
        let sent: Vec<u64> = countries
            .iter()
            .map(|country| self.country_sum(name, country, "sent_bytes_last"))
            .collect();
        assert_eq!(
            sent.iter().sum::<u64>(),
            self.sum_all(name, "sent_bytes_last"),
            "the countries of {name} sum to what it sent"
        );
        sent
    }

    pub fn interfaces(&self) -> impl Iterator<Item = &Value> {
        self.lines.iter().filter(|l| l["type"] == "interface")
    }

    /// Sum of a per-interval field over every line of a process name on an interface.
    pub fn sum(&self, name: &str, interface: &str, field: &str) -> u64 {
        self.processes()
            .filter(|l| l["name"] == name && l["interface"] == interface)
            .map(|l| l[field].as_u64().unwrap())
            .sum()
    }

    /// Like `sum`, over every interface.
    pub fn sum_all(&self, name: &str, field: &str) -> u64 {
        self.rows(name).map(|l| l[field].as_u64().unwrap()).sum()
    }

    /// A field only some rows carry (TCP health, drops), summed over a process's rows:
    /// absent counts as 0.
    pub fn sum_where_present(&self, name: &str, field: &str) -> u64 {
        self.rows(name)
            .map(|l| l[field].as_u64().unwrap_or(0))
            .sum()
    }

    pub fn interface_sum(&self, interface: &str, field: &str) -> u64 {
        self.interfaces()
            .filter(|l| l["interface"] == interface)
            .map(|l| l[field].as_u64().unwrap())
            .sum()
    }

    /// Every interval, on every interface: process rows plus buckets equal what was captured.
    pub fn assert_conservation(&self) {
        let mut by_interval: BTreeMap<(u64, String), [u64; 4]> = BTreeMap::new();
        // Process rows into sums 0 and 1, interface rows into 2 and 3.
        let lines = self
            .processes()
            .map(|line| (0, line))
            .chain(self.interfaces().map(|line| (2, line)));
        for (first, line) in lines {
            let key = (
                line["timestamp_ms"].as_u64().unwrap(),
                line["interface"].as_str().unwrap().to_string(),
            );
            let sums = by_interval.entry(key).or_default();
            sums[first] += line["sent_bytes_last"].as_u64().unwrap();
            sums[first + 1] += line["recv_bytes_last"].as_u64().unwrap();
        }
        assert!(!by_interval.is_empty(), "netgraph wrote nothing");
        for ((at, interface), [sent, recv, captured_sent, captured_recv]) in by_interval {
            assert_eq!(
                (sent, recv),
                (captured_sent, captured_recv),
                "interval {at} on {interface}: processes + buckets != captured"
            );
        }
    }
}

/// An nftables table of a test in the host's namespace (inet family), deleted however
/// the test ends.
pub struct HostTable(pub String);

impl Drop for HostTable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.0])
            .status();
    }
}

impl HostTable {
    /// A counter's `packets` or `bytes`.
    pub fn counter(&self, name: &str, figure: &str) -> u64 {
        let json = run("nft", &["-j", "list", "counter", "inet", &self.0, name]);
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|item| item["counter"][figure].as_u64())
            .unwrap_or_else(|| panic!("no counter {name} in {json}"))
    }
}

/// `part / whole` as a fraction, for share checks.
pub fn share(part: u64, whole: u64) -> f64 {
    assert!(
        whole > 0,
        "the truth counter saw nothing: the workload did not run"
    );
    part as f64 / whole as f64
}

/// The `bytes=N` a tool printed.
pub fn printed_bytes(output: &str) -> u64 {
    output
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bytes="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no bytes= in {output:?}"))
}

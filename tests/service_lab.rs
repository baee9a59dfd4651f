//! Running as a service: `netgraph check`, exit statuses, reloads and shutdown.

mod lab;
mod servers;

use lab::*;
use servers::*;
use std::process::Command;

fn check(config: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_netgraph"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn check_refuses_a_broken_configuration_with_status_2() {
    let path = std::env::temp_dir().join(format!("netgraph-check-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[influxdb]]\nurl = \"http://x\"\napi = \"v1\"\ndatabse = \"d\"\n",
    )
    .unwrap();
    let (status, out) = check(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(status, 2, "{out}");
    assert!(out.contains("line 4, column 1: key `databse`"), "{out}");
    assert!(out.contains("did you mean `database`?"), "{out}");
    let (status, out) = check(std::path::Path::new("/nonexistent/netgraph.toml"));
    assert_eq!(status, 2);
    assert!(
        out.contains("cannot read the configuration /nonexistent/netgraph.toml"),
        "{out}"
    );
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn check_reports_every_sink() {
    require_root();
    let lab = Lab::new();
    let influx = Influx::start(&lab.path(""), InfluxOptions::default());
    influx.query("CREATE DATABASE present");
    let port = free_port();
    let config = lab.path("check.toml");
    let write = |database: &str| {
        std::fs::write(
            &config,
            format!(
                "state_directory = \"{}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n\
                 [[influxdb]]\nname = \"main\"\nurl = \"{}\"\napi = \"v1\"\ndatabase = \"{database}\"\n",
                lab.path("check-state").display(),
                influx.url
            ),
        )
        .unwrap();
    };
    write("present");
    let (status, out) = check(&config);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("ok    InfluxDB sink main"), "{out}");
    assert!(out.contains("ok    eBPF engine"), "{out}");
    assert!(out.contains("ok    embedded store"), "{out}");
    write("absent");
    let (status, out) = check(&config);
    assert_eq!(status, 1, "{out}");
    assert!(
        out.contains("FAIL  InfluxDB sink main") && out.contains("404"),
        "{out}"
    );
    report("netgraph check: exit 0 with a reachable InfluxDB, 1 naming the missing database, 2 on a broken file");
}

/// SIGHUP during traffic: a broken file is refused and the old settings kept; a good
/// one changes the interval; no byte is lost across either.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn sighup_reloads_without_losing_counts() {
    require_root();
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "udp dport 8401")]);
    let config = lab.path("hup.toml");
    let state = lab.path("hup-state");
    let settings = |interval: &str| {
        format!(
            "interval = \"{interval}\"\nstate_directory = \"{}\"\n[web]\nenabled = false\n",
            state.display()
        )
    };
    std::fs::write(&config, settings("1s")).unwrap();
    let (out, err) = (lab.path("hup.jsonl"), lab.path("hup.log"));
    let mut netgraph = Command::new(env!("CARGO_BIN_EXE_netgraph"))
        .args(["run", "--engine", "ebpf", "--json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "netgraph=info")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&err).unwrap_or_default();
    let wait_log = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !log().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "never logged {needle:?}:\n{}",
                log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_log("netgraph running");
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:8401"), "recv"]);
    let mut traffic = lab.spawn(
        &lab.a,
        "ng-hup",
        &["udp-trickle", &format!("{B4}:8401"), "8", "500"],
    );
    let hup = |pid: u32| {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    };
    std::thread::sleep(std::time::Duration::from_secs(2));
    std::fs::write(&config, "interval = \"often\"\n").unwrap();
    hup(netgraph.id());
    wait_log("configuration not reloaded");
    std::thread::sleep(std::time::Duration::from_secs(1));
    std::fs::write(&config, settings("2s")).unwrap();
    hup(netgraph.id());
    wait_log("configuration reloaded");
    assert!(traffic.wait().unwrap().success());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(netgraph.id() as i32, libc::SIGTERM) };
    assert!(netgraph.wait().unwrap().success(), "{}", log());

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sent: u64 = lines
        .iter()
        .filter(|l| l["type"] == "process" && l["name"] == "ng-hup")
        .map(|l| l["sent_bytes_last"].as_u64().unwrap())
        .sum();
    let truth = lab.truth_bytes("out");
    let ends: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "engine")
        .map(|l| l["timestamp_ms"].as_u64().unwrap())
        .collect();
    let steps: Vec<u64> = ends.windows(2).map(|w| w[1] - w[0]).collect();
    report(&format!(
        "SIGHUP: a broken file refused, then the interval changed from 1 s to 2 s; {sent} of {truth} bytes counted across both"
    ));
    assert_eq!(sent, truth, "no byte lost across the reloads");
    assert!(
        steps.iter().take(3).all(|s| *s <= 1000),
        "1 s intervals first: {steps:?}"
    );
    assert!(
        steps.iter().rev().skip(1).take(2).all(|s| *s == 2000),
        "2 s intervals after the reload: {steps:?}"
    );
}

/// Values that make no sense are refused at load by `run` and `check` alike: status 2,
/// one line naming the key and the fix, and never a secret.
#[test]
fn bad_values_are_refused_by_run_and_check_alike() {
    let dir = std::env::temp_dir().join(format!("netgraph-bad-values-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let influx = |extra: &str| {
        format!("[[influxdb]]\nurl = \"http://127.0.0.1:8086\"\napi = \"v1\"\ndatabase = \"d\"\n{extra}\n")
    };
    let at = |url: &str| format!("[[influxdb]]\nurl = \"{url}\"\napi = \"v1\"\ndatabase = \"d\"\n");
    let cases: Vec<(String, &str)> = vec![
        (influx("flush_interval = \"0s\""), "flush_interval"),
        (influx("timeout = \"0s\""), "timeout"),
        (influx("max_retry_delay = \"0s\""), "max_retry_delay"),
        (influx("spool_max_mib = 0"), "spool_max_mib"),
        (
            influx("password_file = \"/nonexistent/pw\""),
            "password_file /nonexistent/pw",
        ),
        (
            influx("ca_file = \"/nonexistent/ca.pem\""),
            "ca_file /nonexistent/ca.pem",
        ),
        ("interval = \"100000000000000d\"\n".into(), "interval"),
        ("interval = \"2d\"\n".into(), "interval"),
        ("interval = \"10ms\"\n".into(), "interval"),
        ("log_level = \"verbose!!\"\n".into(), "log_level"),
        ("log_level = \"netgraph=loud\"\n".into(), "log_level"),
        (at("http://"), "url"),
        (at("http://exa mple:80"), "url"),
        (at("http://example:99999"), "url"),
        (
            at("http://user:pw-S3CRET@example:8086"),
            "credentials in the URL are refused",
        ),
        (at("http://example:8086/?db=x"), "no query"),
        (
            "[web]\nlisten = \"0.0.0.0:9800\"\ntoken = \"\"\n".into(),
            "token is empty or only white space",
        ),
        (
            "[web]\nlisten = \"0.0.0.0:9800\"\ntoken = \"   \"\n".into(),
            "token is empty or only white space",
        ),
        (
            "[web]\nlisten = \"0.0.0.0:9800\"\n".into(),
            "without a token",
        ),
        (
            format!(
                "[web]\nlisten = \"0.0.0.0:9800\"\ntoken_file = \"{}\"\n",
                empty.display()
            ),
            "token is empty or only white space",
        ),
        (
            "[alerts]\nwebhook = \"https://u:pw-S3CRET@example/hook\"\n".into(),
            "user:password@ are refused",
        ),
        (
            "[alerts]\nwebhook = \"ftp://example/\"\n".into(),
            "is not HTTP",
        ),
        (
            "[alerts]\nwebhook = \"http://127.0.0.1:0/\"\n".into(),
            "port other than 0",
        ),
        (
            "[web]\ntoken_file = \"/nonexistent/token\"\n".into(),
            "token_file /nonexistent/token",
        ),
        ("[store]\nkeep_seconds = \"0s\"\n".into(), "keep_seconds"),
        ("[store]\nmax_size_mib = 0\n".into(), "max_size_mib"),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad-{index}.toml"));
        std::fs::write(&path, text).unwrap();
        let (status, out) = check(&path);
        assert_eq!(status, 2, "check {text:?}: {out}");
        let line = out.trim();
        assert!(!line.contains('\n'), "one line: {line:?}");
        assert!(
            line.contains(expected) && line.contains(&*path.to_string_lossy()),
            "{text:?}: {line}"
        );
        let run = Command::new(env!("CARGO_BIN_EXE_netgraph"))
            .args(["run", "--config"])
            .arg(&path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&run.stderr).into_owned();
        assert_eq!(run.status.code(), Some(2), "run {text:?}: {said}");
        assert_eq!(said.trim().lines().count(), 1, "one line: {said:?}");
        assert!(said.contains(expected), "run {text:?}: {said}");
        for output in [&out, &said] {
            assert!(!output.contains("S3CRET"), "a secret in {output}");
        }
    }
    let (status, out) = (
        Command::new(env!("CARGO_BIN_EXE_netgraph"))
            .args(["run", "--interval", "0s"])
            .output()
            .unwrap()
            .status
            .code(),
        "",
    );
    assert_eq!(status, Some(2), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP while InfluxDB hangs (takes connections, never answers): each reload is done
/// at once, not after the hung request; SIGTERM neither, and the points stay spooled
/// (export_lab sends such points at the next start).
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn a_reload_never_waits_for_a_hung_influxdb() {
    require_root();
    let lab = Lab::new();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hung.incoming().flatten() {
            held.push(stream);
        }
    });
    let config = lab.path("hung.toml");
    let state = lab.path("hung-state");
    std::fs::write(
        &config,
        format!(
            "interval = \"1s\"\nstate_directory = \"{}\"\n[web]\nenabled = false\n\
             [[influxdb]]\nurl = \"{hung_url}\"\napi = \"v1\"\ndatabase = \"lab\"\nflush_interval = \"200ms\"\n",
            state.display()
        ),
    )
    .unwrap();
    let (out, err) = (lab.path("hung.jsonl"), lab.path("hung.log"));
    /// Ends netgraph if the test fails before it does.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut running = Running(
        Command::new(env!("CARGO_BIN_EXE_netgraph"))
            .args(["run", "--engine", "ebpf", "--json", "--config"])
            .arg(&config)
            .env("RUST_LOG", "netgraph=info")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    let netgraph = &mut running.0;
    let log = || std::fs::read_to_string(&err).unwrap_or_default();
    let count = |needle: &str| log().matches(needle).count();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count("netgraph running") == 0 {
        assert!(std::time::Instant::now() < deadline, "{}", log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The writer is in a request to the hung server by now.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let mut waits = Vec::new();
    for reload in 1..=3 {
        let asked = std::time::Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(netgraph.id() as i32, libc::SIGHUP) };
        while count("configuration reloaded") < reload {
            assert!(
                asked.elapsed() < std::time::Duration::from_secs(10),
                "reload {reload} never done:\n{}",
                log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        waits.push(asked.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(1200));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(netgraph.id() as i32, libc::SIGTERM) };
    let stopping = std::time::Instant::now();
    assert!(netgraph.wait().unwrap().success(), "{}", log());
    report(&format!(
        "SIGHUP while InfluxDB hangs: reloads done in {waits:?}; SIGTERM took {:?}",
        stopping.elapsed()
    ));
    for wait in &waits {
        // An interval at most (the reload closes the running one first), never the
        // hung request's timeout.
        assert!(*wait < std::time::Duration::from_millis(1500), "{waits:?}");
    }
    // Nor does shutdown wait for it: the points stay spooled for the next start.
    assert!(
        stopping.elapsed() < std::time::Duration::from_millis(1500),
        "SIGTERM took {:?}:\n{}",
        stopping.elapsed(),
        log()
    );
    let spooled = std::fs::read_dir(state.join("spool"))
        .unwrap()
        .flatten()
        .flat_map(|sink| std::fs::read_dir(sink.path()).unwrap().flatten())
        .count();
    assert!(spooled > 0, "the points stay spooled:\n{}", log());
    assert!(!log().contains("took long to close"), "{}", log());
}

/// `run` without `--config` reads /etc/netgraph/netgraph.toml, as `check` and `report`
/// do: here a file of the test's own, mounted there in a mount namespace of its own.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn run_reads_the_packaged_configuration_by_default() {
    require_root();
    let lab = Lab::new();
    let etc = lab.path("etc-netgraph");
    std::fs::create_dir_all(&etc).unwrap();
    let port = free_port();
    std::fs::write(
        etc.join("netgraph.toml"),
        format!(
            "state_directory = \"{}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n",
            lab.path("packaged-state").display()
        ),
    )
    .unwrap();
    // The mount point, made (and removed) only where no package made it.
    let made = !std::path::Path::new("/etc/netgraph").exists();
    if made {
        std::fs::create_dir("/etc/netgraph").unwrap();
    }
    let mount = format!(
        "mount --bind {} /etc/netgraph && exec \"$@\"",
        etc.display()
    );
    let netgraph = lab.netgraph_as(&["unshare", "--mount", "sh", "-c", &mount, "sh"], &[]);
    let started = std::panic::catch_unwind(|| {
        netgraph.wait_for_log("netgraph running", std::time::Duration::from_secs(15));
        let log = netgraph.log();
        assert!(
            log.contains("configuration path=/etc/netgraph/netgraph.toml"),
            "{log}"
        );
        // The page listens where the packaged file says.
        let answer = ureq::get(format!("http://127.0.0.1:{port}/api/v1/status")).call();
        assert!(answer.is_ok(), "{answer:?}\n{log}");
    });
    drop(netgraph.stop());
    if made {
        let _ = std::fs::remove_dir("/etc/netgraph");
    }
    if let Err(panic) = started {
        std::panic::resume_unwind(panic);
    }
}

/// `check` checks without starting: it leaves no store, directory or journal behind.
#[test]
fn check_leaves_no_file_behind() {
    let dir = std::env::temp_dir().join(format!("netgraph-check-clean-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    let config = dir.join("netgraph.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[web]\nenabled = false\n",
            state.display()
        ),
    )
    .unwrap();
    let (_, out) = check(&config);
    assert!(
        out.contains("ok    embedded store: ") && out.contains("will be created"),
        "{out}"
    );
    assert!(!state.exists(), "check made {}", state.display());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped example, as a new user installs it: `check` passes on a host with no
/// database listening (its sections that need one are commented out).
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn the_shipped_example_passes_check() {
    require_root();
    let state = std::env::temp_dir().join(format!("netgraph-example-{}", std::process::id()));
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/netgraph.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_netgraph"))
        .args(["check", "--config"])
        .arg(&example)
        .env("STATE_DIRECTORY", &state)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(!state.exists(), "check made {}", state.display());
}

//! `netgraph top` under tmux with real traffic: reading the daemon, and counting by
//! itself when no daemon answers; sorting and mode keys; q quits.

mod lab;
mod servers;

use lab::*;
use servers::free_port;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(session: &str, command: &str) -> Tmux {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", session])
            .status();
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                "140",
                "-y",
                "35",
                command,
            ])
            .status()
            .expect("tmux runs (scripts/test.sh installs it)");
        assert!(status.success());
        Tmux {
            session: session.to_string(),
        }
    }

    fn screen(&self) -> String {
        let output = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "top never showed {needle:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn keys(&self, keys: &str) {
        Command::new("tmux")
            .args(["send-keys", "-t", &self.session, keys])
            .status()
            .unwrap();
    }

    fn running(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.session])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn exercise(tmux: &Tmux, process: &str, source: &str) {
    let screen = tmux.wait_for(process, Duration::from_secs(15));
    assert!(screen.contains(source), "{screen}");
    assert!(screen.contains("PID") && screen.contains("SENT") && screen.contains("RECEIVED"));
    tmux.keys("r");
    tmux.wait_for("sort: received", Duration::from_secs(5));
    tmux.keys("m");
    let screen = tmux.wait_for("mode: total", Duration::from_secs(5));
    assert!(
        screen.contains(process),
        "total mode keeps the process:\n{screen}"
    );
    tmux.keys("n");
    tmux.wait_for("sort: name", Duration::from_secs(5));
    // The cursor down to the process, then its peers.
    tmux.keys("m");
    tmux.wait_for("mode: rate", Duration::from_secs(5));
    let mut moves = 0;
    while !tmux
        .screen()
        .lines()
        .any(|l| l.contains('>') && l.contains(process))
    {
        assert!(
            moves < 40,
            "the cursor never reached {process}:\n{}",
            tmux.screen()
        );
        tmux.keys("Down");
        moves += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    tmux.keys("p");
    let screen = tmux.wait_for(&format!("peers of {process}"), Duration::from_secs(5));
    let screen = if screen.contains(B4) {
        screen
    } else {
        tmux.wait_for(B4, Duration::from_secs(5))
    };
    assert!(screen.contains("SERVICE"), "{screen}");
    tmux.keys("Escape");
    tmux.wait_for("PROGRAM", Duration::from_secs(5));
    tmux.keys("q");
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.running() {
        assert!(Instant::now() < deadline, "q did not quit top");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn top_reads_the_running_daemon() {
    require_root();
    let mut lab = Lab::new();
    let port = free_port();
    let config = lab.path("top.toml");
    std::fs::write(
        &config,
        format!("[web]\nlisten = \"127.0.0.1:{port}\"\n[peers]\nenabled = true\n[[limits]]\nname = \"toplimit\"\nprocess = \"ng-top\"\negress = \"48 kbit/s\"\n"),
    )
    .unwrap();
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:8301"), "recv"]);
    let daemon = lab.netgraph_on_host(&["--engine", "ebpf", "--config", &config.to_string_lossy()]);
    let mut traffic = lab.spawn(
        &lab.a,
        "ng-top",
        &["udp-trickle", &format!("{B4}:8301"), "12", "1000"],
    );
    let tmux = Tmux::start(
        "netgraph-top-daemon",
        &format!(
            "{} top --url http://127.0.0.1:{port}",
            env!("CARGO_BIN_EXE_netgraph")
        ),
    );
    // The limit (12 kB/s sent into 6 kB/s) shows in its column, holding.
    let screen = tmux.wait_for("toplimit (held)", Duration::from_secs(15));
    assert!(screen.contains("LIMIT"), "{screen}");
    let row = screen
        .lines()
        .find(|line| line.contains("/ng-top"))
        .unwrap_or_default();
    assert!(
        row.contains("toplimit (held)"),
        "the limit on ng-top's row:\n{screen}"
    );
    exercise(&tmux, "ng-top", "daemon at http://127.0.0.1");
    report("top: the daemon's live view under tmux; the LIMIT column names ng-top's limit, holding; s/r/n sort, m mode and q work");
    let _ = traffic.kill();
    let _ = traffic.wait();
    drop(daemon);
}

#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn top_counts_by_itself_without_a_daemon() {
    require_root();
    let mut lab = Lab::new();
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["udp-sink", &format!("{B4}:8302"), "recv"]);
    let mut traffic = lab.spawn(
        &lab.a,
        "ng-alone",
        &["udp-trickle", &format!("{B4}:8302"), "12", "1000"],
    );
    let closed = free_port();
    let tmux = Tmux::start(
        "netgraph-top-alone",
        &format!(
            "{} top --engine ebpf --url http://127.0.0.1:{closed}",
            env!("CARGO_BIN_EXE_netgraph")
        ),
    );
    exercise(&tmux, "ng-alone", "counting by itself");
    report("top: counting by itself under tmux when no daemon answers");
    let _ = traffic.kill();
    let _ = traffic.wait();
}

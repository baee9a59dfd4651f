//! Podman for the labs: an image built here from busybox and the traffic tool (no
//! registry), podman's Docker-compatible API on a socket of the lab's own, and
//! containers run as this machine allows (runc, cgroupfs, bounded limits).

use super::{labtraffic, run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// podman as this machine runs it: crun refuses the hybrid cgroup layout.
const PODMAN: [&str; 5] = [
    "podman",
    "--runtime",
    "runc",
    "--cgroup-manager",
    "cgroupfs",
];

pub struct Podman {
    pub socket: PathBuf,
    pub image: String,
    service: Child,
    containers: Vec<String>,
}

pub fn podman(args: &[&str]) -> String {
    let mut all = PODMAN[1..].to_vec();
    all.extend(args);
    run(PODMAN[0], &all)
}

/// What podman printed, whatever its exit status (`None` if it could not run).
pub fn podman_output(args: &[&str]) -> Option<String> {
    let output = Command::new(PODMAN[0])
        .args(&PODMAN[1..])
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A container root filesystem in `dir`: busybox, the traffic tool as `/ng-cont` and
/// its shared libraries, as ldd lists them.
pub fn lab_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "lib64", "lib/x86_64-linux-gnu", "tmp"] {
        std::fs::create_dir_all(rootfs.join(sub)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::fs::copy(labtraffic(), rootfs.join("ng-cont")).unwrap();
    let ldd = run("ldd", &[labtraffic().to_str().unwrap()]);
    for library in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let inside = rootfs.join(library.trim_start_matches('/'));
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::copy(library, inside).unwrap();
    }
    rootfs
}

impl Podman {
    /// Imports the lab image (`/ng-cont` is the traffic tool) and starts the API
    /// service on a socket in `dir`.
    pub fn start(dir: &Path, tag: &str) -> Podman {
        let rootfs = lab_rootfs(dir);
        let image = format!("localhost/netgraph-lab:{tag}");
        let mut tar = Command::new("tar")
            .args(["-C", rootfs.to_str().unwrap(), "-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let imported = Command::new(PODMAN[0])
            .args(&PODMAN[1..])
            .args(["import", "-", &image])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            tar.wait().unwrap().success(),
            "tar of the image's files failed"
        );
        assert!(
            imported.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
        let socket = dir.join("podman.sock");
        let service = Command::new(PODMAN[0])
            .args(&PODMAN[1..])
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "podman's API did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Podman {
            socket,
            image,
            service,
            containers: Vec::new(),
        }
    }

    /// Runs `command` (the traffic tool is `/ng-cont`, busybox is `/bin/busybox`) in a
    /// new container named `name` and waits for it to end; returns the container's
    /// full id. The container is removed with the lab.
    pub fn run(&mut self, name: &str, labels: &[&str], command_line: &[&str]) -> String {
        let id = self.start_container(name, labels, command_line);
        let status = podman(&["wait", name]);
        assert_eq!(
            status.trim(),
            "0",
            "{name} failed: {}",
            podman(&["logs", name])
        );
        id
    }

    /// Starts `command` in a new container named `name`, without waiting for it;
    /// returns its full id. The container is removed with the lab.
    pub fn start_container(
        &mut self,
        name: &str,
        labels: &[&str],
        command_line: &[&str],
    ) -> String {
        let mut command = vec![
            "run",
            "-d",
            "--name",
            name,
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
        ];
        for label in labels {
            command.extend(["--label", label]);
        }
        command.push(&self.image);
        command.extend(command_line);
        self.containers.push(name.to_string());
        podman(&command).trim().to_string()
    }

    /// How long the container `name` ran, from its start to its end.
    pub fn lifetime(&self, name: &str) -> Duration {
        let millis = podman(&[
            "inspect",
            "--format",
            "{{(.State.FinishedAt.Sub .State.StartedAt).Milliseconds}}",
            name,
        ]);
        let millis: i64 = millis
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}'s lifetime: {millis:?}"));
        Duration::from_millis(millis.max(0) as u64)
    }

    /// A config file naming this lab's podman socket.
    pub fn config(&self, path: &Path) -> PathBuf {
        let mut file = std::fs::File::create(path).unwrap();
        writeln!(
            file,
            "[containers]\ndocker_api = [{:?}]",
            self.socket.display().to_string()
        )
        .unwrap();
        path.to_path_buf()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.service.kill();
        let _ = self.service.wait();
        for name in &self.containers {
            let _ = Command::new(PODMAN[0])
                .args(&PODMAN[1..])
                .args(["rm", "-f", name])
                .output();
        }
        let _ = Command::new(PODMAN[0])
            .args(&PODMAN[1..])
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

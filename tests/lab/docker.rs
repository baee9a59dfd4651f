//! Docker for the labs (Debian's docker.io): a daemon of the lab's own (its socket,
//! data and state in the lab's directory, no bridge or iptables changes), an image
//! imported from the lab's root filesystem (no registry), containers on the host's
//! network.

use super::podman::lab_rootfs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOCKER: &str = "/usr/bin/docker";

pub struct Docker {
    pub socket: PathBuf,
    pub image: String,
    root: PathBuf,
    daemon: Child,
    containers: Vec<String>,
}

impl Docker {
    pub fn start(dir: &Path) -> Docker {
        let root = dir.join("docker");
        std::fs::create_dir_all(&root).unwrap();
        let socket = root.join("docker.sock");
        let daemon = Command::new("dockerd")
            .arg(format!("--data-root={}", root.join("data").display()))
            .arg(format!("--exec-root={}", root.join("exec").display()))
            .arg(format!("--pidfile={}", root.join("dockerd.pid").display()))
            .arg(format!("--host=unix://{}", socket.display()))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args([
                "--storage-driver=vfs",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            .args([
                "--containerd-namespace=netgraph-lab",
                "--containerd-plugins-namespace=netgraph-lab-plugins",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("dockerd.log")).unwrap())
            .spawn()
            .expect("dockerd runs (scripts/test.sh installs docker.io)");
        let docker = Docker {
            socket,
            image: "netgraph-lab-docker:lab".into(),
            root,
            daemon,
            containers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while docker.command(&["version"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(docker.root.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let rootfs = lab_rootfs(dir);
        let tar = docker.root.join("rootfs.tar");
        super::run(
            "tar",
            &[
                "-C",
                rootfs.to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                ".",
            ],
        );
        let image = docker.image.clone();
        docker
            .command(&["import", tar.to_str().unwrap(), &image])
            .unwrap();
        docker
    }

    /// Runs docker against this daemon; its output, or its error output.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(DOCKER)
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Runs `command_line` in a container `name` on the host's network, to its end;
    /// returns the container's id.
    pub fn run(&mut self, name: &str, command_line: &[&str]) -> String {
        let mut args = vec![
            "run",
            "--name",
            name,
            "--network",
            "host",
            "--ulimit",
            "nofile=20000:20000",
        ];
        let image = self.image.clone();
        args.push(&image);
        args.extend(command_line);
        self.containers.push(name.to_string());
        self.command(&args)
            .unwrap_or_else(|error| panic!("docker run {name}: {error}"));
        self.command(&["inspect", "--format", "{{.Id}}", name])
            .unwrap()
            .trim()
            .to_string()
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = self.command(&["rm", "-f", name]);
        }
        // SIGTERM: dockerd stops its containerd too.
        let _ = Command::new("kill")
            .arg(self.daemon.id().to_string())
            .status();
        let _ = self.daemon.wait();
        let netns = self.root.join("exec/netns/default");
        let _ = Command::new("umount").arg(&netns).status();
    }
}

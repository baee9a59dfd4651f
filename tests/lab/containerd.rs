//! containerd for the labs: its daemon on sockets of the lab's own, the lab image
//! (built by podman) imported into its `k8s.io` namespace, and containers run with
//! `ctr` as the kubelet would label them.

use super::podman::{self, Podman};
use super::run;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Containerd {
    pub socket: PathBuf,
    image: String,
    daemon: Child,
}

impl Containerd {
    /// Starts containerd with its state in `dir` and imports `podman`'s lab image.
    pub fn start(dir: &Path, lab_image: &Podman) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\n[grpc]\n  address = {:?}\n",
                dir.join("root").display().to_string(),
                dir.join("state").display().to_string(),
                socket.display().to_string()
            ),
        )
        .unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("containerd.log")).unwrap())
            .spawn()
            .expect("containerd runs (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let archive = dir.join("image.tar");
        podman::podman(&[
            "save",
            "--format",
            "docker-archive",
            "-o",
            archive.to_str().unwrap(),
            &lab_image.image,
        ]);
        let containerd = Containerd {
            socket,
            image: lab_image.image.clone(),
            daemon,
        };
        containerd.ctr(&["images", "import", archive.to_str().unwrap()]);
        containerd
    }

    fn ctr(&self, args: &[&str]) -> String {
        let mut all = vec!["-a", self.socket.to_str().unwrap(), "-n", "k8s.io"];
        all.extend(args);
        run("ctr", &all)
    }

    /// Runs `command` in a container with id `id` (64 hexadecimal digits, as the CRI
    /// makes them) and `labels`, in the host's network namespace, to its end.
    pub fn run(&self, id: &str, labels: &[&str], command: &[&str]) {
        self.ctr(&self.run_args(id, labels, command));
    }

    /// As [`Containerd::run`], without waiting: `ctr` runs until the container ends
    /// (wait for the child).
    pub fn start_container(&self, id: &str, labels: &[&str], command: &[&str]) -> Child {
        Command::new("ctr")
            .args(["-a", self.socket.to_str().unwrap(), "-n", "k8s.io"])
            .args(self.run_args(id, labels, command))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr runs")
    }

    fn run_args<'a>(
        &'a self,
        id: &'a str,
        labels: &[&'a str],
        command: &[&'a str],
    ) -> Vec<&'a str> {
        let mut args = vec!["run", "--rm", "--net-host"];
        for label in labels {
            args.extend(["--label", *label]);
        }
        args.extend([self.image.as_str(), id]);
        args.extend(command);
        args
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

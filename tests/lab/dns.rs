//! A DNS server for a lab: dnsmasq in `b` answers the lab's test domain, and `a`'s
//! processes (under `ip netns exec`) use it through `/etc/netns/<a>/resolv.conf`.

use super::{Lab, B4};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

pub struct LabDns {
    dnsmasq: Child,
    netns_etc: PathBuf,
}

impl LabDns {
    /// Starts dnsmasq on `b`'s IPv4 address (UDP and TCP port 53) with `records`
    /// (dnsmasq options such as `--address=/files.lab.test/10.201.0.2`).
    pub fn start(lab: &Lab, records: &[String]) -> LabDns {
        let dnsmasq = Command::new("ip")
            .args(["netns", "exec", &lab.b, "dnsmasq", "--keep-in-foreground"])
            .args(["--conf-file=/dev/null", "--no-resolv", "--no-hosts"])
            .args(["--bind-interfaces", "--port=53"])
            .arg(format!("--listen-address={B4}"))
            .arg(format!("--pid-file={}", lab.path("dnsmasq.pid").display()))
            .args(records)
            .spawn()
            .expect("dnsmasq runs (scripts/test.sh installs dnsmasq-base)");
        // `ip netns exec` puts /etc/netns/NS/resolv.conf over /etc/resolv.conf.
        let netns_etc = PathBuf::from(format!("/etc/netns/{}", lab.a));
        std::fs::create_dir_all(&netns_etc).unwrap();
        std::fs::write(netns_etc.join("resolv.conf"), format!("nameserver {B4}\n")).unwrap();
        let mut dns = LabDns { dnsmasq, netns_etc };
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            dns.dnsmasq.try_wait().unwrap().is_none(),
            "dnsmasq did not start"
        );
        dns
    }
}

impl Drop for LabDns {
    fn drop(&mut self) {
        let _ = self.dnsmasq.kill();
        let _ = self.dnsmasq.wait();
        let _ = std::fs::remove_dir_all(&self.netns_etc);
    }
}

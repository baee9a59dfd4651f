//! The two engines as the labs run them, and what each must reach against the truth.

use super::{report, share, Lab, Netgraph, A4};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineUnderTest {
    /// libpcap, started in namespace `a` as nethogs would run there.
    Capture,
    /// eBPF, started on the host as the service runs (it sees every namespace's sockets).
    Ebpf,
}

impl EngineUnderTest {
    pub fn label(self) -> &'static str {
        match self {
            EngineUnderTest::Capture => "capture engine",
            EngineUnderTest::Ebpf => "eBPF engine",
        }
    }

    /// Starts netgraph with this engine (and `extra` arguments) and waits until it runs.
    pub fn start(self, lab: &Lab, extra: &[&str]) -> Netgraph {
        match self {
            EngineUnderTest::Capture => {
                let mut args = vec!["--engine", "capture"];
                args.extend(extra);
                lab.netgraph(&args)
            }
            EngineUnderTest::Ebpf => lab.netgraph_ebpf(extra),
        }
    }

    /// What a full-speed workload must reach. The capture engine: at least 99% of the
    /// truth and never more (packets it missed are lost to it). The eBPF engine counts
    /// where the truth is taken: within 1% either way.
    pub fn assert_share(self, what: &str, attributed: u64, truth: u64) {
        let share = share(attributed, truth);
        report(&format!(
            "{}, {what}: {:.2}% of {truth} bytes attributed",
            self.label(),
            share * 100.0
        ));
        let within = match self {
            EngineUnderTest::Capture => share >= 0.99 && attributed <= truth,
            EngineUnderTest::Ebpf => (0.99..=1.01).contains(&share),
        };
        assert!(
            within,
            "{}, {what}: {attributed} attributed of {truth} ({:.2}%)",
            self.label(),
            share * 100.0
        );
    }

    /// Where the kernel answers pings from `b` with no process involved, as this
    /// engine sees it. The capture engine runs in `a`, whose kernel answers `b`'s
    /// address (Germany in the GeoIP workload's database); the eBPF engine hooks the
    /// host's interfaces, so `b` pings the host over a link of its own.
    pub fn kernel_answering(self, lab: &Lab) -> KernelAnswering {
        match self {
            EngineUnderTest::Capture => KernelAnswering {
                interface: lab.veth_a.clone(),
                target: A4.to_string(),
                geoip_entry: None,
                country: "Germany",
            },
            EngineUnderTest::Ebpf => {
                let (host_end, _, host_address, b_address) = lab.host_link();
                KernelAnswering {
                    interface: host_end,
                    target: host_address,
                    geoip_entry: Some(format!("{b_address}/32=JP:Japan")),
                    country: "Japan",
                }
            }
        }
    }
}

impl EngineUnderTest {
    /// A client `client` in `a` (`client_args` to the traffic tool) against `server`
    /// in `b` on TCP `port`; what the client sent is checked, and what it received
    /// when `check_received`.
    pub fn tcp_client_case(
        self,
        what: &str,
        port: u16,
        server: &[&str],
        client: &str,
        client_args: &[&str],
        check_received: bool,
    ) {
        let mut lab = Lab::new();
        let (out, inbound) = (format!("tcp dport {port}"), format!("tcp sport {port}"));
        lab.truth(&[("out", "output", &out), ("in", "input", &inbound)]);
        let b = lab.b.clone();
        lab.serve(&b, "ng-server", server);
        let netgraph = self.start(&lab, &[]);
        lab.exec(&lab.a, client, client_args);
        settle();
        let records = netgraph.stop();
        records.assert_conservation();
        self.assert_share(
            &format!("{what}, sent"),
            records.sum(client, &lab.veth_a, "sent_bytes_last"),
            lab.truth_bytes("out"),
        );
        if check_received {
            self.assert_share(
                &format!("{what}, received"),
                records.sum(client, &lab.veth_a, "recv_bytes_last"),
                lab.truth_bytes("in"),
            );
        }
        assert_eq!(records.lost_events(), 0);
    }
}

/// See [`EngineUnderTest::kernel_answering`].
pub struct KernelAnswering {
    pub interface: String,
    /// The address `b` pings.
    pub target: String,
    /// The GeoIP database entry that names the pinger, if it needs one of its own.
    pub geoip_entry: Option<String>,
    pub country: &'static str,
}

/// Lets the last packets of a workload reach netgraph's counters.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(300));
}

/// Runs `case` for each engine, as `case::capture` and `case::ebpf`.
#[allow(unused_macros)]
macro_rules! for_both_engines {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            use super::*;

            #[test]
            #[ignore = "needs root; scripts/test.sh runs it as root"]
            fn capture() {
                require_root();
                super::$case(EngineUnderTest::Capture);
            }

            #[test]
            #[ignore = "needs root; scripts/test.sh runs it as root"]
            fn ebpf() {
                require_root();
                super::$case(EngineUnderTest::Ebpf);
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use for_both_engines;

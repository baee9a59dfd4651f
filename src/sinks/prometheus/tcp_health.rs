//! TCP's health per series: retransmissions and connects as counters that only grow,
//! connect failures by kind, and the round-trip time of the latest interval that had
//! one (a gauge). Series appear once a row has health to tell.

use super::ProcessLabels;
use crate::traffic::TcpHealth;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    #[prometheus(flatten)]
    process: ProcessLabels,
    /// refused, timed_out, unreachable or aborted.
    kind: &'static str,
}

type Seconds = Gauge<f64, AtomicU64>;

#[derive(Default)]
pub struct TcpHealthMetrics {
    retransmits: Family<ProcessLabels, Counter>,
    retransmit_bytes: Family<ProcessLabels, Counter>,
    connects: Family<ProcessLabels, Counter>,
    connect_failures: Family<FailureLabels, Counter>,
    rtt: Family<ProcessLabels, Seconds>,
    rtt_max: Family<ProcessLabels, Seconds>,
}

impl TcpHealthMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netgraph_tcp_retransmitted_segments",
            "TCP segments a process sent again (the kernel's TcpRetransSegs, per process)",
            self.retransmits.clone(),
        );
        registry.register(
            "netgraph_tcp_retransmitted_bytes",
            "TCP payload bytes a process sent again",
            self.retransmit_bytes.clone(),
        );
        registry.register(
            "netgraph_tcp_connects",
            "TCP connects a process made that completed the handshake",
            self.connects.clone(),
        );
        registry.register(
            "netgraph_tcp_connect_failures",
            "TCP connects a process made that failed, by kind",
            self.connect_failures.clone(),
        );
        registry.register(
            "netgraph_tcp_rtt_seconds",
            "Smoothed TCP round-trip time of a process's traffic, weighted by bytes, in the latest interval that had one",
            self.rtt.clone(),
        );
        registry.register(
            "netgraph_tcp_rtt_max_seconds",
            "Largest smoothed TCP round-trip time of a process's sockets in that interval",
            self.rtt_max.clone(),
        );
    }

    pub fn add(&self, labels: &ProcessLabels, health: &TcpHealth) {
        if health.is_zero() {
            return;
        }
        self.retransmits
            .get_or_create(labels)
            .inc_by(health.retransmits);
        self.retransmit_bytes
            .get_or_create(labels)
            .inc_by(health.retransmit_bytes);
        self.connects.get_or_create(labels).inc_by(health.connects);
        for (kind, count) in [
            ("refused", health.connects_refused),
            ("timed_out", health.connects_timed_out),
            ("unreachable", health.connects_unreachable),
            ("aborted", health.connects_aborted),
        ] {
            let failure = FailureLabels {
                process: labels.clone(),
                kind,
            };
            self.connect_failures.get_or_create(&failure).inc_by(count);
        }
        if let Some(rtt) = health.rtt_us() {
            let seconds = |us: u32| f64::from(us) / 1e6;
            self.rtt.get_or_create(labels).set(seconds(rtt));
            self.rtt_max
                .get_or_create(labels)
                .set(seconds(health.rtt_max_us));
        }
    }
}

//! The Prometheus endpoint: `/metrics` in OpenMetrics text, counters per (process name,
//! uid, interface) that only ever grow (a process that exits keeps its last value), per
//! interface statistics, and the self metrics. No pid label: every new process would be a
//! new series.

mod drops;
mod health;
mod limits;
mod peer_counters;
mod tcp_health;

use super::self_metrics::SelfMetrics;
use super::Sink;
use crate::accounting::IntervalReport;
use crate::engine::features::FeatureState;
use crate::workload::Workload;
use drops::DropMetrics;
use limits::LimitMetrics;
use peer_counters::PeerCounters;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tcp_health::TcpHealthMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    name: String,
    /// Empty for the `unknown ...` buckets.
    uid: String,
    interface: String,
    /// Empty (which Prometheus reads as absent) outside containers and pods.
    container: String,
    pod: String,
    namespace: String,
    /// Why an `unknown` series has no process; empty for processes.
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CountryLabels {
    name: String,
    uid: String,
    interface: String,
    container: String,
    pod: String,
    namespace: String,
    country: String,
}

/// (container, pod, namespace) labels; empty where not set.
fn workload_labels(workload: Option<&Workload>) -> (String, String, String) {
    let text = |value: Option<&str>| value.unwrap_or_default().to_string();
    (
        text(workload.and_then(Workload::container_label)),
        text(workload.and_then(|w| w.pod.as_deref())),
        text(workload.and_then(|w| w.namespace.as_deref())),
    )
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    engine: String,
    feature: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    interface: String,
}

type Counters<L> = Family<L, Counter>;

#[derive(Default)]
struct Metrics {
    process_sent_bytes: Counters<ProcessLabels>,
    process_recv_bytes: Counters<ProcessLabels>,
    process_sent_packets: Counters<ProcessLabels>,
    process_recv_packets: Counters<ProcessLabels>,
    country_sent_bytes: Counters<CountryLabels>,
    country_recv_bytes: Counters<CountryLabels>,
    interface_sent_bytes: Counters<InterfaceLabels>,
    interface_recv_bytes: Counters<InterfaceLabels>,
    capture_received: Counters<InterfaceLabels>,
    capture_dropped: Counters<InterfaceLabels>,
    capture_if_dropped: Counters<InterfaceLabels>,
    lost_events: Counter,
    /// 1 for the state each optional engine feature is in, 0 for the others.
    engine_features: Family<FeatureLabels, Gauge>,
    tcp: TcpHealthMetrics,
    drops: DropMetrics,
    limits: LimitMetrics,
}

pub struct PrometheusSink {
    metrics: Metrics,
    peers: PeerCounters,
    heartbeat: Arc<health::Heartbeat>,
}

impl PrometheusSink {
    /// Binds `listen` now (so a taken port is an error at start) and serves from a thread;
    /// `peers`: how many (process, peer) series to export at most.
    pub fn start(
        listen: SocketAddr,
        peers: usize,
        token: Option<crate::config::Secret>,
        self_metrics: &SelfMetrics,
        alerts: &crate::alerts::board::AlertBoard,
    ) -> anyhow::Result<PrometheusSink> {
        let metrics = Metrics::default();
        let peers = PeerCounters::new(peers);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        peers.register(&mut registry);
        self_metrics.register(&mut registry);
        alerts.register(&mut registry);
        let listener = crate::http::bind(
            listen,
            "the Prometheus endpoint",
            "choose another [prometheus] listen address",
        )?;
        if token.is_none() && !listen.ip().is_loopback() {
            tracing::warn!("[prometheus] listen = \"{listen}\" serves /metrics beyond this host to anyone: set [prometheus] token (scrapes then send it as a bearer token) or listen on 127.0.0.1");
        }
        let heartbeat = Arc::new(health::Heartbeat::default());
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(metrics_page))
            .with_state(Arc::new(registry))
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(token),
                crate::http::token::require_token,
            ))
            // After the token's layer: probes send none, and it says only "ok".
            .merge(
                axum::Router::new()
                    .route("/healthz", axum::routing::get(health::healthz))
                    .with_state(heartbeat.clone()),
            );
        crate::http::serve_in_thread("prometheus", listener, router)?;
        tracing::info!("Prometheus metrics on http://{listen}/metrics");
        Ok(PrometheusSink {
            metrics,
            peers,
            heartbeat,
        })
    }
}

async fn metrics_page(
    axum::extract::State(registry): axum::extract::State<Arc<Registry>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        let status = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
        return (status, format!("cannot encode metrics: {error}")).into_response();
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response()
}

impl Metrics {
    fn register(&self, registry: &mut Registry) {
        let families = [
            (
                "netgraph_process_transmitted_bytes",
                "IP-layer bytes a process sent",
                &self.process_sent_bytes,
            ),
            (
                "netgraph_process_received_bytes",
                "IP-layer bytes a process received",
                &self.process_recv_bytes,
            ),
            (
                "netgraph_process_transmitted_packets",
                "Packets a process sent",
                &self.process_sent_packets,
            ),
            (
                "netgraph_process_received_packets",
                "Packets a process received",
                &self.process_recv_packets,
            ),
        ];
        register_all(registry, families);
        let country_families = [
            (
                "netgraph_country_transmitted_bytes",
                "IP-layer bytes a process sent to a country (GeoIP breakdown)",
                &self.country_sent_bytes,
            ),
            (
                "netgraph_country_received_bytes",
                "IP-layer bytes a process received from a country (GeoIP breakdown)",
                &self.country_recv_bytes,
            ),
        ];
        register_all(registry, country_families);
        let interface_families = [
            (
                "netgraph_interface_transmitted_bytes",
                "IP-layer bytes sent with a local end",
                &self.interface_sent_bytes,
            ),
            (
                "netgraph_interface_received_bytes",
                "IP-layer bytes received with a local end",
                &self.interface_recv_bytes,
            ),
            (
                "netgraph_capture_received_packets",
                "Packets the capture received (ps_recv)",
                &self.capture_received,
            ),
            (
                "netgraph_capture_dropped_packets",
                "Packets dropped by the capture buffer (ps_drop)",
                &self.capture_dropped,
            ),
            (
                "netgraph_capture_interface_dropped_packets",
                "Packets dropped by the interface (ps_ifdrop)",
                &self.capture_if_dropped,
            ),
        ];
        register_all(registry, interface_families);
        registry.register(
            "netgraph_engine_lost_events",
            "Events the engine could not record (full maps, tracing program runs the kernel skipped)",
            self.lost_events.clone(),
        );
        registry.register(
            "netgraph_engine_feature",
            "Optional engine features: 1 for the state each is in (used, refused, absent)",
            self.engine_features.clone(),
        );
        self.tcp.register(registry);
        self.drops.register(registry);
        self.limits.register(registry);
    }
}

/// Registers counter families given as (name, help, family).
fn register_all<L, const N: usize>(
    registry: &mut Registry,
    families: [(&str, &str, &Counters<L>); N],
) where
    L: Clone
        + std::hash::Hash
        + Eq
        + prometheus_client::encoding::EncodeLabelSet
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    for (name, help, family) in families {
        registry.register(name, help, family.clone());
    }
}

impl Sink for PrometheusSink {
    fn name(&self) -> &str {
        "prometheus"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        self.heartbeat.beat(report);
        let m = &self.metrics;
        for row in &report.processes {
            let (container, pod, namespace) = workload_labels(row.workload.as_deref());
            let labels = ProcessLabels {
                name: row.key.name.to_string(),
                uid: row.key.uid.map(|u| u.to_string()).unwrap_or_default(),
                interface: row.key.interface.to_string(),
                container,
                pod,
                namespace,
                reason: row
                    .key
                    .reason
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
            };
            m.process_sent_bytes
                .get_or_create(&labels)
                .inc_by(row.last.sent.bytes);
            m.process_recv_bytes
                .get_or_create(&labels)
                .inc_by(row.last.recv.bytes);
            m.process_sent_packets
                .get_or_create(&labels)
                .inc_by(row.last.sent.packets);
            m.process_recv_packets
                .get_or_create(&labels)
                .inc_by(row.last.recv.packets);
            m.tcp.add(&labels, &row.last.tcp);
            m.drops.add(&labels, &row.last.drops);
        }
        m.limits.set(&report.limits);
        for row in &report.countries {
            let (container, pod, namespace) = workload_labels(row.workload.as_deref());
            let labels = CountryLabels {
                name: row.key.name.to_string(),
                uid: row.key.uid.map(|u| u.to_string()).unwrap_or_default(),
                interface: row.key.interface.to_string(),
                container,
                pod,
                namespace,
                country: row.country.to_string(),
            };
            m.country_sent_bytes
                .get_or_create(&labels)
                .inc_by(row.last.sent.bytes);
            m.country_recv_bytes
                .get_or_create(&labels)
                .inc_by(row.last.recv.bytes);
        }
        for row in &report.interfaces {
            let labels = InterfaceLabels {
                interface: row.interface.to_string(),
            };
            m.interface_sent_bytes
                .get_or_create(&labels)
                .inc_by(row.last.sent.bytes);
            m.interface_recv_bytes
                .get_or_create(&labels)
                .inc_by(row.last.recv.bytes);
            m.capture_received
                .get_or_create(&labels)
                .inc_by(row.capture.received);
            m.capture_dropped
                .get_or_create(&labels)
                .inc_by(row.capture.dropped);
            m.capture_if_dropped
                .get_or_create(&labels)
                .inc_by(row.capture.if_dropped);
        }
        m.lost_events.inc_by(report.lost);
        for feature in &report.engine.features {
            for state in [
                FeatureState::Used,
                FeatureState::Refused,
                FeatureState::Absent,
            ] {
                let labels = FeatureLabels {
                    engine: report.engine.engine.clone(),
                    feature: feature.name.clone(),
                    state: state.as_str().to_string(),
                };
                m.engine_features
                    .get_or_create(&labels)
                    .set(i64::from(feature.state == state));
            }
        }
        self.peers.add(&report.peers);
        Ok(())
    }
}

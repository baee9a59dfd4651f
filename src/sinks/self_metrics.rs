//! netgraph's own health, per sink: points written, dropped, waiting in the spool, and
//! when the last error happened. Sinks update it; the Prometheus endpoint shows it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

#[derive(Clone, Default)]
pub struct SelfMetrics {
    pub points_written: Family<SinkLabel, Counter>,
    pub points_dropped: Family<SinkLabel, Counter>,
    pub points_spooled: Family<SinkLabel, Gauge>,
    pub last_error: Family<SinkLabel, Gauge<f64, AtomicU64>>,
    /// Store files found damaged at start and moved aside.
    pub store_moved_aside: Counter,
}

/// One sink's view of the self metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    pub written: Counter,
    pub dropped: Counter,
    pub spooled: Gauge,
    last_error: Gauge<f64, AtomicU64>,
}

impl SelfMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netgraph_sink_points_written",
            "Points a sink delivered",
            self.points_written.clone(),
        );
        registry.register(
            "netgraph_sink_points_dropped",
            "Points a sink gave up on (refused as malformed, or evicted from a full spool)",
            self.points_dropped.clone(),
        );
        registry.register(
            "netgraph_sink_points_spooled",
            "Points waiting in a sink's spool",
            self.points_spooled.clone(),
        );
        registry.register(
            "netgraph_sink_last_error_timestamp_seconds",
            "When a sink last failed (0: never)",
            self.last_error.clone(),
        );
        registry.register(
            "netgraph_store_moved_aside",
            "Store files found damaged at start, moved aside and started anew",
            self.store_moved_aside.clone(),
        );
    }

    pub fn for_sink(&self, sink: &str) -> SinkMetrics {
        let label = SinkLabel {
            sink: sink.to_string(),
        };
        SinkMetrics {
            written: self.points_written.get_or_create(&label).clone(),
            dropped: self.points_dropped.get_or_create(&label).clone(),
            spooled: self.points_spooled.get_or_create(&label).clone(),
            last_error: self.last_error.get_or_create(&label).clone(),
        }
    }
}

impl SinkMetrics {
    pub fn error_now(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_error.set(now);
    }
}

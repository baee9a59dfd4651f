//! Each bandwidth limit: its rates, whether it is holding traffic back now, and what it
//! let through and held back, each way.

use crate::accounting::LimitRow;
use crate::limits::LimitFlow;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: String,
    /// egress or ingress.
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitScopeLabels {
    limit: String,
    scope: String,
}

#[derive(Default)]
pub struct LimitMetrics {
    rate: Family<LimitLabels, Gauge>,
    holding: Family<LimitScopeLabels, Gauge>,
    passed_bytes: Family<LimitLabels, Counter>,
    held_bytes: Family<LimitLabels, Counter>,
    held_packets: Family<LimitLabels, Counter>,
}

impl LimitMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netgraph_limit_rate_bytes_per_second",
            "A configured bandwidth limit's rate",
            self.rate.clone(),
        );
        registry.register(
            "netgraph_limit_holding",
            "1 while a limit held traffic back in the last interval",
            self.holding.clone(),
        );
        registry.register(
            "netgraph_limit_passed_bytes",
            "Bytes a limit let through",
            self.passed_bytes.clone(),
        );
        registry.register(
            "netgraph_limit_held_bytes",
            "Bytes a limit held back (dropped going out with congestion notification, or policed coming in)",
            self.held_bytes.clone(),
        );
        registry.register(
            "netgraph_limit_held_packets",
            "Packets a limit held back",
            self.held_packets.clone(),
        );
    }

    pub fn set(&self, rows: &[LimitRow]) {
        // Limits removed by a reload leave the gauges.
        self.rate.clear();
        self.holding.clear();
        for row in rows {
            self.holding
                .get_or_create(&LimitScopeLabels {
                    limit: row.name.to_string(),
                    scope: row.scope.clone(),
                })
                .set(i64::from(row.holding()));
            for (direction, rate, flow) in [
                ("egress", row.egress_rate, &row.egress),
                ("ingress", row.ingress_rate, &row.ingress),
            ] {
                let labels = LimitLabels {
                    limit: row.name.to_string(),
                    direction,
                };
                if let Some(rate) = rate {
                    self.rate
                        .get_or_create(&labels)
                        .set(i64::try_from(rate).unwrap_or(i64::MAX));
                }
                self.add(&labels, flow);
            }
        }
    }

    fn add(&self, labels: &LimitLabels, flow: &LimitFlow) {
        self.passed_bytes
            .get_or_create(labels)
            .inc_by(flow.passed_bytes);
        self.held_bytes
            .get_or_create(labels)
            .inc_by(flow.held_bytes);
        self.held_packets
            .get_or_create(labels)
            .inc_by(flow.held_packets);
    }
}

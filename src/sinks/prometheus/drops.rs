//! Packets the kernel dropped per series, by the layer that dropped them, as counters
//! that only grow. Series appear once a row has had a drop.

use super::ProcessLabels;
use crate::traffic::Drops;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    #[prometheus(flatten)]
    process: ProcessLabels,
    /// netfilter, policy, socket, tcp, queue or other. (Not `reason`: a series' own
    /// labels have one, why an unknown row has no process.)
    layer: &'static str,
}

#[derive(Default)]
pub struct DropMetrics {
    packets: Family<DropLabels, Counter>,
    bytes: Family<ProcessLabels, Counter>,
}

impl DropMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netgraph_dropped_packets",
            "Packets of a process the kernel dropped, by the layer that dropped them",
            self.packets.clone(),
        );
        registry.register(
            "netgraph_dropped_bytes",
            "Bytes of a process's packets the kernel dropped",
            self.bytes.clone(),
        );
    }

    pub fn add(&self, labels: &ProcessLabels, drops: &Drops) {
        if drops.is_zero() {
            return;
        }
        self.bytes.get_or_create(labels).inc_by(drops.bytes);
        for (kind, packets) in drops.by_kind() {
            let labels = DropLabels {
                process: labels.clone(),
                layer: kind.label(),
            };
            self.packets.get_or_create(&labels).inc_by(packets);
        }
    }
}

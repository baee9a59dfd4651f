//! Opt-in peer counters: each peer is a series of its own, so at most `limit` (process,
//! peer) series are kept, the busiest: each interval the rows are taken largest first, a
//! new series is admitted while there is room, and otherwise replaces the series idle
//! longest (once it has been idle a whole interval). A replaced series disappears from
//! `/metrics`, which Prometheus reads as the end of that series.

use crate::accounting::PeerRow;
use crate::sinks::seats::Seats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    name: String,
    uid: String,
    interface: String,
    /// The address, or `other`.
    peer: String,
    /// Empty (absent) when not known.
    peer_name: String,
    service: String,
}

impl PeerLabels {
    fn of(row: &PeerRow) -> PeerLabels {
        PeerLabels {
            name: row.key.name.to_string(),
            uid: row.key.uid.map(|u| u.to_string()).unwrap_or_default(),
            interface: row.key.interface.to_string(),
            peer: row.peer_label(),
            peer_name: row.name.as_deref().unwrap_or_default().to_string(),
            service: row.service.map(|s| s.to_string()).unwrap_or_default(),
        }
    }
}

pub struct PeerCounters {
    sent: Family<PeerLabels, Counter>,
    received: Family<PeerLabels, Counter>,
    seats: Seats<PeerLabels>,
}

impl PeerCounters {
    pub fn new(limit: usize) -> PeerCounters {
        PeerCounters {
            sent: Family::default(),
            received: Family::default(),
            seats: Seats::new(limit),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        if self.seats.none_wanted() {
            return;
        }
        registry.register(
            "netgraph_peer_transmitted_bytes",
            "IP-layer bytes a process sent to a peer (the busiest [prometheus] peers series)",
            self.sent.clone(),
        );
        registry.register(
            "netgraph_peer_received_bytes",
            "IP-layer bytes a process received from a peer (the busiest [prometheus] peers series)",
            self.received.clone(),
        );
    }

    pub fn add(&mut self, rows: &[PeerRow]) {
        for row in self.seats.next_interval(rows) {
            let labels = PeerLabels::of(row);
            let Some(replaced) = self.seats.seat(&labels) else {
                continue;
            };
            if let Some(replaced) = replaced {
                self.sent.remove(&replaced);
                self.received.remove(&replaced);
            }
            self.sent.get_or_create(&labels).inc_by(row.last.sent.bytes);
            self.received
                .get_or_create(&labels)
                .inc_by(row.last.recv.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(peer: &str, sent: u64) -> PeerRow {
        crate::accounting::sample_peer_row(peer, sent)
    }

    fn exported(counters: &PeerCounters) -> String {
        let mut registry = Registry::default();
        counters.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn only_the_busiest_series_are_kept_and_counters_only_grow() {
        let mut counters = PeerCounters::new(2);
        counters.add(&[
            row("192.0.2.1", 10),
            row("192.0.2.2", 300),
            row("192.0.2.3", 200),
        ]);
        let text = exported(&counters);
        assert!(
            text.contains("peer=\"192.0.2.2\"") && text.contains("peer=\"192.0.2.3\""),
            "{text}"
        );
        assert!(!text.contains("192.0.2.1"), "beyond the limit: {text}");
        // Next interval: .2 moves again, .3 is idle and gives way to .1.
        counters.add(&[row("192.0.2.2", 5), row("192.0.2.1", 1)]);
        let text = exported(&counters);
        assert!(
            text.contains("peer=\"192.0.2.2\",peer_name=\"\",service=\"\"} 305"),
            "{text}"
        );
        assert!(
            text.contains("192.0.2.1") && !text.contains("192.0.2.3"),
            "{text}"
        );
        assert_eq!(exported(&PeerCounters::new(0)).trim(), "# EOF");
    }
}

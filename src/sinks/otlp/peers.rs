//! Opt-in peer series, bounded as `/metrics` bounds them: at most `limit` (process,
//! peer) series, the busiest; a new one takes the place of the one idle longest (once it
//! has been idle a whole interval), which is then no longer sent.

use super::metrics::{process_attributes, PEER_IO};
use super::series::{Attributes, Series};
use crate::accounting::PeerRow;
use crate::sinks::seats::Seats;

pub struct PeerSeats {
    seats: Seats<Attributes>,
}

impl PeerSeats {
    pub fn new(limit: usize) -> PeerSeats {
        PeerSeats {
            seats: Seats::new(limit),
        }
    }

    pub fn record(&mut self, series: &mut Series, rows: &[PeerRow]) {
        for row in self.seats.next_interval(rows) {
            let of = peer_attributes(row);
            let Some(replaced) = self.seats.seat(&of) else {
                continue;
            };
            if let Some(replaced) = replaced {
                for way in ["transmit", "receive"] {
                    series.forget(
                        &PEER_IO,
                        &replaced.clone().text("network.io.direction", way),
                    );
                }
            }
            for (way, bytes) in [
                ("transmit", row.last.sent.bytes),
                ("receive", row.last.recv.bytes),
            ] {
                series.add(
                    &PEER_IO,
                    of.clone().text("network.io.direction", way),
                    bytes,
                );
            }
        }
    }
}

fn peer_attributes(row: &PeerRow) -> Attributes {
    let mut of = process_attributes(&row.key, row.workload.as_deref(), None)
        .text("network.peer.address", row.peer_label())
        .text_if("netgraph.peer.name", row.name.as_deref());
    if let Some(service) = row.service {
        of = of
            .integer("server.port", i64::from(service.port))
            .text("network.transport", service.protocol_label());
    }
    of
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::otlp::Temporality;

    fn row(peer: &str, sent: u64) -> PeerRow {
        crate::accounting::sample_peer_row(peer, sent)
    }

    /// Each exported peer and its bytes sent.
    fn sent(series: &Series) -> Vec<(String, String)> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
        let text = |point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint, key| {
            let kv = point.attributes.iter().find(|kv| kv.key == key)?;
            match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(text) => Some(text.clone()),
                _ => None,
            }
        };
        let mut peers = Vec::new();
        for metric in series.finish() {
            let Some(Data::Sum(sum)) = metric.data else {
                continue;
            };
            for point in &sum.data_points {
                if text(point, "network.io.direction").as_deref() != Some("transmit") {
                    continue;
                }
                let Some(number_data_point::Value::AsInt(bytes)) = point.value else {
                    continue;
                };
                let peer = text(point, "network.peer.address").unwrap();
                peers.push((peer, bytes.to_string()));
            }
        }
        peers.sort();
        peers
    }

    #[test]
    fn only_the_busiest_series_are_kept() {
        let mut series = Series::new(Temporality::Cumulative);
        let mut seats = PeerSeats::new(2);
        series.begin(0, 1);
        seats.record(
            &mut series,
            &[
                row("192.0.2.1", 10),
                row("192.0.2.2", 300),
                row("192.0.2.3", 200),
            ],
        );
        let two = |a: &str, x: &str, b: &str, y: &str| {
            vec![
                (a.to_string(), x.to_string()),
                (b.to_string(), y.to_string()),
            ]
        };
        assert_eq!(sent(&series), two("192.0.2.2", "300", "192.0.2.3", "200"));
        // .2 moves again, .3 is idle and gives way to .1.
        series.begin(1, 2);
        seats.record(&mut series, &[row("192.0.2.2", 5), row("192.0.2.1", 1)]);
        assert_eq!(sent(&series), two("192.0.2.1", "1", "192.0.2.2", "305"));
        let mut none = Series::new(Temporality::Cumulative);
        PeerSeats::new(0).record(&mut none, &[row("192.0.2.1", 10)]);
        assert!(none.finish().is_empty());
    }
}

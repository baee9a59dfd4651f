//! IPFIX export (RFC 7011): one flow record per process, peer and direction each
//! interval, with IANA's elements for the flow and netgraph's own for the process
//! (name, pid, uid, container, pod, unit); docs/ipfix.md publishes the template.

pub mod message;
mod transport;

use super::Sink;
use crate::accounting::{IntervalReport, PeerRow};
use crate::config::ipfix::IpfixConfig;
use message::{Direction, FlowRecord};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{SystemTime, UNIX_EPOCH};
use transport::Delivery;

pub struct IpfixSink {
    delivery: Delivery,
}

impl IpfixSink {
    pub fn start(config: &IpfixConfig) -> anyhow::Result<IpfixSink> {
        tracing::info!(collector = %config.collector, transport = ?config.transport, "exporting flows over IPFIX");
        Ok(IpfixSink {
            delivery: Delivery::start(config)?,
        })
    }
}

impl Sink for IpfixSink {
    fn name(&self) -> &str {
        "ipfix"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let records = records(report);
        if !records.is_empty() {
            self.delivery.send(records);
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.delivery.finish();
        Ok(())
    }
}

/// The interval's records: each known peer's traffic one way or both. (`other`, the
/// peers beyond the largest of a series, has no address to give a flow.)
pub fn records(report: &IntervalReport) -> Vec<FlowRecord> {
    let (start_ms, end_ms) = (millis(report.start), millis(report.end));
    let mut records = Vec::new();
    for row in &report.peers {
        let Some(peer) = row.peer else {
            continue;
        };
        let near = row.near.unwrap_or(match peer {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let protocol = row
            .service
            .map_or(0, |service| service.protocol.ip_number(peer.is_ipv6()));
        let port = row.service.map_or(0, |service| service.port);
        for (counter, direction) in [
            (row.last.sent, Direction::Egress),
            (row.last.recv, Direction::Ingress),
        ] {
            if counter.bytes == 0 && counter.packets == 0 {
                continue;
            }
            let (source, destination, source_port, destination_port) = match direction {
                Direction::Egress => (near, peer, 0, port),
                Direction::Ingress => (peer, near, port, 0),
            };
            records.push(FlowRecord {
                octets: counter.bytes,
                packets: counter.packets,
                protocol,
                source,
                destination,
                source_port,
                destination_port,
                direction,
                start_ms,
                end_ms,
                interface: row.key.interface.to_string(),
                process: row.key.name.to_string(),
                pid: row.pid.unwrap_or(0),
                uid: row.key.uid.unwrap_or(u32::MAX),
                container: workload_text(row, |w| w.container.as_deref()),
                container_id: workload_text(row, |w| w.container_id.as_deref()),
                pod: workload_text(row, |w| w.pod.as_deref()),
                namespace: workload_text(row, |w| w.namespace.as_deref()),
                unit: workload_text(row, |w| w.unit.as_deref()),
            });
        }
    }
    records
}

fn workload_text(
    row: &PeerRow,
    field: impl Fn(&crate::workload::Workload) -> Option<&str>,
) -> String {
    row.workload
        .as_deref()
        .and_then(field)
        .unwrap_or_default()
        .to_string()
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

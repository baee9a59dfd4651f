//! One JSON object per line: a `process` line per series and interval, a `country`
//! line per series and remote country (GeoIP's opt-in breakdown), an `interface` line
//! per interface and interval. Fields are documented in the README.

use super::Sink;
use crate::accounting::{
    CountryRow, InterfaceRow, IntervalReport, LimitRow, PeerRow, ProcessRow, SeriesKey,
};
use crate::workload::Workload;
use serde::Serialize;
use std::io::Write;
use std::time::UNIX_EPOCH;

pub struct JsonLinesSink<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonLinesSink<W> {
    pub fn new(out: W) -> Self {
        JsonLinesSink { out }
    }
}

#[derive(Serialize)]
struct Common {
    time: String,
    timestamp_ms: u128,
    interval_s: f64,
}

/// What names a series: process name, uid, interface, and its unit, container and pod.
#[derive(Serialize)]
struct SeriesFields<'a> {
    name: &'a str,
    uid: Option<u32>,
    interface: &'a str,
    /// Why an `unknown` row has no process; absent on processes' rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(flatten)]
    workload: WorkloadFields<'a>,
}

impl<'a> SeriesFields<'a> {
    fn of(key: &'a SeriesKey, workload: Option<&'a Workload>) -> Self {
        SeriesFields {
            name: &key.name,
            uid: key.uid,
            interface: &key.interface,
            reason: key.reason.map(|r| r.as_str()),
            workload: WorkloadFields::of(workload),
        }
    }
}

/// The unit, container and pod of a row; null where not known.
#[derive(Serialize)]
struct WorkloadFields<'a> {
    unit: Option<&'a str>,
    container_id: Option<&'a str>,
    container: Option<&'a str>,
    image: Option<&'a str>,
    pod: Option<&'a str>,
    namespace: Option<&'a str>,
}

impl<'a> WorkloadFields<'a> {
    fn of(workload: Option<&'a Workload>) -> Self {
        WorkloadFields {
            unit: workload.and_then(|w| w.unit.as_deref()),
            container_id: workload.and_then(|w| w.container_id.as_deref()),
            container: workload.and_then(|w| w.container.as_deref()),
            image: workload.and_then(|w| w.image.as_deref()),
            pod: workload.and_then(|w| w.pod.as_deref()),
            namespace: workload.and_then(|w| w.namespace.as_deref()),
        }
    }
}

/// How TCP fared this interval, on rows that had TCP health to tell.
#[derive(Serialize)]
struct HealthFields {
    tcp_retransmits: u64,
    tcp_retransmit_bytes: u64,
    /// Smoothed RTT weighted by the bytes of each socket; absent with no RTT known.
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_rtt_us: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_rtt_max_us: Option<u32>,
    tcp_connects: u64,
    tcp_connect_failures: u64,
    tcp_connects_refused: u64,
    tcp_connects_timed_out: u64,
    tcp_connects_unreachable: u64,
    tcp_connects_aborted: u64,
}

impl HealthFields {
    fn of(traffic: &crate::traffic::Traffic) -> Option<HealthFields> {
        let tcp = &traffic.tcp;
        (!tcp.is_zero()).then(|| HealthFields {
            tcp_retransmits: tcp.retransmits,
            tcp_retransmit_bytes: tcp.retransmit_bytes,
            tcp_rtt_us: tcp.rtt_us(),
            tcp_rtt_max_us: (tcp.rtt_max_us > 0).then_some(tcp.rtt_max_us),
            tcp_connects: tcp.connects,
            tcp_connect_failures: tcp.connect_failures(),
            tcp_connects_refused: tcp.connects_refused,
            tcp_connects_timed_out: tcp.connects_timed_out,
            tcp_connects_unreachable: tcp.connects_unreachable,
            tcp_connects_aborted: tcp.connects_aborted,
        })
    }
}

/// Packets the kernel dropped this interval, by the layer that dropped them, on rows
/// that had drops.
#[derive(Serialize)]
struct DropFields {
    drops: u64,
    drop_bytes: u64,
    drops_netfilter: u64,
    drops_policy: u64,
    drops_socket: u64,
    drops_tcp: u64,
    drops_queue: u64,
    drops_other: u64,
}

impl DropFields {
    fn of(traffic: &crate::traffic::Traffic) -> Option<DropFields> {
        use crate::traffic::DropKind;
        let drops = &traffic.drops;
        (!drops.is_zero()).then(|| DropFields {
            drops: drops.total(),
            drop_bytes: drops.bytes,
            drops_netfilter: drops.of(DropKind::Netfilter),
            drops_policy: drops.of(DropKind::Policy),
            drops_socket: drops.of(DropKind::Socket),
            drops_tcp: drops.of(DropKind::Tcp),
            drops_queue: drops.of(DropKind::Queue),
            drops_other: drops.of(DropKind::Other),
        })
    }
}

#[derive(Serialize)]
struct ProcessLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    common: &'a Common,
    #[serde(flatten)]
    series: SeriesFields<'a>,
    attributed: bool,
    pid: Option<u32>,
    exe: Option<&'a str>,
    cgroup: Option<&'a str>,
    sent_bytes_last: u64,
    recv_bytes_last: u64,
    sent_packets_last: u64,
    recv_packets_last: u64,
    sent_bytes: u64,
    recv_bytes: u64,
    sent_packets: u64,
    recv_packets: u64,
    sent_kbs: f64,
    recv_kbs: f64,
    #[serde(flatten)]
    health: Option<HealthFields>,
    #[serde(flatten)]
    drops: Option<DropFields>,
}

#[derive(Serialize)]
struct PeerLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    common: &'a Common,
    #[serde(flatten)]
    series: SeriesFields<'a>,
    /// The remote address, or `other` for the peers beyond the largest.
    peer_address: String,
    /// Its name, from the DNS answers the host received (or ClientHellos, reverse DNS).
    peer_name: Option<&'a str>,
    /// The far end's service, e.g. `443/tcp`, where the ports tell it.
    service: Option<String>,
    /// The peer's country, with GeoIP.
    country: Option<&'a str>,
    pid: Option<u32>,
    sent_bytes: u64,
    recv_bytes: u64,
    sent_bytes_last: u64,
    recv_bytes_last: u64,
    sent_packets_last: u64,
    recv_packets_last: u64,
    #[serde(flatten)]
    health: Option<HealthFields>,
    #[serde(flatten)]
    drops: Option<DropFields>,
}

fn peer_line<'a>(row: &'a PeerRow, common: &'a Common) -> PeerLine<'a> {
    PeerLine {
        r#type: "peer",
        common,
        series: SeriesFields::of(&row.key, row.workload.as_deref()),
        peer_address: row.peer_label(),
        peer_name: row.name.as_deref(),
        service: row.service.map(|s| s.to_string()),
        country: row.country.as_deref(),
        pid: row.pid,
        sent_bytes: row.total.sent.bytes,
        recv_bytes: row.total.recv.bytes,
        sent_bytes_last: row.last.sent.bytes,
        recv_bytes_last: row.last.recv.bytes,
        sent_packets_last: row.last.sent.packets,
        recv_packets_last: row.last.recv.packets,
        health: HealthFields::of(&row.last),
        drops: DropFields::of(&row.last),
    }
}

#[derive(Serialize)]
struct CountryLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    common: &'a Common,
    #[serde(flatten)]
    series: SeriesFields<'a>,
    country: &'a str,
    sent_bytes_last: u64,
    recv_bytes_last: u64,
    sent_bytes: u64,
    recv_bytes: u64,
}

fn country_line<'a>(row: &'a CountryRow, common: &'a Common) -> CountryLine<'a> {
    CountryLine {
        r#type: "country",
        common,
        series: SeriesFields::of(&row.key, row.workload.as_deref()),
        country: &row.country,
        sent_bytes_last: row.last.sent.bytes,
        recv_bytes_last: row.last.recv.bytes,
        sent_bytes: row.total.sent.bytes,
        recv_bytes: row.total.recv.bytes,
    }
}

#[derive(Serialize)]
struct InterfaceLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    common: &'a Common,
    interface: &'a str,
    sent_bytes_last: u64,
    recv_bytes_last: u64,
    sent_packets_last: u64,
    recv_packets_last: u64,
    sent_bytes: u64,
    recv_bytes: u64,
    malformed_packets: u64,
    non_ip_packets: u64,
    overflow_packets: u64,
    ps_recv: u64,
    ps_drop: u64,
    ps_ifdrop: u64,
}

fn process_line<'a>(
    row: &'a ProcessRow,
    common: &'a Common,
    report: &IntervalReport,
) -> ProcessLine<'a> {
    ProcessLine {
        r#type: "process",
        common,
        series: SeriesFields::of(&row.key, row.workload.as_deref()),
        attributed: row.attributed,
        pid: row.pid,
        exe: row.exe.as_deref(),
        cgroup: row.cgroup.as_deref(),
        sent_bytes_last: row.last.sent.bytes,
        recv_bytes_last: row.last.recv.bytes,
        sent_packets_last: row.last.sent.packets,
        recv_packets_last: row.last.recv.packets,
        sent_bytes: row.total.sent.bytes,
        recv_bytes: row.total.recv.bytes,
        sent_packets: row.total.sent.packets,
        recv_packets: row.total.recv.packets,
        sent_kbs: report.kib_per_second(row.last.sent.bytes),
        recv_kbs: report.kib_per_second(row.last.recv.bytes),
        health: HealthFields::of(&row.last),
        drops: DropFields::of(&row.last),
    }
}

fn interface_line<'a>(row: &'a InterfaceRow, common: &'a Common) -> InterfaceLine<'a> {
    InterfaceLine {
        r#type: "interface",
        common,
        interface: &row.interface,
        sent_bytes_last: row.last.sent.bytes,
        recv_bytes_last: row.last.recv.bytes,
        sent_packets_last: row.last.sent.packets,
        recv_packets_last: row.last.recv.packets,
        sent_bytes: row.total.sent.bytes,
        recv_bytes: row.total.recv.bytes,
        malformed_packets: row.malformed.packets,
        non_ip_packets: row.non_ip.packets,
        overflow_packets: row.overflow.packets,
        ps_recv: row.capture.received,
        ps_drop: row.capture.dropped,
        ps_ifdrop: row.capture.if_dropped,
    }
}

/// A limit's interval: what it let through and held back each way (`sent`: the
/// covered processes' egress), this interval (`_last`) and since start.
#[derive(Serialize)]
struct LimitLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    common: &'a Common,
    limit: &'a str,
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress_limit_bytes_per_second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress_limit_bytes_per_second: Option<u64>,
    holding: bool,
    sent_passed_bytes_last: u64,
    sent_held_bytes_last: u64,
    sent_held_packets_last: u64,
    recv_passed_bytes_last: u64,
    recv_held_bytes_last: u64,
    recv_held_packets_last: u64,
    sent_passed_bytes: u64,
    sent_held_bytes: u64,
    sent_held_packets: u64,
    recv_passed_bytes: u64,
    recv_held_bytes: u64,
    recv_held_packets: u64,
}

fn limit_line<'a>(row: &'a LimitRow, common: &'a Common) -> LimitLine<'a> {
    LimitLine {
        r#type: "limit",
        common,
        limit: &row.name,
        scope: &row.scope,
        egress_limit_bytes_per_second: row.egress_rate,
        ingress_limit_bytes_per_second: row.ingress_rate,
        holding: row.holding(),
        sent_passed_bytes_last: row.egress.passed_bytes,
        sent_held_bytes_last: row.egress.held_bytes,
        sent_held_packets_last: row.egress.held_packets,
        recv_passed_bytes_last: row.ingress.passed_bytes,
        recv_held_bytes_last: row.ingress.held_bytes,
        recv_held_packets_last: row.ingress.held_packets,
        sent_passed_bytes: row.egress_total.passed_bytes,
        sent_held_bytes: row.egress_total.held_bytes,
        sent_held_packets: row.egress_total.held_packets,
        recv_passed_bytes: row.ingress_total.passed_bytes,
        recv_held_bytes: row.ingress_total.held_bytes,
        recv_held_packets: row.ingress_total.held_packets,
    }
}

#[derive(Serialize)]
struct EngineLine<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    common: &'a Common,
    lost_events: u64,
    lost_events_total: u64,
}

fn common(report: &IntervalReport) -> Common {
    Common {
        time: humantime::format_rfc3339_millis(report.end).to_string(),
        timestamp_ms: report
            .end
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
        interval_s: report.duration().as_secs_f64(),
    }
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    fn name(&self) -> &str {
        "json"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let common = common(report);
        for row in &report.processes {
            serde_json::to_writer(&mut self.out, &process_line(row, &common, report))?;
            self.out.write_all(b"\n")?;
        }
        for row in &report.countries {
            serde_json::to_writer(&mut self.out, &country_line(row, &common))?;
            self.out.write_all(b"\n")?;
        }
        for row in &report.peers {
            serde_json::to_writer(&mut self.out, &peer_line(row, &common))?;
            self.out.write_all(b"\n")?;
        }
        for row in &report.interfaces {
            serde_json::to_writer(&mut self.out, &interface_line(row, &common))?;
            self.out.write_all(b"\n")?;
        }
        for row in &report.limits {
            serde_json::to_writer(&mut self.out, &limit_line(row, &common))?;
            self.out.write_all(b"\n")?;
        }
        let engine = EngineLine {
            r#type: "engine",
            common: &common,
            lost_events: report.lost,
            lost_events_total: report.lost_total,
        };
        serde_json::to_writer(&mut self.out, &engine)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.out.flush()?)
    }
}

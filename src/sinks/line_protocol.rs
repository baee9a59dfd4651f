//! InfluxDB line protocol for one interval, in the original's schema: `network_data` per
//! series, `packet_stats` per interface, `network_country` per series and remote
//! country when GeoIP's breakdown is on, `network_peer` per series and remote peer
//! when peers are on, and `network_health` per series with TCP health to tell (the
//! tags of `network_data`). Timestamps are milliseconds (`precision=ms`).

use crate::accounting::{CountryRow, InterfaceRow, IntervalReport, PeerRow, ProcessRow, SeriesKey};
use crate::workload::Workload;
use std::fmt::Write;
use std::time::UNIX_EPOCH;

/// The precision of the timestamps this module writes, in each API's spelling.
pub const PRECISION_V1_V2: &str = "ms";
pub const PRECISION_V3: &str = "millisecond";

/// One line per process series and per interface, each ending in a newline.
pub fn encode(report: &IntervalReport, hostname: &str) -> Vec<String> {
    let millis = report
        .end
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut lines = Vec::with_capacity(
        report.processes.len()
            + report.countries.len()
            + report.peers.len()
            + report.interfaces.len(),
    );
    for row in &report.processes {
        lines.push(network_data(row, report, hostname, millis));
        if !row.last.tcp.is_zero() || !row.last.drops.is_zero() {
            lines.push(network_health(row, hostname, millis));
        }
    }
    for row in &report.countries {
        lines.push(network_country(row, hostname, millis));
    }
    for row in &report.peers {
        lines.push(network_peer(row, hostname, millis));
    }
    for row in &report.interfaces {
        lines.push(packet_stats(row, hostname, millis));
    }
    lines
}

fn network_peer(row: &PeerRow, hostname: &str, millis: u128) -> String {
    let mut line = series_line("network_peer", &row.key, hostname, row.workload.as_deref());
    tag(&mut line, "peer", &row.peer_label());
    if let Some(name) = &row.name {
        tag(&mut line, "peer_name", name);
    }
    if let Some(service) = row.service {
        tag(&mut line, "service", &service.to_string());
    }
    if let Some(country) = &row.country {
        tag(&mut line, "country", country);
    }
    let mut fields = Fields::new(&mut line);
    if let Some(pid) = row.pid {
        fields.integer("pid", u64::from(pid));
    }
    fields.integer("sent_bytes", row.total.sent.bytes);
    fields.integer("recv_bytes", row.total.recv.bytes);
    fields.integer("sent_bytes_last", row.last.sent.bytes);
    fields.integer("recv_bytes_last", row.last.recv.bytes);
    fields.integer("sent_packets_last", row.last.sent.packets);
    fields.integer("recv_packets_last", row.last.recv.packets);
    let _ = writeln!(line, " {millis}");
    line
}

fn network_country(row: &CountryRow, hostname: &str, millis: u128) -> String {
    let mut line = series_line(
        "network_country",
        &row.key,
        hostname,
        row.workload.as_deref(),
    );
    tag(&mut line, "country", &row.country);
    let mut fields = Fields::new(&mut line);
    fields.integer("sent_bytes", row.total.sent.bytes);
    fields.integer("recv_bytes", row.total.recv.bytes);
    fields.integer("sent_bytes_last", row.last.sent.bytes);
    fields.integer("recv_bytes_last", row.last.recv.bytes);
    let _ = writeln!(line, " {millis}");
    line
}

fn network_data(row: &ProcessRow, report: &IntervalReport, hostname: &str, millis: u128) -> String {
    let mut line = series_line("network_data", &row.key, hostname, row.workload.as_deref());
    let mut fields = Fields::new(&mut line);
    if let Some(pid) = row.pid {
        fields.integer("pid", pid.into());
    }
    fields.integer("sent_bytes", row.total.sent.bytes);
    fields.integer("recv_bytes", row.total.recv.bytes);
    fields.integer("sent_bytes_last", row.last.sent.bytes);
    fields.integer("recv_bytes_last", row.last.recv.bytes);
    fields.float("sent_kbs", report.kib_per_second(row.last.sent.bytes));
    fields.float("recv_kbs", report.kib_per_second(row.last.recv.bytes));
    fields.integer("sent_packets_last", row.last.sent.packets);
    fields.integer("recv_packets_last", row.last.recv.packets);
    let _ = writeln!(line, " {millis}");
    line
}

/// How TCP fared on the series this interval, and what the kernel dropped of it.
fn network_health(row: &ProcessRow, hostname: &str, millis: u128) -> String {
    let mut line = series_line(
        "network_health",
        &row.key,
        hostname,
        row.workload.as_deref(),
    );
    let tcp = &row.last.tcp;
    let mut fields = Fields::new(&mut line);
    if let Some(pid) = row.pid {
        fields.integer("pid", pid.into());
    }
    fields.integer("tcp_retransmits", tcp.retransmits);
    fields.integer("tcp_retransmit_bytes", tcp.retransmit_bytes);
    if let Some(rtt) = tcp.rtt_us() {
        fields.integer("tcp_rtt_us", rtt.into());
        fields.integer("tcp_rtt_max_us", tcp.rtt_max_us.into());
    }
    fields.integer("tcp_connects", tcp.connects);
    fields.integer("tcp_connect_failures", tcp.connect_failures());
    fields.integer("tcp_connects_refused", tcp.connects_refused);
    fields.integer("tcp_connects_timed_out", tcp.connects_timed_out);
    fields.integer("tcp_connects_unreachable", tcp.connects_unreachable);
    fields.integer("tcp_connects_aborted", tcp.connects_aborted);
    let drops = &row.last.drops;
    if !drops.is_zero() {
        fields.integer("drops", drops.total());
        fields.integer("drop_bytes", drops.bytes);
        for kind in crate::traffic::DropKind::ALL {
            fields.integer(&format!("drops_{}", kind.label()), drops.of(kind));
        }
    }
    let _ = writeln!(line, " {millis}");
    line
}

fn packet_stats(row: &InterfaceRow, hostname: &str, millis: u128) -> String {
    let mut line = String::with_capacity(160);
    line.push_str("packet_stats");
    tag(&mut line, "device_name", &row.interface);
    tag(&mut line, "hostname", hostname);
    let mut fields = Fields::new(&mut line);
    fields.integer("ps_recv", row.capture.received);
    fields.integer("ps_drop", row.capture.dropped);
    fields.integer("ps_ifdrop", row.capture.if_dropped);
    fields.integer("sent_bytes_last", row.last.sent.bytes);
    fields.integer("recv_bytes_last", row.last.recv.bytes);
    let _ = writeln!(line, " {millis}");
    line
}

/// A line's start for one series: the measurement, the original's `name`, `uid` (left
/// out for the unknown buckets), `device_name` and `hostname` tags, then the
/// container's.
fn series_line(
    measurement: &str,
    key: &SeriesKey,
    hostname: &str,
    workload: Option<&Workload>,
) -> String {
    let mut line = String::with_capacity(256);
    line.push_str(measurement);
    tag(&mut line, "name", &key.name);
    if let Some(uid) = key.uid {
        tag(&mut line, "uid", &uid.to_string());
    }
    tag(&mut line, "device_name", &key.interface);
    tag(&mut line, "hostname", hostname);
    workload_tags(&mut line, workload);
    if let Some(reason) = key.reason {
        tag(&mut line, "reason", reason.as_str());
    }
    line
}

/// `container`, `pod` and `namespace`, each only where set, so that series outside
/// containers keep exactly the original tags.
fn workload_tags(line: &mut String, workload: Option<&Workload>) {
    let Some(workload) = workload else {
        return;
    };
    if let Some(container) = workload.container_label() {
        tag(line, "container", container);
    }
    if let Some(pod) = &workload.pod {
        tag(line, "pod", pod);
    }
    if let Some(namespace) = &workload.namespace {
        tag(line, "namespace", namespace);
    }
}

/// Empty tag values are not allowed by line protocol, so such tags are left out.
fn tag(line: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    line.push(',');
    escape_key(line, key);
    line.push('=');
    escape_key(line, value);
}

struct Fields<'a> {
    line: &'a mut String,
    first: bool,
}

impl<'a> Fields<'a> {
    fn new(line: &'a mut String) -> Self {
        Fields { line, first: true }
    }

    fn separator(&mut self) {
        self.line.push(if self.first { ' ' } else { ',' });
        self.first = false;
    }

    /// Signed integers (`i`): InfluxDB 1.x rejects the unsigned `u` suffix.
    fn integer(&mut self, key: &str, value: u64) {
        self.separator();
        let _ = write!(self.line, "{key}={}i", value.min(i64::MAX as u64));
    }

    fn float(&mut self, key: &str, value: f64) {
        self.separator();
        let value = if value.is_finite() { value } else { 0.0 };
        // `{:?}` keeps a decimal point, so the field stays a float even for whole numbers.
        let _ = write!(self.line, "{key}={value:?}");
    }
}

/// Escapes a tag key, tag value or field key. Commas, equals signs and spaces get a
/// backslash; a backslash is doubled only where it would otherwise escape what follows
/// it (InfluxDB 1.x keeps other backslashes literally, 2.x and 3.x read `\\` as one).
/// Line breaks cannot appear in a line, so they become spaces; a trailing backslash is
/// left out, as InfluxDB 3 refuses a name that ends in one.
fn escape_key(out: &mut String, text: &str) {
    let mut chars = text.trim_end_matches('\\').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push_str("\\ "),
            '\\' => {
                out.push('\\');
                let next_is_special = matches!(
                    chars.peek(),
                    None | Some(',' | '=' | ' ' | '\\' | '\n' | '\r')
                );
                if next_is_special {
                    out.push('\\');
                }
            }
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;

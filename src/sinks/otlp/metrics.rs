//! What an interval becomes in OTLP: the series `/metrics` has, named and labelled as
//! OpenTelemetry's semantic conventions have them where they say (`process.network.io`,
//! `network.io.direction`, `process.executable.name`, `container.id`, ...), and under
//! `netgraph.` where they do not.

use super::series::{Attributes, Kind, MetricSpec, Series};
use crate::accounting::{IntervalReport, LimitRow, SeriesKey};
use crate::engine::features::FeatureState;
use crate::limits::LimitFlow;
use crate::traffic::{Drops, TcpHealth, Traffic};
use crate::workload::Workload;

const fn counter(name: &'static str, unit: &'static str, description: &'static str) -> MetricSpec {
    MetricSpec {
        name,
        description,
        unit,
        kind: Kind::Counter,
    }
}

const fn gauge(name: &'static str, unit: &'static str, description: &'static str) -> MetricSpec {
    MetricSpec {
        name,
        description,
        unit,
        kind: Kind::Gauge,
    }
}

pub static PROCESS_IO: MetricSpec = counter(
    "process.network.io",
    "By",
    "IP-layer bytes a process moved, by direction",
);
pub static PROCESS_PACKETS: MetricSpec = counter(
    "netgraph.process.network.packets",
    "{packet}",
    "Packets a process moved, by direction",
);
pub static COUNTRY_IO: MetricSpec = counter(
    "netgraph.country.network.io",
    "By",
    "IP-layer bytes a process moved with a country (GeoIP breakdown), by direction",
);
pub static PEER_IO: MetricSpec = counter(
    "netgraph.peer.network.io",
    "By",
    "IP-layer bytes a process moved with a peer (the busiest [otlp] peers series), by direction",
);
pub static INTERFACE_IO: MetricSpec = counter(
    "system.network.io",
    "By",
    "IP-layer bytes with a local end, per interface and direction",
);
pub static CAPTURE_RECEIVED: MetricSpec = counter(
    "netgraph.capture.received",
    "{packet}",
    "Packets the capture received (ps_recv)",
);
pub static CAPTURE_DROPPED: MetricSpec = counter(
    "netgraph.capture.dropped",
    "{packet}",
    "Packets dropped by the capture buffer (ps_drop)",
);
pub static CAPTURE_INTERFACE_DROPPED: MetricSpec = counter(
    "netgraph.capture.interface_dropped",
    "{packet}",
    "Packets dropped by the interface (ps_ifdrop)",
);
pub static LOST_EVENTS: MetricSpec = counter(
    "netgraph.engine.lost_events",
    "{event}",
    "Events the engine could not record (full maps, tracing program runs the kernel skipped)",
);
pub static ENGINE_FEATURE: MetricSpec = gauge(
    "netgraph.engine.feature",
    "1",
    "Optional engine features: 1 for the state each is in (used, refused, absent)",
);
pub static TCP_RETRANSMITTED_SEGMENTS: MetricSpec = counter(
    "netgraph.tcp.retransmitted_segments",
    "{segment}",
    "TCP segments a process sent again (the kernel's TcpRetransSegs, per process)",
);
pub static TCP_RETRANSMITTED_BYTES: MetricSpec = counter(
    "netgraph.tcp.retransmitted_bytes",
    "By",
    "TCP payload bytes a process sent again",
);
pub static TCP_CONNECTS: MetricSpec = counter(
    "netgraph.tcp.connects",
    "{connection}",
    "TCP connects a process made that completed the handshake",
);
pub static TCP_CONNECT_FAILURES: MetricSpec = counter(
    "netgraph.tcp.connect_failures",
    "{connection}",
    "TCP connects a process made that failed, by kind (error.type)",
);
pub static TCP_RTT: MetricSpec = gauge(
    "netgraph.tcp.rtt",
    "s",
    "Smoothed TCP round-trip time of a process's traffic in the interval, weighted by bytes",
);
pub static TCP_RTT_MAX: MetricSpec = gauge(
    "netgraph.tcp.rtt_max",
    "s",
    "Largest smoothed TCP round-trip time of a process's sockets in the interval",
);
pub static DROPPED_PACKETS: MetricSpec = counter(
    "netgraph.dropped_packets",
    "{packet}",
    "Packets of a process the kernel dropped, by the layer that dropped them",
);
pub static DROPPED_BYTES: MetricSpec = counter(
    "netgraph.dropped_bytes",
    "By",
    "Bytes of a process's packets the kernel dropped",
);
pub static LIMIT_RATE: MetricSpec = gauge(
    "netgraph.limit.rate",
    "By/s",
    "A configured bandwidth limit's rate",
);
pub static LIMIT_HOLDING: MetricSpec = gauge(
    "netgraph.limit.holding",
    "1",
    "1 while a limit held traffic back in the interval",
);
pub static LIMIT_PASSED: MetricSpec =
    counter("netgraph.limit.passed", "By", "Bytes a limit let through");
pub static LIMIT_HELD: MetricSpec = counter(
    "netgraph.limit.held",
    "By",
    "Bytes a limit held back (dropped going out with congestion notification, or policed coming in)",
);
pub static LIMIT_HELD_PACKETS: MetricSpec = counter(
    "netgraph.limit.held_packets",
    "{packet}",
    "Packets a limit held back",
);

/// Who moved the traffic: `process.pid` only with delta counters, where a series ends
/// with its interval (cumulative ones would keep a series per process ever seen).
pub fn process_attributes(
    key: &SeriesKey,
    workload: Option<&Workload>,
    pid: Option<u32>,
) -> Attributes {
    let mut attributes = Attributes::default().text("process.executable.name", &*key.name);
    if let Some(uid) = key.uid {
        attributes = attributes.integer("process.user.id", i64::from(uid));
    }
    if let Some(pid) = pid {
        attributes = attributes.integer("process.pid", i64::from(pid));
    }
    attributes
        .text("network.interface.name", key.interface.to_string())
        .text_if(
            "container.name",
            workload.and_then(|w| w.container.as_deref()),
        )
        .text_if(
            "container.id",
            workload
                .and_then(|w| w.container_id.as_deref())
                .or(key.container.as_deref()),
        )
        .text_if("k8s.pod.name", workload.and_then(|w| w.pod.as_deref()))
        .text_if(
            "k8s.namespace.name",
            workload.and_then(|w| w.namespace.as_deref()),
        )
        .text_if(
            "netgraph.unattributed.reason",
            key.reason.map(|r| r.as_str()),
        )
}

fn direction(attributes: &Attributes, direction: &'static str) -> Attributes {
    attributes.clone().text("network.io.direction", direction)
}

/// Bytes (or packets) both ways as one counter with a direction.
fn both_ways(
    series: &mut Series,
    spec: &'static MetricSpec,
    of: &Attributes,
    sent: u64,
    received: u64,
) {
    series.add(spec, direction(of, "transmit"), sent);
    series.add(spec, direction(of, "receive"), received);
}

/// Records everything in `report` but the peers (see `peers.rs`).
pub fn record(series: &mut Series, report: &IntervalReport, with_pid: bool) {
    for row in &report.processes {
        let pid = row.pid.filter(|_| with_pid);
        let of = process_attributes(&row.key, row.workload.as_deref(), pid);
        record_traffic(series, &of, &row.last);
    }
    for row in &report.countries {
        let of = process_attributes(&row.key, row.workload.as_deref(), None)
            .text("netgraph.country", &*row.country);
        both_ways(
            series,
            &COUNTRY_IO,
            &of,
            row.last.sent.bytes,
            row.last.recv.bytes,
        );
    }
    for row in &report.interfaces {
        let of = Attributes::default().text("network.interface.name", row.interface.to_string());
        both_ways(
            series,
            &INTERFACE_IO,
            &of,
            row.last.sent.bytes,
            row.last.recv.bytes,
        );
        series.add(&CAPTURE_RECEIVED, of.clone(), row.capture.received);
        series.add(&CAPTURE_DROPPED, of.clone(), row.capture.dropped);
        series.add(&CAPTURE_INTERFACE_DROPPED, of, row.capture.if_dropped);
    }
    series.add(&LOST_EVENTS, Attributes::default(), report.lost);
    for feature in &report.engine.features {
        for state in [
            FeatureState::Used,
            FeatureState::Refused,
            FeatureState::Absent,
        ] {
            let of = Attributes::default()
                .text("netgraph.engine", report.engine.engine.clone())
                .text("netgraph.feature", feature.name.clone())
                .text("netgraph.feature.state", state.as_str());
            series.set(
                &ENGINE_FEATURE,
                of,
                f64::from(u8::from(feature.state == state)),
            );
        }
    }
    for row in &report.limits {
        record_limit(series, row);
    }
}

fn record_traffic(series: &mut Series, of: &Attributes, traffic: &Traffic) {
    both_ways(
        series,
        &PROCESS_IO,
        of,
        traffic.sent.bytes,
        traffic.recv.bytes,
    );
    both_ways(
        series,
        &PROCESS_PACKETS,
        of,
        traffic.sent.packets,
        traffic.recv.packets,
    );
    record_tcp(series, of, &traffic.tcp);
    record_drops(series, of, &traffic.drops);
}

/// Only for series that had health to tell, as `/metrics` has it.
fn record_tcp(series: &mut Series, of: &Attributes, health: &TcpHealth) {
    if health.is_zero() {
        return;
    }
    series.add(&TCP_RETRANSMITTED_SEGMENTS, of.clone(), health.retransmits);
    series.add(
        &TCP_RETRANSMITTED_BYTES,
        of.clone(),
        health.retransmit_bytes,
    );
    series.add(&TCP_CONNECTS, of.clone(), health.connects);
    for (kind, count) in [
        ("refused", health.connects_refused),
        ("timed_out", health.connects_timed_out),
        ("unreachable", health.connects_unreachable),
        ("aborted", health.connects_aborted),
    ] {
        series.add(
            &TCP_CONNECT_FAILURES,
            of.clone().text("error.type", kind),
            count,
        );
    }
    if let Some(rtt) = health.rtt_us() {
        let seconds = |us: u32| f64::from(us) / 1e6;
        series.set(&TCP_RTT, of.clone(), seconds(rtt));
        series.set(&TCP_RTT_MAX, of.clone(), seconds(health.rtt_max_us));
    }
}

fn record_drops(series: &mut Series, of: &Attributes, drops: &Drops) {
    if drops.is_zero() {
        return;
    }
    series.add(&DROPPED_BYTES, of.clone(), drops.bytes);
    for (kind, packets) in drops.by_kind() {
        series.add(
            &DROPPED_PACKETS,
            of.clone().text("netgraph.drop.layer", kind.label()),
            packets,
        );
    }
}

fn record_limit(series: &mut Series, row: &LimitRow) {
    let limit = Attributes::default().text("netgraph.limit.name", &*row.name);
    series.set(
        &LIMIT_HOLDING,
        limit
            .clone()
            .text("netgraph.limit.scope", row.scope.clone()),
        f64::from(u8::from(row.holding())),
    );
    for (way, rate, flow) in [
        ("egress", row.egress_rate, &row.egress),
        ("ingress", row.ingress_rate, &row.ingress),
    ] {
        let of = limit.clone().text("netgraph.limit.direction", way);
        if let Some(rate) = rate {
            series.set(&LIMIT_RATE, of.clone(), rate as f64);
        }
        record_limit_flow(series, &of, flow);
    }
}

fn record_limit_flow(series: &mut Series, of: &Attributes, flow: &LimitFlow) {
    series.add(&LIMIT_PASSED, of.clone(), flow.passed_bytes);
    series.add(&LIMIT_HELD, of.clone(), flow.held_bytes);
    series.add(&LIMIT_HELD_PACKETS, of.clone(), flow.held_packets);
}

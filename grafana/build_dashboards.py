#!/usr/bin/env python3
"""Writes the three netgraph dashboards (InfluxQL, Flux, PromQL) into grafana/dashboards/.

The JSON files are committed; run this after changing a panel here. The panels are the
same in all three: traffic per process over time, the hourly totals of the original's
first query, top processes, per interface, the unattributed share, packet statistics,
per container and per pod, the top destinations (with `[peers]`), the usage of the
calendar month so far per process, and TCP's health per process (retransmissions,
round-trip time, failed connects); the PromQL one also shows the alert rules' use of
their quotas (`netgraph_quota_used_ratio`).
"""

import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "dashboards"

# Each panel: (title, kind, width, height, [queries]); a query is a dict of target fields.
LAYOUT = [
    ("Bytes sent per process", "timeseries", 12, 9),
    ("Bytes received per process", "timeseries", 12, 9),
    ("Hourly totals (sent, received, total)", "barchart", 12, 9),
    ("Top processes", "table", 12, 9),
    ("Traffic per interface", "timeseries", 12, 8),
    ("Unattributed share", "stat", 6, 8),
    ("Packet statistics (capture engine)", "timeseries", 6, 8),
    ("Bytes sent per container", "timeseries", 12, 9),
    ("Bytes sent per pod", "timeseries", 12, 9),
    ("Top destinations (peers)", "table", 24, 9),
    ("Usage this month (per process)", "table", 12, 9),
    ("TCP retransmissions per process", "timeseries", 8, 8),
    ("TCP round-trip time per process", "timeseries", 8, 8),
    ("Failed TCP connects per process", "timeseries", 8, 8),
    ("Packets dropped per process", "timeseries", 24, 8),
]

# Panels only one flavour has the data for, appended after the shared ones.
PROMQL_ONLY = [("Quota use (alert rules)", "bargauge", 12, 9)]

# Panels drawn over a fixed period instead of the dashboard's range.
RELATIVE_TIME = {"Usage this month (per process)": "now/M"}

WORKLOADS = [("container", "Container"), ("pod", "Pod"), ("namespace", "Namespace")]

UNITS = {"timeseries": "bytes", "barchart": "bytes", "table": "bytes", "stat": "percentunit", "bargauge": "percentunit"}

# Panels whose unit is not their kind's: TCP health counts and times, not bytes.
PANEL_UNITS = {
    "TCP retransmissions per process": "short",
    "TCP round-trip time per process": "s",
    "Failed TCP connects per process": "short",
    "Packets dropped per process": "short",
}

# Panels that are not stacked: round-trip times do not add up.
UNSTACKED = {"TCP round-trip time per process"}


def panel(index, title, kind, width, height, datasource, targets, x, y):
    field_config = {"defaults": {"unit": PANEL_UNITS.get(title, UNITS[kind])}, "overrides": []}
    result = {
        "id": index + 1,
        "type": kind,
        "title": title,
        "gridPos": {"x": x, "y": y, "w": width, "h": height},
        "datasource": datasource,
        "targets": targets,
        "fieldConfig": field_config,
        "options": {},
    }
    if kind == "table":
        result["options"] = {"sortBy": [{"displayName": "total", "desc": True}]}
    if kind == "timeseries":
        stacking = "none" if title in UNSTACKED else "normal"
        result["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": stacking}, "fillOpacity": 20}
    if kind == "bargauge":
        result["fieldConfig"]["defaults"].update({"min": 0, "max": 1, "thresholds": {"mode": "absolute", "steps": [
            {"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 1}]}})
        result["options"] = {"orientation": "horizontal", "displayMode": "gradient"}
    if title in RELATIVE_TIME:
        result["timeFrom"] = RELATIVE_TIME[title]
    return result


def query_variable(name, label, datasource, query):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": datasource,
        "query": query,
        "definition": query if isinstance(query, str) else query.get("query", ""),
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {},
        "sort": 1,
    }


def dashboard(uid, title, datasource_type, datasource_label, host_query, queries, workload_query, extra_variables=(), layout=LAYOUT):
    datasource = {"type": datasource_type, "uid": "${datasource}"}
    panels = []
    x = y = 0
    row_height = 0
    assert len(layout) == len(queries), f"{uid}: {len(layout)} panels, {len(queries)} queries"
    for index, ((title_, kind, width, height), targets) in enumerate(zip(layout, queries)):
        if x + width > 24:
            x, y = 0, y + row_height
            row_height = 0
        for ref, target in zip("ABCDEFGH", targets):
            target.setdefault("refId", ref)
            target.setdefault("datasource", datasource)
        panels.append(panel(index, title_, kind, width, height, datasource, targets, x, y))
        x += width
        row_height = max(row_height, height)
    variables = [
        {
            "name": "datasource",
            "label": datasource_label,
            "type": "datasource",
            "query": datasource_type,
            "current": {},
            "hide": 0,
        },
        *extra_variables,
        query_variable("host", "Host", datasource, host_query),
        *(query_variable(name, label, datasource, workload_query(name)) for name, label in WORKLOADS),
    ]
    return {
        "uid": uid,
        "title": title,
        "tags": ["netgraph", "network"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables},
        "panels": panels,
    }


def influxql():
    host = "\"hostname\" =~ /^$host$/"
    both = "sum(\"sent_bytes_last\") + sum(\"recv_bytes_last\")"

    def q(text, fmt="time_series", alias=""):
        return {"query": text, "rawQuery": True, "resultFormat": fmt, "alias": alias}

    return dashboard(
        "netgraph-influxql",
        "netgraph: bandwidth per process (InfluxQL)",
        "influxdb",
        "InfluxDB (InfluxQL)",
        "SHOW TAG VALUES FROM \"network_data\" WITH KEY = \"hostname\"",
        [
            [q(f"SELECT sum(\"sent_bytes_last\") FROM \"network_data\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"name\" fill(0)", alias="$tag_name")],
            [q(f"SELECT sum(\"recv_bytes_last\") FROM \"network_data\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"name\" fill(0)", alias="$tag_name")],
            [q(f"SELECT sum(\"sent_bytes_last\") AS \"sent\", sum(\"recv_bytes_last\") AS \"received\", {both} AS \"total\" FROM \"network_data\" WHERE {host} AND $timeFilter GROUP BY time(1h) fill(0)")],
            [q(f"SELECT sum(\"sent_bytes_last\") AS \"sent\", sum(\"recv_bytes_last\") AS \"received\", {both} AS \"total\" FROM \"network_data\" WHERE {host} AND $timeFilter GROUP BY \"name\"", fmt="table")],
            [q(f"SELECT {both} FROM \"network_data\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"device_name\" fill(0)", alias="$tag_device_name")],
            [
                q(f"SELECT {both} FROM \"network_data\" WHERE \"name\" =~ /^unknown / AND {host} AND $timeFilter", fmt="table"),
                q(f"SELECT {both} FROM \"network_data\" WHERE {host} AND $timeFilter", fmt="table"),
                {"refId": "C", "datasource": {"type": "__expr__", "uid": "__expr__"}, "type": "math", "expression": "$A / $B"},
            ],
            [q(f"SELECT sum(\"ps_recv\") AS \"received\", sum(\"ps_drop\") AS \"dropped\", sum(\"ps_ifdrop\") AS \"interface dropped\" FROM \"packet_stats\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"device_name\" fill(0)")],
            [q(f"SELECT sum(\"sent_bytes_last\") FROM \"network_data\" WHERE {host} AND \"container\" =~ /^$container$/ AND \"container\" != '' AND $timeFilter GROUP BY time($__interval), \"container\" fill(0)", alias="$tag_container")],
            [q(f"SELECT sum(\"sent_bytes_last\") FROM \"network_data\" WHERE {host} AND \"namespace\" =~ /^$namespace$/ AND \"pod\" =~ /^$pod$/ AND \"pod\" != '' AND $timeFilter GROUP BY time($__interval), \"namespace\", \"pod\" fill(0)", alias="$tag_namespace/$tag_pod")],
            [q(f"SELECT sum(\"sent_bytes_last\") AS \"sent\", sum(\"recv_bytes_last\") AS \"received\", {both} AS \"total\" FROM \"network_peer\" WHERE {host} AND $timeFilter GROUP BY \"peer_name\", \"peer\"", fmt="table")],
            # Drawn over "now/M" (the month so far): $timeFilter is that range.
            [q(f"SELECT sum(\"sent_bytes_last\") AS \"sent\", sum(\"recv_bytes_last\") AS \"received\", {both} AS \"total\" FROM \"network_data\" WHERE {host} AND $timeFilter GROUP BY \"name\"", fmt="table")],
            # TCP health (eBPF engine): its own measurement, the series' tags.
            [q(f"SELECT sum(\"tcp_retransmits\") FROM \"network_health\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"name\" fill(0)", alias="$tag_name")],
            [q(f"SELECT mean(\"tcp_rtt_us\") / 1000000 FROM \"network_health\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"name\" fill(none)", alias="$tag_name")],
            [q(f"SELECT sum(\"tcp_connect_failures\") FROM \"network_health\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"name\" fill(0)", alias="$tag_name")],
            # Drops (eBPF engine, Linux 5.17+), on the same measurement.
            [q(f"SELECT sum(\"drops\") FROM \"network_health\" WHERE {host} AND $timeFilter GROUP BY time($__interval), \"name\" fill(0)", alias="$tag_name")],
        ],
        lambda name: f"SHOW TAG VALUES FROM \"network_data\" WITH KEY = \"{name}\" WHERE {host}",
    )


# The original README's four Flux queries, each given the host filter as its second step.
def flux():
    host = '  |> filter(fn: (r) => r.hostname =~ /^${host:regex}$/)\n'
    start = 'from(bucket: "${bucket}")\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'

    def q(text):
        return {"query": text}

    accumulated = (
        start + host
        + '  |> filter(fn: (r) => (r._measurement == "network_data" and (r._field == "sent_bytes_last" or r._field == "recv_bytes_last")))\n'
        '  |> keep(columns: ["_time","_value", "_field"])\n'
        '  |> aggregateWindow(every: 1h, fn: sum, createEmpty: true)\n'
        '  |> group(columns: ["_time","_field"])\n'
        '  |> pivot(rowKey:["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> group(columns: [])\n'
        '  |> map(fn: (r) => ({r with total_sum: (r.sent_bytes_last + r.recv_bytes_last)}))'
    )
    packet_stats = (
        start + host
        + '  |> filter(fn: (r) => (r._measurement == "packet_stats"))\n'
        '  |> aggregateWindow(every: 1h, fn: sum, createEmpty: true)'
    )

    def per_process(field):
        return (
            start + host
            + f'  |> filter(fn: (r) => (r._measurement == "network_data" and (r._field == "{field}")))\n'
            '  |> keep(columns: ["_time","_value", "name"])\n'
            '  |> aggregateWindow(every: 1h, fn: sum, createEmpty: true)'
        )

    top = (
        start + host
        + '  |> filter(fn: (r) => r._measurement == "network_data" and (r._field == "sent_bytes_last" or r._field == "recv_bytes_last"))\n'
        '  |> group(columns: ["name", "_field"])\n'
        '  |> sum()\n'
        '  |> pivot(rowKey: ["name"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> map(fn: (r) => ({name: r.name, sent: r.sent_bytes_last, received: r.recv_bytes_last, total: r.sent_bytes_last + r.recv_bytes_last}))\n'
        '  |> group()\n'
        '  |> sort(columns: ["total"], desc: true)'
    )
    per_interface = (
        start + host
        + '  |> filter(fn: (r) => r._measurement == "network_data" and (r._field == "sent_bytes_last" or r._field == "recv_bytes_last"))\n'
        '  |> group(columns: ["device_name"])\n'
        '  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)'
    )
    unattributed = (
        start + host
        + '  |> filter(fn: (r) => r._measurement == "network_data" and (r._field == "sent_bytes_last" or r._field == "recv_bytes_last"))\n'
        '  |> map(fn: (r) => ({r with unknown: if r.name =~ /^unknown / then float(v: r._value) else 0.0, all: float(v: r._value)}))\n'
        '  |> group()\n'
        '  |> reduce(identity: {unknown: 0.0, all: 0.0}, fn: (r, accumulator) => ({unknown: accumulator.unknown + r.unknown, all: accumulator.all + r.all}))\n'
        '  |> map(fn: (r) => ({_value: if r.all > 0.0 then r.unknown / r.all else 0.0}))'
    )
    per_container = (
        start + host
        + '  |> filter(fn: (r) => r._measurement == "network_data" and r._field == "sent_bytes_last" and exists r.container)\n'
        '  |> filter(fn: (r) => r.container =~ /^${container:regex}$/)\n'
        '  |> group(columns: ["container"])\n'
        '  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: true)'
    )
    per_pod = (
        start + host
        + '  |> filter(fn: (r) => r._measurement == "network_data" and r._field == "sent_bytes_last" and exists r.pod)\n'
        '  |> filter(fn: (r) => r.namespace =~ /^${namespace:regex}$/ and r.pod =~ /^${pod:regex}$/)\n'
        '  |> group(columns: ["namespace", "pod"])\n'
        '  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: true)'
    )
    destinations = (
        start + host
        + '  |> filter(fn: (r) => r._measurement == "network_peer" and (r._field == "sent_bytes_last" or r._field == "recv_bytes_last"))\n'
        '  |> map(fn: (r) => ({r with destination: if exists r.peer_name then r.peer_name else r.peer}))\n'
        '  |> group(columns: ["destination", "_field"])\n'
        '  |> sum()\n'
        '  |> pivot(rowKey: ["destination"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> map(fn: (r) => ({destination: r.destination, sent: r.sent_bytes_last, received: r.recv_bytes_last, total: r.sent_bytes_last + r.recv_bytes_last}))\n'
        '  |> group()\n'
        '  |> sort(columns: ["total"], desc: true)'
    )
    def health(field, fn, scale=""):
        return (
            start + host
            + f'  |> filter(fn: (r) => r._measurement == "network_health" and r._field == "{field}")\n'
            '  |> keep(columns: ["_time","_value", "name"])\n'
            + scale
            + f'  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)'
        )

    seconds = '  |> map(fn: (r) => ({r with _value: float(v: r._value) / 1000000.0}))\n'
    bucket = {
        "name": "bucket",
        "label": "Bucket",
        "type": "textbox",
        "query": "netgraph",
        "current": {"text": "netgraph", "value": "netgraph"},
        "hide": 0,
    }
    return dashboard(
        "netgraph-flux",
        "netgraph: bandwidth per process (Flux)",
        "influxdb",
        "InfluxDB 2.x (Flux)",
        'import "influxdata/influxdb/schema"\nschema.tagValues(bucket: "${bucket}", tag: "hostname")',
        [
            [q(per_process("sent_bytes_last"))],
            [q(per_process("recv_bytes_last"))],
            [q(accumulated)],
            [q(top)],
            [q(per_interface)],
            [q(unattributed)],
            [q(packet_stats)],
            [q(per_container)],
            [q(per_pod)],
            [q(destinations)],
            [q(top)],
            [q(health("tcp_retransmits", "sum"))],
            [q(health("tcp_rtt_us", "mean", seconds))],
            [q(health("tcp_connect_failures", "sum"))],
            [q(health("drops", "sum"))],
        ],
        lambda name: f'import "influxdata/influxdb/schema"\nschema.tagValues(bucket: "${{bucket}}", tag: "{name}")',
        extra_variables=[bucket],
    )


def promql():
    sel = 'instance=~"$host"'
    tx = "netgraph_process_transmitted_bytes_total"
    rx = "netgraph_process_received_bytes_total"

    def q(expr, legend="", instant=False, fmt="time_series"):
        return {"expr": expr, "legendFormat": legend, "instant": instant, "range": not instant, "format": fmt}

    return dashboard(
        "netgraph-promql",
        "netgraph: bandwidth per process (PromQL)",
        "prometheus",
        "Prometheus or VictoriaMetrics",
        {"query": f"label_values({tx}, instance)", "refId": "host"},
        [
            [q(f"sum by (name) (rate({tx}{{{sel}}}[$__rate_interval]))", "{{name}}")],
            [q(f"sum by (name) (rate({rx}{{{sel}}}[$__rate_interval]))", "{{name}}")],
            [
                q(f"sum(increase({tx}{{{sel}}}[1h]))", "sent"),
                q(f"sum(increase({rx}{{{sel}}}[1h]))", "received"),
                q(f"sum(increase({tx}{{{sel}}}[1h])) + sum(increase({rx}{{{sel}}}[1h]))", "total"),
            ],
            [q(f"topk(20, sum by (name) (increase({tx}{{{sel}}}[$__range])) + sum by (name) (increase({rx}{{{sel}}}[$__range])))", "{{name}}", instant=True, fmt="table")],
            [q(f"sum by (interface) (rate(netgraph_interface_transmitted_bytes_total{{{sel}}}[$__rate_interval]) + rate(netgraph_interface_received_bytes_total{{{sel}}}[$__rate_interval]))", "{{interface}}")],
            [q(f'(sum(rate({tx}{{name=~"unknown .*", {sel}}}[$__range])) + sum(rate({rx}{{name=~"unknown .*", {sel}}}[$__range])) or vector(0)) / (sum(rate({tx}{{{sel}}}[$__range])) + sum(rate({rx}{{{sel}}}[$__range])))', "unattributed", instant=True)],
            [
                q(f"sum by (interface) (rate(netgraph_capture_received_packets_total{{{sel}}}[$__rate_interval]))", "received {{interface}}"),
                q(f"sum by (interface) (rate(netgraph_capture_dropped_packets_total{{{sel}}}[$__rate_interval]))", "dropped {{interface}}"),
                q(f"sum by (interface) (rate(netgraph_capture_interface_dropped_packets_total{{{sel}}}[$__rate_interval]))", "interface dropped {{interface}}"),
            ],
            [q(f'sum by (container) (rate({tx}{{{sel}, container=~"$container", container!=""}}[$__rate_interval]))', "{{container}}")],
            [q(f'sum by (namespace, pod) (rate({tx}{{{sel}, namespace=~"$namespace", pod=~"$pod", pod!=""}}[$__rate_interval]))', "{{namespace}}/{{pod}}")],
            # Peer counters are opt-in ([prometheus] peers = N).
            [q(f"topk(20, sum by (peer_name, peer) (increase(netgraph_peer_transmitted_bytes_total{{{sel}}}[$__range])) + sum by (peer_name, peer) (increase(netgraph_peer_received_bytes_total{{{sel}}}[$__range])))", "{{peer_name}} {{peer}}", instant=True, fmt="table")],
            # Drawn over "now/M" (the month so far): $__range is that length.
            [q(f"topk(20, sum by (name) (increase({tx}{{{sel}}}[$__range])) + sum by (name) (increase({rx}{{{sel}}}[$__range])))", "{{name}}", instant=True, fmt="table")],
            # TCP health (eBPF engine): segments sent again per second, the RTT, failures.
            [q(f"sum by (name) (rate(netgraph_tcp_retransmitted_segments_total{{{sel}}}[$__rate_interval]))", "{{name}}")],
            [q(f"max by (name) (netgraph_tcp_rtt_seconds{{{sel}}})", "{{name}}")],
            [q(f"sum by (name, kind) (increase(netgraph_tcp_connect_failures_total{{{sel}}}[$__rate_interval]))", "{{name}} {{kind}}")],
            [q(f"sum by (name, layer) (increase(netgraph_dropped_packets_total{{{sel}}}[$__rate_interval]))", "{{name}} {{layer}}")],
            # Alert rules of [alerts] with a limit or a rate ([[alerts.rule]] in netgraph.toml).
            [q(f"max by (rule) (netgraph_quota_used_ratio{{{sel}}})", "{{rule}}", instant=True)],
        ],
        lambda name: f"label_values({tx}{{{sel}}}, {name})",
        layout=LAYOUT + PROMQL_ONLY,
    )


def main():
    OUT.mkdir(exist_ok=True)
    for name, board in [("netgraph-influxql", influxql()), ("netgraph-flux", flux()), ("netgraph-promql", promql())]:
        (OUT / f"{name}.json").write_text(json.dumps(board, indent=2) + "\n")


if __name__ == "__main__":
    main()

//! `netgraph report`: totals per process (user, interface, container, peer...) for days
//! and billing months, with the projection of the running period, like `vnstat -d/-m`
//! per process. It reads the store file the daemon writes.

pub mod command;
pub mod usage;

use crate::daemon_client::DaemonClient;
use crate::periods::Period;
use crate::store::{DropTotals, GroupBy, Only, Reader, TcpTotals, Total};
use crate::units::bytes as human;
use serde::Serialize;
use std::time::Duration;

/// Where the totals come from: the running daemon's API, or the store file.
pub enum Source {
    Daemon(DaemonClient),
    Store(Reader),
}

impl Source {
    /// The daemon at `url` if it answers, else the store in `state_directory`.
    pub fn find(
        url: &str,
        token: Option<&str>,
        state_directory: &std::path::Path,
    ) -> anyhow::Result<Source> {
        let daemon = DaemonClient::new(url, token);
        if daemon.live().is_ok() {
            return Ok(Source::Daemon(daemon));
        }
        Ok(Source::Store(Reader::open(state_directory)?))
    }

    /// When the history begins (projections start there).
    fn recording_since(&self) -> anyhow::Result<Option<i64>> {
        match self {
            Source::Store(reader) => reader.recording_since(),
            // Every totals answer says it: ask for the last second's.
            Source::Daemon(daemon) => {
                Ok(daemon_totals(daemon, -1, 0, GroupBy::Process, 1)?["recorded_since"].as_i64())
            }
        }
    }

    /// Totals per group over `[from, to)`, largest first, at most `top`.
    fn totals(
        &self,
        from: i64,
        to: i64,
        group_by: GroupBy,
        top: usize,
    ) -> anyhow::Result<Vec<Total>> {
        match self {
            Source::Store(reader) => Ok(reader.totals(from, to, group_by, top, None::<Only>)?.1),
            Source::Daemon(daemon) => Ok(serde_json::from_value(
                daemon_totals(daemon, from, to, group_by, top)?["rows"].take(),
            )?),
        }
    }
}

/// The daemon's answer to a totals query.
fn daemon_totals(
    daemon: &DaemonClient,
    from: i64,
    to: i64,
    group_by: GroupBy,
    top: usize,
) -> anyhow::Result<serde_json::Value> {
    let group = serde_json::to_value(group_by)?;
    let group = group.as_str().unwrap_or("process");
    daemon.get(
        &format!("totals?from={from}&to={to}&group_by={group}&top={top}"),
        Duration::from_secs(30),
    )
}

/// One line of a report: a group's bytes in a period.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ReportRow {
    pub period: String,
    /// Unix seconds, `[start, end)`.
    pub start: i64,
    pub end: i64,
    /// The group (process name, uid, interface, ...); `(all)` for the period's total.
    pub key: String,
    /// By peer: the names the address had (comma-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<String>,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub total_bytes: u64,
    /// For the period still running: the total it will reach at this rate.
    pub projected_bytes: Option<u64>,
    /// How TCP fared, where anything happened to it (eBPF engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTotals>,
    /// Segments retransmitted per hundred packets sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmit_percent: Option<f64>,
    /// Packets the kernel dropped, where it dropped any (eBPF engine, Linux 5.17+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drops: Option<DropTotals>,
}

/// The `top` largest groups of each period and the period's total (all groups, summed
/// over the interfaces, of which there are few).
pub fn rows(
    source: &Source,
    periods: &[Period],
    group_by: GroupBy,
    top: usize,
    now: i64,
) -> anyhow::Result<Vec<ReportRow>> {
    let mut rows = Vec::new();
    let recorded_since = source.recording_since()?;
    for period in periods {
        let row = |key: String, names: Option<String>, sent: u64, recv: u64| ReportRow {
            period: period.label.clone(),
            start: period.start,
            end: period.end,
            key,
            names,
            sent_bytes: sent,
            recv_bytes: recv,
            total_bytes: sent + recv,
            projected_bytes: period.projection(sent + recv, now, recorded_since),
            tcp: None,
            retransmit_percent: None,
            drops: None,
        };
        let groups = source.totals(period.start, period.end, group_by, top)?;
        let interfaces = source.totals(period.start, period.end, GroupBy::Interface, 1000)?;
        let (sent, recv) = interfaces
            .iter()
            .fold((0, 0), |(s, r), t| (s + t.sent_bytes, r + t.recv_bytes));
        rows.extend(groups.into_iter().map(|t| {
            let mut line = row(t.key, t.names, t.sent_bytes, t.recv_bytes);
            line.retransmit_percent = t
                .tcp
                .as_ref()
                .filter(|_| t.sent_packets > 0)
                .map(|tcp| 100.0 * tcp.retransmits as f64 / t.sent_packets as f64);
            line.tcp = t.tcp;
            line.drops = t.drops;
            line
        }));
        rows.push(row("(all)".into(), None, sent, recv));
    }
    Ok(rows)
}

/// An aligned table, as a person reads it.
pub fn table(rows: &[ReportRow], group: &str) -> String {
    let projected = rows.iter().any(|r| r.projected_bytes.is_some());
    let named = rows.iter().any(|r| r.names.is_some());
    let health = rows.iter().any(|r| r.tcp.is_some());
    let mut header = vec!["period".to_string(), group.to_string()];
    if named {
        header.push("name".into());
    }
    header.extend(["sent".into(), "received".into(), "total".into()]);
    if projected {
        header.push("projected".into());
    }
    if health {
        header.extend(["RTT".into(), "retrans".into(), "failed".into()]);
    }
    let dropped = rows.iter().any(|r| r.drops.is_some());
    if dropped {
        header.push("dropped".into());
    }
    let mut lines = vec![header];
    for row in rows {
        let mut line = vec![row.period.clone(), row.key.clone()];
        if named {
            line.push(row.names.clone().unwrap_or_default());
        }
        line.extend([
            human(row.sent_bytes),
            human(row.recv_bytes),
            human(row.total_bytes),
        ]);
        if projected {
            line.push(row.projected_bytes.map(human).unwrap_or_default());
        }
        if health {
            line.extend(health_cells(row));
        }
        if dropped {
            line.push(drop_cell(row));
        }
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                // Text left, figures right.
                if c < 2 + usize::from(named) {
                    format!("{cell:<width$}", width = widths[c])
                } else {
                    format!("{cell:>width$}", width = widths[c])
                }
            })
            .collect();
        text += cells.join("  ").trim_end();
        text.push('\n');
    }
    text
}

/// RTT in milliseconds, retransmitted share of the packets sent, failed connects.
fn health_cells(row: &ReportRow) -> [String; 3] {
    let Some(tcp) = &row.tcp else {
        return Default::default();
    };
    [
        tcp.rtt_us
            .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
            .unwrap_or_default(),
        row.retransmit_percent
            .map(|percent| format!("{percent:.2} %"))
            .unwrap_or_default(),
        tcp.connect_failures.to_string(),
    ]
}

/// Packets dropped, and by which layer where one dropped most (`120 (netfilter)`).
fn drop_cell(row: &ReportRow) -> String {
    let Some(drops) = &row.drops else {
        return String::new();
    };
    let kinds = [
        ("netfilter", drops.netfilter),
        ("policy", drops.policy),
        ("socket", drops.socket),
        ("tcp", drops.tcp),
        ("queue", drops.queue),
        ("other", drops.other),
    ];
    match kinds.iter().max_by_key(|(_, n)| *n) {
        Some((kind, n)) if *n * 2 > drops.packets => format!("{} ({kind})", drops.packets),
        _ => drops.packets.to_string(),
    }
}

/// Comma-separated values with a header; bytes as plain integers.
pub fn csv(rows: &[ReportRow], group: &str) -> String {
    let quote = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_string()
        }
    };
    // By peer, the names each address had, after it.
    let named = rows.iter().any(|r| r.names.is_some());
    let names_column = if named { ",names" } else { "" };
    // TCP health after the rest, where any row has it.
    let health = rows.iter().any(|r| r.tcp.is_some());
    let health_columns = if health {
        ",rtt_us,retransmits,retransmit_percent,connect_failures"
    } else {
        ""
    };
    let dropped = rows.iter().any(|r| r.drops.is_some());
    let drop_columns = if dropped {
        ",drops,drops_netfilter"
    } else {
        ""
    };
    let mut text = format!(
        "period,start,end,{group}{names_column},sent_bytes,recv_bytes,total_bytes,projected_bytes{health_columns}{drop_columns}\n"
    );
    for row in rows {
        let names = if named {
            format!(",{}", quote(row.names.as_deref().unwrap_or("")))
        } else {
            String::new()
        };
        let health_values = match (&row.tcp, health) {
            (_, false) => String::new(),
            (None, true) => ",,,,".into(),
            (Some(tcp), true) => format!(
                ",{},{},{},{}",
                tcp.rtt_us.map(|us| us.to_string()).unwrap_or_default(),
                tcp.retransmits,
                row.retransmit_percent
                    .map(|p| format!("{p:.3}"))
                    .unwrap_or_default(),
                tcp.connect_failures
            ),
        };
        let drop_values = match (&row.drops, dropped) {
            (_, false) => String::new(),
            (None, true) => ",,".into(),
            (Some(drops), true) => format!(",{},{}", drops.packets, drops.netfilter),
        };
        text += &format!(
            "{},{},{},{}{names},{},{},{},{}{health_values}{drop_values}\n",
            quote(&row.period),
            row.start,
            row.end,
            quote(&row.key),
            row.sent_bytes,
            row.recv_bytes,
            row.total_bytes,
            row.projected_bytes
                .map(|p| p.to_string())
                .unwrap_or_default()
        );
    }
    text
}

//! `netgraph report`: totals per process (user, interface, container, peer...) for days
//! and billing months, with the projection of the running period, like `vnstat -d/-m`
//! per process. It reads the store file the daemon writes.

pub mod command;
pub mod periods;

use crate::store::{GroupBy, Only, Reader};
use periods::Period;
use serde::Serialize;

/// One line of a report: a group's bytes in a period.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReportRow {
    pub period: String,
    /// Unix seconds, `[start, end)`.
    pub start: i64,
    pub end: i64,
    /// The group (process name, uid, interface, ...); `(all)` for the period's total.
    pub key: String,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub total_bytes: u64,
    /// For the period still running: the total it will reach at this rate.
    pub projected_bytes: Option<u64>,
}

/// The `top` largest groups of each period and the period's total, from the store.
pub fn rows(
    reader: &Reader,
    periods: &[Period],
    group_by: GroupBy,
    top: usize,
    only: Option<(GroupBy, &str)>,
    now: i64,
) -> anyhow::Result<Vec<ReportRow>> {
    let mut rows = Vec::new();
    for period in periods {
        let only = only.map(|(group_by, key)| Only { group_by, key });
        let (_, totals) = reader.totals(period.start, period.end, group_by, 100_000, only)?;
        let row = |key: String, sent: u64, recv: u64| ReportRow {
            period: period.label.clone(),
            start: period.start,
            end: period.end,
            key,
            sent_bytes: sent,
            recv_bytes: recv,
            total_bytes: sent + recv,
            projected_bytes: period.projection(sent + recv, now),
        };
        let (sent, recv) = totals
            .iter()
            .fold((0, 0), |(s, r), t| (s + t.sent_bytes, r + t.recv_bytes));
        rows.extend(
            totals
                .into_iter()
                .take(top)
                .map(|t| row(t.key, t.sent_bytes, t.recv_bytes)),
        );
        rows.push(row("(all)".into(), sent, recv));
    }
    Ok(rows)
}

fn human(bytes: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

/// An aligned table, as a person reads it.
pub fn table(rows: &[ReportRow], group: &str) -> String {
    let projected = rows.iter().any(|r| r.projected_bytes.is_some());
    let mut header = vec![
        "period".to_string(),
        group.to_string(),
        "sent".into(),
        "received".into(),
        "total".into(),
    ];
    if projected {
        header.push("projected".into());
    }
    let mut lines = vec![header];
    for row in rows {
        let mut line = vec![
            row.period.clone(),
            row.key.clone(),
            human(row.sent_bytes),
            human(row.recv_bytes),
            human(row.total_bytes),
        ];
        if projected {
            line.push(row.projected_bytes.map(human).unwrap_or_default());
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
                if c < 2 {
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

/// Comma-separated values with a header; bytes as plain integers.
pub fn csv(rows: &[ReportRow], group: &str) -> String {
    let quote = |text: &str| {
        if text.contains([',', '"', '\n']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_string()
        }
    };
    let mut text =
        format!("period,start,end,{group},sent_bytes,recv_bytes,total_bytes,projected_bytes\n");
    for row in rows {
        text += &format!(
            "{},{},{},{},{},{},{},{}\n",
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

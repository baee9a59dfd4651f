//! The page's usage view: bytes per day for the last 31 days and per billing month for
//! the last 12, stacked by the largest groups (the rest as `other`), with the running
//! periods' projections.

use crate::periods::{last_billing_months, last_days, Period};
use crate::store::{GroupBy, Reader};
use serde::Serialize;

pub const DAYS: u32 = 31;
pub const MONTHS: u32 = 12;

#[derive(Debug, Serialize)]
pub struct Usage {
    pub group_by: GroupBy,
    pub billing_day: u32,
    /// The groups stacked, largest first; `other` last when the rest has bytes.
    pub keys: Vec<String>,
    pub daily: Vec<UsageBar>,
    pub monthly: Vec<UsageBar>,
}

#[derive(Debug, Serialize)]
pub struct UsageBar {
    pub label: String,
    pub start: i64,
    pub end: i64,
    /// Bytes per key of `keys`, sent and received.
    pub sent: Vec<u64>,
    pub recv: Vec<u64>,
    pub total: u64,
    /// The running period's total at its present pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected: Option<u64>,
}

const OTHER: &str = "other";

pub fn usage<Tz: chrono::TimeZone>(
    reader: &Reader,
    zone: &Tz,
    now: chrono::DateTime<Tz>,
    group_by: GroupBy,
    top: usize,
    billing_day: u32,
) -> anyhow::Result<Usage> {
    let days = last_days(zone, now.clone(), DAYS);
    let months = last_billing_months(zone, now.clone(), MONTHS, billing_day);
    let at = now.timestamp();
    let from = days[0].start.min(months[0].start);
    let mut keys: Vec<String> = reader
        .totals(from, at + 1, group_by, top, None)?
        .1
        .into_iter()
        .map(|t| t.key)
        .collect();
    let since = reader.recording_since()?;
    let bars = |periods: &[Period]| -> anyhow::Result<Vec<UsageBar>> {
        periods
            .iter()
            .map(|p| bar(reader, p, &keys, group_by, at, since))
            .collect()
    };
    let (daily, monthly) = (bars(&days)?, bars(&months)?);
    let rest = |bars: &[UsageBar]| {
        bars.iter()
            .any(|b| b.sent[keys.len()] + b.recv[keys.len()] > 0)
    };
    let has_other = rest(&daily) || rest(&monthly);
    let trim = |mut bars: Vec<UsageBar>| {
        if !has_other {
            for bar in &mut bars {
                bar.sent.pop();
                bar.recv.pop();
            }
        }
        bars
    };
    let (daily, monthly) = (trim(daily), trim(monthly));
    if has_other {
        keys.push(OTHER.into());
    }
    Ok(Usage {
        group_by,
        billing_day,
        keys,
        daily,
        monthly,
    })
}

/// One period's bytes per key, and the rest (all traffic, less the keys) last.
fn bar(
    reader: &Reader,
    period: &Period,
    keys: &[String],
    group_by: GroupBy,
    now: i64,
    recorded_since: Option<i64>,
) -> anyhow::Result<UsageBar> {
    let mut sent = vec![0; keys.len() + 1];
    let mut recv = vec![0; keys.len() + 1];
    let (all_sent, all_recv) = reader.sum(period.start, period.end, &[])?;
    for total in reader
        .totals(period.start, period.end, group_by, 10_000, None)?
        .1
    {
        if let Some(index) = keys.iter().position(|k| *k == total.key) {
            sent[index] = total.sent_bytes;
            recv[index] = total.recv_bytes;
        }
    }
    // By peer, traffic without a known peer is not in the keys' sums either.
    sent[keys.len()] = all_sent.saturating_sub(sent.iter().sum());
    recv[keys.len()] = all_recv.saturating_sub(recv.iter().sum());
    let total = all_sent + all_recv;
    Ok(UsageBar {
        label: period.label.clone(),
        start: period.start,
        end: period.end,
        sent,
        recv,
        total,
        projected: period.projection(total, now, recorded_since),
    })
}

//! Which table answers each part of a range. Every interval is in all three
//! resolutions, so a range can be read exactly from the coarsest table whose whole
//! buckets fit in it, and finer ones at its edges: a month is mostly hourly rows, with
//! minutes and seconds only at its ends. A table is used only where it is complete
//! (nothing expired there).

use super::schema::{Resolution, Samples};
use super::Reader;
use rusqlite::OptionalExtension;

/// A table of one resolution and the time it is complete from.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    pub name: &'static str,
    pub bucket: i64,
    pub since: i64,
}

/// Rows of `table` with `from <= t < to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub table: &'static str,
    pub from: i64,
    pub to: i64,
}

fn floor(t: i64, bucket: i64) -> i64 {
    t - t.rem_euclid(bucket)
}

fn ceil(t: i64, bucket: i64) -> i64 {
    floor(t + bucket - 1, bucket)
}

impl Reader {
    /// The tables written so far, finest first.
    pub(super) fn tables(&self, samples: Samples) -> anyhow::Result<Vec<Table>> {
        let mut tables = Vec::new();
        for resolution in Resolution::ALL {
            let name = resolution.table_of(samples);
            let since: Option<i64> = self
                .connection
                .query_row(
                    "SELECT since FROM coverage WHERE resolution = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(since) = since {
                tables.push(Table {
                    name,
                    bucket: resolution.seconds(),
                    since,
                });
            }
        }
        Ok(tables)
    }
}

impl Reader {
    /// When the oldest interval kept was recorded: to the second while the store's
    /// second rows reach back to it (its first hour), else to the hour.
    pub fn recording_since(&self) -> anyhow::Result<Option<i64>> {
        let oldest = |table: &str| -> anyhow::Result<Option<i64>> {
            Ok(self
                .connection
                .query_row(&format!("SELECT min(t) FROM {table}"), [], |r| r.get(0))?)
        };
        let hour = Resolution::Hour.seconds();
        let Some(hourly) = oldest(Resolution::Hour.table_of(Samples::Series))? else {
            return Ok(None);
        };
        let secondly = oldest(Resolution::Second.table_of(Samples::Series))?;
        Ok(Some(match secondly {
            Some(t) if floor(t, hour) == hourly => t,
            _ => hourly,
        }))
    }
}

/// The finest table complete from `from`, else the one complete from the earliest
/// time (the range begins before anything kept): its buckets bound the answer's start.
pub fn anchor(tables: &[Table], from: i64) -> Option<Table> {
    tables
        .iter()
        .find(|t| t.since <= floor(from, t.bucket))
        .or_else(|| {
            tables
                .iter()
                .min_by_key(|t| floor(t.since, Resolution::Hour.seconds()))
        })
        .copied()
}

/// The parts `[from, to)` is read from (`tables` finest first), and the anchor's bucket:
/// the range starts at the anchor's bucket holding `from`.
pub fn parts(tables: &[Table], from: i64, to: i64) -> (Vec<Part>, i64) {
    let Some(anchor) = anchor(tables, from) else {
        return (Vec::new(), 1);
    };
    let mut pending = vec![(floor(from, anchor.bucket), to)];
    let mut parts = Vec::new();
    for table in tables.iter().rev() {
        let mut next = Vec::new();
        for (a, b) in pending {
            let start = ceil(a.max(table.since), table.bucket);
            let end = floor(b, table.bucket);
            if start < end {
                parts.push(Part {
                    table: table.name,
                    from: start,
                    to: end,
                });
                next.extend([(a, start), (end, b)].into_iter().filter(|(x, y)| x < y));
            } else {
                next.push((a, b));
            }
        }
        pending = next;
    }
    // Where no table is complete (expired detail, or the bucket being written): the
    // anchor's whole buckets.
    parts.extend(pending.into_iter().map(|(from, to)| Part {
        table: anchor.name,
        from,
        to,
    }));
    (parts, anchor.bucket)
}

/// The rows of `parts` that pass `filter` (`AND ...` on the tables' own columns), as
/// one table with the columns of `samples`.
/// What every sample row holds besides its keys.
const SAMPLE_COLUMNS: &str = "sent, recv, sent_packets, recv_packets, retransmits, retransmit_bytes, connects, connect_failures, rtt_weighted, rtt_bytes, rtt_max, drop_bytes, drops_netfilter, drops_policy, drops_socket, drops_tcp, drops_queue, drops_other";
const EMPTY_SAMPLE: &str = "0 AS sent, 0 AS recv, 0 AS sent_packets, 0 AS recv_packets, 0 AS retransmits, 0 AS retransmit_bytes, 0 AS connects, 0 AS connect_failures, 0.0 AS rtt_weighted, 0 AS rtt_bytes, 0 AS rtt_max, 0 AS drop_bytes, 0 AS drops_netfilter, 0 AS drops_policy, 0 AS drops_socket, 0 AS drops_tcp, 0 AS drops_queue, 0 AS drops_other";

pub fn union(parts: &[Part], samples: Samples, filter: &str) -> String {
    let peer = match samples {
        Samples::Series => "",
        Samples::Peers => ", peer",
    };
    let selects: Vec<String> = parts
        .iter()
        .map(|part| {
            format!(
                "SELECT t, series{peer}, {SAMPLE_COLUMNS} FROM {} WHERE t >= {} AND t < {} {filter}",
                part.table, part.from, part.to
            )
        })
        .collect();
    if selects.is_empty() {
        // No table written yet: no rows, of the right shape, with the filter's
        // parameters still bound.
        let peer = if peer.is_empty() { "" } else { ", 0 AS peer" };
        return format!(
            "(SELECT * FROM (SELECT 0 AS t, 0 AS series{peer}, {EMPTY_SAMPLE}) WHERE 0 {filter})"
        );
    }
    format!("({})", selects.join(" UNION ALL "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(since: [i64; 3]) -> Vec<Table> {
        let names = ["s", "m", "h"];
        let buckets = [1, 60, 3600];
        (0..3)
            .map(|i| Table {
                name: names[i],
                bucket: buckets[i],
                since: since[i],
            })
            .collect()
    }

    fn part(table: &'static str, from: i64, to: i64) -> Part {
        Part { table, from, to }
    }

    #[test]
    fn a_month_is_hours_with_minutes_and_seconds_at_its_ends() {
        let all = tables([0, 0, 0]);
        let (from, to) = (100 * 3600 + 61, 200 * 3600 + 125);
        let (mut read, bucket) = parts(&all, from, to);
        read.sort_by_key(|p| p.from);
        assert_eq!(bucket, 1);
        assert_eq!(
            read,
            [
                part("s", from, 100 * 3600 + 120),
                part("m", 100 * 3600 + 120, 101 * 3600),
                part("h", 101 * 3600, 200 * 3600),
                part("m", 200 * 3600, 200 * 3600 + 120),
                part("s", 200 * 3600 + 120, to),
            ]
        );
    }

    #[test]
    fn expired_detail_is_read_from_the_finest_table_complete_there() {
        // Seconds kept from hour 150 on, minutes from hour 120 on.
        let kept = tables([150 * 3600, 120 * 3600, 0]);
        let (from, to) = (100 * 3600 + 61, 160 * 3600 + 30);
        let (mut read, bucket) = parts(&kept, from, to);
        read.sort_by_key(|p| p.from);
        // The start rounds down to the hour (nothing finer is kept there).
        assert_eq!(bucket, 3600);
        assert_eq!(
            read,
            [part("h", 100 * 3600, 160 * 3600), part("s", 160 * 3600, to),]
        );
        // Seconds expired at the range's end too: the minute being written, whole.
        let old = tables([170 * 3600, 120 * 3600, 0]);
        let (mut read, _) = parts(&old, 130 * 3600, 160 * 3600 + 30);
        read.sort_by_key(|p| p.from);
        assert_eq!(
            read,
            [
                part("h", 130 * 3600, 160 * 3600),
                part("m", 160 * 3600, 160 * 3600 + 30),
            ]
        );
    }
}

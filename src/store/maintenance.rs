//! Keeping the store within its retention and size bound, in small steps: each step
//! deletes a bounded number of rows in its own transaction, so that the writer thread
//! can write an interval between any two steps and readers never wait long.
//!
//! Over the size bound, detail goes before history, oldest first at each stage: the
//! per-second and per-minute peer breakdown beyond its last minute and hour, per-second
//! process rows beyond ten minutes, per-minute ones beyond six hours (the coarser tables
//! still hold those times), hourly peers beyond a day; only then the oldest history at
//! any resolution. Series and peers rows go when no sample refers to them any more.

use super::schema::{Resolution, Samples};
use super::Store;
use rusqlite::{params, OptionalExtension};

/// Rows deleted per step, at most (and the rest of the bucket the last one is in).
const CHUNK_ROWS: i64 = 20_000;
/// Free pages given back to the file system per step.
const VACUUM_PAGES: i64 = 2_048;

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Work is left: call again (after writing any interval that came meanwhile).
    More,
    Done,
}

/// The sample tables in the order the size bound trims them, oldest rows first, with
/// the newest span each keeps while a later stage can still free space: detail and the
/// peer breakdown go before the processes' history.
const TRIM_ORDER: [(Resolution, Samples, i64); 5] = [
    (Resolution::Second, Samples::Peers, 60),
    (Resolution::Minute, Samples::Peers, 3600),
    (Resolution::Second, Samples::Series, 600),
    (Resolution::Minute, Samples::Series, 6 * 3600),
    (Resolution::Hour, Samples::Peers, 86_400),
];

/// Every sample table, peer tables first.
fn sample_tables() -> impl Iterator<Item = (&'static str, i64)> {
    [Samples::Peers, Samples::Series]
        .into_iter()
        .flat_map(|kind| Resolution::ALL.map(|r| (r.table_of(kind), r.seconds())))
}

impl Store {
    /// Runs maintenance to its end (tests, and stores no writer is waiting on).
    pub fn maintain(&mut self, now: i64) -> anyhow::Result<()> {
        while self.maintenance_step(now)? == Step::More {}
        Ok(())
    }

    /// One bounded piece of maintenance: retention, then the size bound, then rows no
    /// sample refers to, then free pages, then the WAL checkpoint.
    pub fn maintenance_step(&mut self, now: i64) -> anyhow::Result<Step> {
        for resolution in Resolution::ALL {
            for kind in [Samples::Peers, Samples::Series] {
                let cutoff = now - self.retention.of(resolution, kind).as_secs() as i64;
                if self.delete_before(resolution.table_of(kind), cutoff)? > 0 {
                    return Ok(Step::More);
                }
            }
        }
        if self.expire_unreferenced()? > 0 {
            return Ok(Step::More);
        }
        self.expire_names(now)?;
        if self.live_bytes()? > self.retention.max_bytes {
            if let Some((table, cutoff)) = self.trim_cut(now)? {
                let deleted = self.delete_before(table, cutoff)?;
                self.trimmed_rows += deleted as u64;
                if deleted > 0 {
                    return Ok(Step::More);
                }
            }
        }
        if self.trimmed_rows > 0 {
            tracing::warn!(
                "the store reached its size bound ({} MiB): dropped its {} oldest rows; raise [store] max_size_mib to keep more",
                self.retention.max_bytes >> 20,
                std::mem::take(&mut self.trimmed_rows)
            );
        }
        let free: i64 = self
            .connection
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free > 0 {
            self.connection
                .execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_PAGES})"))?;
            if free > VACUUM_PAGES {
                return Ok(Step::More);
            }
        }
        self.connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(Step::Done)
    }

    /// Bytes of pages in use (the file less its free pages).
    pub fn live_bytes(&self) -> anyhow::Result<u64> {
        let pragma = |name: &str| -> rusqlite::Result<u64> {
            let value: i64 = self
                .connection
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
            Ok(value.max(0) as u64)
        };
        Ok((pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?)
    }

    /// Where the size bound cuts next: the first table in trim order holding rows older
    /// than its kept span, else the table holding the oldest row of all (never the
    /// bucket being written).
    fn trim_cut(&self, now: i64) -> anyhow::Result<Option<(&'static str, i64)>> {
        for (resolution, kind, kept) in TRIM_ORDER {
            let table = resolution.table_of(kind);
            if let Some(oldest) = self.oldest(table)? {
                if oldest < now - kept {
                    return Ok(Some((table, now - kept)));
                }
            }
        }
        // Then the oldest rows of any table that has some before its current bucket (a
        // table whose oldest row is in its current bucket, such as the hour's, has
        // nothing to give; the others still may).
        let mut oldest: Option<(i64, &'static str, i64)> = None;
        for (table, bucket) in sample_tables() {
            let current = now - now.rem_euclid(bucket);
            if let Some(t) = self.oldest(table)?.filter(|t| *t < current) {
                if oldest.is_none_or(|(o, _, _)| t < o) {
                    oldest = Some((t, table, current));
                }
            }
        }
        Ok(oldest.map(|(_, table, current)| (table, current)))
    }

    fn oldest(&self, table: &str) -> anyhow::Result<Option<i64>> {
        Ok(self
            .connection
            .query_row(&format!("SELECT min(t) FROM {table}"), [], |r| r.get(0))?)
    }

    /// Deletes a table's oldest rows before `cutoff`, at most about CHUNK_ROWS of them,
    /// and records from when on the table is complete; returns the rows deleted.
    fn delete_before(&mut self, table: &str, cutoff: i64) -> anyhow::Result<usize> {
        // The time of the CHUNK_ROWS-th oldest row, if that many are before the cutoff.
        let chunk_end: Option<i64> = self
            .connection
            .query_row(
                &format!("SELECT t FROM {table} WHERE t < ?1 ORDER BY t LIMIT 1 OFFSET ?2"),
                params![cutoff, CHUNK_ROWS],
                |r| r.get(0),
            )
            .optional()?;
        let until = chunk_end.map_or(cutoff, |t| t + 1);
        let transaction = self.connection.transaction()?;
        let deleted = transaction.execute(&format!("DELETE FROM {table} WHERE t < ?1"), [until])?;
        transaction.execute(
            "UPDATE coverage SET since = max(since, ?2) WHERE resolution = ?1",
            params![table, until],
        )?;
        transaction.commit()?;
        Ok(deleted)
    }

    /// Deletes (a chunk of) the series and peers no remaining sample refers to: those
    /// whose latest sample's hour ended before every table they could be in begins.
    fn expire_unreferenced(&mut self) -> anyhow::Result<usize> {
        let mut deleted = 0;
        for (dimension, kinds) in [
            ("peers", &[Samples::Peers][..]),
            ("series", &[Samples::Peers, Samples::Series][..]),
        ] {
            let Some(before) = self.unreferenced_before(kinds)? else {
                continue;
            };
            let rows = self.connection.execute(
                &format!(
                    "DELETE FROM {dimension} WHERE id IN
                     (SELECT id FROM {dimension} WHERE last <= ?1 LIMIT ?2)"
                ),
                params![before, CHUNK_ROWS],
            )?;
            if rows > 0 {
                match dimension {
                    "peers" => self.peers.retain(|_, (_, last)| *last > before),
                    _ => self.series.retain(|_, (_, _, last)| *last > before),
                }
            }
            deleted += rows;
        }
        Ok(deleted)
    }

    /// The latest `last` (an hour) whose rows no table of these kinds refers to any more:
    /// a row's samples are at most its hour's last bucket, and each table lacks every
    /// bucket before the time it is complete from. None when none was ever written.
    fn unreferenced_before(&self, kinds: &[Samples]) -> anyhow::Result<Option<i64>> {
        let hour = Resolution::Hour.seconds();
        let mut before: Option<i64> = None;
        for kind in kinds {
            for resolution in Resolution::ALL {
                let since: Option<i64> = self
                    .connection
                    .query_row(
                        "SELECT since FROM coverage WHERE resolution = ?1",
                        [resolution.table_of(*kind)],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(since) = since {
                    let gone = since - 1 - (hour - resolution.seconds());
                    before = Some(before.map_or(gone, |b| b.min(gone)));
                }
            }
        }
        Ok(before)
    }
}

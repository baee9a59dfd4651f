//! The embedded store: history with no database server. SQLite in WAL mode (a crash or
//! kill -9 never corrupts it), every interval added to three resolutions at once (per
//! second, minute and hour), so each resolution's sums are exact; old rows expire per
//! resolution and the file stays under a size bound.

mod alert_state;
mod inspect;
mod maintenance;
mod names;
mod query;
mod ranges;
mod readers;
mod schema;
mod writer;

pub use alert_state::{AlertLedger, RuleState};
pub use maintenance::Step;
pub use query::{DropTotals, GroupBy, History, HistoryPoint, Only, TcpTotals, Total};
pub use readers::Readers;
pub use writer::StoreWriter;

use crate::accounting::{IntervalReport, PeerRow, ProcessRow, SeriesKey};
use crate::traffic::{DropKind, Traffic};
use crate::workload::Workload;
use rusqlite::{params, Connection, OpenFlags};
use schema::{Resolution, Samples};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct Retention {
    pub seconds: Duration,
    pub minutes: Duration,
    pub hours: Duration,
    /// Bound on the live data in the file; the oldest rows go first beyond it.
    pub max_bytes: u64,
    /// Peer rows, at every resolution, are kept at most this long.
    pub peers: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            seconds: Duration::from_secs(3600),
            minutes: Duration::from_secs(30 * 86_400),
            hours: Duration::from_secs(730 * 86_400),
            max_bytes: 512 << 20,
            peers: Duration::from_secs(90 * 86_400),
        }
    }
}

impl Retention {
    fn of(&self, resolution: Resolution, samples: Samples) -> Duration {
        let kept = match resolution {
            Resolution::Second => self.seconds,
            Resolution::Minute => self.minutes,
            Resolution::Hour => self.hours,
        };
        match samples {
            Samples::Series => kept,
            Samples::Peers => kept.min(self.peers),
        }
    }
}

/// Writes intervals; one per daemon.
pub struct Store {
    connection: Connection,
    path: PathBuf,
    retention: Retention,
    /// Ids of the series and peers written, with the workload written and the hour of
    /// the latest sample recorded in the row.
    series: HashMap<SeriesColumns, (i64, Option<Arc<Workload>>, i64)>,
    peers: HashMap<PeerColumns, (i64, i64)>,
    /// Rows the size bound dropped since it last said so.
    trimmed_rows: u64,
    /// Where a damaged file was moved at open.
    moved_aside: Option<PathBuf>,
}

/// A store file that is no SQLite database, or a damaged one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Damaged(String);

const STORE_FILE: &str = "netgraph.sqlite";
/// Series and peer ids the writer remembers; past it, it starts afresh (a miss costs
/// one lookup in the store).
const MAX_CACHED_IDS: usize = 16_384;

fn open_connection(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    let connection = Connection::open_with_flags(path, flags).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the store {}: {e}; set state_directory to a writable place",
            path.display()
        )
    })?;
    connection.busy_timeout(Duration::from_secs(5))?;
    Ok(connection)
}

/// Whether an error says the file is no SQLite database, or a damaged one.
fn is_damage(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(failure.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
        )
    })
}

/// Moves a damaged store file (and its WAL) aside, named with the time, for whoever
/// wants to look at it; returns the new name.
fn move_aside(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let aside = path.with_file_name(format!("{STORE_FILE}.damaged-{stamp}"));
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let side = path.with_file_name(format!("{STORE_FILE}{suffix}"));
        if side.exists() {
            let _ = std::fs::rename(
                &side,
                aside.with_file_name(format!("{}{suffix}", aside.display())),
            );
        }
    }
    Ok(aside)
}

impl Store {
    /// Opens the store in `state_directory`; a damaged file (garbage, cut short) is
    /// moved aside and a fresh one started, with one line saying so: history goes on.
    pub fn open(state_directory: &Path, retention: Retention) -> anyhow::Result<Store> {
        match Store::open_file(state_directory, retention.clone()) {
            Err(error) if error.downcast_ref::<Damaged>().is_some() => {
                let path = state_directory.join(STORE_FILE);
                let aside = move_aside(&path)
                    .map_err(|e| anyhow::anyhow!("{error:#}; and it cannot be moved aside: {e}"))?;
                tracing::error!(
                    "{error}: moved aside to {}; a new store starts now, the old history stays in that file",
                    aside.display()
                );
                let mut store = Store::open_file(state_directory, retention)?;
                store.moved_aside = Some(aside);
                Ok(store)
            }
            other => other,
        }
    }

    fn open_file(state_directory: &Path, retention: Retention) -> anyhow::Result<Store> {
        crate::private_files::create_dir(state_directory).map_err(|e| {
            anyhow::anyhow!(
                "cannot create {}: {e}; set state_directory to a writable place",
                state_directory.display()
            )
        })?;
        let path = state_directory.join(STORE_FILE);
        let mut connection = open_connection(&path, OpenFlags::default())?;
        let prepared = (|| -> anyhow::Result<()> {
            // Before the WAL exists: SQLite gives it the database file's mode.
            connection.execute_batch("PRAGMA user_version")?;
            crate::private_files::restrict(&path)?;
            // Set before the first table exists, so freed pages can be given back.
            connection.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            connection.pragma_update(None, "journal_mode", "WAL")?;
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            schema::migrate(&mut connection)
        })();
        prepared.map_err(|e| {
            if is_damage(&e) {
                anyhow::Error::new(Damaged(format!(
                    "the store {} is damaged ({})",
                    path.display(),
                    e.root_cause()
                )))
            } else {
                anyhow::anyhow!(
                    "cannot open the store {}: {e:#}; set state_directory to a writable place with free space",
                    path.display()
                )
            }
        })?;
        Ok(Store {
            connection,
            path,
            retention,
            series: HashMap::new(),
            peers: HashMap::new(),
            trimmed_rows: 0,
            moved_aside: None,
        })
    }

    /// Where a damaged store file was moved at open, if one was.
    pub fn moved_aside(&self) -> Option<&Path> {
        self.moved_aside.as_deref()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connections for queries from other threads, opened as they are needed.
    pub fn readers(&self) -> Readers {
        Readers::new(self.path.clone())
    }

    /// A read-only connection for queries, usable from another thread.
    pub fn reader(&self) -> anyhow::Result<Reader> {
        let connection = open_connection(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(Reader { connection })
    }

    pub fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let start = seconds(report.start);
        let transaction = self.connection.transaction()?;
        let mut kinds = vec![Samples::Series];
        if !report.peers.is_empty() {
            kinds.push(Samples::Peers);
        }
        // A table is complete from the beginning until rows expire from it.
        for resolution in Resolution::ALL {
            for &kind in &kinds {
                transaction
                    .prepare_cached(
                        "INSERT OR IGNORE INTO coverage (resolution, since) VALUES (?1, 0)",
                    )?
                    .execute([resolution.table_of(kind)])?;
            }
        }
        let hour = start - start.rem_euclid(Resolution::Hour.seconds());
        let mut ids: HashMap<&SeriesKey, i64> = HashMap::new();
        for row in &report.processes {
            let id = series_id(&transaction, &mut self.series, row, hour)?;
            ids.insert(&row.key, id);
            add_sample(&transaction, Samples::Series, start, (id, None), &row.last)?;
        }
        names::write(&transaction, &report.names)?;
        for row in &report.peers {
            let Some(&series) = ids.get(&row.key) else {
                continue;
            };
            let peer = peer_id(&transaction, &mut self.peers, row, hour)?;
            add_sample(
                &transaction,
                Samples::Peers,
                start,
                (series, Some(peer)),
                &row.last,
            )?;
        }
        transaction.commit()?;
        Ok(())
    }
}

/// A series' key in the store: (name, uid, interface, cgroup, reason).
type SeriesColumns = (String, Option<u32>, String, String, &'static str);

/// The series' id, made on first use; its workload columns follow the row's (a
/// container is named once its runtime answers), its `last` the hour being written.
fn series_id(
    connection: &Connection,
    cache: &mut HashMap<SeriesColumns, (i64, Option<Arc<Workload>>, i64)>,
    row: &ProcessRow,
    hour: i64,
) -> anyhow::Result<i64> {
    let key = (
        row.key.name.to_string(),
        row.key.uid,
        row.key.interface.to_string(),
        row.cgroup.clone().unwrap_or_default(),
        row.key.reason.map_or("", |r| r.as_str()),
    );
    if let Some((id, workload, last)) = cache.get(&key) {
        if *workload == row.workload && *last >= hour {
            return Ok(*id);
        }
    }
    let text = |field: fn(&Workload) -> &Option<String>| {
        row.workload
            .as_deref()
            .and_then(|w| field(w).clone())
            .unwrap_or_default()
    };
    connection.execute(
        "INSERT INTO series (name, uid, interface, cgroup, attributed, exe,
                             unit, container_id, container, image, pod, namespace, reason, last)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (name, uid, interface, cgroup, reason) DO UPDATE SET
            exe = coalesce(excluded.exe, exe),
            unit = excluded.unit, container_id = excluded.container_id,
            container = excluded.container, image = excluded.image,
            pod = excluded.pod, namespace = excluded.namespace,
            last = max(last, excluded.last)",
        params![
            key.0,
            key.1,
            key.2,
            key.3,
            row.attributed,
            row.exe,
            text(|w| &w.unit),
            text(|w| &w.container_id),
            text(|w| &w.container),
            text(|w| &w.image),
            text(|w| &w.pod),
            text(|w| &w.namespace),
            key.4,
            hour,
        ],
    )?;
    // `uid IS ?` matches NULL too, which `=` would not.
    let (id, last) = connection.query_row(
        "SELECT id, last FROM series
         WHERE name = ?1 AND uid IS ?2 AND interface = ?3 AND cgroup = ?4 AND reason = ?5",
        params![key.0, key.1, key.2, key.3, key.4],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if cache.len() >= MAX_CACHED_IDS {
        // A new table: clear() would keep the largest capacity it ever had.
        *cache = HashMap::new();
    }
    cache.insert(key, (id, row.workload.clone(), last));
    Ok(id)
}

/// Adds an interval's traffic to the bucket holding `start`, at every resolution.
fn add_sample(
    connection: &Connection,
    kind: Samples,
    start: i64,
    (series, peer): (i64, Option<i64>),
    traffic: &Traffic,
) -> anyhow::Result<()> {
    let (peer_column, peer_value, key) = match kind {
        Samples::Series => ("", "", "t, series"),
        Samples::Peers => (", peer", ", ?7", "t, series, peer"),
    };
    for resolution in Resolution::ALL {
        let (table, bucket) = (resolution.table_of(kind), resolution.seconds());
        let tcp = &traffic.tcp;
        if tcp.is_zero() && traffic.drops.is_zero() {
            let mut statement = connection.prepare_cached(&format!(
                "INSERT INTO {table} (t, series, sent, recv, sent_packets, recv_packets{peer_column})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6{peer_value})
                 ON CONFLICT ({key}) DO UPDATE SET
                   sent = sent + excluded.sent, recv = recv + excluded.recv,
                   sent_packets = sent_packets + excluded.sent_packets,
                   recv_packets = recv_packets + excluded.recv_packets"
            ))?;
            let mut values = vec![
                start - start.rem_euclid(bucket),
                series,
                clamp(traffic.sent.bytes),
                clamp(traffic.recv.bytes),
                clamp(traffic.sent.packets),
                clamp(traffic.recv.packets),
            ];
            values.extend(peer);
            statement.execute(rusqlite::params_from_iter(values))?;
            continue;
        }
        // With TCP health or drops: their columns too (numbered after the peer's ?7).
        let drop_columns = schema::DROP_COLUMNS.join(", ");
        let drop_values = (15..15 + schema::DROP_COLUMNS.len())
            .map(|n| format!("?{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let drop_sums: String = schema::DROP_COLUMNS
            .iter()
            .map(|c| format!(",\n               {c} = {c} + excluded.{c}"))
            .collect();
        let mut statement = connection.prepare_cached(&format!(
            "INSERT INTO {table} (t, series, sent, recv, sent_packets, recv_packets{peer_column},
               retransmits, retransmit_bytes, connects, connect_failures, rtt_weighted, rtt_bytes, rtt_max,
               {drop_columns})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6{peer_value}, ?8, ?9, ?10, ?11, ?12, ?13, ?14, {drop_values})
             ON CONFLICT ({key}) DO UPDATE SET
               sent = sent + excluded.sent, recv = recv + excluded.recv,
               sent_packets = sent_packets + excluded.sent_packets,
               recv_packets = recv_packets + excluded.recv_packets,
               retransmits = retransmits + excluded.retransmits,
               retransmit_bytes = retransmit_bytes + excluded.retransmit_bytes,
               connects = connects + excluded.connects,
               connect_failures = connect_failures + excluded.connect_failures,
               rtt_weighted = rtt_weighted + excluded.rtt_weighted,
               rtt_bytes = rtt_bytes + excluded.rtt_bytes,
               rtt_max = max(rtt_max, excluded.rtt_max){drop_sums}"
        ))?;
        let t = start - start.rem_euclid(bucket);
        statement.execute(rusqlite::params![
            t,
            series,
            clamp(traffic.sent.bytes),
            clamp(traffic.recv.bytes),
            clamp(traffic.sent.packets),
            clamp(traffic.recv.packets),
            peer.unwrap_or(0),
            clamp(tcp.retransmits),
            clamp(tcp.retransmit_bytes),
            clamp(tcp.connects),
            clamp(tcp.connect_failures()),
            tcp.rtt_weighted_us,
            clamp(tcp.rtt_bytes),
            i64::from(tcp.rtt_max_us),
            clamp(traffic.drops.bytes),
            clamp(traffic.drops.of(DropKind::Netfilter)),
            clamp(traffic.drops.of(DropKind::Policy)),
            clamp(traffic.drops.of(DropKind::Socket)),
            clamp(traffic.drops.of(DropKind::Tcp)),
            clamp(traffic.drops.of(DropKind::Queue)),
            clamp(traffic.drops.of(DropKind::Other)),
        ])?;
    }
    Ok(())
}

/// A peer in the store: (address or `other`, service, name).
type PeerColumns = (String, String, String);

/// The peer's id, made on first use; its `last` the hour being written.
fn peer_id(
    connection: &Connection,
    cache: &mut HashMap<PeerColumns, (i64, i64)>,
    row: &PeerRow,
    hour: i64,
) -> anyhow::Result<i64> {
    let key = (
        row.peer_label(),
        row.service.map(|s| s.to_string()).unwrap_or_default(),
        row.name.as_deref().unwrap_or_default().to_string(),
    );
    if let Some((id, last)) = cache.get(&key) {
        if *last >= hour {
            return Ok(*id);
        }
    }
    let (id, last) = connection.query_row(
        "INSERT INTO peers (address, service, name, last) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (address, service, name) DO UPDATE SET last = max(last, excluded.last)
         RETURNING id, last",
        params![key.0, key.1, key.2, hour],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if cache.len() >= MAX_CACHED_IDS {
        *cache = HashMap::new();
    }
    cache.insert(key, (id, last));
    Ok(id)
}

/// SQLite integers are signed.
fn clamp(value: u64) -> i64 {
    value.min(i64::MAX as u64) as i64
}

pub fn seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// Queries, on their own connection.
pub struct Reader {
    connection: Connection,
}

impl Reader {
    /// Opens the store in `state_directory` for reading only, as written by a daemon
    /// that may still be running (reports read it while it writes).
    pub fn open(state_directory: &Path) -> anyhow::Result<Reader> {
        let path = state_directory.join(STORE_FILE);
        if !path.exists() {
            anyhow::bail!(
                "no store at {}: netgraph has not run with this state_directory (or [store] enabled = false)",
                path.display()
            );
        }
        let connection = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Reader { connection })
    }

    /// SQLite's own check of every page and index: "ok" when the file is sound.
    pub fn integrity_check(&self) -> anyhow::Result<String> {
        Ok(self
            .connection
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests;

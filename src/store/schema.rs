//! The store's tables, created and migrated by `PRAGMA user_version`: each migration
//! runs once, in order, inside a transaction, so an upgrade is all or nothing.

use rusqlite::Connection;

/// What a sample table holds: series, or series by peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Samples {
    Series,
    Peers,
}

/// The resolutions samples are kept at, each in a table of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Second,
    Minute,
    Hour,
}

impl Resolution {
    /// Finest first.
    pub const ALL: [Resolution; 3] = [Resolution::Second, Resolution::Minute, Resolution::Hour];

    pub fn table(self) -> &'static str {
        self.table_of(Samples::Series)
    }

    pub fn table_of(self, samples: Samples) -> &'static str {
        match (samples, self) {
            (Samples::Series, Resolution::Second) => "samples_1s",
            (Samples::Series, Resolution::Minute) => "samples_1m",
            (Samples::Series, Resolution::Hour) => "samples_1h",
            (Samples::Peers, Resolution::Second) => "peer_samples_1s",
            (Samples::Peers, Resolution::Minute) => "peer_samples_1m",
            (Samples::Peers, Resolution::Hour) => "peer_samples_1h",
        }
    }

    /// Seconds per bucket.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Second => 1,
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
        }
    }
}

/// The sample tables share one shape: per bucket start and series, bytes and packets.
fn samples_table(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
            t INTEGER NOT NULL, series INTEGER NOT NULL,
            sent INTEGER NOT NULL, recv INTEGER NOT NULL,
            sent_packets INTEGER NOT NULL, recv_packets INTEGER NOT NULL,
            PRIMARY KEY (t, series)
        ) WITHOUT ROWID;"
    )
}

/// 1: series and samples at three resolutions.
fn series_and_samples() -> String {
    let mut sql = String::from(
        "CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            uid INTEGER,               -- NULL for the unknown buckets
            interface TEXT NOT NULL,
            cgroup TEXT NOT NULL DEFAULT '',
            attributed INTEGER NOT NULL,
            exe TEXT,
            UNIQUE (name, uid, interface, cgroup)
        );",
    );
    for resolution in Resolution::ALL {
        sql += &samples_table(resolution.table());
    }
    sql
}

/// 2: from when on each resolution is complete (rows before were never written or have
/// expired), so that queries pick a resolution that holds their whole range.
fn coverage() -> String {
    "CREATE TABLE coverage (resolution TEXT PRIMARY KEY, since INTEGER NOT NULL);".into()
}

/// 3: the unit, container and pod of each series (empty where none).
fn workloads() -> String {
    [
        "unit",
        "container_id",
        "container",
        "image",
        "pod",
        "namespace",
    ]
    .iter()
    .map(|column| format!("ALTER TABLE series ADD COLUMN {column} TEXT NOT NULL DEFAULT '';"))
    .collect()
}

/// 4: each series' traffic by peer (address and service, with the name it had), at
/// the same three resolutions.
fn peers() -> String {
    let mut sql = String::from(
        "CREATE TABLE peers (
            id INTEGER PRIMARY KEY,
            address TEXT NOT NULL,     -- 'other' for the peers beyond a series' largest
            service TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            UNIQUE (address, service, name)
        );",
    );
    for resolution in Resolution::ALL {
        let table = resolution.table_of(Samples::Peers);
        sql += &format!(
            "CREATE TABLE {table} (
                t INTEGER NOT NULL, series INTEGER NOT NULL, peer INTEGER NOT NULL,
                sent INTEGER NOT NULL, recv INTEGER NOT NULL,
                sent_packets INTEGER NOT NULL, recv_packets INTEGER NOT NULL,
                PRIMARY KEY (t, series, peer)
            ) WITHOUT ROWID;"
        );
    }
    sql
}

/// 5: why an `unknown` series has no process, part of the series' identity (the table
/// is rebuilt with the wider key; ids, and so the samples, stay).
fn reasons() -> String {
    "CREATE TABLE series_new (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        uid INTEGER,
        interface TEXT NOT NULL,
        cgroup TEXT NOT NULL DEFAULT '',
        attributed INTEGER NOT NULL,
        exe TEXT,
        unit TEXT NOT NULL DEFAULT '', container_id TEXT NOT NULL DEFAULT '',
        container TEXT NOT NULL DEFAULT '', image TEXT NOT NULL DEFAULT '',
        pod TEXT NOT NULL DEFAULT '', namespace TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        UNIQUE (name, uid, interface, cgroup, reason)
    );
    INSERT INTO series_new (id, name, uid, interface, cgroup, attributed, exe, unit,
                            container_id, container, image, pod, namespace)
        SELECT id, name, uid, interface, cgroup, attributed, exe, unit,
               container_id, container, image, pod, namespace FROM series;
    DROP TABLE series;
    ALTER TABLE series_new RENAME TO series;"
        .into()
}

/// 6: what the alert rules remember across restarts: when each rule started learning,
/// whether it is firing and for which period, and the peers each process has contacted.
fn alerts() -> String {
    "CREATE TABLE alert_rules (
        rule TEXT PRIMARY KEY,
        since INTEGER NOT NULL,              -- first seen (a first_contact rule's learning)
        firing INTEGER NOT NULL DEFAULT 0,
        period_start INTEGER NOT NULL DEFAULT 0  -- the quota period it fired in
    );
    CREATE TABLE alert_contacts (
        rule TEXT NOT NULL, process TEXT NOT NULL, contact TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        PRIMARY KEY (rule, process, contact)
    ) WITHOUT ROWID;"
        .into()
}

/// 7: the hour bucket of each series' and peer's latest sample, so that rows no sample
/// refers to any more expire with their samples (rows from before are dated now: kept
/// one retention longer, never removed while in use).
fn last_samples() -> String {
    ["series", "peers"]
        .iter()
        .map(|table| {
            format!(
                "ALTER TABLE {table} ADD COLUMN last INTEGER NOT NULL DEFAULT 0;
                 UPDATE {table} SET last = CAST(strftime('%s', 'now') AS INTEGER) / 3600 * 3600;
                 CREATE INDEX {table}_last ON {table} (last);"
            )
        })
        .collect()
}

/// 8: peer names as attribution learnt them, kept until `until` (Unix seconds) so a
/// restart knows them; `pid` 0 for the name every process sees.
fn peer_names() -> String {
    "CREATE TABLE peer_names (
        address TEXT NOT NULL, pid INTEGER NOT NULL, name TEXT NOT NULL,
        until INTEGER NOT NULL,
        PRIMARY KEY (address, pid)
    );
    CREATE INDEX peer_names_until ON peer_names (until);"
        .into()
}

/// 9: TCP's health in every sample table: retransmitted segments and bytes, connects
/// and failed connects, and the RTT as Σ rtt_us × bytes over the bytes it weighs, so
/// that sums at every resolution give the traffic-weighted RTT; its largest.
fn tcp_health() -> String {
    let mut sql = String::new();
    for kind in [Samples::Series, Samples::Peers] {
        for resolution in Resolution::ALL {
            let table = resolution.table_of(kind);
            for (column, kind) in [
                ("retransmits", "INTEGER"),
                ("retransmit_bytes", "INTEGER"),
                ("connects", "INTEGER"),
                ("connect_failures", "INTEGER"),
                ("rtt_weighted", "REAL"),
                ("rtt_bytes", "INTEGER"),
                ("rtt_max", "INTEGER"),
            ] {
                sql += &format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {kind} NOT NULL DEFAULT 0;\n"
                );
            }
        }
    }
    sql
}

/// 10: packets the kernel dropped, in every sample table: by the layer that dropped
/// them (netgraph's `DropKind`), and their bytes.
fn drops() -> String {
    let mut sql = String::new();
    for kind in [Samples::Series, Samples::Peers] {
        for resolution in Resolution::ALL {
            let table = resolution.table_of(kind);
            for column in DROP_COLUMNS {
                sql += &format!(
                    "ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0;\n"
                );
            }
        }
    }
    sql
}

/// The drop columns of every sample table: bytes, then packets per `DropKind::ALL`.
pub const DROP_COLUMNS: [&str; 7] = [
    "drop_bytes",
    "drops_netfilter",
    "drops_policy",
    "drops_socket",
    "drops_tcp",
    "drops_queue",
    "drops_other",
];

/// Applied in order, each once; never edit one that has shipped, add another.
const MIGRATIONS: &[fn() -> String] = &[
    series_and_samples,
    coverage,
    workloads,
    peers,
    reasons,
    alerts,
    last_samples,
    peer_names,
    tcp_health,
    drops,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub fn migrate(connection: &mut Connection) -> anyhow::Result<()> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > current_version() {
        anyhow::bail!(
            "the store has schema version {version}, newer than this netgraph ({}); upgrade netgraph or move the store away",
            current_version()
        );
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let transaction = connection.transaction()?;
        transaction.execute_batch(&migration())?;
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(())
}

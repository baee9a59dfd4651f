//! Peer names kept across restarts: what the host's processes looked up stays known
//! to a new run for as long as it would have to the old one (the name's TTL, or a
//! grace past its last use), so known peers do not come back as first contacts.

use super::Store;
use crate::attribution::RememberedName;
use rusqlite::{params, Transaction};
use std::net::IpAddr;

/// Names kept at most: twice what attribution keeps (every process's and per process).
pub const MAX_KEPT: i64 = 131_072;

/// `pid` as stored: 0 for the name every process sees (no process has pid 0).
fn stored_pid(pid: Option<u32>) -> i64 {
    pid.map_or(0, i64::from)
}

/// Writes this interval's names within the interval's transaction.
pub fn write(transaction: &Transaction, names: &[RememberedName]) -> anyhow::Result<()> {
    let mut insert = transaction.prepare_cached(
        "INSERT OR REPLACE INTO peer_names (address, pid, name, until) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for name in names {
        insert.execute(params![
            name.address.to_string(),
            stored_pid(name.pid),
            &*name.name,
            name.until
        ])?;
    }
    Ok(())
}

impl Store {
    /// The names still to be kept at `now` (Unix seconds), latest-kept first.
    pub fn remembered_names(&self, now: i64) -> anyhow::Result<Vec<RememberedName>> {
        let mut statement = self.connection.prepare(
            "SELECT address, pid, name, until FROM peer_names WHERE until > ?1
             ORDER BY until DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![now, MAX_KEPT], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut names = Vec::new();
        for row in rows {
            let (address, pid, name, until) = row?;
            // A row this build cannot read is skipped, not fatal.
            let (Ok(address), Ok(pid)) = (address.parse::<IpAddr>(), u32::try_from(pid)) else {
                continue;
            };
            names.push(RememberedName {
                address,
                pid: (pid != 0).then_some(pid),
                name: name.into(),
                until,
            });
        }
        Ok(names)
    }

    /// Forgets names past their time, and the earliest to go beyond MAX_KEPT; returns
    /// the rows deleted.
    pub(super) fn expire_names(&mut self, now: i64) -> anyhow::Result<usize> {
        let expired = self
            .connection
            .execute("DELETE FROM peer_names WHERE until <= ?1", [now])?;
        let beyond = self.connection.execute(
            "DELETE FROM peer_names WHERE rowid IN
             (SELECT rowid FROM peer_names ORDER BY until DESC LIMIT -1 OFFSET ?1)",
            [MAX_KEPT],
        )?;
        Ok(expired + beyond)
    }
}

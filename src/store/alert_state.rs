//! What the alert rules keep in the store, so that a restart neither re-sends a notice
//! already sent this period nor forgets the peers a process has talked to.

use super::{open_connection, STORE_FILE};
use rusqlite::{params, Connection, OpenFlags};
use std::collections::HashSet;
use std::path::Path;

/// A rule's remembered state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleState {
    /// When the rule was first seen (Unix seconds).
    pub since: i64,
    pub firing: bool,
    /// The start of the quota period it fired in (0 for other rules).
    pub period_start: i64,
}

/// Its own connection to the store file, written only when a rule changes state or a
/// process makes a first contact.
pub struct AlertLedger {
    connection: Connection,
}

impl AlertLedger {
    /// The store must exist (the store sink opens it, and migrates it, first).
    pub fn open(state_directory: &Path) -> anyhow::Result<AlertLedger> {
        let path = state_directory.join(STORE_FILE);
        let connection = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        Ok(AlertLedger { connection })
    }

    /// The rule's state, recording `now` as its start if it is new.
    pub fn rule(&self, rule: &str, now: i64) -> anyhow::Result<RuleState> {
        self.connection.execute(
            "INSERT OR IGNORE INTO alert_rules (rule, since) VALUES (?1, ?2)",
            params![rule, now],
        )?;
        Ok(self.connection.query_row(
            "SELECT since, firing, period_start FROM alert_rules WHERE rule = ?1",
            [rule],
            |r| {
                Ok(RuleState {
                    since: r.get(0)?,
                    firing: r.get::<_, i64>(1)? != 0,
                    period_start: r.get(2)?,
                })
            },
        )?)
    }

    pub fn set_firing(&self, rule: &str, firing: bool, period_start: i64) -> anyhow::Result<()> {
        self.connection.execute(
            "UPDATE alert_rules SET firing = ?2, period_start = ?3 WHERE rule = ?1",
            params![rule, firing, period_start],
        )?;
        Ok(())
    }

    /// Every (process, contact) the rule has seen.
    pub fn contacts(&self, rule: &str) -> anyhow::Result<HashSet<(String, String)>> {
        let mut statement = self
            .connection
            .prepare("SELECT process, contact FROM alert_contacts WHERE rule = ?1")?;
        let contacts = statement
            .query_map([rule], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(contacts)
    }

    /// Records new contacts in one transaction.
    pub fn add_contacts(
        &mut self,
        rule: &str,
        contacts: &[(String, String)],
        now: i64,
    ) -> anyhow::Result<()> {
        if contacts.is_empty() {
            return Ok(());
        }
        let transaction = self.connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT OR IGNORE INTO alert_contacts (rule, process, contact, first_seen)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (process, contact) in contacts {
                insert.execute(params![rule, process, contact, now])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// Forgets rules no longer configured, and their contacts.
    pub fn keep_only(&mut self, rules: &[&str]) -> anyhow::Result<()> {
        let known: Vec<String> = {
            let mut statement = self.connection.prepare("SELECT rule FROM alert_rules")?;
            let rows = statement.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let transaction = self.connection.transaction()?;
        for rule in known.iter().filter(|r| !rules.contains(&r.as_str())) {
            transaction.execute("DELETE FROM alert_rules WHERE rule = ?1", [rule])?;
            transaction.execute("DELETE FROM alert_contacts WHERE rule = ?1", [rule])?;
        }
        transaction.commit()?;
        Ok(())
    }
}

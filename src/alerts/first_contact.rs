//! First contacts: a notice the first time a process talks to a peer (by its name where
//! one is known, else its address) or a country it never talked to before. Everything
//! seen during the learning period is known without a notice.

use super::notice::ContactFacts;
use super::scope::Scope;
use crate::accounting::IntervalReport;
use crate::config::alerts::ContactBy;
use std::collections::HashSet;

/// Contacts remembered per rule; a host that makes more stops noticing new ones (and
/// says so once) rather than growing without bound.
const MAX_KNOWN: usize = 100_000;
/// Notices per rule and interval; the rest of a burst (a scan) is one log line.
pub const MAX_NOTICES: usize = 20;

pub struct ContactWatch {
    pub by: ContactBy,
    /// Until then (Unix seconds) contacts are learnt, not noticed.
    pub learning_until: i64,
    known: HashSet<(String, String)>,
    full: bool,
}

/// One interval's new contacts: all to remember, and the ones to notice.
#[derive(Default)]
pub struct NewContacts {
    pub learnt: Vec<(String, String)>,
    pub noticed: Vec<ContactFacts>,
    /// New contacts beyond `MAX_NOTICES` (remembered, not noticed one by one).
    pub unnoticed: usize,
}

impl ContactWatch {
    pub fn new(by: ContactBy, learning_until: i64, known: HashSet<(String, String)>) -> Self {
        ContactWatch {
            by,
            learning_until,
            known,
            full: false,
        }
    }

    pub fn known(&self) -> usize {
        self.known.len()
    }

    pub fn learning(&self, now: i64) -> bool {
        now < self.learning_until
    }

    pub fn observe(&mut self, report: &IntervalReport, scope: &Scope, now: i64) -> NewContacts {
        let mut new = NewContacts::default();
        for facts in self.contacts(report, scope) {
            let pair = (facts.process.clone(), facts.contact.clone());
            if self.known.contains(&pair) {
                continue;
            }
            if self.known.len() >= MAX_KNOWN {
                if !self.full {
                    self.full = true;
                    tracing::warn!(
                        "first contacts: {MAX_KNOWN} contacts remembered for one rule; newer ones are not noticed (narrow the rule to a process or an interface)"
                    );
                }
                break;
            }
            self.known.insert(pair.clone());
            new.learnt.push(pair);
            if self.learning(now) {
                continue;
            }
            if new.noticed.len() < MAX_NOTICES {
                new.noticed.push(facts);
            } else {
                new.unnoticed += 1;
            }
        }
        new
    }

    /// The interval's contacts of processes (not of `unknown` traffic) in scope.
    fn contacts(&self, report: &IntervalReport, scope: &Scope) -> Vec<ContactFacts> {
        let facts = |key: &crate::accounting::SeriesKey, pid| ContactFacts {
            process: key.name.to_string(),
            uid: key.uid,
            pid,
            interface: key.interface.to_string(),
            contact: String::new(),
            peer_address: None,
            peer_name: None,
            service: None,
            country: None,
        };
        let mut contacts = Vec::new();
        for peer in &report.peers {
            let Some(address) = peer.peer else { continue };
            if peer.key.uid.is_none() || !scope.matches(&peer.key, peer.workload.as_deref()) {
                continue;
            }
            let contact = match self.by {
                ContactBy::Peer => peer
                    .name
                    .as_deref()
                    .map_or_else(|| address.to_string(), str::to_string),
                ContactBy::Country => match &peer.country {
                    Some(country) => country.to_string(),
                    None => continue,
                },
            };
            contacts.push(ContactFacts {
                contact,
                peer_address: Some(address.to_string()),
                peer_name: peer.name.as_deref().map(str::to_string),
                service: peer.service.map(|s| s.to_string()),
                country: peer.country.as_deref().map(str::to_string),
                ..facts(&peer.key, peer.pid)
            });
        }
        if self.by == ContactBy::Country && report.peers.is_empty() {
            for row in &report.countries {
                if row.key.uid.is_none() || !scope.matches(&row.key, row.workload.as_deref()) {
                    continue;
                }
                contacts.push(ContactFacts {
                    contact: row.country.to_string(),
                    country: Some(row.country.to_string()),
                    ..facts(&row.key, None)
                });
            }
        }
        contacts
    }
}

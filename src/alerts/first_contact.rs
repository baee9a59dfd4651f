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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{CountryRow, PeerRow, SeriesKey};
    use std::time::UNIX_EPOCH;

    fn key(name: &str, uid: Option<u32>) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            uid,
            interface: "eth0".into(),
            container: None,
            reason: None,
        }
    }

    fn peer(
        process: &str,
        uid: Option<u32>,
        address: Option<&str>,
        name: Option<&str>,
        country: Option<&str>,
    ) -> PeerRow {
        PeerRow {
            near: None,
            key: key(process, uid),
            workload: None,
            peer: address.map(|a| a.parse().unwrap()),
            service: None,
            name: name.map(Into::into),
            country: country.map(Into::into),
            pid: Some(7),
            last: Default::default(),
            total: Default::default(),
        }
    }

    fn report(peers: Vec<PeerRow>, countries: Vec<CountryRow>) -> IntervalReport {
        IntervalReport {
            countries,
            peers,
            ..IntervalReport::of(UNIX_EPOCH, UNIX_EPOCH, Vec::new())
        }
    }

    fn contacts(new: &NewContacts) -> Vec<String> {
        new.noticed.iter().map(|c| c.contact.clone()).collect()
    }

    #[test]
    fn learnt_then_noticed_once_by_name_else_address() {
        let mut watch = ContactWatch::new(ContactBy::Peer, 100, HashSet::new());
        let scope = Scope::default();
        let first = report(
            vec![peer("curl", Some(0), Some("10.0.0.1"), None, None)],
            Vec::new(),
        );
        let learnt = watch.observe(&first, &scope, 50);
        assert_eq!(learnt.learnt.len(), 1);
        assert!(learnt.noticed.is_empty(), "learning");
        let later = report(
            vec![
                peer("curl", Some(0), Some("10.0.0.1"), None, None),
                peer(
                    "curl",
                    Some(0),
                    Some("10.0.0.2"),
                    Some("files.example"),
                    None,
                ),
                peer(
                    "curl",
                    Some(0),
                    Some("10.0.0.3"),
                    Some("files.example"),
                    None,
                ),
                peer("wget", Some(0), Some("10.0.0.1"), None, None),
                // `other` and unknown traffic are no contacts.
                peer("curl", Some(0), None, None, None),
                peer("unknown TCP", None, Some("10.0.0.9"), None, None),
            ],
            Vec::new(),
        );
        let new = watch.observe(&later, &scope, 150);
        assert_eq!(contacts(&new), ["files.example", "10.0.0.1"]);
        assert_eq!(new.noticed[1].process, "wget");
        assert!(
            watch.observe(&later, &scope, 160).noticed.is_empty(),
            "once"
        );
        assert_eq!(watch.known(), 3);
    }

    #[test]
    fn countries_from_peers_or_from_country_rows() {
        let mut watch = ContactWatch::new(ContactBy::Country, 0, HashSet::new());
        let scope = Scope {
            process: Some("curl".into()),
            ..Scope::default()
        };
        let by_peers = report(
            vec![
                peer("curl", Some(0), Some("10.0.0.1"), None, Some("DE")),
                peer("curl", Some(0), Some("10.0.0.2"), None, Some("DE")),
                peer("curl", Some(0), Some("10.0.0.3"), None, None),
                peer("wget", Some(0), Some("10.0.0.4"), None, Some("FR")),
            ],
            Vec::new(),
        );
        assert_eq!(contacts(&watch.observe(&by_peers, &scope, 1)), ["DE"]);
        let by_rows = report(
            Vec::new(),
            vec![CountryRow {
                key: key("curl", Some(0)),
                country: "FR".into(),
                workload: None,
                last: Default::default(),
                total: Default::default(),
            }],
        );
        assert_eq!(contacts(&watch.observe(&by_rows, &scope, 2)), ["FR"]);
    }

    #[test]
    fn a_burst_is_noticed_up_to_a_bound_and_all_remembered() {
        let mut watch = ContactWatch::new(ContactBy::Peer, 0, HashSet::new());
        let peers = (0..50)
            .map(|i| peer("scan", Some(0), Some(&format!("10.1.0.{i}")), None, None))
            .collect();
        let new = watch.observe(&report(peers, Vec::new()), &Scope::default(), 1);
        assert_eq!(new.noticed.len(), MAX_NOTICES);
        assert_eq!(new.unnoticed, 50 - MAX_NOTICES);
        assert_eq!(new.learnt.len(), 50);
    }
}

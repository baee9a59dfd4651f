//! Names for remote addresses, learnt from the DNS answers to the queries the host's
//! processes send and the server names its TLS clients ask for (netgraph sends no query
//! of its own). A name is the one the process itself looked up where the answer reached
//! its socket (or that it asked the server for); otherwise the latest for the address.
//! Names learnt or in use are handed on for the store to keep, so that a restart does
//! not forget what the host's processes looked up before it.

mod payloads;
mod queries;

use crate::engine::{NameSample, SampleKind};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Names kept at most, per process and address and per address.
const MAX_NAMES: usize = 65_536;
/// A name outlives its TTL by this while traffic still uses it (a connection opened
/// under a short TTL keeps its name).
const GRACE: Duration = Duration::from_secs(600);

struct Learnt {
    name: Arc<str>,
    expires: Instant,
    used: Instant,
    /// Until when the store was last told to keep it.
    kept_until: Instant,
}

/// A name as it outlives a restart: whose it is, and until when it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RememberedName {
    pub address: IpAddr,
    /// The process that looked it up; `None` for the name every process sees.
    pub pid: Option<u32>,
    pub name: Arc<str>,
    /// Unix seconds.
    pub until: i64,
}

/// Whose name: a process's own (`Some(pid)`) or every process's.
type NameKey = (Option<u32>, IpAddr);

#[derive(Default)]
pub struct PeerNames {
    latest: HashMap<IpAddr, Learnt>,
    by_process: HashMap<(u32, IpAddr), Learnt>,
    queries: queries::Queries,
    /// Names learnt or kept in use since the last `remembered`, until when to keep them.
    to_remember: HashMap<NameKey, (Arc<str>, Instant)>,
}

impl PeerNames {
    /// Learns from the payloads sampled this interval; `pid` is the process whose
    /// socket received the answer or sent the ClientHello, where known.
    pub fn learn(&mut self, samples: &[(Option<u32>, NameSample)], now: Instant) {
        let unsolicited = self.queries.unsolicited;
        for (pid, sample) in samples {
            let named = match sample.kind {
                SampleKind::DnsQuery(transport) => {
                    for message in payloads::dns_messages(transport, &sample.payload) {
                        self.queries.sent(sample.conversation, &message, now);
                    }
                    continue;
                }
                SampleKind::DnsAnswer(transport) => {
                    payloads::dns_messages(transport, &sample.payload)
                        .iter()
                        .filter(|message| self.queries.answered(sample.conversation, message, now))
                        .flat_map(payloads::answer_names)
                        .collect()
                }
                SampleKind::TlsHello => payloads::hello_names(sample),
            };
            for (address, name, ttl) in named {
                let expires = now + ttl;
                // Kept through a restart at least as long as unused traffic keeps it here.
                let kept_until = expires.max(now + GRACE);
                let learnt = || Learnt {
                    name: name.clone(),
                    expires,
                    used: now,
                    kept_until,
                };
                // This host's own and its link's addresses mean something else to
                // every process: only the one that asked takes such a name.
                if !host_local(address) {
                    self.latest.insert(address, learnt());
                    self.to_remember
                        .insert((None, address), (name.clone(), kept_until));
                }
                if let Some(pid) = *pid {
                    self.by_process.insert((pid, address), learnt());
                    self.to_remember
                        .insert((Some(pid), address), (name.clone(), kept_until));
                }
            }
        }
        bound(&mut self.latest);
        bound(&mut self.by_process);
        if self.queries.unsolicited > unsolicited {
            tracing::debug!(
                answers = self.queries.unsolicited - unsolicited,
                "DNS answers that answer no query this host sent: no name taken from them"
            );
        }
    }

    /// The name of `address` for process `pid`: the one it looked up, else the latest.
    pub fn name(&mut self, pid: Option<u32>, address: IpAddr, now: Instant) -> Option<Arc<str>> {
        let own = pid.and_then(|pid| Some((pid, self.by_process.get_mut(&(pid, address))?)));
        let (key, learnt) = match own {
            Some((pid, learnt)) => ((Some(pid), address), learnt),
            None => ((None, address), self.latest.get_mut(&address)?),
        };
        learnt.used = now;
        // A name traffic still uses is kept a grace past its use, told to the store
        // once per half grace rather than every interval.
        if learnt.kept_until < now + GRACE / 2 {
            learnt.kept_until = now + GRACE;
            self.to_remember
                .insert(key, (learnt.name.clone(), learnt.kept_until));
        }
        Some(learnt.name.clone())
    }

    /// The names learnt or kept in use since the last call, for the store; `unix` is
    /// `now` on the wall clock.
    pub fn remembered(&mut self, now: Instant, unix: i64) -> Vec<RememberedName> {
        self.to_remember
            .drain()
            .map(|((pid, address), (name, until))| RememberedName {
                address,
                pid,
                name,
                until: unix + until.saturating_duration_since(now).as_secs() as i64,
            })
            .collect()
    }

    /// Takes up the names a previous run kept; `unix` is `now` on the wall clock.
    pub fn restore(&mut self, names: Vec<RememberedName>, now: Instant, unix: i64) {
        for remembered in names {
            let Ok(left) = u64::try_from(remembered.until - unix) else {
                continue;
            };
            let expires = now + Duration::from_secs(left);
            // Unused since the restart: it lives until `until`, as it would have.
            let learnt = Learnt {
                name: remembered.name,
                expires,
                used: now.checked_sub(GRACE).unwrap_or(now),
                kept_until: expires,
            };
            match remembered.pid {
                Some(pid) => {
                    self.by_process.insert((pid, remembered.address), learnt);
                }
                None if !host_local(remembered.address) => {
                    self.latest.insert(remembered.address, learnt);
                }
                None => {}
            }
        }
        bound(&mut self.latest);
        bound(&mut self.by_process);
    }

    /// Forgets names past their TTL that no traffic used for a while.
    pub fn expire(&mut self, now: Instant) {
        let keep = |learnt: &mut Learnt| learnt.expires > now || now - learnt.used < GRACE;
        self.latest.retain(|_, learnt| keep(learnt));
        self.by_process.retain(|_, learnt| keep(learnt));
        self.queries.expire(now);
    }
}

/// Loopback and link-local addresses: each process's lookup of them is its own.
fn host_local(address: IpAddr) -> bool {
    match crate::traffic::canonical_ip(address) {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local(),
    }
}

/// Keeps at most MAX_NAMES, the least recently used going first.
fn bound<K: std::hash::Hash + Eq>(names: &mut HashMap<K, Learnt>) {
    crate::bounded::keep_most_recent(names, MAX_NAMES, |learnt| learnt.used);
}

#[cfg(test)]
mod tests;

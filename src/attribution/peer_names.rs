//! Names for remote addresses, learnt from the DNS answers to the queries the host's
//! processes send and the server names its TLS clients ask for (netgraph sends no query
//! of its own). A name is the one the process itself looked up where the answer reached
//! its socket (or that it asked the server for); otherwise the latest for the address.

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
}

#[derive(Default)]
pub struct PeerNames {
    latest: HashMap<IpAddr, Learnt>,
    by_process: HashMap<(u32, IpAddr), Learnt>,
    queries: queries::Queries,
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
                let learnt = || Learnt {
                    name: name.clone(),
                    expires: now + ttl,
                    used: now,
                };
                // This host's own and its link's addresses mean something else to
                // every process: only the one that asked takes such a name.
                if !host_local(address) {
                    self.latest.insert(address, learnt());
                }
                if let Some(pid) = *pid {
                    self.by_process.insert((pid, address), learnt());
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
        let own = pid.and_then(|pid| self.by_process.get_mut(&(pid, address)));
        let learnt = match own {
            Some(learnt) => learnt,
            None => self.latest.get_mut(&address)?,
        };
        learnt.used = now;
        Some(learnt.name.clone())
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

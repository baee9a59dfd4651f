//! Reverse DNS (PTR) names for peers nothing else named, only when configured: the
//! lookups go through the system resolver on a thread of their own, one at a time, so
//! the interval loop never waits and a slow resolver only delays names.

use crate::locks::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Addresses remembered at most (named or not).
const MAX_ADDRESSES: usize = 16_384;
/// Addresses waiting for a lookup at most; more are asked again later.
const MAX_WAITING: usize = 256;
/// How long an answer (or the lack of one) stands before it is asked again.
const NAME_LIFETIME: Duration = Duration::from_secs(3600);
const NO_NAME_LIFETIME: Duration = Duration::from_secs(600);

struct Answer {
    name: Option<Arc<str>>,
    asked: Instant,
}

#[derive(Default)]
struct Known {
    answers: HashMap<IpAddr, Answer>,
}

pub struct ReverseNames {
    known: Arc<Mutex<Known>>,
    queue: crossbeam_channel::Sender<IpAddr>,
}

impl ReverseNames {
    pub fn start() -> std::io::Result<ReverseNames> {
        let known = Arc::new(Mutex::new(Known::default()));
        let (queue, waiting) = crossbeam_channel::bounded(MAX_WAITING);
        let thread_known = known.clone();
        std::thread::Builder::new()
            .name("reverse dns".into())
            .spawn(move || {
                // Ends when the sender (the attributor) is dropped.
                for address in waiting {
                    let name = dns_lookup::lookup_addr(&address)
                        .ok()
                        .filter(|name| name.parse::<IpAddr>().is_err())
                        .map(|name| Arc::from(name.trim_end_matches('.')));
                    let mut known = lock(&thread_known);
                    known.answers.insert(
                        address,
                        Answer {
                            name,
                            asked: Instant::now(),
                        },
                    );
                    crate::bounded::keep_most_recent(&mut known.answers, MAX_ADDRESSES, |a| {
                        a.asked
                    });
                }
            })?;
        Ok(ReverseNames { known, queue })
    }

    /// The name found for `address`, if any yet; asks for it when not known.
    pub fn name(&self, address: IpAddr, now: Instant) -> Option<Arc<str>> {
        let mut known = lock(&self.known);
        match known.answers.get(&address) {
            Some(answer) => {
                let lifetime = if answer.name.is_some() {
                    NAME_LIFETIME
                } else {
                    NO_NAME_LIFETIME
                };
                let name = answer.name.clone();
                if now.saturating_duration_since(answer.asked) > lifetime {
                    known.answers.remove(&address);
                }
                name
            }
            None => {
                // Marked as asked, so it is queued once; a full queue asks again later.
                if self.queue.try_send(address).is_ok() {
                    known.answers.insert(
                        address,
                        Answer {
                            name: None,
                            asked: now,
                        },
                    );
                }
                None
            }
        }
    }
}

//! The DNS queries this host sent and not yet seen answered: an answer names addresses
//! only if it answers one of them (same socket or flow, server, transaction id and
//! question) within QUERY_TIMEOUT. Anyone can send a packet from port 53; only an
//! answer to a question a local process asked is a name.

use crate::engine::Conversation;
use hickory_proto::op::Message;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longer than resolvers wait (glibc: 5 s, a few tries), with an interval to spare
/// between a query's batch of samples and its answer's.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Queries waiting at most; the oldest go first.
const MAX_WAITING: usize = 16_384;

struct Asked {
    question: Arc<str>,
    at: Instant,
}

#[derive(Default)]
pub struct Queries {
    waiting: HashMap<(Conversation, u16), Asked>,
    /// Answers that matched no query, since start.
    pub unsolicited: u64,
}

/// The first question, as compared: lower case (resolvers randomize its case).
fn question(message: &Message) -> Option<Arc<str>> {
    let query = message.queries().first()?;
    Some(Arc::from(query.name().to_ascii().to_ascii_lowercase()))
}

impl Queries {
    pub fn sent(&mut self, conversation: Conversation, message: &Message, now: Instant) {
        let Some(question) = question(message) else {
            return;
        };
        self.waiting
            .insert((conversation, message.id()), Asked { question, at: now });
        // Trimmed a quarter at a time: a flood of queries costs no sort per query.
        if self.waiting.len() > MAX_WAITING + MAX_WAITING / 4 {
            crate::bounded::keep_most_recent(&mut self.waiting, MAX_WAITING, |asked| asked.at);
        }
    }

    /// Whether `message` answers a query that waits for it (which then waits no more).
    pub fn answered(
        &mut self,
        conversation: Conversation,
        message: &Message,
        now: Instant,
    ) -> bool {
        let key = (conversation, message.id());
        let matches = match (self.waiting.get(&key), question(message)) {
            (Some(asked), Some(question)) => {
                asked.question == question && now.duration_since(asked.at) <= QUERY_TIMEOUT
            }
            _ => false,
        };
        if matches {
            self.waiting.remove(&key);
        } else {
            self.unsolicited += 1;
        }
        matches
    }

    pub fn expire(&mut self, now: Instant) {
        self.waiting
            .retain(|_, asked| now.duration_since(asked.at) <= QUERY_TIMEOUT);
    }
}

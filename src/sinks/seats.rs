//! A bound on opt-in series (per peer): at most `limit` are kept, the busiest. Offered
//! largest first each interval, a new series is seated while there is room, and
//! otherwise takes the seat of the one idle longest (once it has been idle a whole
//! interval), which its sink then stops sending.

use crate::accounting::PeerRow;
use std::collections::HashMap;
use std::hash::Hash;

pub struct Seats<K> {
    limit: usize,
    /// Each seated series and the interval it last moved in.
    kept: HashMap<K, u64>,
    interval: u64,
}

impl<K: Hash + Eq + Clone> Seats<K> {
    pub fn new(limit: usize) -> Seats<K> {
        Seats {
            limit,
            kept: HashMap::new(),
            interval: 0,
        }
    }

    /// No series of this kind are asked for.
    pub fn none_wanted(&self) -> bool {
        self.limit == 0
    }

    /// Starts an interval: its rows in the order to seat them, busiest first (none if
    /// no series are wanted).
    pub fn next_interval<'a>(&mut self, rows: &'a [PeerRow]) -> Vec<&'a PeerRow> {
        if self.none_wanted() {
            return Vec::new();
        }
        self.interval += 1;
        let mut rows: Vec<&PeerRow> = rows.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.last.bytes()));
        rows
    }

    /// Seats a series that moved this interval: `None` if there is no room, else the
    /// series it replaced, if any, which must no longer be sent.
    pub fn seat(&mut self, key: &K) -> Option<Option<K>> {
        let mut replaced = None;
        if !self.kept.contains_key(key) && self.kept.len() >= self.limit {
            let idlest = self
                .kept
                .iter()
                .filter(|(_, moved)| **moved < self.interval)
                .min_by_key(|(_, moved)| **moved)
                .map(|(key, _)| key.clone())?;
            self.kept.remove(&idlest);
            replaced = Some(idlest);
        }
        self.kept.insert(key.clone(), self.interval);
        Some(replaced)
    }
}

#[cfg(test)]
mod tests {
    use super::Seats;

    #[test]
    fn a_new_series_takes_the_seat_of_the_one_idle_longest() {
        let mut seats = Seats::new(2);
        seats.next_interval(&[]);
        assert_eq!(seats.seat(&"a"), Some(None));
        assert_eq!(seats.seat(&"b"), Some(None));
        assert_eq!(seats.seat(&"c"), None, "both moved this interval");
        seats.next_interval(&[]);
        assert_eq!(seats.seat(&"b"), Some(None));
        assert_eq!(seats.seat(&"c"), Some(Some("a")));
        assert_eq!(seats.seat(&"a"), None);
    }
}

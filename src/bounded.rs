//! Keeping caches and tables within a size: when one grows past its bound, the entries
//! used least recently go first, in one linear pass.

use std::collections::HashMap;
use std::hash::Hash;

/// Keeps exactly `max` entries of `map` when it has more, dropping those whose
/// `recency` is smallest; of entries as recent as the cut, as many as fit stay (a burst
/// of equally recent entries never empties the map).
pub fn keep_most_recent<K: Hash + Eq, V, T: Ord + Copy>(
    map: &mut HashMap<K, V>,
    max: usize,
    recency: impl Fn(&V) -> T,
) {
    if map.len() <= max {
        return;
    }
    let mut ages: Vec<T> = map.values().map(&recency).collect();
    let cut = ages.len() - max;
    let (_, threshold, above) = ages.select_nth_unstable(cut);
    let threshold = *threshold;
    let newer = above.iter().filter(|age| **age > threshold).count();
    let mut ties_kept = max - newer;
    map.retain(|_, value| {
        let age = recency(value);
        if age > threshold {
            return true;
        }
        if age == threshold && ties_kept > 0 {
            ties_kept -= 1;
            return true;
        }
        false
    });
}

/// Gives memory back once a table has shrunk far below what it held at its peak: a
/// hash table keeps its largest capacity, so a burst would otherwise cost its memory
/// for the life of the process.
pub fn shrink_when_sparse<K: Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 4 * map.len().max(256) {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_past_its_peak_gives_memory_back() {
        let mut map: HashMap<u32, u64> = (0..10_000).map(|k| (k, 0)).collect();
        let peak = map.capacity();
        map.retain(|k, _| *k < 5_000);
        shrink_when_sparse(&mut map);
        // (Deleted slots count against the capacity until the next rehash.)
        assert!(
            map.capacity() > peak * 9 / 10,
            "half full: kept for the next burst"
        );
        map.retain(|k, _| *k < 100);
        shrink_when_sparse(&mut map);
        assert!(map.capacity() < peak / 8, "{}", map.capacity());
        assert_eq!(map.len(), 100);
    }

    #[test]
    fn the_least_recent_go_first() {
        let mut map: HashMap<u32, u64> = (0..100).map(|k| (k, u64::from(k))).collect();
        keep_most_recent(&mut map, 10, |used| *used);
        assert!(map.len() <= 10);
        assert!(map.keys().all(|k| *k >= 90));
        keep_most_recent(&mut map, 50, |used| *used);
        assert!(!map.is_empty(), "nothing goes below the bound");
    }

    #[test]
    fn a_burst_of_equally_recent_entries_keeps_the_bound_full() {
        // Older entries, then more new ones than the bound, all of one moment.
        let mut map: HashMap<u32, u64> = (0..10).map(|k| (k, 1)).collect();
        map.extend((10..1000).map(|k| (k, 5)));
        keep_most_recent(&mut map, 100, |used| *used);
        assert_eq!(map.len(), 100);
        assert!(map.values().all(|used| *used == 5), "the newest stay");
        // Some older, some of the cut's moment: all newer ones kept, ties fill up.
        let mut map: HashMap<u32, u64> = (0..50).map(|k| (k, 9)).collect();
        map.extend((50..150).map(|k| (k, 3)));
        keep_most_recent(&mut map, 80, |used| *used);
        assert_eq!(map.len(), 80);
        assert_eq!(map.values().filter(|used| **used == 9).count(), 50);
    }
}

//! Keeping caches and tables within a size: when one grows past its bound, the entries
//! used least recently go first, in one linear pass.

use std::collections::HashMap;
use std::hash::Hash;

/// Keeps at most `max` entries of `map` (about: entries as recent as the cut stay),
/// dropping those whose `recency` is smallest.
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
    let (_, threshold, _) = ages.select_nth_unstable(cut);
    let threshold = *threshold;
    map.retain(|_, value| recency(value) > threshold);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recent_go_first() {
        let mut map: HashMap<u32, u64> = (0..100).map(|k| (k, u64::from(k))).collect();
        keep_most_recent(&mut map, 10, |used| *used);
        assert!(map.len() <= 10);
        assert!(map.keys().all(|k| *k >= 90));
        keep_most_recent(&mut map, 50, |used| *used);
        assert!(!map.is_empty(), "nothing goes below the bound");
    }
}

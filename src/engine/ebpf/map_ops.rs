//! Bounded, linear passes over the kernel's maps. A hash map's key iterator restarts
//! from the first key whenever the key it stands on is deleted, so walking and
//! deleting at once is quadratic: every pass here reads first (in batches), then
//! deletes what it chose (in batches), and never walks more keys than the map holds.

use libbpf_rs::{MapCore, MapFlags, MapMut};
use std::os::fd::{AsFd, AsRawFd};

/// Keys and values read per batch system call.
const BATCH: u32 = 4096;

/// A map's entries read in one pass, keys and values each in one flat buffer: a
/// map of a hundred thousand sockets is two allocations, not two per entry.
#[derive(Debug, Default)]
pub struct Entries {
    key_size: usize,
    value_size: usize,
    keys: Vec<u8>,
    values: Vec<u8>,
}

impl Entries {
    pub fn new(key_size: usize, value_size: usize) -> Entries {
        Entries {
            key_size: key_size.max(1),
            value_size: value_size.max(1),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Adds one entry; one of another size than the map's is left out.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        if key.len() == self.key_size && value.len() == self.value_size {
            self.keys.extend_from_slice(key);
            self.values.extend_from_slice(value);
        }
    }

    fn len(&self) -> usize {
        self.keys.len() / self.key_size
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.keys
            .chunks_exact(self.key_size)
            .zip(self.values.chunks_exact(self.value_size))
    }
}

/// Every (key, value) of a map that is not per-CPU, one pass.
pub fn entries(map: &MapMut<'_>) -> Entries {
    match lookup_batches(map) {
        Some(entries) => entries,
        // Kernels before 5.6 have no batch lookups.
        None => {
            let mut entries = Entries::new(map.key_size() as usize, map.value_size() as usize);
            for key in keys(map) {
                if let Ok(Some(value)) = map.lookup(&key, MapFlags::ANY) {
                    entries.push(&key, &value);
                }
            }
            entries
        }
    }
}

/// Batched lookups until the kernel says the map is done (ENOENT). A hash map's batch
/// ends at a bucket boundary, so a short batch is not the last one (libbpf-rs's
/// `lookup_batch` takes it for the last and stops early once a map holds more than a
/// batch). `None` if the kernel has no batch lookups.
fn lookup_batches(map: &MapMut<'_>) -> Option<Entries> {
    let (key_size, value_size) = (map.key_size() as usize, map.value_size() as usize);
    let max_entries = map.max_entries() as usize;
    let options = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    let mut batch = BATCH as usize;
    let (mut keys, mut values) = (vec![0u8; key_size * batch], vec![0u8; value_size * batch]);
    // The position between calls: a bucket index for hash maps, a key for others.
    let (mut position, mut next) = (vec![0u8; key_size.max(8)], vec![0u8; key_size.max(8)]);
    let mut started = false;
    let mut found = Entries::new(key_size, value_size);
    // Each call either returns entries, grows the batch, or ends; bounded all the same.
    for _ in 0..=max_entries + 32 {
        let mut count = batch as u32;
        let in_batch = if started {
            position.as_mut_ptr().cast()
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: every buffer holds `count` keys or values of the map's sizes, or a
        // position of at least the key's size, as the kernel requires.
        let result = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                in_batch,
                next.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &options,
            )
        };
        let error = if result < 0 { -result } else { 0 };
        match error {
            0 | libc::ENOENT => {
                let count = (count as usize).min(batch);
                found.keys.extend_from_slice(&keys[..count * key_size]);
                found
                    .values
                    .extend_from_slice(&values[..count * value_size]);
                if error == libc::ENOENT || found.len() >= max_entries {
                    return Some(found);
                }
                std::mem::swap(&mut position, &mut next);
                started = true;
            }
            // One bucket holds more than a batch: a larger batch, same position.
            libc::ENOSPC if batch < max_entries => {
                batch *= 2;
                keys.resize(key_size * batch, 0);
                values.resize(value_size * batch, 0);
            }
            libc::EINTR | libc::EAGAIN => {}
            _ if !started => return None,
            _ => return Some(found),
        }
    }
    Some(found)
}

/// A map's keys, at most as many as it can hold, even while programs add to it.
pub fn keys<'a>(map: &'a MapMut<'_>) -> impl Iterator<Item = Vec<u8>> + 'a {
    map.keys().take(map.max_entries() as usize)
}

/// Deletes these keys (each the map's key size); returns how many were deleted.
/// A key taken out of a map.
pub enum Taken {
    /// Its last value.
    Value(Vec<u8>),
    /// No such key (deleted meanwhile).
    Gone,
    /// The kernel cannot look up and delete in one step on this map type (hash maps
    /// before 5.14).
    Unsupported(libbpf_rs::Error),
}

/// Looks a key up and deletes it in one step.
pub fn take(map: &MapMut<'_>, key: &[u8]) -> Taken {
    match map.lookup_and_delete(key) {
        Ok(Some(value)) => Taken::Value(value),
        Ok(None) => Taken::Gone,
        Err(error) => Taken::Unsupported(error),
    }
}

pub fn delete(map: &MapMut<'_>, keys: &[Vec<u8>]) -> usize {
    let size = map.key_size() as usize;
    let mut deleted = 0;
    for chunk in keys.chunks(BATCH as usize) {
        let flat: Vec<u8> = chunk
            .iter()
            .filter(|key| key.len() == size)
            .flatten()
            .copied()
            .collect();
        let count = (flat.len() / size.max(1)) as u32;
        if count == 0 {
            continue;
        }
        if map
            .delete_batch(&flat, count, MapFlags::ANY, MapFlags::ANY)
            .is_ok()
        {
            deleted += count as usize;
            continue;
        }
        // The batch stops at the first key already gone (or the kernel has no batch
        // deletes): one at a time, each key once.
        deleted += chunk.iter().filter(|key| map.delete(key).is_ok()).count();
    }
    deleted
}

/// Takes everything waiting in a queue map, at most as many values as it holds.
pub fn drain_queue(queue: &MapMut<'_>) -> Vec<Vec<u8>> {
    (0..queue.max_entries())
        .map_while(|_| queue.lookup_and_delete(&[]).ok().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Entries;

    #[test]
    fn entries_keep_their_pairs_and_leave_out_odd_sizes() {
        let mut entries = Entries::new(2, 3);
        entries.push(&[1, 2], &[3, 4, 5]);
        entries.push(&[9], &[9, 9, 9]);
        entries.push(&[6, 7], &[8, 9, 10]);
        let pairs: Vec<(&[u8], &[u8])> = entries.iter().collect();
        assert_eq!(
            pairs,
            [
                (&[1, 2][..], &[3, 4, 5][..]),
                (&[6, 7][..], &[8, 9, 10][..])
            ]
        );
        assert_eq!(entries.len(), 2);
    }
}

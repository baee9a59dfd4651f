//! Limits on the kernel side (bpf/limits.bpf.h): who each covers, by process name, uid
//! and cgroup; each one's rates; and what each let through and held back, read as
//! deltas each interval.

use super::plain_data::{self, PlainData};
use super::skeleton::{types, NetgraphMaps};
use crate::limits::{LimitCount, LimitFlow, LimitId, LimitTargets};
use libbpf_rs::{MapCore, MapFlags, MapMut};
use std::collections::HashMap;
use std::time::Duration;

/// Kept in step with MAX_LIMITS in limits.bpf.h (the maps' size).
const KERNEL_MAX_LIMITS: usize = crate::config::limits::MAX_LIMITS;
/// LIMIT_EXEMPT in limits.bpf.h.
const EXEMPT: u32 = u32::MAX;

// SAFETY: repr(C) structs of unsigned integers (the lock is a u32).
unsafe impl PlainData for types::limit_bucket {}
// SAFETY: as above.
unsafe impl PlainData for types::limit_rate {}

/// What may wait in a limit's virtual queue before packets are refused: long enough
/// that a TCP sender told to wait (its next try comes at least 200 ms later, on its
/// probe timer) finds the queue still busy, so the limit's rate is met, not undershot.
fn backlog(bytes_per_second: u64) -> Duration {
    // At least 64 KiB (one offloaded packet) of queue at very low rates.
    let for_one_packet = Duration::from_secs_f64(65_536.0 / bytes_per_second as f64);
    Duration::from_millis(250).max(for_one_packet)
}

#[derive(Default)]
pub struct KernelLimits {
    applied: LimitTargets,
    /// Each bucket's counts at the last read, by index.
    last: HashMap<u32, types::limit_bucket>,
}

fn bucket_index(id: LimitId, ingress: bool) -> u32 {
    (id - 1) * 2 + u32::from(ingress)
}

fn name_key(name: &str) -> Vec<u8> {
    let mut key = [0u8; 16];
    let bytes = name.as_bytes();
    let length = bytes.len().min(15);
    key[..length].copy_from_slice(&bytes[..length]);
    key.to_vec()
}

/// Writes `wanted` into `map` where it differs from `before`, and deletes what left.
fn sync_map(map: &MapMut<'_>, before: &HashMap<Vec<u8>, u32>, wanted: &HashMap<Vec<u8>, u32>) {
    for (key, value) in wanted {
        if before.get(key) != Some(value) {
            if let Err(error) = map.update(key, &value.to_ne_bytes(), MapFlags::ANY) {
                tracing::warn!("cannot set a limit in the kernel: {error}");
            }
        }
    }
    for key in before.keys().filter(|key| !wanted.contains_key(*key)) {
        let _ = map.delete(key);
    }
}

fn who(targets: &LimitTargets) -> [HashMap<Vec<u8>, u32>; 3] {
    let names = targets
        .names
        .iter()
        .map(|(name, id)| (name_key(name), id.unwrap_or(EXEMPT)))
        .collect();
    let uids = targets
        .uids
        .iter()
        .map(|(uid, id)| (uid.to_ne_bytes().to_vec(), *id))
        .collect();
    let cgroups = targets
        .cgroups
        .iter()
        .map(|(cgroup, id)| (cgroup.to_ne_bytes().to_vec(), *id))
        .collect();
    [names, uids, cgroups]
}

impl KernelLimits {
    /// Makes the kernel side enforce `targets`; returns whether any limit is in force.
    pub fn apply(&mut self, maps: &NetgraphMaps<'static>, targets: &LimitTargets) -> bool {
        if targets.limits != self.applied.limits {
            for index in 0..(KERNEL_MAX_LIMITS * 2) as u32 {
                let id = index / 2 + 1;
                let ingress = index % 2 == 1;
                // Some(0): blocked that way (a quota's "block").
                let rate = targets
                    .limits
                    .iter()
                    .find(|limit| limit.id == id)
                    .and_then(|limit| if ingress { limit.ingress } else { limit.egress });
                let bytes_per_second = rate.unwrap_or(0);
                let value = types::limit_rate {
                    bytes_per_second,
                    backlog_ns: if bytes_per_second > 0 {
                        backlog(bytes_per_second).as_nanos() as u64
                    } else {
                        0
                    },
                    block: u32::from(rate == Some(0)),
                    pad: 0,
                };
                let bytes = plain_data::bytes_of(&value);
                if let Err(error) =
                    maps.limit_rates
                        .update(&index.to_ne_bytes(), &bytes, MapFlags::ANY)
                {
                    tracing::warn!("cannot set a limit's rate in the kernel: {error}");
                }
            }
            // A changed limit counts afresh from what its bucket holds now.
            self.last.clear();
            for limit in &targets.limits {
                for ingress in [false, true] {
                    let index = bucket_index(limit.id, ingress);
                    if let Some(bucket) = read_bucket(&maps.limit_buckets, index) {
                        self.last.insert(index, bucket);
                    }
                }
            }
        }
        let before = who(&self.applied);
        let wanted = who(targets);
        let kernel_maps = [
            &maps.limit_by_name,
            &maps.limit_by_uid,
            &maps.limit_by_cgroup,
        ];
        for ((map, before), wanted) in kernel_maps.into_iter().zip(&before).zip(&wanted) {
            sync_map(map, before, wanted);
        }
        self.applied = targets.clone();
        !targets.is_empty()
    }

    /// What each limit let through and held back since the last read.
    pub fn read(&mut self, maps: &NetgraphMaps<'static>) -> Vec<LimitCount> {
        let mut counts = Vec::new();
        for limit in &self.applied.limits {
            let mut flows = [LimitFlow::default(); 2];
            for (flow, ingress) in flows.iter_mut().zip([false, true]) {
                let index = bucket_index(limit.id, ingress);
                let Some(now) = read_bucket(&maps.limit_buckets, index) else {
                    continue;
                };
                let before = self.last.insert(index, now);
                let since = |take: fn(&types::limit_bucket) -> u64| {
                    take(&now).saturating_sub(before.as_ref().map_or(0, take))
                };
                *flow = LimitFlow {
                    passed_bytes: since(|b| b.passed_bytes),
                    passed_packets: since(|b| b.passed_packets),
                    held_bytes: since(|b| b.held_bytes),
                    held_packets: since(|b| b.held_packets),
                };
            }
            counts.push(LimitCount {
                rates: limit.clone(),
                egress: flows[0],
                ingress: flows[1],
            });
        }
        counts
    }
}

fn read_bucket(map: &MapMut<'_>, index: u32) -> Option<types::limit_bucket> {
    let bytes = map.lookup(&index.to_ne_bytes(), MapFlags::ANY).ok()??;
    plain_data::read(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_outlasts_a_tcp_senders_wait() {
        assert_eq!(backlog(2_500_000), Duration::from_millis(250));
        // 1 kB/s: one offloaded packet's worth.
        assert!(backlog(1000) > Duration::from_secs(60));
    }

    #[test]
    fn names_are_nul_padded_kernel_names() {
        let key = name_key("a-very-long-process-name");
        assert_eq!(key.len(), 16);
        assert_eq!(&key[..15], b"a-very-long-pro");
        assert_eq!(key[15], 0);
    }
}

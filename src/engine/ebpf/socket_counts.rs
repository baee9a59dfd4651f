//! Takes the counts the kernel side keeps in owned sockets' own storage (one slot per
//! direction, claimed for the socket's owner, interface and protocol). A socket storage
//! iterator takes each slot's counts as it writes them out, so what is read here is
//! already a delta: each byte is reported once, here or (after the socket's release)
//! in the `traffic` map.

use super::counters::{CounterKey, Direction, HookCount};
use super::plain_data;
use super::skeleton::types;
use crate::traffic::Protocol;
use libbpf_rs::{Iter, Link};
use std::io::Read;

/// Bytes asked for per read: well under the kernel's iterator buffer (8 pages), so the
/// kernel stops between sockets before its buffer overflows. An overflow would discard
/// one socket's output and run the program on it again, after its counts were taken.
const READ_SIZE: usize = 8192;
/// Reads per drain at most: room for a million sockets' two slots.
const MAX_READS: usize = 1 << 14;

pub struct SocketCounts {
    link: Link,
}

impl SocketCounts {
    pub fn new(link: Link) -> SocketCounts {
        SocketCounts { link }
    }

    /// What every socket's slots counted since the last call.
    pub fn take(&self) -> Vec<(CounterKey, HookCount)> {
        parse_reports(&self.read_all())
    }

    /// Everything the iterator writes out. On an error, what was read (whose counts
    /// were taken) is kept; sockets not reached keep theirs for the next drain.
    fn read_all(&self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut iter = match Iter::new(&self.link) {
            Ok(iter) => iter,
            Err(error) => {
                tracing::warn!(%error, "cannot read the sockets' own counters");
                return all;
            }
        };
        let mut buffer = vec![0u8; READ_SIZE];
        for _ in 0..MAX_READS {
            match iter.read(&mut buffer) {
                Ok(0) => return all,
                Ok(read) => all.extend_from_slice(&buffer[..read]),
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::warn!(%error, "cannot read all the sockets' own counters");
                    return all;
                }
            }
        }
        tracing::warn!(
            bytes = all.len(),
            "more sockets than one drain reads: the rest are read at the next"
        );
        all
    }
}

/// The reports in the iterator's output, one fixed-size record each.
pub fn parse_reports(bytes: &[u8]) -> Vec<(CounterKey, HookCount)> {
    bytes
        .chunks_exact(std::mem::size_of::<types::slot_report>())
        .filter_map(plain_data::read::<types::slot_report>)
        .map(|report| {
            let key = CounterKey {
                cookie: report.cookie,
                tgid: report.tgid,
                ifindex: report.ifindex,
                direction: Direction::from_kernel(report.direction),
                protocol: Protocol::from_ip_number(report.protocol),
                ip_number: report.protocol,
                ends: None,
                ports: (0, 0),
                transient: false,
                netns: None,
            };
            (key, HookCount::of(&report.counts))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ebpf::plain_data::bytes_of;

    fn report(cookie: u64, direction: types::direction, bytes: u64) -> types::slot_report {
        types::slot_report {
            cookie,
            tgid: 42,
            ifindex: 7,
            direction,
            protocol: 17,
            counts: types::traffic_value {
                bytes,
                packets: 2,
                segment_bytes: 0,
                segment_packets: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn reports_are_read_as_keyed_deltas() {
        let mut output = bytes_of(&report(9, types::direction::EGRESS, 300));
        output.extend(bytes_of(&report(9, types::direction::INGRESS, 500)));
        let parsed = parse_reports(&output);
        assert_eq!(parsed.len(), 2);
        let (key, count) = &parsed[0];
        assert_eq!((key.cookie, key.tgid, key.ifindex), (9, 42, 7));
        assert_eq!(key.direction, Direction::Egress);
        assert_eq!(key.protocol, Protocol::Udp);
        assert_eq!((count.passed.bytes, count.passed.packets), (300, 2));
        assert_eq!(parsed[1].0.direction, Direction::Ingress);
        assert_eq!(parsed[1].1.passed.bytes, 500);
    }

    #[test]
    fn a_cut_record_is_left_out() {
        let mut output = bytes_of(&report(1, types::direction::EGRESS, 10));
        output.extend(&bytes_of(&report(2, types::direction::EGRESS, 20))[..10]);
        let parsed = parse_reports(&output);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0.cookie, 1);
    }
}

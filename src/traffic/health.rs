//! How TCP fared on some traffic: segments retransmitted, connects made and failed,
//! and round-trip times weighted by the bytes that took them. Sums like byte counters,
//! so every stage adds it up as it adds up bytes.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TcpHealth {
    /// Segments sent again, as the kernel's TcpRetransSegs counts them.
    pub retransmits: u64,
    /// Their TCP payload bytes.
    pub retransmit_bytes: u64,
    /// Connects that completed the handshake.
    pub connects: u64,
    /// Connects that failed: answered by a reset, unanswered, an ICMP error said the
    /// host or network was unreachable, or given up by the program.
    pub connects_refused: u64,
    pub connects_timed_out: u64,
    pub connects_unreachable: u64,
    pub connects_aborted: u64,
    /// Σ smoothed RTT (µs) × bytes, over the bytes whose socket had an RTT.
    #[serde(skip)]
    pub rtt_weighted_us: f64,
    #[serde(skip)]
    pub rtt_bytes: u64,
    /// The largest smoothed RTT seen.
    pub rtt_max_us: u32,
}

impl TcpHealth {
    pub fn merge(&mut self, other: &TcpHealth) {
        self.retransmits = self.retransmits.saturating_add(other.retransmits);
        self.retransmit_bytes = self.retransmit_bytes.saturating_add(other.retransmit_bytes);
        self.connects = self.connects.saturating_add(other.connects);
        self.connects_refused = self.connects_refused.saturating_add(other.connects_refused);
        self.connects_timed_out = self
            .connects_timed_out
            .saturating_add(other.connects_timed_out);
        self.connects_unreachable = self
            .connects_unreachable
            .saturating_add(other.connects_unreachable);
        self.connects_aborted = self.connects_aborted.saturating_add(other.connects_aborted);
        self.rtt_weighted_us += other.rtt_weighted_us;
        self.rtt_bytes = self.rtt_bytes.saturating_add(other.rtt_bytes);
        self.rtt_max_us = self.rtt_max_us.max(other.rtt_max_us);
    }

    /// A socket's RTT, weighted by the bytes it moved (at least one, so a socket that
    /// only failed or idled still tells its RTT).
    pub fn add_rtt(&mut self, rtt_us: u32, bytes: u64) {
        if rtt_us == 0 {
            return;
        }
        let weight = bytes.max(1);
        self.rtt_weighted_us += f64::from(rtt_us) * weight as f64;
        self.rtt_bytes = self.rtt_bytes.saturating_add(weight);
        self.rtt_max_us = self.rtt_max_us.max(rtt_us);
    }

    /// The traffic-weighted smoothed RTT, where any socket had one.
    pub fn rtt_us(&self) -> Option<u32> {
        (self.rtt_bytes > 0).then(|| (self.rtt_weighted_us / self.rtt_bytes as f64).round() as u32)
    }

    pub fn connect_failures(&self) -> u64 {
        self.connects_refused
            .saturating_add(self.connects_timed_out)
            .saturating_add(self.connects_unreachable)
            .saturating_add(self.connects_aborted)
    }

    pub fn is_zero(&self) -> bool {
        *self == TcpHealth::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_is_weighted_by_bytes_and_counts_add_up() {
        let mut bulk = TcpHealth {
            retransmits: 3,
            connects: 1,
            ..Default::default()
        };
        bulk.add_rtt(10_000, 9_000_000);
        let mut chatty = TcpHealth {
            connects_refused: 2,
            ..Default::default()
        };
        chatty.add_rtt(100_000, 1_000_000);
        let mut both = bulk;
        both.merge(&chatty);
        assert_eq!(both.rtt_us(), Some(19_000));
        assert_eq!(both.rtt_max_us, 100_000);
        assert_eq!((both.retransmits, both.connects), (3, 1));
        assert_eq!(both.connect_failures(), 2);
        assert!(!both.is_zero() && TcpHealth::default().is_zero());
        assert_eq!(TcpHealth::default().rtt_us(), None);
    }
}

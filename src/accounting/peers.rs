//! Each process's traffic by remote peer: every interval, the largest peers of each
//! series, and the rest summed as one `other` row, so that a series' peers always add
//! up to the series and a scanner or a busy server cannot blow up memory or storage.

use super::SeriesKey;
use crate::traffic::{Service, Traffic};
use crate::workload::Workload;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Peers kept per series per interval when the configuration does not say.
pub const DEFAULT_PER_PROCESS: usize = 20;

/// One series' traffic with one remote address this interval.
#[derive(Clone, Debug)]
pub struct PeerRow {
    pub key: SeriesKey,
    pub workload: Option<Arc<Workload>>,
    /// `None`: every peer beyond the largest (and traffic whose peer is not known).
    pub peer: Option<IpAddr>,
    /// The far end's service (e.g. 443/tcp), where the ports tell it.
    pub service: Option<Service>,
    /// The host's own address the traffic used (the one that carried the most bytes,
    /// should there be several); `None` for `other`.
    pub near: Option<IpAddr>,
    /// The peer's name, learnt from DNS answers, ClientHellos or reverse DNS.
    pub name: Option<Arc<str>>,
    /// The peer's country, with GeoIP.
    pub country: Option<Arc<str>>,
    /// The series' process (the one that moved most of its bytes this interval).
    pub pid: Option<u32>,
    pub last: Traffic,
    /// Monotonic, since netgraph started (for `other`: of whatever was `other`).
    pub total: Traffic,
}

/// A row of `sent` bytes from curl (uid 1000, eth0) to `peer`, for sinks' tests.
#[cfg(test)]
pub fn sample_row(peer: &str, sent: u64) -> PeerRow {
    let mut last = Traffic::default();
    last.sent.bytes = sent;
    PeerRow {
        near: None,
        key: SeriesKey {
            name: "curl".into(),
            uid: Some(1000),
            interface: "eth0".into(),
            container: None,
            reason: None,
        },
        workload: None,
        peer: Some(peer.parse().unwrap()),
        service: None,
        name: None,
        country: None,
        pid: None,
        last,
        total: last,
    }
}

impl PeerRow {
    /// The peer as written out: its address, or `other`.
    pub fn peer_label(&self) -> String {
        self.peer
            .map_or_else(|| "other".to_string(), |ip| ip.to_string())
    }
}

/// This interval's traffic by series and remote address.
#[derive(Default)]
pub struct PeerTally {
    series: HashMap<SeriesKey, SeriesPeers>,
}

#[derive(Default)]
struct SeriesPeers {
    workload: Option<Arc<Workload>>,
    peers: HashMap<Option<PeerId>, Peer>,
}

/// A peer: its address and the service used there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    pub address: IpAddr,
    pub service: Option<Service>,
}

/// A peer's traffic this interval, its name, and the host's address that carried the
/// most bytes to it (with those bytes).
#[derive(Default)]
struct Peer {
    traffic: Traffic,
    name: Option<Arc<str>>,
    near: Option<(IpAddr, u64)>,
}

impl PeerTally {
    pub fn add(
        &mut self,
        key: &SeriesKey,
        workload: Option<&Arc<Workload>>,
        peer: Option<PeerId>,
        near: Option<IpAddr>,
        name: Option<&Arc<str>>,
        traffic: Traffic,
    ) {
        let series = self.series.entry(key.clone()).or_default();
        if series.workload.is_none() {
            series.workload = workload.cloned();
        }
        let entry = series.peers.entry(peer).or_default();
        entry.traffic.merge(traffic);
        if name.is_some() {
            entry.name = name.cloned();
        }
        if let Some(near) = near {
            let bytes = traffic.bytes();
            if entry.near.is_none_or(|(_, most)| bytes > most) {
                entry.near = Some((near, bytes));
            }
        }
    }

    /// The `per_process` largest peers of each series (by bytes both ways), and one
    /// `other` row with the rest; sorted by series, then largest first.
    pub fn rows(self, per_process: usize) -> Vec<PeerRow> {
        let mut rows = Vec::new();
        let mut series: Vec<(SeriesKey, SeriesPeers)> = self.series.into_iter().collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, SeriesPeers { workload, peers }) in series {
            let mut other = peers.get(&None).map(|p| p.traffic).unwrap_or_default();
            let mut known: Vec<(PeerId, Peer)> = peers
                .into_iter()
                .filter_map(|(peer, entry)| Some((peer?, entry)))
                .collect();
            let bytes = |t: &Traffic| t.sent.bytes + t.recv.bytes;
            known.sort_by(|a, b| {
                bytes(&b.1.traffic)
                    .cmp(&bytes(&a.1.traffic))
                    .then(a.0.cmp(&b.0))
            });
            for (_, peer) in known.iter().skip(per_process) {
                other.merge(peer.traffic);
            }
            known.truncate(per_process);
            let row = |peer: Option<PeerId>, near, name, last| PeerRow {
                key: key.clone(),
                workload: workload.clone(),
                peer: peer.map(|p| p.address),
                service: peer.and_then(|p| p.service),
                near,
                name,
                country: None,
                pid: None,
                last,
                total: Traffic::default(),
            };
            rows.extend(known.into_iter().map(|(id, peer)| {
                row(
                    Some(id),
                    peer.near.map(|(near, _)| near),
                    peer.name,
                    peer.traffic,
                )
            }));
            if !other.is_zero() {
                rows.push(row(None, None, None, other));
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(name: &str) -> SeriesKey {
        SeriesKey {
            name: name.into(),
            uid: Some(0),
            interface: "eth0".into(),
            container: None,
            reason: None,
        }
    }

    fn peer(address: IpAddr) -> Option<PeerId> {
        Some(PeerId {
            address,
            service: None,
        })
    }

    fn traffic(sent: u64) -> Traffic {
        let mut t = Traffic::default();
        t.sent.add_packet(sent);
        t
    }

    #[test]
    fn the_largest_peers_are_kept_and_the_rest_summed_exactly() {
        let mut tally = PeerTally::default();
        for n in 1..=30u8 {
            let peer = peer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)));
            let bytes = u64::from(n) * 100;
            tally.add(&key("scanner"), None, peer, None, None, traffic(bytes));
        }
        tally.add(&key("scanner"), None, None, None, None, traffic(7));
        let name: Arc<str> = Arc::from("localhost");
        let local = peer(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let (lo, other_lo) = (
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        );
        tally.add(
            &key("curl"),
            None,
            local,
            Some(other_lo),
            Some(&name),
            traffic(2),
        );
        tally.add(&key("curl"), None, local, Some(lo), None, traffic(3));
        let rows = tally.rows(20);
        let scanner: Vec<&PeerRow> = rows.iter().filter(|r| &*r.key.name == "scanner").collect();
        assert_eq!(scanner.len(), 21, "20 peers and other");
        assert_eq!(scanner[0].peer_label(), "10.0.0.30", "largest first");
        assert_eq!(scanner[19].peer_label(), "10.0.0.11");
        let other = scanner.last().unwrap();
        assert_eq!(other.peer_label(), "other");
        // Peers 1 to 10 and the traffic with no known peer.
        assert_eq!(
            other.last.sent.bytes,
            (1..=10).map(|n| n * 100).sum::<u64>() + 7
        );
        let summed: u64 = scanner.iter().map(|r| r.last.sent.bytes).sum();
        assert_eq!(summed, (1..=30).map(|n| n * 100).sum::<u64>() + 7);
        let curl: Vec<&PeerRow> = rows.iter().filter(|r| &*r.key.name == "curl").collect();
        assert_eq!(curl.len(), 1, "no empty other row");
        assert_eq!(curl[0].name.as_deref(), Some("localhost"));
        assert_eq!(
            curl[0].near,
            Some(lo),
            "the host's address that carried most"
        );
        assert_eq!(other.near, None);
    }
}

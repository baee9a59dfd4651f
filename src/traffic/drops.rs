//! Packets the kernel dropped, by the kind of its reason. The kernel has over a hundred
//! reasons, numbered differently from one version to the next; admins ask which layer
//! dropped: a firewall, a full socket buffer, TCP's checks, a queue. Sums like bytes.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// The layer a drop reason belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropKind {
    /// `NETFILTER_DROP`: an nftables or iptables rule.
    Netfilter,
    /// Other filters and policies: BPF programs, LSMs, IPsec policy, reverse path
    /// filtering, tc and XDP programs.
    Policy,
    /// The socket could not take it: receive buffer or backlog full, memory pressure,
    /// a socket filter, closed.
    Socket,
    /// TCP's own checks (checksum, window, sequence, flags, listen queue overflow).
    Tcp,
    /// Queues and devices: qdiscs, CPU backlog, rings, neighbours (ARP/ND).
    Queue,
    /// Everything else, and drops without a stated reason.
    Other,
}

impl DropKind {
    pub const ALL: [DropKind; 6] = [
        DropKind::Netfilter,
        DropKind::Policy,
        DropKind::Socket,
        DropKind::Tcp,
        DropKind::Queue,
        DropKind::Other,
    ];

    /// The kind of a reason by its kernel name, with or without the
    /// `SKB_DROP_REASON_` prefix.
    pub fn of(reason: &str) -> DropKind {
        let name = reason.strip_prefix("SKB_DROP_REASON_").unwrap_or(reason);
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
        if name == "NETFILTER_DROP" {
            DropKind::Netfilter
        } else if starts(&[
            "BPF_CGROUP",
            "SECURITY",
            "XFRM",
            "IP_RPFILTER",
            "TC_",
            "XDP",
        ]) {
            DropKind::Policy
        } else if starts(&["SOCKET_", "PROTO_MEM", "UNIX_"]) {
            DropKind::Socket
        } else if starts(&["TCP_"]) {
            DropKind::Tcp
        } else if starts(&[
            "QDISC_",
            "FQ_",
            "CAKE_",
            "CPU_BACKLOG",
            "FULL_RING",
            "NEIGH_",
            "DEV_READY",
        ]) {
            DropKind::Queue
        } else {
            DropKind::Other
        }
    }

    /// As output field names have it (`drops_netfilter`, ...).
    pub fn label(self) -> &'static str {
        match self {
            DropKind::Netfilter => "netfilter",
            DropKind::Policy => "policy",
            DropKind::Socket => "socket",
            DropKind::Tcp => "tcp",
            DropKind::Queue => "queue",
            DropKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    /// Packets dropped, by kind (in `DropKind::ALL`'s order).
    pub packets: [u64; 6],
    /// Their bytes (as the kernel had them when it dropped them).
    pub bytes: u64,
}

impl Drops {
    pub fn add(&mut self, kind: DropKind, packets: u64, bytes: u64) {
        let slot = &mut self.packets[kind.index()];
        *slot = slot.saturating_add(packets);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    pub fn merge(&mut self, other: &Drops) {
        for (mine, theirs) in self.packets.iter_mut().zip(other.packets) {
            *mine = mine.saturating_add(theirs);
        }
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    pub fn total(&self) -> u64 {
        self.packets.iter().fold(0, |sum, n| sum.saturating_add(*n))
    }

    pub fn of(&self, kind: DropKind) -> u64 {
        self.packets[kind.index()]
    }

    /// Each kind that had drops, with its count.
    pub fn by_kind(&self) -> impl Iterator<Item = (DropKind, u64)> + '_ {
        DropKind::ALL
            .into_iter()
            .map(|kind| (kind, self.of(kind)))
            .filter(|(_, n)| *n > 0)
    }

    pub fn is_zero(&self) -> bool {
        *self == Drops::default()
    }
}

/// `{"packets": 4, "bytes": 240, "netfilter": 4}`: the kinds that had drops.
impl Serialize for Drops {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("packets", &self.total())?;
        map.serialize_entry("bytes", &self.bytes)?;
        for (kind, packets) in self.by_kind() {
            map.serialize_entry(kind.label(), &packets)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_their_layer() {
        let cases = [
            ("SKB_DROP_REASON_NETFILTER_DROP", DropKind::Netfilter),
            ("BPF_CGROUP_EGRESS", DropKind::Policy),
            ("SKB_DROP_REASON_SOCKET_RCVBUFF", DropKind::Socket),
            ("PROTO_MEM", DropKind::Socket),
            ("TCP_CSUM", DropKind::Tcp),
            ("TCP_LISTEN_OVERFLOW", DropKind::Tcp),
            ("QDISC_DROP", DropKind::Queue),
            ("NEIGH_FAILED", DropKind::Queue),
            ("NOT_SPECIFIED", DropKind::Other),
            ("SOMETHING_NEW", DropKind::Other),
        ];
        for (reason, kind) in cases {
            assert_eq!(DropKind::of(reason), kind, "{reason}");
        }
    }

    #[test]
    fn drops_add_up_by_kind() {
        let mut a = Drops::default();
        a.add(DropKind::Netfilter, 3, 180);
        let mut b = Drops::default();
        b.add(DropKind::Netfilter, 1, 60);
        b.add(DropKind::Socket, 2, 2000);
        a.merge(&b);
        assert_eq!(a.total(), 6);
        assert_eq!(a.bytes, 2240);
        assert_eq!(
            a.by_kind().collect::<Vec<_>>(),
            [(DropKind::Netfilter, 4), (DropKind::Socket, 2)]
        );
        assert!(Drops::default().is_zero() && !a.is_zero());
    }
}

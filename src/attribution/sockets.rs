//! A snapshot of the host's sockets and the rules that match a flow to its socket.

use super::sock_diag::SockDiag;
use crate::traffic::{canonical_addr, Flow, Protocol};
use procfs::net::UdpNetEntries;
use procfs::FromBufReadSI;
use std::collections::HashMap;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub protocol: Protocol,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub inode: u64,
    pub uid: u32,
    /// The kernel's socket cookie (0 where the source does not tell).
    pub cookie: u64,
}

const IPPROTO_ICMP: u16 = 1;
const IPPROTO_ICMPV6: u16 = 58;

#[derive(Default)]
pub struct SocketTable {
    connected: HashMap<(Protocol, SocketAddr, SocketAddr), SocketEntry>,
    bound: HashMap<(Protocol, SocketAddr), SocketEntry>,
    /// Bound to the unspecified address; the flag says IPv6 (`::`), which also takes IPv4.
    wildcard: HashMap<(Protocol, u16, bool), SocketEntry>,
    /// Raw sockets by IP protocol number.
    raw: HashMap<u8, SocketEntry>,
    by_cookie: HashMap<u64, SocketEntry>,
}

impl SocketTable {
    pub fn from_entries(entries: impl IntoIterator<Item = SocketEntry>) -> SocketTable {
        let mut table = SocketTable::default();
        for entry in entries {
            table.insert(entry);
        }
        table
    }

    fn insert(&mut self, entry: SocketEntry) {
        // Sockets in TIME_WAIT or half-open requests have no inode and no owner.
        if entry.inode == 0 {
            return;
        }
        if entry.cookie != 0 {
            self.by_cookie.insert(entry.cookie, entry);
        }
        if entry.remote.port() != 0 || !entry.remote.ip().is_unspecified() {
            self.connected
                .insert((entry.protocol, entry.local, entry.remote), entry);
        } else if entry.local.ip().is_unspecified() {
            let ipv6 = entry.local.is_ipv6();
            self.wildcard
                .insert((entry.protocol, entry.local.port(), ipv6), entry);
        } else {
            self.bound.insert((entry.protocol, entry.local), entry);
        }
    }

    fn insert_raw(&mut self, entry: SocketEntry) {
        if entry.inode != 0 {
            // /proc/net/raw shows the socket's IP protocol in the port column.
            self.raw.insert(entry.local.port() as u8, entry);
        }
    }

    pub fn by_cookie(&self, cookie: u64) -> Option<&SocketEntry> {
        self.by_cookie.get(&cookie)
    }

    pub fn len(&self) -> usize {
        self.connected.len() + self.bound.len() + self.wildcard.len() + self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The socket that sends and receives this flow: a connected socket, else one bound
    /// to the local address and port, else one bound to the port on any address, else a
    /// raw socket for the protocol.
    pub fn lookup(&self, flow: &Flow) -> Option<&SocketEntry> {
        let protocol = flow.protocol;
        if flow.local.port() != 0 {
            let found = self
                .connected
                .get(&(protocol, flow.local, flow.remote))
                .or_else(|| self.bound.get(&(protocol, flow.local)))
                .or_else(|| {
                    let port = flow.local.port();
                    let v6 = self.wildcard.get(&(protocol, port, true));
                    if flow.local.is_ipv4() {
                        self.wildcard.get(&(protocol, port, false)).or(v6)
                    } else {
                        v6
                    }
                });
            if found.is_some() {
                return found;
            }
        }
        let raw_protocol = match protocol {
            // A raw ICMP socket sees every ICMP packet, but only echoes (which carry an
            // identifier, our port) are its own; neighbour discovery and errors are the kernel's.
            Protocol::Icmp if flow.local.port() == 0 => return None,
            Protocol::Icmp if flow.local.is_ipv4() => IPPROTO_ICMP as u8,
            Protocol::Icmp => IPPROTO_ICMPV6 as u8,
            Protocol::Other(number) => number,
            Protocol::Tcp | Protocol::Udp => return None,
        };
        self.raw.get(&raw_protocol)
    }

    /// Reads every socket of this network namespace: TCP and UDP through sock_diag when
    /// it is available (else /proc/net), ping and raw sockets from /proc/net.
    pub fn load(diag: Option<&mut SockDiag>) -> SocketTable {
        let mut entries = Vec::new();
        let dumped = match diag {
            Some(diag) => match diag.dump_all(&mut entries) {
                Ok(()) => true,
                Err(error) => {
                    tracing::debug!(%error, "sock_diag dump failed; reading /proc/net");
                    entries.clear();
                    false
                }
            },
            None => false,
        };
        if !dumped {
            read_proc_net_inet(&mut entries);
        }
        let mut table = SocketTable::from_entries(entries);
        for path in ["/proc/net/icmp", "/proc/net/icmp6"] {
            for entry in read_udp_format(path, Protocol::Icmp) {
                // A ping socket's port is its echo identifier, carried by both directions.
                let id = entry.local.port();
                let mut entry = entry;
                if !entry.remote.ip().is_unspecified() {
                    entry.remote.set_port(id);
                }
                table.insert(entry);
            }
        }
        for path in ["/proc/net/raw", "/proc/net/raw6"] {
            for entry in read_udp_format(path, Protocol::Other(0)) {
                table.insert_raw(entry);
            }
        }
        table
    }
}

fn read_proc_net_inet(entries: &mut Vec<SocketEntry>) {
    let tcp = procfs::net::tcp()
        .into_iter()
        .chain(procfs::net::tcp6())
        .flatten();
    entries.extend(tcp.map(|e| SocketEntry {
        protocol: Protocol::Tcp,
        local: canonical_addr(e.local_address),
        remote: canonical_addr(e.remote_address),
        inode: e.inode,
        uid: e.uid,
        cookie: 0,
    }));
    entries.extend(read_udp_format("/proc/net/udp", Protocol::Udp));
    entries.extend(read_udp_format("/proc/net/udp6", Protocol::Udp));
}

/// /proc/net/{udp,icmp,raw}{,6} share one layout.
fn read_udp_format(path: &str, protocol: Protocol) -> Vec<SocketEntry> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let reader = std::io::BufReader::new(file);
    let Ok(UdpNetEntries(entries)) =
        UdpNetEntries::from_buf_read(reader, procfs::current_system_info())
    else {
        return Vec::new();
    };
    entries
        .into_iter()
        .map(|e| SocketEntry {
            protocol,
            local: canonical_addr(e.local_address),
            remote: canonical_addr(e.remote_address),
            inode: e.inode,
            uid: e.uid,
            cookie: 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(protocol: Protocol, local: &str, remote: &str, inode: u64) -> SocketEntry {
        SocketEntry {
            protocol,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            inode,
            uid: 0,
            cookie: 0,
        }
    }

    fn flow(protocol: Protocol, local: &str, remote: &str) -> Flow {
        Flow {
            protocol,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn connected_beats_listening_and_time_wait_is_ignored() {
        let table = SocketTable::from_entries([
            entry(Protocol::Tcp, "0.0.0.0:80", "0.0.0.0:0", 1),
            entry(Protocol::Tcp, "10.0.0.1:80", "10.0.0.2:5000", 2),
            entry(Protocol::Tcp, "10.0.0.1:80", "10.0.0.2:5001", 0),
        ]);
        let hit = |remote| {
            table
                .lookup(&flow(Protocol::Tcp, "10.0.0.1:80", remote))
                .map(|e| e.inode)
        };
        assert_eq!(hit("10.0.0.2:5000"), Some(2));
        assert_eq!(hit("10.0.0.2:5001"), Some(1), "falls back to the listener");
    }

    #[test]
    fn dual_stack_wildcard_takes_ipv4_unless_an_ipv4_socket_exists() {
        let v6_only = SocketTable::from_entries([entry(Protocol::Udp, "[::]:53", "[::]:0", 7)]);
        let f = flow(Protocol::Udp, "10.0.0.1:53", "10.0.0.9:4000");
        assert_eq!(v6_only.lookup(&f).map(|e| e.inode), Some(7));
        let both = SocketTable::from_entries([
            entry(Protocol::Udp, "[::]:53", "[::]:0", 7),
            entry(Protocol::Udp, "0.0.0.0:53", "0.0.0.0:0", 8),
        ]);
        assert_eq!(both.lookup(&f).map(|e| e.inode), Some(8));
        let v6_flow = flow(Protocol::Udp, "[fd00::1]:53", "[fd00::2]:4000");
        assert_eq!(both.lookup(&v6_flow).map(|e| e.inode), Some(7));
    }

    #[test]
    fn bound_address_and_raw_sockets() {
        let mut table =
            SocketTable::from_entries([entry(Protocol::Udp, "10.0.0.1:9000", "0.0.0.0:0", 3)]);
        table.insert_raw(entry(Protocol::Other(0), "0.0.0.0:253", "0.0.0.0:0", 4));
        let udp = flow(Protocol::Udp, "10.0.0.1:9000", "10.0.0.2:1");
        assert_eq!(table.lookup(&udp).map(|e| e.inode), Some(3));
        let raw = flow(Protocol::Other(253), "10.0.0.1:0", "10.0.0.2:0");
        assert_eq!(table.lookup(&raw).map(|e| e.inode), Some(4));
        let other = flow(Protocol::Other(47), "10.0.0.1:0", "10.0.0.2:0");
        assert!(table.lookup(&other).is_none());
        table.insert_raw(entry(Protocol::Other(0), "[::]:58", "[::]:0", 5));
        let echo = flow(Protocol::Icmp, "[fd00::1]:77", "[fd00::2]:77");
        assert_eq!(table.lookup(&echo).map(|e| e.inode), Some(5));
        let neighbour_discovery = flow(Protocol::Icmp, "[fd00::1]:0", "[fd00::2]:0");
        assert!(
            table.lookup(&neighbour_discovery).is_none(),
            "the kernel's ICMP is not the raw socket's"
        );
    }
}

//! Attribution's per-flow work (finding a flow's socket in a snapshot of the host's
//! sockets) behind a small public face, for the criterion benchmarks. Not an API.

use super::sockets::{SocketEntry, SocketTable};
use crate::traffic::{Flow, Protocol};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub struct SocketLookup {
    table: SocketTable,
}

impl SocketLookup {
    /// A host with `connections` connected TCP sockets and a listening one.
    pub fn with_connections(connections: u16) -> SocketLookup {
        let local = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let entries = (0..connections).map(|i| SocketEntry {
            protocol: Protocol::Tcp,
            local: SocketAddr::new(local, 40_000u16.wrapping_add(i)),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 443),
            inode: u64::from(i) + 1,
            uid: 1000,
            cookie: u64::from(i) + 1,
        });
        SocketLookup {
            table: SocketTable::from_entries(entries),
        }
    }

    /// The flow of the `index`th connection.
    pub fn flow(index: u16) -> Flow {
        Flow {
            protocol: Protocol::Tcp,
            local: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                40_000u16.wrapping_add(index),
            ),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 443),
        }
    }

    /// The owning socket's inode, if any.
    pub fn lookup(&self, flow: &Flow) -> Option<u64> {
        self.table.lookup(flow).map(|entry| entry.inode)
    }
}

//! Dumps the kernel's TCP and UDP sockets through netlink sock_diag: one round trip per
//! family and protocol, with the socket's inode and owner uid.

use super::sockets::SocketEntry;
use crate::traffic::{canonical_addr, Protocol};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::{
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
    SockDiagMessage,
};
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};
use std::io;
use std::net::SocketAddr as InetAddr;

pub struct SockDiag {
    socket: Socket,
    receive: Vec<u8>,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        let mut socket = Socket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(SockDiag {
            socket,
            receive: Vec::with_capacity(1 << 16),
        })
    }

    /// Appends every TCP and UDP socket of this network namespace to `out`.
    pub fn dump_all(&mut self, out: &mut Vec<SocketEntry>) -> io::Result<()> {
        for family in [AF_INET, AF_INET6] {
            for protocol in [IPPROTO_TCP, IPPROTO_UDP] {
                self.dump(family, protocol, out)?;
            }
        }
        Ok(())
    }

    fn dump(&mut self, family: u8, protocol: u8, out: &mut Vec<SocketEntry>) -> io::Result<()> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: if family == AF_INET {
                    SocketId::new_v4()
                } else {
                    SocketId::new_v6()
                },
            })
            .into(),
        );
        request.finalize();
        let mut bytes = vec![0; request.buffer_len()];
        request.serialize(&mut bytes);
        self.socket.send(&bytes, 0)?;

        let our_protocol = if protocol == IPPROTO_TCP {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        loop {
            self.receive.clear();
            let size = self.socket.recv(&mut self.receive, 0)?;
            let mut offset = 0;
            while offset < size {
                let message =
                    <NetlinkMessage<SockDiagMessage>>::deserialize(&self.receive[offset..size])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = message.header.length as usize;
                match message.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                        let id = &response.header.socket_id;
                        out.push(SocketEntry {
                            protocol: our_protocol,
                            local: canonical_addr(InetAddr::new(id.source_address, id.source_port)),
                            remote: canonical_addr(InetAddr::new(
                                id.destination_address,
                                id.destination_port,
                            )),
                            inode: u64::from(response.header.inode),
                            uid: response.header.uid,
                            // The kernel writes the cookie as two host-order u32, low first.
                            cookie: cookie_of(&id.cookie),
                        });
                    }
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(error) => {
                        return Err(io::Error::other(format!("sock_diag: {error:?}")))
                    }
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }
}

fn cookie_of(bytes: &[u8; 8]) -> u64 {
    let low = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let high = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    u64::from(low) | u64::from(high) << 32
}

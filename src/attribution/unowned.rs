//! Why traffic has no process, where the engine can tell: the census of `unknown` rows.

use crate::traffic::{Ends, Protocol};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Unowned {
    /// No local socket, and its ends not recorded (turn on `[peers]` or `[geoip]` to
    /// tell the cases below apart).
    NoSocket,
    /// Neither end is this host: routed through it.
    Forwarded,
    /// This host's kernel: ICMP (echo replies, errors, neighbour discovery, through
    /// sockets of its own that no process owns) and the resets it sends for closed
    /// ports.
    Kernel,
    /// TCP or UDP that arrived for a port no socket listens on.
    NoListener,
    /// A socket whose owner is not known: opened before netgraph and gone before it
    /// could be looked up, or one that never has an owner (a SYN-ACK's request socket,
    /// a TIME-WAIT).
    SocketWithoutOwner,
    /// No socket was found for the flow (capture engine): its process ended before it
    /// could be looked up, or there never was one.
    NotFound,
}

impl Unowned {
    pub fn as_str(self) -> &'static str {
        match self {
            Unowned::NoSocket => "no socket",
            Unowned::Forwarded => "forwarded",
            Unowned::Kernel => "kernel",
            Unowned::NoListener => "no listener",
            Unowned::SocketWithoutOwner => "socket without owner",
            Unowned::NotFound => "not found",
        }
    }

    /// Traffic that crossed an interface without any local socket, by direction:
    /// (what was received, what was sent).
    pub fn without_socket(protocol: Protocol, ends: Option<&Ends>) -> (Unowned, Unowned) {
        match (ends, protocol) {
            (None, _) => (Unowned::NoSocket, Unowned::NoSocket),
            (Some(ends), _) if !ends.near_is_host => (Unowned::Forwarded, Unowned::Forwarded),
            (Some(_), Protocol::Tcp | Protocol::Udp) => (Unowned::NoListener, Unowned::Kernel),
            (Some(_), _) => (Unowned::Kernel, Unowned::Kernel),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(near_is_host: bool) -> Ends {
        Ends {
            near: "10.0.0.1".parse().unwrap(),
            far: "10.0.0.2".parse().unwrap(),
            near_is_host,
            service: None,
        }
    }

    #[test]
    fn socketless_traffic_is_told_apart_by_its_ends_and_protocol() {
        let host = ends(true);
        assert_eq!(
            Unowned::without_socket(Protocol::Udp, Some(&host)),
            (Unowned::NoListener, Unowned::Kernel)
        );
        assert_eq!(
            Unowned::without_socket(Protocol::Icmp, Some(&host)),
            (Unowned::Kernel, Unowned::Kernel)
        );
        assert_eq!(
            Unowned::without_socket(Protocol::Tcp, Some(&ends(false))),
            (Unowned::Forwarded, Unowned::Forwarded)
        );
        assert_eq!(
            Unowned::without_socket(Protocol::Tcp, None),
            (Unowned::NoSocket, Unowned::NoSocket)
        );
        assert_eq!(Unowned::SocketWithoutOwner.as_str(), "socket without owner");
    }
}

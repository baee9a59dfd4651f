//! Traffic generator for the namespace test lab. The tests copy this binary under a
//! distinct name per workload, so each workload is a distinctly named process.
//!
//! Every command prints what it moved as `bytes=N` (payload bytes) on stdout; servers
//! print `listening` once ready.

mod dns;
mod http;
mod inject;
mod packet;
mod raw;
mod tcp;
mod tun;
mod udp;

use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: labtraffic COMMAND ARGS
  tcp-sink ADDR                       accept connections forever, read and discard
  tcp-send ADDR AMOUNT [MODE]         connect and send AMOUNT (bytes, or seconds with an s);
                                      MODE: write (default), sendfile, splice, uring
  tcp-source ADDR SECONDS             accept one connection, send to it for that long
  tcp-recv ADDR [MODE]                connect, read until the peer closes; MODE: read, uring
  tcp-duplex ADDR SECONDS             connect, send and receive at once for that long
  tcp-duplex-serve ADDR SECONDS       accept one connection, send and receive at once
  fork-send ADDR AMOUNT               connect, then a forked child named ng-child sends
  short-lived ADDR COUNT BYTES        run COUNT processes one after another, each tcp-send
  tcp-many ADDR COUNT SECONDS         open COUNT connections at once, send on all for that long
  churn ADDR PROCESSES CONNS BYTES    PROCESSES short-lived processes, 50 at a time, each
                                      opening CONNS connections in turn and sending BYTES on each
  tcp-hold ADDR COUNT SECONDS         open COUNT connections, hold them idle that long
  slow-clients ADDRS COUNT SECONDS    hold COUNT partial HTTP requests on ADDRS (a,b) that long
  udp-echo ADDR                       echo every datagram back
  udp-ping ADDR COUNT SIZE [connected|unconnected [HOLD_MS]]
                                      send COUNT datagrams, read the echoes; keep the
                                      socket HOLD_MS longer
  udp-flood ADDR SECONDS SIZE MODE    send as fast as possible; MODE: connected, unconnected, mmsg, gso (UDP_SEGMENT, 1,400-byte datagrams)
  udp-trickle ADDR SECONDS SIZE       send one datagram every 10 ms for that long
  udp-spray FIRST COUNT PORT SIZE     one datagram to each of COUNT IPv4 addresses from FIRST on
  udp-alternate A B COUNT SIZE        one socket: COUNT datagrams alternately to A and B, then exit
  udp-sink ADDR MODE                  count datagrams forever; MODE: recv, mmsg
  raw-ping ADDR COUNT SIZE            IP protocol 253 raw socket: send COUNT, read the echoes
  raw-echo                            IP protocol 253 raw socket: echo what arrives
  packet-send IF MAC FROM TO COUNT SIZE  AF_PACKET: COUNT UDP datagrams FROM -> TO (ip:port)
                                      built here, sent on IF to MAC
  packet-recv IF SECONDS              AF_PACKET: receive every frame of IF for SECONDS
  dns-spoof udp|tcp FROM TO NAME ADDR  send from FROM (port 53) to TO an answer naming ADDR
                                      NAME, answering no query
  inject IFACE COUNT                  send COUNT of each kind of malformed frame on IFACE
  tun-reflect NAME                    make tun interface NAME and send each IPv4 UDP or TCP
                                      packet back, addresses and ports swapped
  tun-delay NAME MS                   make tun interface NAME and send each packet back out
                                      of it MS milliseconds later (a delay line)";

pub type Result<T = ()> = std::result::Result<T, String>;

/// An address, or `name:port` resolved through the system resolver (getaddrinfo).
pub fn addr(text: &str) -> Result<SocketAddr> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("cannot resolve {text:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} has no address"))
}

pub fn number(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|e| format!("bad number {text:?}: {e}"))
}

/// The `bytes=N` a run of this tool printed.
pub fn printed_bytes(output: &str) -> Result<u64> {
    output
        .split_whitespace()
        .find_map(|word| word.strip_prefix("bytes="))
        .ok_or_else(|| format!("no bytes= in {output:?}"))
        .and_then(number)
}

/// The last OS error as a Result, for libc calls that return -1.
pub fn check(result: isize) -> Result<usize> {
    if result < 0 {
        Err(std::io::Error::last_os_error().to_string())
    } else {
        Ok(result as usize)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let result = match arg(1) {
        "tcp-sink" => tcp::sink(arg(2)),
        "tcp-send" => tcp::send(arg(2), arg(3), arg(4)),
        "tcp-source" => tcp::source(arg(2), arg(3)),
        "tcp-recv" => tcp::recv(arg(2), arg(3)),
        "tcp-duplex" => tcp::duplex_client(arg(2), arg(3)),
        "tcp-duplex-serve" => tcp::duplex_server(arg(2), arg(3)),
        "fork-send" => tcp::fork_send(arg(2), arg(3)),
        "short-lived" => tcp::short_lived(&args[0], arg(2), arg(3), arg(4)),
        "tcp-many" => tcp::many(arg(2), arg(3), arg(4)),
        "churn" => tcp::churn(&args[0], arg(2), arg(3), arg(4), arg(5)),
        "churn-child" => tcp::churn_child(arg(2), arg(3), arg(4)),
        "tcp-hold" => tcp::hold(arg(2), arg(3), arg(4)),
        "slow-clients" => http::slow_clients(arg(2), arg(3), arg(4)),
        "udp-echo" => udp::echo(arg(2)),
        "udp-ping" => udp::ping(arg(2), arg(3), arg(4), arg(5), arg(6)),
        "udp-flood" => udp::flood(arg(2), arg(3), arg(4), arg(5)),
        "udp-spray" => udp::spray(arg(2), arg(3), arg(4), arg(5)),
        "udp-alternate" => udp::alternate(arg(2), arg(3), arg(4), arg(5)),
        "udp-trickle" => udp::trickle(arg(2), arg(3), arg(4)),
        "udp-sink" => udp::sink(arg(2), arg(3)),
        "raw-ping" => raw::ping(arg(2), arg(3), arg(4)),
        "packet-send" => packet::send(arg(2), arg(3), arg(4), arg(5), arg(6), arg(7)),
        "packet-recv" => packet::receive(arg(2), arg(3)),
        "raw-echo" => raw::echo(),
        "inject" => inject::inject(arg(2), arg(3)),
        "dns-spoof" => dns::spoof(arg(2), arg(3), arg(4), arg(5), arg(6)),
        "tun-reflect" => tun::reflect(arg(2)),
        "tun-delay" => tun::delay(arg(2), arg(3)),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("labtraffic: {error}");
            ExitCode::FAILURE
        }
    }
}

//! Payloads names for peers are learnt from, captured whole on every interface at
//! once ("any"): DNS queries sent and answers received (UDP and TCP) and TLS
//! ClientHellos sent. A
//! filter in the kernel passes only those, so the counting captures keep their short
//! snap length and bulk traffic costs this capture nothing but the filter.

use super::link::{strip, Link, LinkDirection, LinkPayload, LinkType};
use crate::engine::{Conversation, DnsTransport, NameSample, Recording, SampleKind, SampleSocket};
use crate::locks::lock;
use crate::traffic::{canonical_addr, Flow, Protocol};
use etherparse::{LaxNetSlice, TransportSlice};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Enough for nearly every DNS answer and ClientHello (the kernel side keeps as much).
const SNAPLEN: i32 = 2048;
/// Samples kept between drains; the oldest go first (names are a hint, not a count).
const MAX_WAITING: usize = 1024;
const READ_TIMEOUT_MS: i32 = 200;

/// DNS to and from port 53; TCP segments whose payload starts a handshake record
/// holding a ClientHello (IPv4, and IPv6 without extension headers).
const DNS_FILTER: &str = "(udp or tcp) and port 53";
const HELLO_FILTER: &str = "(tcp and tcp[((tcp[12:1] & 0xf0) >> 2):1] = 0x16 \
    and tcp[((tcp[12:1] & 0xf0) >> 2) + 5:1] = 0x01) \
    or (ip6 and ip6[6] = 6 and ip6[40 + ((ip6[52] & 0xf0) >> 2)] = 0x16 \
    and ip6[40 + ((ip6[52] & 0xf0) >> 2) + 5] = 0x01)";

pub struct NameSamples {
    waiting: Arc<Mutex<VecDeque<NameSample>>>,
    stop: Arc<AtomicBool>,
    /// Wakes the thread out of a read on a quiet host.
    wake: pcap::BreakLoop,
    thread: Option<JoinHandle<()>>,
}

impl NameSamples {
    /// `None` when nothing is to be recorded; a capture that cannot open is logged
    /// once and names simply stay unknown.
    pub fn start(recording: Recording) -> Option<NameSamples> {
        let filter = match (recording.dns_answers, recording.tls_hellos) {
            (false, false) => return None,
            (true, false) => DNS_FILTER.to_string(),
            (false, true) => HELLO_FILTER.to_string(),
            (true, true) => format!("({DNS_FILTER}) or {HELLO_FILTER}"),
        };
        let mut capture = match open(&filter) {
            Ok(capture) => capture,
            Err(error) => {
                tracing::warn!(%error, "cannot capture DNS answers and ClientHellos on \"any\"; peers stay unnamed");
                return None;
            }
        };
        let waiting = Arc::new(Mutex::new(VecDeque::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let wake = capture.breakloop_handle();
        let (thread_waiting, thread_stop) = (waiting.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("name samples".into())
            .spawn(move || read(capture, &thread_waiting, &thread_stop))
            .ok()?;
        Some(NameSamples {
            waiting,
            stop,
            wake,
            thread: Some(thread),
        })
    }

    pub fn drain(&self) -> Vec<NameSample> {
        std::mem::take(&mut *lock(&self.waiting)).into()
    }
}

impl Drop for NameSamples {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.breakloop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open(filter: &str) -> Result<pcap::Capture<pcap::Active>, pcap::Error> {
    let mut capture = pcap::Capture::from_device("any")?
        .snaplen(SNAPLEN)
        .timeout(READ_TIMEOUT_MS)
        .immediate_mode(true)
        .open()?;
    capture.filter(filter, true)?;
    Ok(capture)
}

fn read(
    mut capture: pcap::Capture<pcap::Active>,
    waiting: &Mutex<VecDeque<NameSample>>,
    stop: &AtomicBool,
) {
    let Some(link_type) = LinkType::from_dlt(capture.get_datalink().0) else {
        return;
    };
    let link = Link {
        link_type,
        own_mac: None,
    };
    while !stop.load(Ordering::Relaxed) {
        let read = capture.dispatch(Some(64), |packet| {
            if let Some(sample) = sample(&link, packet.data) {
                let mut waiting = lock(waiting);
                if waiting.len() >= MAX_WAITING {
                    waiting.pop_front();
                }
                waiting.push_back(sample);
            }
        });
        match read {
            Ok(_) | Err(pcap::Error::TimeoutExpired) => {}
            Err(_) if stop.load(Ordering::Relaxed) => return,
            Err(error) => {
                tracing::warn!(%error, "capturing DNS answers and ClientHellos stopped");
                return;
            }
        }
    }
}

/// What a captured frame teaches: a query that went out, an answer that came in, a
/// ClientHello that went out.
pub fn sample(link: &Link, frame: &[u8]) -> Option<NameSample> {
    let LinkPayload::Ip(packet) = strip(link.link_type, frame) else {
        return None;
    };
    let (source, destination) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(ipv4) => (
            IpAddr::V4(ipv4.header().source_addr()),
            IpAddr::V4(ipv4.header().destination_addr()),
        ),
        LaxNetSlice::Ipv6(ipv6) => (
            IpAddr::V6(ipv6.header().source_addr()),
            IpAddr::V6(ipv6.header().destination_addr()),
        ),
        _ => return None,
    };
    let (protocol, ports, payload) = match packet.transport.as_ref()? {
        TransportSlice::Udp(udp) => (
            Protocol::Udp,
            (udp.source_port(), udp.destination_port()),
            udp.payload(),
        ),
        TransportSlice::Tcp(tcp) => (
            Protocol::Tcp,
            (tcp.source_port(), tcp.destination_port()),
            tcp.payload(),
        ),
        _ => return None,
    };
    let from = canonical_addr(SocketAddr::new(source, ports.0));
    let to = canonical_addr(SocketAddr::new(destination, ports.1));
    let incoming = link.direction(frame) != LinkDirection::Outgoing;
    // On loopback libpcap drops the sent copy of each packet: what arrives was also sent
    // here, so a query or a ClientHello is one whichever way it is seen.
    let loopback = link.on_loopback(frame);
    let transport = match protocol {
        Protocol::Udp => DnsTransport::Udp,
        _ => DnsTransport::Tcp,
    };
    let tcp = protocol == Protocol::Tcp;
    let (kind, local, remote) = match (from.port() == 53, to.port() == 53, incoming) {
        (true, _, true) => (SampleKind::DnsAnswer(transport), to, from),
        (_, true, false) => (SampleKind::DnsQuery(transport), from, to),
        (_, true, true) if loopback => (SampleKind::DnsQuery(transport), from, to),
        (false, false, false) if tcp => (SampleKind::TlsHello, from, to),
        (false, false, true) if tcp && loopback => (SampleKind::TlsHello, from, to),
        _ => return None,
    };
    let flow = Flow {
        protocol,
        local,
        remote,
    };
    (!payload.is_empty()).then(|| NameSample {
        kind,
        socket: SampleSocket::Flow(flow),
        far: remote.ip(),
        conversation: Conversation::Flow(flow),
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::capture::link::{Link, LinkType};
    use etherparse::PacketBuilder;

    /// A Linux cooked (SLL) frame as received (packet type 0) on a device of
    /// `device_type`, carrying an IPv4 packet from `from` to `to`.
    fn received(device_type: u16, udp: bool, from: u16, to: u16) -> Vec<u8> {
        let mut frame = vec![0, 0];
        frame.extend(device_type.to_be_bytes());
        frame.extend([0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00]);
        let builder = PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64);
        // A handshake record holding a ClientHello, or a DNS header's worth of bytes.
        let payload = [0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0, 0, 0];
        if udp {
            builder.udp(from, to).write(&mut frame, &payload).unwrap();
        } else {
            builder
                .tcp(from, to, 1, 64_000)
                .write(&mut frame, &payload)
                .unwrap();
        }
        frame
    }

    #[test]
    fn on_loopback_what_was_received_was_also_sent_here() {
        let link = Link {
            link_type: LinkType::LinuxSll,
            own_mac: None,
        };
        const LOOPBACK: u16 = 772;
        const ETHER: u16 = 1;
        let kind = |frame: Vec<u8>| sample(&link, &frame).map(|s| s.kind);
        // A ClientHello and a DNS query on lo: libpcap shows only the received copy.
        assert_eq!(
            kind(received(LOOPBACK, false, 40_000, 6443)),
            Some(SampleKind::TlsHello)
        );
        assert_eq!(
            kind(received(LOOPBACK, true, 40_000, 53)),
            Some(SampleKind::DnsQuery(DnsTransport::Udp))
        );
        assert_eq!(
            kind(received(LOOPBACK, true, 53, 40_000)),
            Some(SampleKind::DnsAnswer(DnsTransport::Udp))
        );
        // Received from elsewhere: another host's ClientHello or query is not ours.
        assert_eq!(kind(received(ETHER, false, 40_000, 6443)), None);
        assert_eq!(kind(received(ETHER, true, 40_000, 53)), None);
        let hello = sample(&link, &received(LOOPBACK, false, 40_000, 6443)).unwrap();
        let SampleSocket::Flow(flow) = hello.socket else {
            panic!("a flow");
        };
        assert_eq!((flow.local.port(), flow.remote.port()), (40_000, 6443));
    }
}

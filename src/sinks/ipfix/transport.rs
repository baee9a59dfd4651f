//! Delivers IPFIX messages to the collector from a thread of its own, so that a slow
//! or absent collector never holds up the interval loop: over UDP with the templates
//! first and again every minute (a collector that starts later learns them), or over
//! TCP with the templates at the start of each connection.

use super::message::{Encoder, FlowRecord};
use crate::config::ipfix::{IpfixConfig, IpfixTransport};
use crate::rate_limited::Repeats;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Intervals waiting for the collector at most; more are dropped (and said so).
const QUEUE: usize = 64;
/// A UDP message that fits a 1500-byte path with room for tunnels.
const UDP_MESSAGE_BYTES: usize = 1400;
const TCP_MESSAGE_BYTES: usize = 65_000;
const TEMPLATES_EVERY: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A TCP collector that takes no data for this long is given up on, until the next
/// interval tries again.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for the queue to reach the collector.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(3);

pub struct Delivery {
    queue: Option<Sender<Vec<FlowRecord>>>,
    done: Receiver<()>,
    full: Repeats,
}

impl Delivery {
    pub fn start(config: &IpfixConfig) -> anyhow::Result<Delivery> {
        let (queue, batches) = crossbeam_channel::bounded::<Vec<FlowRecord>>(QUEUE);
        let (finished, done) = crossbeam_channel::bounded(1);
        let mut session = Session::new(config);
        std::thread::Builder::new()
            .name("ipfix".into())
            .spawn(move || {
                for batch in batches {
                    session.deliver(&batch);
                }
                let _ = finished.send(());
            })?;
        Ok(Delivery {
            queue: Some(queue),
            done,
            full: Repeats::every_minute(),
        })
    }

    /// Hands an interval's records over, never waiting.
    pub fn send(&mut self, records: Vec<FlowRecord>) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(records) {
            Ok(()) => {
                self.full.clear();
            }
            Err(TrySendError::Full(records)) => {
                if let Some(held) = self.full.check("full") {
                    tracing::warn!(
                        records = records.len(),
                        "the IPFIX collector takes less than netgraph exports: {QUEUE} intervals wait already, this one is dropped{held}"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Lets the queue go out, waiting a few seconds at most.
    pub fn finish(&mut self) {
        if self.queue.take().is_some() {
            match self.done.recv_timeout(DRAIN_AT_EXIT) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {}
                Err(RecvTimeoutError::Timeout) => tracing::warn!(
                    "the IPFIX collector did not take the last intervals within {DRAIN_AT_EXIT:?}"
                ),
            }
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.finish();
    }
}

enum Link {
    Udp {
        socket: Option<UdpSocket>,
        templates_sent: Option<Instant>,
    },
    Tcp(Option<TcpStream>),
}

struct Session {
    collector: String,
    encoder: Encoder,
    link: Link,
    failures: Repeats,
}

impl Session {
    fn new(config: &IpfixConfig) -> Session {
        let (link, max_bytes) = match config.transport {
            IpfixTransport::Udp => (
                Link::Udp {
                    socket: None,
                    templates_sent: None,
                },
                UDP_MESSAGE_BYTES,
            ),
            IpfixTransport::Tcp => (Link::Tcp(None), TCP_MESSAGE_BYTES),
        };
        Session {
            collector: config.collector.clone(),
            encoder: Encoder::new(
                config.observation_domain,
                config.enterprise_number,
                max_bytes,
            ),
            link,
            failures: Repeats::every_minute(),
        }
    }

    fn deliver(&mut self, records: &[FlowRecord]) {
        match self.try_deliver(records) {
            Ok(()) => {
                if let Some(held) = self.failures.clear() {
                    tracing::info!(collector = %self.collector, "IPFIX records reach the collector again{held}");
                }
            }
            Err(error) => {
                if let Some(held) = self.failures.check(&format!("{error:#}")) {
                    tracing::error!(collector = %self.collector, "IPFIX records not delivered: {error:#}; check that the collector runs and listens there{held}");
                }
            }
        }
    }

    fn try_deliver(&mut self, records: &[FlowRecord]) -> anyhow::Result<()> {
        let now = export_time();
        let address = resolve(&self.collector)?;
        match &mut self.link {
            Link::Udp {
                socket,
                templates_sent,
            } => {
                if socket.is_none() {
                    let local: SocketAddr = if address.is_ipv6() {
                        "[::]:0".parse()?
                    } else {
                        "0.0.0.0:0".parse()?
                    };
                    *socket = Some(UdpSocket::bind(local)?);
                }
                let Some(udp) = socket.as_ref() else {
                    return Ok(());
                };
                if templates_sent.is_none_or(|sent| sent.elapsed() >= TEMPLATES_EVERY) {
                    udp.send_to(&self.encoder.templates(now), address)?;
                    *templates_sent = Some(Instant::now());
                }
                for message in self.encoder.data(records, now) {
                    udp.send_to(&message, address)?;
                }
            }
            Link::Tcp(stream) => {
                if stream.is_none() {
                    let connected = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
                    connected.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    connected.set_nodelay(true)?;
                    self.encoder.restart();
                    let mut connected = connected;
                    connected.write_all(&self.encoder.templates(now))?;
                    *stream = Some(connected);
                }
                let Some(tcp) = stream.as_mut() else {
                    return Ok(());
                };
                let mut written = Ok(());
                for message in self.encoder.data(records, now) {
                    written = tcp.write_all(&message);
                    if written.is_err() {
                        break;
                    }
                }
                if let Err(error) = written {
                    // The next interval connects afresh, templates first.
                    *stream = None;
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }
}

fn resolve(collector: &str) -> anyhow::Result<SocketAddr> {
    collector
        .to_socket_addrs()
        .map_err(|error| anyhow::anyhow!("cannot resolve {collector}: {error}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{collector} resolves to no address"))
}

fn export_time() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

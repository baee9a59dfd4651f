//! Engines observe traffic and produce byte counts with a flow identity.
//! The capture engine (libpcap) is here; the eBPF engine implements the same trait.

pub mod capture;
pub mod ebpf;
pub mod features;
pub mod host_addresses;
pub mod offloads;
pub mod packets;

use crate::traffic::{Counter, Ends, Flow, Protocol, Traffic};
use std::sync::Arc;

/// Interface names are shared by many flows, so they are reference-counted.
pub type InterfaceName = Arc<str>;

/// Traffic of one flow on one interface since the previous drain.
#[derive(Clone, Debug)]
pub struct FlowTraffic {
    pub interface: InterfaceName,
    pub flow: Flow,
    pub traffic: Traffic,
    /// The flow's near end is no address of this host's: it passed through (routed,
    /// NATed), and no local socket is its end.
    pub forwarded: bool,
}

/// Capture-buffer statistics of one interface, as deltas since the previous drain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets the capture received (libpcap `ps_recv`).
    pub received: u64,
    /// Packets dropped because the capture buffer was full (`ps_drop`).
    pub dropped: u64,
    /// Packets dropped by the interface or its driver (`ps_ifdrop`).
    pub if_dropped: u64,
}

/// Everything an engine saw on one interface since the previous drain.
#[derive(Clone, Debug)]
pub struct InterfaceTraffic {
    pub interface: InterfaceName,
    /// All IP traffic with a local end, by direction. Per-flow traffic sums to this.
    pub captured: Traffic,
    /// Frames whose IP or transport headers could not be decoded.
    pub malformed: Counter,
    /// Frames that carry no IP packet (ARP, LLDP, ...); not part of `captured`.
    pub non_ip: Counter,
    /// Packets of flows beyond the flow table's bound (counted in `captured`, never attributed).
    pub overflow: Counter,
    pub capture: CaptureStats,
}

impl InterfaceTraffic {
    pub fn new(interface: InterfaceName) -> Self {
        InterfaceTraffic {
            interface,
            captured: Traffic::default(),
            malformed: Counter::default(),
            non_ip: Counter::default(),
            overflow: Counter::default(),
            capture: CaptureStats::default(),
        }
    }
}

/// The process that owned a socket, as the kernel recorded it in process context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KernelOwner {
    /// Process id (thread group id).
    pub tgid: u32,
    pub uid: u32,
    /// The process's name (the thread group leader's `comm`).
    pub comm: String,
    /// cgroup v2 id: the inode number of the cgroup's directory.
    pub cgroup_id: u64,
    /// The cgroup's path, where the engine saw the cgroup made.
    pub cgroup_path: Option<Arc<str>>,
    /// The program as it was executed, where the engine saw the exec.
    pub exe: Option<Arc<str>>,
    /// Inode number of the socket's network namespace.
    pub netns: u64,
}

/// What the kernel recorded of who moved a socket's traffic; attribution decides.
#[derive(Clone, Debug, Default)]
pub struct KernelOwnership {
    /// The socket's owner now: its creator, or the last process that used it.
    pub socket: Option<KernelOwner>,
    /// The process the traffic was stamped with as it passed.
    pub mover: Option<KernelOwner>,
}

/// Traffic of one socket on one interface since the previous drain, counted in the
/// kernel; the owner is already known unless the socket predates the engine.
#[derive(Clone, Debug)]
pub struct SocketTraffic {
    pub interface: InterfaceName,
    pub protocol: Protocol,
    /// The kernel's socket cookie, which sock_diag reports too; `None` for traffic
    /// that crossed an interface without any local socket (forwarded, or the kernel's own).
    pub cookie: Option<u64>,
    pub ownership: KernelOwnership,
    /// The packets' two ends, when the engine records them (GeoIP needs them).
    pub ends: Option<Ends>,
    pub traffic: Traffic,
}

/// What an engine records besides counts, decided at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recording {
    /// Each packet's two ends and ports (GeoIP and peers need them).
    pub addresses: bool,
    /// DNS answers that reach local sockets (names for peers).
    pub dns_answers: bool,
    /// TLS ClientHellos that local sockets send (server names for peers).
    pub tls_hellos: bool,
}

/// What a payload a name can be learnt from is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleKind {
    /// A DNS query a local socket sent: answers count only when they match one.
    DnsQuery(DnsTransport),
    /// A DNS answer that reached a local socket.
    DnsAnswer(DnsTransport),
    /// A TLS record carrying a ClientHello (the server name).
    TlsHello,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsTransport {
    Udp,
    /// Messages each behind a two-byte length.
    Tcp,
}

/// The exchange a DNS message belongs to, so that an answer is matched with a query
/// this host sent: the socket itself (eBPF) or the flow's two ends (capture).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conversation {
    Socket {
        cookie: u64,
        server: std::net::IpAddr,
    },
    Flow(crate::traffic::Flow),
}

/// Whose socket a sample passed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleSocket {
    /// The process the kernel recorded.
    Process(u32),
    /// The flow, for attribution to find its owner.
    Flow(Flow),
    Unknown,
}

/// The start of a payload names for addresses are learnt from: a DNS query a local
/// socket sent or an answer that reached one, or a ClientHello one sent.
#[derive(Clone, Debug)]
pub struct NameSample {
    pub kind: SampleKind,
    pub socket: SampleSocket,
    /// The packet's far end (the server a ClientHello went to).
    pub far: std::net::IpAddr,
    pub conversation: Conversation,
    /// The transport payload (its start, if it was long).
    pub payload: Vec<u8>,
}

/// What an engine hands to attribution at the end of an interval.
#[derive(Debug, Default)]
pub struct EngineReport {
    /// Traffic by flow (capture engine): owners still to be found.
    pub flows: Vec<FlowTraffic>,
    /// Traffic by socket (eBPF engine).
    pub sockets: Vec<SocketTraffic>,
    pub interfaces: Vec<InterfaceTraffic>,
    /// Events the engine could not record since the previous drain (a full map).
    pub lost: u64,
    /// Payloads to learn names from, since the previous drain (as `Recording` asks).
    pub name_samples: Vec<NameSample>,
    /// What each limit let through and held back since the previous drain.
    pub limits: Vec<crate::limits::LimitCount>,
}

/// Sender for "a flow was seen for the first time" hints: attribution resolves the owner
/// while a short-lived process is still alive, instead of waiting for the interval's end.
pub type FlowHints = crossbeam_channel::Sender<Flow>;

pub trait Engine: Send {
    fn name(&self) -> &'static str;
    /// Whether traffic comes with both ends' addresses (GeoIP needs them).
    fn records_addresses(&self) -> bool;
    /// The optional parts it runs with, and what is lost without each.
    fn features(&self) -> Vec<features::Feature> {
        Vec::new()
    }
    /// Takes everything observed since the previous call.
    fn drain(&mut self) -> EngineReport;
    /// Housekeeping after a drain's report is written (forgetting closed sockets),
    /// bounded in time; skipped when shutting down.
    fn maintain(&mut self) {}
    /// Enforces these limits from now on, in place of the previous ones; an engine
    /// that cannot enforce limits says why.
    fn set_limits(&mut self, targets: &crate::limits::LimitTargets) -> Result<(), String> {
        if targets.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the {} engine cannot enforce limits: they need the eBPF engine (engine = \"ebpf\", Linux 5.10+)",
                self.name()
            ))
        }
    }
    /// Copies the packets of `targets` to `tap` from now on, in place of any capture
    /// before; `None` stops copying. An engine that cannot capture says why.
    fn set_capture(
        &mut self,
        capture: Option<(&packets::CaptureTargets, &packets::PacketTap)>,
    ) -> Result<(), String> {
        match capture {
            None => Ok(()),
            Some(_) => Err(format!("the {} engine cannot capture packets by owner: capturing needs the eBPF engine (engine = \"ebpf\")", self.name())),
        }
    }
    /// The owners attribution found for flows this interval (`None`: out of the
    /// capture's scope), for an engine that captures by flow; others ignore them.
    fn capture_owners(&mut self, _owners: Vec<(Flow, Option<packets::FlowOwner>)>) {}
    /// Stops observing; a last `drain` afterwards still returns what was seen.
    fn stop(&mut self);
}

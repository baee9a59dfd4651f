//! Captures on the capture engine: while one runs, a second ring per interface keeps
//! whole packets; each packet's flow is looked up in the owners attribution found for
//! flows (the flow table's identity), and the packets of flows not named yet wait,
//! bounded, for the next interval's names. Counting's own rings are left alone.

use super::decode::Decoded;
use super::link::{Link, LinkType};
use super::ring::{Frame, Ring, RingWaker};
use super::worker::decode_frame;
use crate::engine::packets::{
    CaptureTargets, CapturedPacket, FlowOwner, PacketDirection, PacketTap,
};
use crate::engine::InterfaceName;
use crate::traffic::{Flow, Protocol};
use arc_swap::ArcSwap;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Each copier's ring: whole packets, for a burst between reads.
const RING_BYTES: usize = 16 << 20;
/// Packets of flows not named yet, per interface, at most (bytes); more are lost.
const WAITING_AT_MOST: u64 = 32 << 20;
/// A flow still unnamed after this long has no owner to find (its process is gone).
const WAITING_LONGEST: Duration = Duration::from_secs(60);
/// Flows whose owner is remembered, at most: past it the oldest names go.
const OWNERS_AT_MOST: usize = 200_000;
const WAKE: Duration = Duration::from_millis(100);

/// Who owns each flow, as attribution said; `None`: out of the capture's scope.
#[derive(Default)]
pub struct FlowOwners {
    generation: u64,
    owners: HashMap<Flow, Option<Arc<FlowOwner>>>,
}

impl FlowOwners {
    /// These owners added to those known.
    pub fn with(&self, named: Vec<(Flow, Option<FlowOwner>)>) -> FlowOwners {
        let mut owners = if self.owners.len() + named.len() > OWNERS_AT_MOST {
            HashMap::new()
        } else {
            self.owners.clone()
        };
        for (flow, owner) in named {
            owners.insert(flow, owner.map(Arc::new));
        }
        FlowOwners {
            generation: self.generation + 1,
            owners,
        }
    }
}

pub struct PacketCopier {
    stop: Arc<AtomicBool>,
    wake: RingWaker,
    thread: Option<JoinHandle<()>>,
}

impl PacketCopier {
    pub fn start(
        interface: &str,
        loopback: bool,
        targets: &CaptureTargets,
        tap: PacketTap,
        owners: Arc<ArcSwap<FlowOwners>>,
    ) -> std::io::Result<PacketCopier> {
        let ring = Ring::open(interface, targets.snap_length.max(128), RING_BYTES)?;
        let link = ring.link();
        let stop = Arc::new(AtomicBool::new(false));
        let wake = ring.waker();
        let mut copier = Copier {
            interface: interface.into(),
            loopback,
            link,
            peer: targets.peer,
            tap,
            owners,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            seen_generation: 0,
        };
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("copy {interface}"))
            .spawn(move || copier.run(ring, &thread_stop))
            .map_err(|e| std::io::Error::other(format!("cannot start a capture thread: {e}")))?;
        Ok(PacketCopier {
            stop,
            wake,
            thread: Some(thread),
        })
    }
}

impl Drop for PacketCopier {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A packet whose flow had no owner yet, with the flows it may belong to.
struct Waiting {
    sides: Vec<(Flow, PacketDirection)>,
    since: Instant,
    packet: CapturedPacket,
}

struct Copier {
    interface: InterfaceName,
    loopback: bool,
    link: Link,
    peer: Option<IpAddr>,
    tap: PacketTap,
    owners: Arc<ArcSwap<FlowOwners>>,
    waiting: VecDeque<Waiting>,
    waiting_bytes: u64,
    seen_generation: u64,
}

/// What the owners say of a packet's flows.
enum Verdict {
    Owned(Arc<FlowOwner>, PacketDirection),
    Out,
    Unknown,
}

impl Copier {
    fn run(&mut self, mut ring: Ring, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if ring.wait(WAKE).is_err() {
                break;
            }
            self.read(&mut ring);
            self.review();
        }
        // What the kernel holds still belongs to the capture; then the last names.
        self.read(&mut ring);
        self.review();
    }

    fn read(&mut self, ring: &mut Ring) {
        let owners = self.owners.load_full();
        ring.read(|frame| self.copy(&frame, &owners));
    }

    fn copy(&mut self, frame: &Frame<'_>, owners: &FlowOwners) {
        let Decoded::Ip(packet) = decode_frame(&self.link, frame) else {
            return;
        };
        let protocol = Protocol::from_ip_number(packet.ip_number);
        let (src, dst) = (packet.src.address(), packet.dst.address());
        let sent = Flow {
            protocol,
            local: src,
            remote: dst,
        };
        let received = Flow {
            protocol,
            local: dst,
            remote: src,
        };
        // Loopback: one copy of each packet, which either end may own.
        let sides = if self.loopback {
            vec![
                (sent, PacketDirection::Sent),
                (received, PacketDirection::Received),
            ]
        } else if frame.outgoing {
            vec![(sent, PacketDirection::Sent)]
        } else {
            vec![(received, PacketDirection::Received)]
        };
        let sides: Vec<(Flow, PacketDirection)> = sides
            .into_iter()
            .filter(|(flow, _)| self.peer.is_none_or(|peer| flow.remote.ip() == peer))
            .collect();
        if sides.is_empty() {
            return;
        }
        let start = ip_start(self.link.link_type, frame.data);
        let Some(data) = frame.data.get(start..) else {
            return;
        };
        let captured = CapturedPacket {
            time: UNIX_EPOCH + frame.time,
            interface: self.interface.clone(),
            direction: sides[0].1,
            owner: Default::default(),
            container: None,
            length: packet.ip_len as u32,
            segments: 1,
            data: data.to_vec(),
        };
        match verdict(&sides, owners) {
            Verdict::Owned(owner, direction) => self.offer(captured, &owner, direction),
            Verdict::Out => {}
            Verdict::Unknown => self.wait(sides, captured),
        }
    }

    fn offer(&self, mut packet: CapturedPacket, owner: &FlowOwner, direction: PacketDirection) {
        packet.owner = owner.owner.clone();
        packet.container = owner.container.clone();
        packet.direction = direction;
        self.tap.offer(packet);
    }

    fn wait(&mut self, sides: Vec<(Flow, PacketDirection)>, packet: CapturedPacket) {
        let size = packet.data.len() as u64;
        if self.waiting_bytes + size > WAITING_AT_MOST {
            self.tap.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.waiting_bytes += size;
        self.waiting.push_back(Waiting {
            sides,
            since: Instant::now(),
            packet,
        });
    }

    /// Once attribution named more flows: the waiting packets that are now known go
    /// out in their order, the others keep waiting (for a while).
    fn review(&mut self) {
        let owners = self.owners.load_full();
        if owners.generation == self.seen_generation {
            return;
        }
        self.seen_generation = owners.generation;
        let mut still = VecDeque::new();
        let mut still_bytes = 0;
        for waiting in std::mem::take(&mut self.waiting) {
            match verdict(&waiting.sides, &owners) {
                Verdict::Owned(owner, direction) => self.offer(waiting.packet, &owner, direction),
                Verdict::Out => {}
                Verdict::Unknown if waiting.since.elapsed() > WAITING_LONGEST => {}
                Verdict::Unknown => {
                    still_bytes += waiting.packet.data.len() as u64;
                    still.push_back(waiting);
                }
            }
        }
        self.waiting = still;
        self.waiting_bytes = still_bytes;
    }
}

fn verdict(sides: &[(Flow, PacketDirection)], owners: &FlowOwners) -> Verdict {
    let mut unknown = false;
    for (flow, direction) in sides {
        match owners.owners.get(flow) {
            Some(Some(owner)) => return Verdict::Owned(owner.clone(), *direction),
            Some(None) => {}
            None => unknown = true,
        }
    }
    if unknown {
        Verdict::Unknown
    } else {
        Verdict::Out
    }
}

/// Where the IP header starts in a frame: after the Ethernet header and any VLAN tags.
fn ip_start(link: LinkType, data: &[u8]) -> usize {
    if link != LinkType::Ethernet {
        return 0;
    }
    let mut start = 14;
    while let Some(kind) = data.get(start - 2..start) {
        if !matches!(u16::from_be_bytes([kind[0], kind[1]]), 0x8100 | 0x88a8) {
            break;
        }
        start += 4;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_starts_after_ethernet_and_its_vlan_tags() {
        let mut frame = vec![0u8; 40];
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(ip_start(LinkType::Ethernet, &frame), 14);
        frame[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        frame[16..18].copy_from_slice(&0x88a8u16.to_be_bytes());
        frame[20..22].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(ip_start(LinkType::Ethernet, &frame), 22);
        assert_eq!(ip_start(LinkType::RawIp, &frame), 0);
    }
}

//! Remembers the ports of first IPv4 fragments so later fragments reach the same flow.

use super::decode::IpPacket;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

type FragmentKey = (IpAddr, IpAddr, u32, u8);

pub struct FragmentPorts {
    ports: HashMap<FragmentKey, (u16, u16)>,
    order: VecDeque<FragmentKey>,
    capacity: usize,
}

impl FragmentPorts {
    pub fn new(capacity: usize) -> Self {
        FragmentPorts {
            ports: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Records a first fragment's ports, or fills them into a later fragment.
    pub fn apply(&mut self, packet: &mut IpPacket) {
        let Some(fragment) = packet.fragment else {
            return;
        };
        let key = (
            packet.src.ip(),
            packet.dst.ip(),
            fragment.id,
            packet.ip_number,
        );
        if fragment.first {
            if self.ports.len() >= self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.ports.remove(&oldest);
                }
            }
            if self
                .ports
                .insert(key, (packet.src.port(), packet.dst.port()))
                .is_none()
            {
                self.order.push_back(key);
            }
        } else if let Some(&(src_port, dst_port)) = self.ports.get(&key) {
            packet.src.set_port(src_port);
            packet.dst.set_port(dst_port);
        }
    }
}

//! The capture engine's per-packet work (decode, then count in the flow table) behind a
//! small public face, for the criterion benchmarks in `benches/`. Not an API.

use super::decode::{decode, Decoded};
use super::flow_table::FlowTable;
use super::link::{Link, LinkType};
use crate::engine::host_addresses::LocalAddresses;
use std::net::IpAddr;

pub struct CapturePath {
    link: Link,
    table: FlowTable,
    local: LocalAddresses,
}

impl CapturePath {
    /// An Ethernet interface with `own_mac` whose host owns `local`.
    pub fn ethernet(own_mac: [u8; 6], local: IpAddr) -> CapturePath {
        CapturePath {
            link: Link {
                link_type: LinkType::Ethernet,
                own_mac: Some(own_mac),
            },
            table: FlowTable::new("eth0".into(), false, 1 << 16),
            local: LocalAddresses::new([local]),
        }
    }

    /// Decodes one frame; true if it was an IP packet.
    pub fn decode(&self, frame: &[u8]) -> bool {
        matches!(
            decode(&self.link, frame, frame.len() as u32),
            Decoded::Ip(_)
        )
    }

    /// Decodes one frame and counts it, as the capture worker does.
    pub fn count(&mut self, frame: &[u8]) {
        if let Decoded::Ip(packet) = decode(&self.link, frame, frame.len() as u32) {
            self.table.record(&packet, &self.local);
        }
    }

    /// Hands the counts over, as every interval does.
    pub fn drain(&mut self) -> usize {
        self.table.drain().0.len()
    }
}

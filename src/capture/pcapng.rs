//! The capture file: pcapng, one interface block per interface as netgraph names it,
//! and each packet with its owner in a comment and its direction in the flags word,
//! which Wireshark and tshark show (`frame.comment`, `frame.packet_flags_direction`).

use crate::engine::packets::{CapturedPacket, PacketDirection};
use crate::engine::InterfaceName;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::UNIX_EPOCH;

/// Nanosecond timestamps (the engine's clock resolution).
const NANOSECONDS: u8 = 9;
/// pcapng's EPB flags: inbound 1, outbound 2 (bits 0-1).
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

pub struct PacketFile<W: Write> {
    writer: PcapNgWriter<W>,
    interfaces: HashMap<InterfaceName, u32>,
    snap_length: u32,
    /// Bytes written so far, headers and blocks included.
    pub written: u64,
}

impl<W: Write> PacketFile<W> {
    pub fn new(out: W, snap_length: u32, about: &str) -> std::io::Result<PacketFile<W>> {
        let section = SectionHeaderBlock {
            options: vec![
                SectionHeaderOption::UserApplication(Cow::Owned(format!(
                    "netgraph {}",
                    env!("CARGO_PKG_VERSION")
                ))),
                SectionHeaderOption::Comment(Cow::Owned(about.to_string())),
            ],
            ..Default::default()
        };
        let writer = PcapNgWriter::with_section_header(out, section).map_err(io_error)?;
        Ok(PacketFile {
            writer,
            interfaces: HashMap::new(),
            snap_length,
            written: 0,
        })
    }

    /// Writes one packet, with `comment` naming its owner; returns the bytes written.
    pub fn write(&mut self, packet: &CapturedPacket, comment: String) -> std::io::Result<u64> {
        let interface = self.interface(&packet.interface)?;
        let flags = match packet.direction {
            PacketDirection::Received => INBOUND,
            PacketDirection::Sent => OUTBOUND,
        };
        let block = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: packet.time.duration_since(UNIX_EPOCH).unwrap_or_default(),
            original_len: packet.length,
            data: Cow::Borrowed(&packet.data),
            options: vec![
                EnhancedPacketOption::Comment(Cow::Owned(comment)),
                EnhancedPacketOption::Flags(flags),
            ],
        };
        let written = self.writer.write_pcapng_block(block).map_err(io_error)? as u64;
        self.written += written;
        Ok(written)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.get_mut().flush()
    }

    #[cfg(test)]
    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }

    /// The interface's block number, written before its first packet.
    fn interface(&mut self, name: &InterfaceName) -> std::io::Result<u32> {
        if let Some(id) = self.interfaces.get(name) {
            return Ok(*id);
        }
        let id = self.interfaces.len() as u32;
        let block = InterfaceDescriptionBlock {
            // Packets start at their IP header, as the socket hooks see them.
            linktype: DataLink::RAW,
            snaplen: self.snap_length,
            options: vec![
                InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                InterfaceDescriptionOption::IfTsResol(NANOSECONDS),
            ],
        };
        self.written += self.writer.write_pcapng_block(block).map_err(io_error)? as u64;
        self.interfaces.insert(name.clone(), id);
        Ok(id)
    }
}

fn io_error(error: pcap_file::PcapError) -> std::io::Error {
    match error {
        pcap_file::PcapError::IoError(error) => error,
        other => std::io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::KernelOwner;
    use pcap_file::pcapng::{Block, PcapNgReader};
    use std::time::{Duration, SystemTime};

    fn packet(interface: &str, direction: PacketDirection) -> CapturedPacket {
        CapturedPacket {
            time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            interface: interface.into(),
            direction,
            owner: KernelOwner {
                tgid: 42,
                uid: 0,
                comm: "curl".into(),
                cgroup_id: 1,
                cgroup_path: None,
                exe: None,
                netns: 0,
            },
            container: None,
            length: 1500,
            segments: 1,
            data: vec![0x45; 60],
        }
    }

    #[test]
    fn packets_keep_interface_time_length_comment_and_direction() {
        let mut file = PacketFile::new(Vec::new(), 65535, "test").unwrap();
        file.write(&packet("eth0", PacketDirection::Sent), "one".into())
            .unwrap();
        file.write(&packet("lo", PacketDirection::Received), "two".into())
            .unwrap();
        file.write(&packet("eth0", PacketDirection::Received), "three".into())
            .unwrap();
        let bytes = file.into_inner();
        let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
        let mut interfaces = Vec::new();
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => interfaces.push(
                    idb.options
                        .iter()
                        .find_map(|option| match option {
                            InterfaceDescriptionOption::IfName(name) => Some(name.to_string()),
                            _ => None,
                        })
                        .unwrap(),
                ),
                Block::EnhancedPacket(epb) => {
                    let comment = epb.options.iter().find_map(|option| match option {
                        EnhancedPacketOption::Comment(text) => Some(text.to_string()),
                        _ => None,
                    });
                    let flags = epb.options.iter().find_map(|option| match option {
                        EnhancedPacketOption::Flags(flags) => Some(*flags),
                        _ => None,
                    });
                    packets.push((
                        epb.interface_id,
                        epb.timestamp,
                        epb.original_len,
                        epb.data.len(),
                        comment.unwrap(),
                        flags.unwrap(),
                    ))
                }
                _ => {}
            }
        }
        assert_eq!(interfaces.len(), 2, "one block per interface");
        assert_eq!(interfaces, ["eth0", "lo"]);
        let ids: Vec<u32> = packets.iter().map(|p| p.0).collect();
        assert_eq!(ids, [0, 1, 0]);
        let time = packet("eth0", PacketDirection::Sent)
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(packets[0].1, time);
        assert_eq!((packets[0].2, packets[0].3), (1500, 60));
        assert_eq!((packets[1].4.as_str(), packets[1].5), ("two", INBOUND));
        assert_eq!((packets[0].4.as_str(), packets[0].5), ("one", OUTBOUND));
    }
}

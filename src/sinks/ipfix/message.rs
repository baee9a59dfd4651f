//! IPFIX messages (RFC 7011): the two templates netgraph exports with (IPv4 and IPv6
//! flows, the process's identity in elements of netgraph's enterprise) and the data
//! records that follow them.

use std::net::IpAddr;

/// Set ids: a template set, and the data sets of each template.
const TEMPLATE_SET: u16 = 2;
pub const IPV4_TEMPLATE: u16 = 256;
pub const IPV6_TEMPLATE: u16 = 257;
const HEADER_BYTES: usize = 16;
const SET_HEADER_BYTES: usize = 4;
/// A field of variable length, in a template.
const VARIABLE: u16 = 65535;

/// Which way a record's bytes went, as IANA's flowDirection says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

/// One process's traffic with one peer, one way, over one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowRecord {
    pub octets: u64,
    pub packets: u64,
    /// The IP protocol number (0 where not known).
    pub protocol: u8,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    pub direction: Direction,
    /// Unix milliseconds.
    pub start_ms: u64,
    pub end_ms: u64,
    pub interface: String,
    pub process: String,
    /// 0 where not known.
    pub pid: u32,
    /// u32::MAX where not known.
    pub uid: u32,
    pub container: String,
    pub container_id: String,
    pub pod: String,
    pub namespace: String,
    pub unit: String,
}

/// An information element: IANA's (enterprise None) or netgraph's own.
struct Element {
    id: u16,
    length: u16,
    enterprise: bool,
}

const fn iana(id: u16, length: u16) -> Element {
    Element {
        id,
        length,
        enterprise: false,
    }
}

const fn own(id: u16, length: u16) -> Element {
    Element {
        id,
        length,
        enterprise: true,
    }
}

/// netgraph's own elements, numbered within its enterprise (docs/ipfix.md).
pub const OWN_ELEMENTS: [(u16, &str, &str); 8] = [
    (1, "processName", "string"),
    (2, "processId", "unsigned32"),
    (3, "userId", "unsigned32"),
    (4, "containerName", "string"),
    (5, "containerId", "string"),
    (6, "podName", "string"),
    (7, "podNamespace", "string"),
    (8, "systemdUnit", "string"),
];

/// The fields of both templates, in record order; addresses by family.
fn fields(v6: bool) -> [Element; 19] {
    let (source, destination, length) = if v6 { (27, 28, 16) } else { (8, 12, 4) };
    [
        iana(1, 8),  // octetDeltaCount
        iana(2, 8),  // packetDeltaCount
        iana(4, 1),  // protocolIdentifier
        iana(7, 2),  // sourceTransportPort
        iana(11, 2), // destinationTransportPort
        iana(source, length),
        iana(destination, length),
        iana(61, 1),        // flowDirection
        iana(152, 8),       // flowStartMilliseconds
        iana(153, 8),       // flowEndMilliseconds
        iana(82, VARIABLE), // interfaceName
        own(1, VARIABLE),
        own(2, 4),
        own(3, 4),
        own(4, VARIABLE),
        own(5, VARIABLE),
        own(6, VARIABLE),
        own(7, VARIABLE),
        own(8, VARIABLE),
    ]
}

/// Builds messages of at most `max_bytes` for one observation domain, counting the
/// data records sent (each message's sequence number is the count before it).
pub struct Encoder {
    domain: u32,
    enterprise: u32,
    max_bytes: usize,
    sequence: u32,
}

impl Encoder {
    pub fn new(domain: u32, enterprise: u32, max_bytes: usize) -> Encoder {
        Encoder {
            domain,
            enterprise,
            max_bytes,
            sequence: 0,
        }
    }

    /// A new transport session (a TCP reconnect): sequence numbers start again.
    pub fn restart(&mut self) {
        self.sequence = 0;
    }

    /// A message with both templates.
    pub fn templates(&self, export_time: u32) -> Vec<u8> {
        let mut set = Vec::new();
        for (template, v6) in [(IPV4_TEMPLATE, false), (IPV6_TEMPLATE, true)] {
            let fields = fields(v6);
            put16(&mut set, template);
            put16(&mut set, fields.len() as u16);
            for field in fields {
                if field.enterprise {
                    put16(&mut set, field.id | 0x8000);
                    put16(&mut set, field.length);
                    put32(&mut set, self.enterprise);
                } else {
                    put16(&mut set, field.id);
                    put16(&mut set, field.length);
                }
            }
        }
        let mut message = self.header(export_time);
        put_set(&mut message, TEMPLATE_SET, &set);
        finish(message)
    }

    /// The records in as few messages as fit, a data set per template in each.
    pub fn data(&mut self, records: &[FlowRecord], export_time: u32) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        let mut pending: Vec<&FlowRecord> = Vec::new();
        let mut size = HEADER_BYTES + 2 * SET_HEADER_BYTES;
        for record in records {
            let bytes = encoded(record).len();
            if !pending.is_empty() && size + bytes > self.max_bytes {
                messages.push(self.message(&pending, export_time));
                pending.clear();
                size = HEADER_BYTES + 2 * SET_HEADER_BYTES;
            }
            pending.push(record);
            size += bytes;
        }
        if !pending.is_empty() {
            messages.push(self.message(&pending, export_time));
        }
        messages
    }

    fn message(&mut self, records: &[&FlowRecord], export_time: u32) -> Vec<u8> {
        let mut message = self.header(export_time);
        for (template, v6) in [(IPV4_TEMPLATE, false), (IPV6_TEMPLATE, true)] {
            let mut set = Vec::new();
            for record in records.iter().filter(|r| r.source.is_ipv6() == v6) {
                set.extend(encoded(record));
            }
            if !set.is_empty() {
                put_set(&mut message, template, &set);
            }
        }
        self.sequence = self.sequence.wrapping_add(records.len() as u32);
        finish(message)
    }

    fn header(&self, export_time: u32) -> Vec<u8> {
        let mut header = Vec::with_capacity(self.max_bytes.min(65535));
        put16(&mut header, 10);
        put16(&mut header, 0); // the length, once known
        put32(&mut header, export_time);
        put32(&mut header, self.sequence);
        put32(&mut header, self.domain);
        header
    }
}

fn encoded(record: &FlowRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend(record.octets.to_be_bytes());
    out.extend(record.packets.to_be_bytes());
    out.push(record.protocol);
    put16(&mut out, record.source_port);
    put16(&mut out, record.destination_port);
    put_address(&mut out, record.source);
    put_address(&mut out, record.destination);
    out.push(record.direction as u8);
    out.extend(record.start_ms.to_be_bytes());
    out.extend(record.end_ms.to_be_bytes());
    put_text(&mut out, &record.interface);
    put_text(&mut out, &record.process);
    put32(&mut out, record.pid);
    put32(&mut out, record.uid);
    for text in [
        &record.container,
        &record.container_id,
        &record.pod,
        &record.namespace,
        &record.unit,
    ] {
        put_text(&mut out, text);
    }
    out
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend(value.to_be_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend(value.to_be_bytes());
}

fn put_address(out: &mut Vec<u8>, address: IpAddr) {
    match address {
        IpAddr::V4(v4) => out.extend(v4.octets()),
        IpAddr::V6(v6) => out.extend(v6.octets()),
    }
}

/// A variable-length string: its length in one byte, or 255 and two bytes (RFC 7011
/// 7); cut to what one record can hold.
fn put_text(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(1024);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text.as_bytes()[..end];
    if text.len() < 255 {
        out.push(text.len() as u8);
    } else {
        out.push(255);
        put16(out, text.len() as u16);
    }
    out.extend(text);
}

fn put_set(message: &mut Vec<u8>, id: u16, body: &[u8]) {
    put16(message, id);
    put16(message, (body.len() + SET_HEADER_BYTES) as u16);
    message.extend(body);
}

/// Writes the message's length into its header.
fn finish(mut message: Vec<u8>) -> Vec<u8> {
    let length = (message.len() as u16).to_be_bytes();
    message[2..4].copy_from_slice(&length);
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn record(source: IpAddr, destination: IpAddr, process: &str) -> FlowRecord {
        FlowRecord {
            octets: 1_000_000,
            packets: 700,
            protocol: 6,
            source,
            destination,
            source_port: 0,
            destination_port: 443,
            direction: Direction::Egress,
            start_ms: 1_764_000_000_000,
            end_ms: 1_764_000_001_000,
            interface: "eth0".into(),
            process: process.into(),
            pid: 4242,
            uid: 1000,
            container: String::new(),
            container_id: String::new(),
            pod: String::new(),
            namespace: String::new(),
            unit: "backup.service".into(),
        }
    }

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([bytes[at], bytes[at + 1]])
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn templates_name_every_field_and_the_enterprise() {
        let encoder = Encoder::new(7, 32473, 1400);
        let message = encoder.templates(1_764_000_000);
        assert_eq!(u16_at(&message, 0), 10, "IPFIX version");
        assert_eq!(usize::from(u16_at(&message, 2)), message.len());
        assert_eq!(u32_at(&message, 12), 7, "observation domain");
        assert_eq!(u16_at(&message, 16), TEMPLATE_SET);
        assert_eq!(usize::from(u16_at(&message, 18)), message.len() - 16);
        assert_eq!(u16_at(&message, 20), IPV4_TEMPLATE);
        assert_eq!(u16_at(&message, 22), 19, "fields");
        // 11 of IANA's (4 bytes each), 8 of netgraph's (8 bytes each), per template.
        let template_bytes = 4 + 11 * 4 + 8 * 8;
        assert_eq!(message.len(), 16 + 4 + 2 * template_bytes);
        // processName: enterprise bit, element 1, variable length, the enterprise.
        let own_start = 24 + 11 * 4;
        assert_eq!(u16_at(&message, own_start), 0x8001);
        assert_eq!(u16_at(&message, own_start + 2), VARIABLE);
        assert_eq!(u32_at(&message, own_start + 4), 32473);
        assert_eq!(u16_at(&message, 20 + template_bytes), IPV6_TEMPLATE);
    }

    #[test]
    fn records_are_split_by_family_and_size_and_counted_in_sequence() {
        let mut encoder = Encoder::new(0, 32473, 400);
        let v4 = record(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            "restic",
        );
        let v6 = record(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "curl",
        );
        let records = vec![v4.clone(), v6, v4.clone(), v4.clone(), v4];
        let messages = encoder.data(&records, 1);
        assert!(messages.len() > 1, "400 bytes hold few records");
        let mut sequence = 0;
        let mut records_seen = 0;
        for message in &messages {
            assert!(message.len() <= 400);
            assert_eq!(usize::from(u16_at(message, 2)), message.len());
            assert_eq!(u32_at(message, 8), sequence);
            let mut at = 16;
            while at < message.len() {
                let (set, length) = (u16_at(message, at), usize::from(u16_at(message, at + 2)));
                assert!(set == IPV4_TEMPLATE || set == IPV6_TEMPLATE);
                let record_bytes = if set == IPV4_TEMPLATE {
                    encoded(&records[0]).len()
                } else {
                    encoded(&records[1]).len()
                };
                assert_eq!((length - 4) % record_bytes, 0);
                records_seen += (length - 4) / record_bytes;
                at += length;
            }
            sequence = records_seen as u32;
        }
        assert_eq!(records_seen, 5);
        encoder.restart();
        assert_eq!(u32_at(&encoder.data(&records[..1], 1)[0], 8), 0);
    }

    #[test]
    fn a_record_carries_its_fields_in_template_order() {
        let bytes = encoded(&record(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            "restic",
        ));
        assert_eq!(
            u64::from_be_bytes(bytes[0..8].try_into().unwrap()),
            1_000_000
        );
        assert_eq!(bytes[16], 6);
        assert_eq!(u16_at(&bytes, 19), 443);
        assert_eq!(&bytes[21..25], &[10, 0, 0, 1]);
        assert_eq!(&bytes[25..29], &[192, 0, 2, 7]);
        assert_eq!(bytes[29], Direction::Egress as u8);
        assert_eq!(bytes[46], 4, "interfaceName's length");
        assert_eq!(&bytes[47..51], b"eth0");
        assert_eq!(bytes[51], 6);
        assert_eq!(&bytes[52..58], b"restic");
        assert_eq!(u32_at(&bytes, 58), 4242);
        assert_eq!(u32_at(&bytes, 62), 1000);
        let mut long = Vec::new();
        put_text(&mut long, &"x".repeat(300));
        assert_eq!((long[0], u16_at(&long, 1), long.len()), (255, 300, 303));
    }
}

use super::*;
use crate::engine::{SampleKind, SampleSocket};
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, Ipv6Addr};

fn sample(kind: SampleKind, far: IpAddr, payload: Vec<u8>) -> NameSample {
    NameSample {
        kind,
        socket: SampleSocket::Unknown,
        far,
        payload,
    }
}

fn dns(message: Vec<u8>) -> NameSample {
    sample(SampleKind::DnsUdp, IpAddr::V4(Ipv4Addr::LOCALHOST), message)
}

/// An answer to `asked`: a CNAME to a CDN name, then its addresses.
fn answer(asked: &str, addresses: &[IpAddr], ttl: u32) -> Vec<u8> {
    let asked_name = Name::from_ascii(asked).unwrap();
    let cdn = Name::from_ascii("edge.cdn.example.net.").unwrap();
    let mut message = Message::new();
    message.set_message_type(MessageType::Response);
    message.add_query(Query::query(asked_name.clone(), RecordType::A));
    message.add_answer(Record::from_rdata(
        asked_name,
        ttl,
        RData::CNAME(CNAME(cdn.clone())),
    ));
    for address in addresses {
        let data = match address {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        message.add_answer(Record::from_rdata(cdn.clone(), ttl, data));
    }
    message.to_vec().unwrap()
}

const BACKUP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const MIRROR: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

#[test]
fn addresses_are_named_as_the_process_asked() {
    let mut names = PeerNames::default();
    let now = Instant::now();
    names.learn(
        &[(
            Some(42),
            dns(answer("backup.example.org.", &[BACKUP, MIRROR], 300)),
        )],
        now,
    );
    assert_eq!(
        names.name(Some(42), BACKUP, now).as_deref(),
        Some("backup.example.org")
    );
    assert_eq!(
        names.name(Some(42), MIRROR, now).as_deref(),
        Some("backup.example.org")
    );
    // Another process, or none, gets the latest answer for the address.
    assert_eq!(
        names.name(Some(7), BACKUP, now).as_deref(),
        Some("backup.example.org")
    );
    names.learn(
        &[(Some(7), dns(answer("static.example.org.", &[BACKUP], 300)))],
        now,
    );
    assert_eq!(
        names.name(Some(42), BACKUP, now).as_deref(),
        Some("backup.example.org")
    );
    assert_eq!(
        names.name(Some(7), BACKUP, now).as_deref(),
        Some("static.example.org")
    );
    assert_eq!(
        names.name(None, BACKUP, now).as_deref(),
        Some("static.example.org")
    );
}

#[test]
fn names_expire_after_their_ttl_once_unused_and_garbage_is_ignored() {
    let mut names = PeerNames::default();
    let now = Instant::now();
    names.learn(
        &[
            (None, dns(answer("short.example.org.", &[BACKUP], 5))),
            (None, dns(vec![0xff; 40])),
            (None, dns(Vec::new())),
        ],
        now,
    );
    assert!(names.name(None, BACKUP, now).is_some());
    names.expire(now + GRACE - Duration::from_secs(1));
    assert!(
        names.name(None, BACKUP, now).is_some(),
        "used within the grace"
    );
    names.expire(now + GRACE + Duration::from_secs(1));
    assert!(names.name(None, BACKUP, now).is_none());
}

#[test]
fn dns_over_tcp_is_read_message_by_message() {
    let mut stream = Vec::new();
    for (asked, address) in [("one.example.org.", BACKUP), ("two.example.org.", MIRROR)] {
        let message = answer(asked, &[address], 60);
        stream.extend_from_slice(&u16::try_from(message.len()).unwrap().to_be_bytes());
        stream.extend_from_slice(&message);
    }
    // A third message cut short by the sample's end is left out.
    stream.extend_from_slice(&[0x01, 0x00, 0xab]);
    let mut names = PeerNames::default();
    let now = Instant::now();
    let far = IpAddr::V4(Ipv4Addr::LOCALHOST);
    names.learn(&[(Some(3), sample(SampleKind::DnsTcp, far, stream))], now);
    assert_eq!(
        names.name(Some(3), BACKUP, now).as_deref(),
        Some("one.example.org")
    );
    assert_eq!(
        names.name(Some(3), MIRROR, now).as_deref(),
        Some("two.example.org")
    );
}

/// A ClientHello as OpenSSL 3 sends it for `openssl s_client -servername`.
fn client_hello(server_name: &str) -> Vec<u8> {
    let name = server_name.as_bytes();
    let mut sni = Vec::new();
    sni.extend_from_slice(&u16::try_from(name.len() + 3).unwrap().to_be_bytes());
    sni.push(0); // host_name
    sni.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
    sni.extend_from_slice(name);
    let mut extensions = vec![0x00, 0x00];
    extensions.extend_from_slice(&u16::try_from(sni.len()).unwrap().to_be_bytes());
    extensions.extend_from_slice(&sni);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn a_client_hello_names_the_server_it_went_to() {
    let mut names = PeerNames::default();
    let now = Instant::now();
    let hello = client_hello("Files.Example.org");
    let cut = hello[..hello.len() - 4].to_vec();
    names.learn(
        &[
            (Some(9), sample(SampleKind::TlsHello, BACKUP, hello)),
            // Cut short, or not TLS at all: nothing learnt, nothing broken.
            (Some(9), sample(SampleKind::TlsHello, MIRROR, cut)),
            (Some(9), sample(SampleKind::TlsHello, MIRROR, vec![0x16; 9])),
        ],
        now,
    );
    assert_eq!(
        names.name(Some(9), BACKUP, now).as_deref(),
        Some("files.example.org")
    );
    assert_eq!(names.name(None, MIRROR, now), None);
}

#[test]
fn internationalized_names_stay_in_their_ascii_form() {
    let mut names = PeerNames::default();
    let now = Instant::now();
    // "аррӏе.example" in Cyrillic letters: shown as the wire carried it, never as the
    // look-alike of another name.
    names.learn(
        &[(
            Some(7),
            dns(answer("xn--80ak6aa92e.example.", &[BACKUP], 300)),
        )],
        now,
    );
    assert_eq!(
        names.name(Some(7), BACKUP, now).as_deref(),
        Some("xn--80ak6aa92e.example")
    );
}

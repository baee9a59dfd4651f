use super::*;
use hickory_proto::op::{MessageType, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, Record, RecordType};
use std::net::{Ipv4Addr, Ipv6Addr};

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
        &[DnsAnswer {
            pid: Some(42),
            message: answer("backup.example.org.", &[BACKUP, MIRROR], 300),
        }],
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
        &[DnsAnswer {
            pid: Some(7),
            message: answer("static.example.org.", &[BACKUP], 300),
        }],
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
            DnsAnswer {
                pid: None,
                message: answer("short.example.org.", &[BACKUP], 5),
            },
            DnsAnswer {
                pid: None,
                message: vec![0xff; 40],
            },
            DnsAnswer {
                pid: None,
                message: Vec::new(),
            },
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

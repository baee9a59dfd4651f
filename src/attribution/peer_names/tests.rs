use super::*;
use crate::engine::{Conversation, DnsTransport, SampleKind, SampleSocket};
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::net::{Ipv4Addr, Ipv6Addr};

const RESOLVER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53));
/// The socket the tests' queries go out of and answers come back to.
const SOCKET: Conversation = Conversation::Socket {
    cookie: 77,
    server: RESOLVER,
};
const ID: u16 = 0x5eed;

fn sample(kind: SampleKind, far: IpAddr, payload: Vec<u8>) -> NameSample {
    NameSample {
        kind,
        socket: SampleSocket::Unknown,
        far,
        conversation: SOCKET,
        payload,
    }
}

fn udp(kind: fn(DnsTransport) -> SampleKind, message: Vec<u8>) -> NameSample {
    sample(kind(DnsTransport::Udp), RESOLVER, message)
}

/// A lookup over UDP: the query the process sent, then the answer it received.
fn lookup(asked: &str, addresses: &[IpAddr], ttl: u32) -> [NameSample; 2] {
    [
        udp(SampleKind::DnsQuery, query(asked, ID)),
        udp(SampleKind::DnsAnswer, answer(asked, addresses, ttl)),
    ]
}

/// Each sample of `samples` as passing the socket of `pid`.
fn of(
    pid: Option<u32>,
    samples: impl IntoIterator<Item = NameSample>,
) -> Vec<(Option<u32>, NameSample)> {
    samples.into_iter().map(|s| (pid, s)).collect()
}

fn query(asked: &str, id: u16) -> Vec<u8> {
    let mut message = Message::new();
    message.set_id(id);
    message.set_message_type(MessageType::Query);
    message.add_query(Query::query(
        Name::from_ascii(asked).unwrap(),
        RecordType::A,
    ));
    message.to_vec().unwrap()
}

/// An answer to `asked`: a CNAME to a CDN name, then its addresses.
fn answer(asked: &str, addresses: &[IpAddr], ttl: u32) -> Vec<u8> {
    let asked_name = Name::from_ascii(asked).unwrap();
    let cdn = Name::from_ascii("edge.cdn.example.net.").unwrap();
    let mut message = Message::new();
    message.set_id(ID);
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
        &of(
            Some(42),
            lookup("backup.example.org.", &[BACKUP, MIRROR], 300),
        ),
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
        &of(Some(7), lookup("static.example.org.", &[BACKUP], 300)),
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
    let [asked, answered] = lookup("short.example.org.", &[BACKUP], 5);
    names.learn(
        &of(
            None,
            [
                asked,
                udp(SampleKind::DnsQuery, vec![0xff; 40]),
                udp(SampleKind::DnsAnswer, vec![0xff; 40]),
                udp(SampleKind::DnsAnswer, Vec::new()),
                answered,
            ],
        ),
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
    let (mut queries, mut answers) = (Vec::new(), Vec::new());
    for (id, asked, address) in [
        (1u16, "one.example.org.", BACKUP),
        (2, "two.example.org.", MIRROR),
    ] {
        for (stream, mut message) in [
            (&mut queries, query(asked, ID)),
            (&mut answers, answer(asked, &[address], 60)),
        ] {
            message[..2].copy_from_slice(&id.to_be_bytes());
            stream.extend_from_slice(&u16::try_from(message.len()).unwrap().to_be_bytes());
            stream.extend_from_slice(&message);
        }
    }
    // A third message cut short by the sample's end is left out.
    answers.extend_from_slice(&[0x01, 0x00, 0xab]);
    let mut names = PeerNames::default();
    let now = Instant::now();
    let tcp = |kind: fn(DnsTransport) -> SampleKind, stream| {
        sample(kind(DnsTransport::Tcp), RESOLVER, stream)
    };
    names.learn(
        &of(
            Some(3),
            [
                tcp(SampleKind::DnsQuery, queries),
                tcp(SampleKind::DnsAnswer, answers),
            ],
        ),
        now,
    );
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
        &of(Some(7), lookup("xn--80ak6aa92e.example.", &[BACKUP], 300)),
        now,
    );
    assert_eq!(
        names.name(Some(7), BACKUP, now).as_deref(),
        Some("xn--80ak6aa92e.example")
    );
}

#[test]
fn only_answers_to_this_hosts_own_queries_name_addresses() {
    let mut names = PeerNames::default();
    let now = Instant::now();
    let spoofed = |asked: &str| udp(SampleKind::DnsAnswer, answer(asked, &[BACKUP], 300));
    // No query at all, over UDP and TCP.
    let mut stream = Vec::new();
    let message = answer("spoofed-by-tcp.example.", &[BACKUP], 300);
    stream.extend_from_slice(&u16::try_from(message.len()).unwrap().to_be_bytes());
    stream.extend_from_slice(&message);
    names.learn(
        &of(
            Some(1),
            [
                spoofed("spoofed-by-udp.example."),
                sample(SampleKind::DnsAnswer(DnsTransport::Tcp), RESOLVER, stream),
            ],
        ),
        now,
    );
    assert_eq!(names.name(Some(1), BACKUP, now), None);
    // A query, then answers that do not answer it: another id, another question,
    // another socket, and one that comes too late.
    names.learn(
        &of(
            Some(1),
            [udp(SampleKind::DnsQuery, query("files.example.", ID))],
        ),
        now,
    );
    let mut other_id = spoofed("files.example.");
    other_id.payload[..2].copy_from_slice(&(ID ^ 1).to_be_bytes());
    let mut other_socket = spoofed("files.example.");
    other_socket.conversation = Conversation::Socket {
        cookie: 78,
        server: RESOLVER,
    };
    names.learn(
        &of(Some(1), [other_id, spoofed("other.example."), other_socket]),
        now,
    );
    assert_eq!(names.name(Some(1), BACKUP, now), None);
    let late = now + Duration::from_secs(31);
    names.learn(&of(Some(1), [spoofed("files.example.")]), late);
    assert_eq!(names.name(Some(1), BACKUP, late), None);
    assert_eq!(names.queries.unsolicited, 6);
    // The real exchange names it, once: a second answer to the same query does not.
    names.learn(&of(Some(1), lookup("Files.Example.", &[BACKUP], 300)), late);
    assert_eq!(
        names.name(Some(1), BACKUP, late).as_deref(),
        Some("Files.Example")
    );
    names.learn(&of(Some(1), [spoofed("files.example.")]), late);
    assert_eq!(names.queries.unsolicited, 7);
}

/// An answer naming a loopback or link-local address names it for the process that
/// asked only: a browser on 127.0.0.1 is not "files.example.test" because a test
/// resolver said so to someone else (and the capture engine, which cannot tell who
/// asked, takes no such name).
#[test]
fn host_local_addresses_are_named_only_for_the_process_that_asked() {
    let mut names = PeerNames::default();
    let now = Instant::now();
    let loopback = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let link = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 7));
    names.learn(
        &of(
            Some(42),
            lookup("files.example.test.", &[loopback, link], 300),
        ),
        now,
    );
    for address in [loopback, link] {
        assert_eq!(
            names.name(Some(42), address, now).as_deref(),
            Some("files.example.test")
        );
        assert_eq!(names.name(Some(7), address, now), None);
        assert_eq!(names.name(None, address, now), None);
    }
    names.learn(
        &of(None, lookup("files.example.test.", &[loopback], 300)),
        now,
    );
    assert_eq!(names.name(None, loopback, now), None, "capture engine");
}

/// What a run hands the store is what the next run names with: each process's own
/// name and every process's, until the later of its TTL and a grace past its use;
/// a host-local address only for the process that asked.
#[test]
fn names_handed_to_the_store_name_peers_after_a_restart() {
    let now = Instant::now();
    let unix = 1_800_000_000;
    let loopback = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let mut first = PeerNames::default();
    first.learn(
        &of(Some(42), lookup("files.example.test.", &[BACKUP], 60)),
        now,
    );
    first.learn(
        &of(Some(42), lookup("local.example.test.", &[loopback], 60)),
        now,
    );
    let mut kept = first.remembered(now, unix);
    kept.sort_by_key(|n| (n.address.to_string(), n.pid));
    let seen: Vec<(String, Option<u32>, &str, i64)> = kept
        .iter()
        .map(|n| (n.address.to_string(), n.pid, &*n.name, n.until - unix))
        .collect();
    // A 60-s TTL is kept for the grace (600 s) that unused traffic keeps it here.
    assert_eq!(
        seen,
        [
            ("127.0.0.1".into(), Some(42), "local.example.test", 600),
            ("192.0.2.10".into(), None, "files.example.test", 600),
            ("192.0.2.10".into(), Some(42), "files.example.test", 600),
        ]
    );
    assert!(first.remembered(now, unix).is_empty(), "handed over once");

    // Used for four minutes: told again, a grace past the use.
    let later = now + Duration::from_secs(400);
    assert!(first.name(Some(42), BACKUP, later).is_some());
    let refreshed = first.remembered(later, unix + 400);
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
    assert_eq!(refreshed[0].until, unix + 400 + 600);

    // A new run (a little later on both clocks) names with what the store kept.
    let restart = now + Duration::from_secs(30);
    let mut second = PeerNames::default();
    second.restore(kept.clone(), restart, unix + 30);
    assert_eq!(
        second.name(Some(7), BACKUP, restart).as_deref(),
        Some("files.example.test")
    );
    assert_eq!(
        second.name(Some(42), loopback, restart).as_deref(),
        Some("local.example.test")
    );
    assert_eq!(second.name(Some(7), loopback, restart), None);
    // Past what was kept, and unused: gone.
    let gone = restart + Duration::from_secs(600);
    second.expire(gone);
    assert_eq!(second.name(Some(7), BACKUP, gone), None);

    // Names already past their time, or every process's for a host-local address
    // (a damaged or hand-edited store), are not taken up.
    let mut third = PeerNames::default();
    let stale = RememberedName {
        address: BACKUP,
        pid: None,
        name: "stale.example.test".into(),
        until: unix - 1,
    };
    let forged = RememberedName {
        address: loopback,
        pid: None,
        name: "forged.example.test".into(),
        until: unix + 600,
    };
    third.restore(vec![stale, forged], now, unix);
    assert_eq!(third.name(Some(7), BACKUP, now), None);
    assert_eq!(third.name(Some(7), loopback, now), None);
}

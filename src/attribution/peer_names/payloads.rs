//! Reading the payloads engines sample: DNS messages (over UDP, or TCP's
//! length-prefixed messages) with the names their answers give addresses, and the
//! server name of TLS ClientHellos.

use crate::engine::{DnsTransport, NameSample};
use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a server name from a ClientHello stands (it carries no TTL): about as long
/// as a typical DNS answer's, renewed while the connection is in use (see GRACE).
pub const SERVER_NAME_TTL: Duration = Duration::from_secs(300);

/// A name for an address, and how long it holds.
pub type Named = (IpAddr, Arc<str>, Duration);

/// The DNS messages of a sample: one over UDP, each whole one over TCP.
pub fn dns_messages(transport: DnsTransport, payload: &[u8]) -> Vec<Message> {
    match transport {
        DnsTransport::Udp => Message::from_vec(payload).into_iter().collect(),
        DnsTransport::Tcp => dns_over_tcp(payload),
    }
}

/// Every A and AAAA record of an answer, named after the question (so a CNAME chain
/// names the address as the process asked).
pub fn answer_names(message: &Message) -> Vec<Named> {
    let Some(question) = message.queries().first() else {
        return Vec::new();
    };
    // As the wire carried it: an internationalized name stays in its ASCII (punycode)
    // form, so that no look-alike (Cyrillic "аррӏе" for "apple") is shown as another.
    let asked = question.name().to_ascii();
    let name: Arc<str> = Arc::from(asked.trim_end_matches('.'));
    message
        .answers()
        .iter()
        .filter_map(|record| {
            let address = match record.data() {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(aaaa) => IpAddr::V6(aaaa.0),
                _ => return None,
            };
            let ttl = Duration::from_secs(u64::from(record.ttl()));
            Some((crate::traffic::canonical_ip(address), name.clone(), ttl))
        })
        .collect()
}

/// DNS over TCP: each message behind its two-byte length; a message cut short by the
/// sample's end is left out.
fn dns_over_tcp(mut stream: &[u8]) -> Vec<Message> {
    let mut messages = Vec::new();
    while let [high, low, rest @ ..] = stream {
        let length = usize::from(u16::from_be_bytes([*high, *low]));
        let Some(message) = rest.get(..length) else {
            break;
        };
        messages.extend(Message::from_vec(message));
        stream = &rest[length..];
    }
    messages
}

/// The name a ClientHello names its server by, for as long as SERVER_NAME_TTL.
pub fn hello_names(sample: &NameSample) -> Vec<Named> {
    server_name(&sample.payload)
        .map(|name| vec![(sample.far, name, SERVER_NAME_TTL)])
        .unwrap_or_default()
}

/// The host name a ClientHello asks for (its `server_name` extension).
fn server_name(record: &[u8]) -> Option<Arc<str>> {
    use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
    let (_, plaintext) = tls_parser::parse_tls_plaintext(record).ok()?;
    let hello = plaintext.msg.iter().find_map(|message| match message {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => Some(hello),
        _ => None,
    })?;
    let (_, extensions) = tls_parser::parse_tls_extensions(hello.ext?).ok()?;
    extensions.iter().find_map(|extension| match extension {
        TlsExtension::SNI(names) => names.iter().find_map(|(kind, name)| {
            // Type 0 is a host name; it must be printable to be one.
            let name = std::str::from_utf8(name).ok()?;
            let printable = name.bytes().all(|b| b.is_ascii_graphic());
            (kind.0 == 0 && printable && !name.is_empty())
                .then(|| Arc::from(name.to_ascii_lowercase()))
        }),
        _ => None,
    })
}

//! Unsolicited DNS answers, as anyone on a host can send them: a datagram or a TCP
//! connection from port 53 carrying an answer that names an address, with no query.

use crate::{addr, Result};
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::Write;
use std::net::{IpAddr, TcpStream, UdpSocket};
use std::time::Duration;

fn answer(name: &str, address: &str) -> Result<Vec<u8>> {
    let name = Name::from_ascii(name).map_err(|e| e.to_string())?;
    let IpAddr::V4(address) = address.parse::<IpAddr>().map_err(|e| e.to_string())? else {
        return Err("an IPv4 address".into());
    };
    let mut message = Message::new();
    message.set_id(0x5eed);
    message.set_message_type(MessageType::Response);
    message.add_query(Query::query(name.clone(), RecordType::A));
    message.add_answer(Record::from_rdata(name, 300, RData::A(A(address))));
    message.to_vec().map_err(|e| e.to_string())
}

/// Sends from FROM (an address with port 53) to TO an answer naming ADDRESS as NAME,
/// over `udp` or `tcp` (a connection held a second, then closed).
pub fn spoof(transport: &str, from: &str, to: &str, name: &str, address: &str) -> Result {
    let (from, to) = (addr(from)?, addr(to)?);
    let message = answer(name, address)?;
    match transport {
        "udp" => {
            let socket = UdpSocket::bind(from).map_err(|e| e.to_string())?;
            socket.send_to(&message, to).map_err(|e| e.to_string())?;
        }
        "tcp" => {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(from),
                socket2::Type::STREAM,
                None,
            )
            .map_err(|e| e.to_string())?;
            socket.set_reuse_address(true).map_err(|e| e.to_string())?;
            socket.bind(&from.into()).map_err(|e| e.to_string())?;
            socket.connect(&to.into()).map_err(|e| e.to_string())?;
            let mut stream: TcpStream = socket.into();
            let mut framed = u16::try_from(message.len()).unwrap().to_be_bytes().to_vec();
            framed.extend_from_slice(&message);
            stream.write_all(&framed).map_err(|e| e.to_string())?;
            std::thread::sleep(Duration::from_secs(1));
        }
        other => return Err(format!("transport udp or tcp, not {other:?}")),
    }
    println!("bytes={}", message.len());
    Ok(())
}

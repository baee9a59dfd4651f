//! Traffic generator for the namespace test lab. The tests copy this binary under a
//! distinct name per workload, so each workload is a distinctly named process.
//!
//! Every command prints what it moved as `bytes=N` (payload bytes) on stdout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: labtraffic COMMAND ARGS
  tcp-sink ADDR                 accept connections forever, read and discard
  tcp-send ADDR BYTES|SECONDSs  connect, send that many bytes or for that long
  tcp-source ADDR SECONDS       accept one connection, send to it for that long
  tcp-recv ADDR                 connect, read until the peer closes
  udp-echo ADDR                 echo every datagram back
  udp-ping ADDR COUNT SIZE      unconnected socket: send COUNT datagrams, read the echoes
  short-lived ADDR COUNT BYTES  run COUNT processes one after another, each `tcp-send ADDR BYTES`
  inject IFACE COUNT            send COUNT of each kind of malformed frame on IFACE";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let result = match arg(1) {
        "tcp-sink" => tcp_sink(arg(2)),
        "tcp-send" => tcp_send(arg(2), arg(3)),
        "tcp-source" => tcp_source(arg(2), arg(3)),
        "tcp-recv" => tcp_recv(arg(2)),
        "udp-echo" => udp_echo(arg(2)),
        "udp-ping" => udp_ping(arg(2), arg(3), arg(4)),
        "short-lived" => short_lived(&args[0], arg(2), arg(3), arg(4)),
        "inject" => inject(arg(2), arg(3)),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("labtraffic: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn addr(text: &str) -> Result<SocketAddr> {
    text.parse()
        .map_err(|e| format!("bad address {text:?}: {e}"))
}

fn number(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|e| format!("bad number {text:?}: {e}"))
}

fn tcp_sink(bind: &str) -> Result {
    let listener = TcpListener::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 1 << 16];
            while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
        });
    }
    Ok(())
}

/// Sends until `amount` bytes (a number) or seconds (a number with an `s`) are done.
fn send_stream(stream: &mut TcpStream, amount: &str) -> Result<u64> {
    let buffer = vec![0x5au8; 1 << 16];
    let mut sent = 0u64;
    if let Some(seconds) = amount.strip_suffix('s') {
        let until = Instant::now() + Duration::from_secs(number(seconds)?);
        while Instant::now() < until {
            sent += stream.write(&buffer).map_err(|e| e.to_string())? as u64;
        }
    } else {
        let total = number(amount)?;
        while sent < total {
            let chunk = (total - sent).min(buffer.len() as u64) as usize;
            sent += stream.write(&buffer[..chunk]).map_err(|e| e.to_string())? as u64;
        }
    }
    Ok(sent)
}

fn tcp_send(target: &str, amount: &str) -> Result {
    let mut stream = TcpStream::connect(addr(target)?).map_err(|e| e.to_string())?;
    let sent = send_stream(&mut stream, amount)?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    // Wait for the peer's close, so every byte is on the wire before we exit.
    let mut rest = [0u8; 64];
    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    println!("bytes={sent}");
    Ok(())
}

fn tcp_source(bind: &str, seconds: &str) -> Result {
    let listener = TcpListener::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let sent = send_stream(&mut stream, &format!("{seconds}s"))?;
    println!("bytes={sent}");
    Ok(())
}

fn tcp_recv(target: &str) -> Result {
    let mut stream = TcpStream::connect(addr(target)?).map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) => return Err(e.to_string()),
        }
    }
    println!("bytes={received}");
    Ok(())
}

fn udp_echo(bind: &str) -> Result {
    let socket = UdpSocket::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let (n, from) = socket.recv_from(&mut buffer).map_err(|e| e.to_string())?;
        let _ = socket.send_to(&buffer[..n], from);
    }
}

fn udp_ping(target: &str, count: &str, size: &str) -> Result {
    let target = addr(target)?;
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let socket = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let payload = vec![0x42u8; number(size)? as usize];
    let mut buffer = vec![0u8; 1 << 16];
    let (mut sent, mut echoed) = (0u64, 0u64);
    for _ in 0..number(count)? {
        sent += socket
            .send_to(&payload, target)
            .map_err(|e| e.to_string())? as u64;
        if let Ok((n, _)) = socket.recv_from(&mut buffer) {
            echoed += n as u64;
        }
    }
    println!("bytes={sent} echoed={echoed}");
    Ok(())
}

fn short_lived(myself: &str, target: &str, count: &str, bytes: &str) -> Result {
    let mut total = 0u64;
    for _ in 0..number(count)? {
        let output = Command::new(myself)
            .args(["tcp-send", target, bytes])
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        total += number(bytes)?;
    }
    println!("bytes={total}");
    Ok(())
}

/// Malformed frames, each of a different fault, sent raw on an Ethernet interface.
fn malformed_frames() -> Vec<Vec<u8>> {
    let ethernet = |ether_type: u16, payload: &[u8]| {
        let mut frame = vec![0xff; 6]; // broadcast, so the peer takes it
        frame.extend([0x02, 0, 0, 0, 0, 1]);
        frame.extend(ether_type.to_be_bytes());
        frame.extend(payload);
        frame
    };
    let ipv4 = |ihl_byte: u8, total_len: u16, protocol: u8, rest: &[u8]| {
        let mut header = vec![ihl_byte, 0];
        header.extend(total_len.to_be_bytes());
        header.extend([0, 0, 0, 0, 64, protocol, 0, 0, 10, 99, 0, 1, 10, 99, 0, 2]);
        header.extend(rest);
        header
    };
    let ipv6 = |payload_len: u16, rest: &[u8]| {
        let mut header = vec![0x60, 0, 0, 0];
        header.extend(payload_len.to_be_bytes());
        header.extend([17, 64]);
        header.extend(
            [0xfd, 0x99]
                .iter()
                .chain([0u8; 13].iter())
                .chain([1u8].iter()),
        );
        header.extend(
            [0xfd, 0x99]
                .iter()
                .chain([0u8; 13].iter())
                .chain([2u8].iter()),
        );
        header.extend(rest);
        header
    };
    vec![
        // IPv4 header cut short.
        ethernet(0x0800, &[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]),
        // IPv4 header length below the minimum of 5 words.
        ethernet(0x0800, &ipv4(0x43, 40, 6, &[0; 20])),
        // IPv4 total length far beyond the frame.
        ethernet(0x0800, &ipv4(0x45, 1000, 17, &[0; 8])),
        // TCP header cut short inside a complete IPv4 packet.
        ethernet(0x0800, &ipv4(0x45, 28, 6, &[0; 8])),
        // IPv6 header cut short.
        ethernet(0x86dd, &[0x60, 0, 0, 0, 0, 8, 17, 64, 0xfd, 0x99]),
        // IPv6 payload length far beyond the frame.
        ethernet(0x86dd, &ipv6(1000, &[0; 8])),
    ]
}

fn inject(interface: &str, count: &str) -> Result {
    let count = number(count)?;
    let name = std::ffi::CString::new(interface).map_err(|e| e.to_string())?;
    // SAFETY: plain libc calls with owned, correctly sized arguments.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        if index == 0 {
            return Err(format!("no interface {interface}"));
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        let mut address: libc::sockaddr_ll = std::mem::zeroed();
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = index as i32;
        address.sll_halen = 6;
        let mut sent = 0u64;
        for _ in 0..count {
            for frame in malformed_frames() {
                let n = libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&address as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                if n < 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
                sent += 1;
            }
        }
        libc::close(fd);
        println!("frames={sent}");
    }
    Ok(())
}

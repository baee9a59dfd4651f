//! UDP workloads: request/response, and floods through send, sendto and sendmmsg.

use crate::{addr, check, number, Result};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Datagrams per sendmmsg / recvmmsg call.
const BATCH: usize = 64;

fn unbound_for(target: SocketAddr) -> Result<UdpSocket> {
    let any: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    UdpSocket::bind(any).map_err(|e| e.to_string())
}

pub fn echo(bind: &str) -> Result {
    let socket = UdpSocket::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let (n, from) = socket.recv_from(&mut buffer).map_err(|e| e.to_string())?;
        let _ = socket.send_to(&buffer[..n], from);
    }
}

/// Sends COUNT datagrams, each answered by the echo server; unconnected unless asked.
/// With HOLD_MS the socket stays open that long after the last echo, so that an
/// engine which names processes from /proc finds even a fast run on a loaded host.
pub fn ping(target: &str, count: &str, size: &str, mode: &str, hold_ms: &str) -> Result {
    let target = addr(target)?;
    let socket = unbound_for(target)?;
    let connected = mode == "connected";
    if connected {
        socket.connect(target).map_err(|e| e.to_string())?;
    }
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let payload = vec![0x42u8; number(size)? as usize];
    let mut buffer = vec![0u8; 1 << 16];
    let (mut sent, mut echoed) = (0u64, 0u64);
    for _ in 0..number(count)? {
        sent += if connected {
            socket.send(&payload)
        } else {
            socket.send_to(&payload, target)
        }
        .map_err(|e| e.to_string())? as u64;
        if let Ok(n) = socket.recv(&mut buffer) {
            echoed += n as u64;
        }
    }
    if !hold_ms.is_empty() {
        std::thread::sleep(Duration::from_millis(number(hold_ms)?));
    }
    println!("bytes={sent} echoed={echoed}");
    Ok(())
}

/// One message header per iovec, for sendmmsg/recvmmsg.
fn message_headers(iovecs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is valid; we fill in the one iovec.
            let mut message: libc::mmsghdr = unsafe { std::mem::zeroed() };
            message.msg_hdr.msg_iov = iov;
            message.msg_hdr.msg_iovlen = 1;
            message
        })
        .collect()
}

fn sendmmsg(socket: &UdpSocket, payload: &[u8]) -> Result<usize> {
    let mut iovecs: Vec<libc::iovec> = (0..BATCH)
        .map(|_| libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        })
        .collect();
    let mut messages = message_headers(&mut iovecs);
    // SAFETY: messages point at live iovecs over a live payload.
    let sent =
        check(
            unsafe { libc::sendmmsg(socket.as_raw_fd(), messages.as_mut_ptr(), BATCH as u32, 0) }
                as isize,
        )?;
    Ok(sent * payload.len())
}

/// Sends one datagram of SIZE every 10 ms for SECONDS: steady traffic for long tests.
pub fn trickle(target: &str, seconds: &str, size: &str) -> Result {
    let target = addr(target)?;
    let socket = unbound_for(target)?;
    socket.connect(target).map_err(|e| e.to_string())?;
    let payload = vec![0x33u8; number(size)? as usize];
    let deadline = Instant::now() + Duration::from_secs(number(seconds)?);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        sent += socket.send(&payload).unwrap_or(0) as u64;
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("bytes={sent}");
    Ok(())
}

/// One datagram of SIZE to each of COUNT IPv4 addresses from FIRST on (FIRST, FIRST+1,
/// ...), port PORT, from one unconnected socket: a scanner's traffic. The socket stays
/// open a second after, long enough for the capture engine to find its owner.
pub fn spray(first: &str, count: &str, port: &str, size: &str) -> Result {
    let first: std::net::Ipv4Addr = first.parse().map_err(|e| format!("bad {first:?}: {e}"))?;
    let port = number(port)? as u16;
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let payload = vec![0x5au8; number(size)? as usize];
    let mut sent = 0u64;
    for n in 0..number(count)? as u32 {
        let target = SocketAddr::from((std::net::Ipv4Addr::from(u32::from(first) + n), port));
        sent += socket.send_to(&payload, target).unwrap_or(0) as u64;
    }
    std::thread::sleep(Duration::from_secs(1));
    println!("bytes={sent}");
    Ok(())
}

/// Sends COUNT datagrams of SIZE from one unconnected socket, alternately to FIRST and
/// SECOND (two routes, so two interfaces), and exits at once: the socket is closed with
/// its last datagrams only just counted.
pub fn alternate(first: &str, second: &str, count: &str, size: &str) -> Result {
    let targets = [addr(first)?, addr(second)?];
    let socket = unbound_for(targets[0])?;
    let payload = vec![0x3cu8; number(size)? as usize];
    let mut sent = 0u64;
    for n in 0..number(count)? {
        let target = targets[(n % 2) as usize];
        sent += socket
            .send_to(&payload, target)
            .map_err(|e| e.to_string())? as u64;
    }
    println!("bytes={sent}");
    Ok(())
}

/// Sends datagrams of SIZE as fast as it can for SECONDS; send errors such as a full
/// buffer are skipped, only what the kernel took is counted.
pub fn flood(target: &str, seconds: &str, size: &str, mode: &str) -> Result {
    let target = addr(target)?;
    let socket = unbound_for(target)?;
    if mode != "unconnected" {
        socket.connect(target).map_err(|e| e.to_string())?;
    }
    if mode == "gso" {
        // UDP_SEGMENT: the kernel cuts each send into 1,400-byte datagrams.
        let segment: libc::c_int = 1400;
        // SAFETY: setsockopt with a pointer to an int that outlives the call.
        let done = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&segment as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if done != 0 {
            return Err(format!("UDP_SEGMENT: {}", std::io::Error::last_os_error()));
        }
    }
    let payload = vec![0x17u8; number(size)? as usize];
    let deadline = Instant::now() + Duration::from_secs(number(seconds)?);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for _ in 0..256 {
            sent += match mode {
                "connected" | "gso" => socket.send(&payload).unwrap_or(0),
                "unconnected" => socket.send_to(&payload, target).unwrap_or(0),
                "mmsg" => sendmmsg(&socket, &payload).unwrap_or(0),
                other => return Err(format!("unknown flood mode {other}")),
            } as u64;
        }
    }
    println!("bytes={sent}");
    Ok(())
}

fn recvmmsg(socket: &UdpSocket, buffers: &mut [Vec<u8>]) -> Result<usize> {
    let mut iovecs: Vec<libc::iovec> = buffers
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    let mut messages = message_headers(&mut iovecs);
    // SAFETY: messages point at live iovecs over live buffers.
    let count = check(unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            messages.as_mut_ptr(),
            messages.len() as u32,
            libc::MSG_WAITFORONE,
            std::ptr::null_mut(),
        )
    } as isize)?;
    Ok(messages[..count].iter().map(|m| m.msg_len as usize).sum())
}

/// Receives forever, through recv or recvmmsg.
pub fn sink(bind: &str, mode: &str) -> Result {
    let socket = UdpSocket::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    let mut buffers = vec![vec![0u8; 2048]; BATCH];
    loop {
        match mode {
            "mmsg" => recvmmsg(&socket, &mut buffers)?,
            _ => socket.recv(&mut buffers[0]).map_err(|e| e.to_string())?,
        };
    }
}

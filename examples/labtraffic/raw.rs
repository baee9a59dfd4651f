//! A raw IP socket of an unassigned protocol (253, for experiments), both ways.

use crate::{addr, check, number, Result};
use std::net::{IpAddr, SocketAddr};

const PROTOCOL: i32 = 253;

fn raw_socket() -> Result<i32> {
    // SAFETY: a plain socket call.
    Ok(check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, PROTOCOL) } as isize)? as i32)
}

fn sockaddr(ip: IpAddr) -> Result<libc::sockaddr_in> {
    let IpAddr::V4(v4) = ip else {
        return Err("raw workload is IPv4 only".into());
    };
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut address: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    address.sin_family = libc::AF_INET as u16;
    address.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
    Ok(address)
}

fn send_to(fd: i32, payload: &[u8], to: &libc::sockaddr_in) -> Result<usize> {
    // SAFETY: payload and address are live for the call.
    check(unsafe {
        libc::sendto(
            fd,
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    })
}

/// Sends COUNT packets and reads the echoes (each arrives with its IP header).
pub fn ping(target: &str, count: &str, size: &str) -> Result {
    let target: SocketAddr = addr(&format!("{target}:0"))?;
    let fd = raw_socket()?;
    let to = sockaddr(target.ip())?;
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setting a receive timeout from a live timeval.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let payload = vec![0x33u8; number(size)? as usize];
    let mut buffer = vec![0u8; 65536];
    let (mut sent, mut echoed) = (0u64, 0u64);
    for _ in 0..number(count)? {
        sent += send_to(fd, &payload, &to)? as u64;
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if n > 0 {
            echoed += n as u64;
        }
    }
    println!("bytes={sent} echoed={echoed}");
    Ok(())
}

/// Echoes every protocol-253 packet's payload back to its sender.
pub fn echo() -> Result {
    let fd = raw_socket()?;
    println!("listening");
    let mut buffer = vec![0u8; 65536];
    loop {
        // SAFETY: an all-zero sockaddr_in is valid; recvfrom fills it.
        let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as u32;
        let n = check(unsafe {
            libc::recvfrom(
                fd,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
                (&mut from as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        })?;
        let header = usize::from(buffer[0] & 0x0f) * 4;
        if n > header {
            send_to(fd, &buffer[header..n], &from)?;
        }
    }
}

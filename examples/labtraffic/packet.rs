//! AF_PACKET sockets: sending IPv4/UDP datagrams the tool builds itself, as DHCP
//! clients and packet generators do, and receiving every frame of an interface, as
//! tcpdump does.

use crate::{check, number, Result};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

fn interface_index(interface: &str) -> Result<i32> {
    let name = std::ffi::CString::new(interface).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(format!("no interface {interface}"));
    }
    Ok(index as i32)
}

fn packet_socket(kind: i32, protocol: u16) -> Result<i32> {
    // SAFETY: a plain socket call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, kind, i32::from(protocol.to_be())) };
    Ok(check(fd as isize)? as i32)
}

fn parse_mac(text: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for byte in &mut mac {
        *byte =
            u8::from_str_radix(parts.next().ok_or("short MAC")?, 16).map_err(|e| e.to_string())?;
    }
    Ok(mac)
}

/// Sends COUNT UDP datagrams of SIZE payload bytes from FROM to TO (ip:port) through a
/// packet socket on INTERFACE to the hardware address MAC; prints the IP bytes sent.
pub fn send(interface: &str, mac: &str, from: &str, to: &str, count: &str, size: &str) -> Result {
    let from: SocketAddrV4 = from.parse().map_err(|e| format!("{from}: {e}"))?;
    let to: SocketAddrV4 = to.parse().map_err(|e| format!("{to}: {e}"))?;
    let ip = |a: &Ipv4Addr| a.octets();
    let payload = vec![0x42u8; number(size)? as usize];
    let mut datagram = Vec::new();
    etherparse::PacketBuilder::ipv4(ip(from.ip()), ip(to.ip()), 64)
        .udp(from.port(), to.port())
        .write(&mut datagram, &payload)
        .map_err(|e| e.to_string())?;
    let fd = packet_socket(libc::SOCK_DGRAM, libc::ETH_P_IP as u16)?;
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    address.sll_ifindex = interface_index(interface)?;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&parse_mac(mac)?);
    let mut sent = 0u64;
    for _ in 0..number(count)? {
        // SAFETY: the datagram and the address are live for the call.
        let done = unsafe {
            libc::sendto(
                fd,
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        sent += check(done)? as u64;
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("bytes={sent}");
    Ok(())
}

/// Receives every frame of INTERFACE for SECONDS through a packet socket; prints how
/// many it got.
pub fn receive(interface: &str, seconds: &str) -> Result {
    let fd = packet_socket(libc::SOCK_RAW, libc::ETH_P_ALL as u16)?;
    // SAFETY: an all-zero sockaddr_ll is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = interface_index(interface)?;
    // SAFETY: binding to a valid sockaddr_ll.
    check(unsafe {
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    } as isize)?;
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: setsockopt with a timeval that outlives the call.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    println!("listening");
    let deadline = Instant::now() + Duration::from_secs(number(seconds)?);
    let mut buffer = vec![0u8; 65_536];
    let mut frames = 0u64;
    while Instant::now() < deadline {
        // SAFETY: the buffer outlives the call.
        let got = unsafe { libc::recv(fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
        if got > 0 {
            frames += 1;
        }
    }
    println!("frames={frames}");
    Ok(())
}

//! Malformed frames sent raw on an interface, to prove the decoder shrugs them off.

use crate::{number, Result};

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

pub fn inject(interface: &str, count: &str) -> Result {
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

//! Tun interfaces (no link-layer header) whose far end is this program: one that sends
//! every IPv4 UDP or TCP packet back to where it came from, one that delays them.

use crate::{check, Result};

const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const TUNSETIFF: libc::c_ulong = 0x400454ca;

/// Opens tun interface `name` (no packet information header); returns its descriptor.
fn open_tun(name: &str) -> Result<i32> {
    // SAFETY: a plain open of a NUL-terminated path.
    let fd = check(unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR) } as isize)? as i32;
    // SAFETY: an all-zero ifreq is valid; the name is copied in below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(format!("interface name too long: {name}"));
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
    // SAFETY: TUNSETIFF reads and writes the ifreq.
    check(unsafe { libc::ioctl(fd, TUNSETIFF, &mut request) } as isize)?;
    Ok(fd)
}

/// A delay line: creates tun interface NAME and writes every packet routed into it
/// back out of it `millis` later, in order (the lab routes what comes out onwards).
pub fn delay(name: &str, millis: &str) -> Result {
    let delay = std::time::Duration::from_millis(
        millis
            .parse()
            .map_err(|_| format!("not milliseconds: {millis}"))?,
    );
    let fd = open_tun(name)?;
    println!("listening");
    let (queue, due) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        for (at, packet) in due {
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
            // SAFETY: writes the packet's bytes to the live descriptor.
            unsafe { libc::write(fd, packet.as_ptr().cast(), packet.len()) };
        }
    });
    let mut packet = [0u8; 65536];
    loop {
        // SAFETY: reads into the live buffer, at most its length.
        let n = check(unsafe { libc::read(fd, packet.as_mut_ptr().cast(), packet.len()) })?;
        let at = std::time::Instant::now() + delay;
        if queue.send((at, packet[..n].to_vec())).is_err() {
            return Ok(());
        }
    }
}

/// Creates tun interface NAME, then reflects: source and destination addresses and
/// ports swap, which leaves every checksum valid (each sums both alike).
pub fn reflect(name: &str) -> Result {
    let fd = open_tun(name)?;
    println!("listening");
    let mut packet = [0u8; 65536];
    loop {
        // SAFETY: reads into the live buffer, at most its length.
        let n = check(unsafe { libc::read(fd, packet.as_mut_ptr().cast(), packet.len()) })?;
        let ip = &mut packet[..n];
        let header = usize::from(ip.first().copied().unwrap_or(0) & 0x0f) * 4;
        if n < header + 4 || ip[0] >> 4 != 4 || !matches!(ip[9], 6 | 17) {
            continue;
        }
        for at in 12..16 {
            ip.swap(at, at + 4);
        }
        for at in header..header + 2 {
            ip.swap(at, at + 2);
        }
        // SAFETY: writes the n bytes just read.
        check(unsafe { libc::write(fd, ip.as_ptr().cast(), n) })?;
    }
}

//! Slow HTTP clients, as a hostile local user would run them.

use crate::{number, Result};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Holds COUNT partial requests spread over TARGETS (comma-separated addresses) for
/// SECONDS: each sends a request line, then one header byte a second, never finishing
/// its headers; a connection the server drops is opened again at the next round.
/// Says `started` once all are open, and how often it had to reconnect at the end.
pub fn slow_clients(targets: &str, count: &str, seconds: &str) -> Result {
    crate::tcp::raise_open_file_limit();
    let targets: Vec<SocketAddr> = targets.split(',').map(crate::addr).collect::<Result<_>>()?;
    let count = number(count)? as usize;
    let deadline = Instant::now() + Duration::from_secs(number(seconds)?);
    let mut slots: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    let (mut reconnects, mut round) = (0u64, 0u64);
    while Instant::now() < deadline {
        let started = Instant::now();
        for (index, slot) in slots.iter_mut().enumerate() {
            let alive = match slot {
                Some(stream) => stream.write(b"X").is_ok_and(|n| n == 1),
                None => false,
            };
            if alive {
                continue;
            }
            let target = targets[index % targets.len()];
            *slot = TcpStream::connect_timeout(&target, Duration::from_millis(200))
                .ok()
                .and_then(|mut stream| {
                    stream.set_nonblocking(true).ok()?;
                    stream
                        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                        .ok()?;
                    Some(stream)
                });
            if round > 0 {
                reconnects += 1;
            }
        }
        if round == 0 {
            println!("started");
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    println!("reconnects={reconnects} bytes=0");
    Ok(())
}

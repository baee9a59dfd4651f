//! TCP workloads, with every way Linux has to send: write, sendfile, splice, io_uring.

use crate::{addr, check, number, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

const CHUNK: usize = 1 << 16;

/// How much to move: a byte count, or a duration (`4s`).
enum Amount {
    Bytes(u64),
    Until(Instant),
}

impl Amount {
    fn parse(text: &str) -> Result<Amount> {
        Ok(match text.strip_suffix('s') {
            Some(seconds) => Amount::Until(Instant::now() + Duration::from_secs(number(seconds)?)),
            None => Amount::Bytes(number(text)?),
        })
    }

    /// The next chunk's size, or None when done.
    fn next(&self, sent: u64) -> Option<usize> {
        match self {
            Amount::Bytes(total) => {
                (sent < *total).then(|| (total - sent).min(CHUNK as u64) as usize)
            }
            Amount::Until(deadline) => (Instant::now() < *deadline).then_some(CHUNK),
        }
    }
}

pub fn sink(bind: &str) -> Result {
    raise_open_file_limit();
    let listener = TcpListener::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; CHUNK];
            while matches!(stream.read(&mut buffer), Ok(n) if n > 0) {}
        });
    }
    Ok(())
}

fn send_write(stream: &mut TcpStream, amount: &Amount) -> Result<u64> {
    let buffer = vec![0x5au8; CHUNK];
    let mut sent = 0u64;
    while let Some(chunk) = amount.next(sent) {
        sent += stream.write(&buffer[..chunk]).map_err(|e| e.to_string())? as u64;
    }
    Ok(sent)
}

fn send_sendfile(stream: &TcpStream, amount: &Amount) -> Result<u64> {
    // SAFETY: memfd_create with a static name; the fd is closed at exit.
    let file = check(unsafe { libc::memfd_create(c"ng-payload".as_ptr(), 0) } as isize)? as i32;
    let data = vec![0x5au8; CHUNK];
    // SAFETY: writing our own buffer to our own memfd.
    check(unsafe { libc::write(file, data.as_ptr().cast(), data.len()) })?;
    let mut sent = 0u64;
    while let Some(chunk) = amount.next(sent) {
        let mut offset: libc::off_t = 0;
        // SAFETY: both fds are open; offset is a valid pointer.
        sent +=
            check(unsafe { libc::sendfile(stream.as_raw_fd(), file, &mut offset, chunk) })? as u64;
    }
    Ok(sent)
}

fn send_splice(stream: &TcpStream, amount: &Amount) -> Result<u64> {
    let mut pipe = [0i32; 2];
    // SAFETY: pipe writes two fds into the array.
    check(unsafe { libc::pipe(pipe.as_mut_ptr()) } as isize)?;
    let data = vec![0x5au8; CHUNK];
    let mut sent = 0u64;
    while let Some(chunk) = amount.next(sent) {
        // SAFETY: writing our buffer into our pipe, then splicing it to the socket.
        let queued = check(unsafe { libc::write(pipe[1], data.as_ptr().cast(), chunk) })?;
        let mut left = queued;
        while left > 0 {
            let moved = check(unsafe {
                libc::splice(
                    pipe[0],
                    std::ptr::null_mut(),
                    stream.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    0,
                )
            })?;
            left -= moved;
            sent += moved as u64;
        }
    }
    Ok(sent)
}

fn send_uring(stream: &TcpStream, amount: &Amount) -> Result<u64> {
    use io_uring::{opcode, types, IoUring};
    let mut ring = IoUring::new(8).map_err(|e| e.to_string())?;
    let data = vec![0x5au8; CHUNK];
    let mut sent = 0u64;
    while let Some(chunk) = amount.next(sent) {
        let send =
            opcode::Send::new(types::Fd(stream.as_raw_fd()), data.as_ptr(), chunk as u32).build();
        // SAFETY: the buffer outlives the operation, which completes before the next push.
        unsafe { ring.submission().push(&send) }.map_err(|e| e.to_string())?;
        ring.submit_and_wait(1).map_err(|e| e.to_string())?;
        let done = ring.completion().next().ok_or("no io_uring completion")?;
        sent += check(done.result() as isize)? as u64;
    }
    Ok(sent)
}

/// Closes our side and waits for the peer's close, so every byte is on the wire.
fn finish(mut stream: TcpStream) -> Result {
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut rest = [0u8; 64];
    while matches!(stream.read(&mut rest), Ok(n) if n > 0) {}
    Ok(())
}

pub fn send(target: &str, amount: &str, mode: &str) -> Result {
    let mut stream = TcpStream::connect(addr(target)?).map_err(|e| e.to_string())?;
    let amount = Amount::parse(amount)?;
    let sent = match mode {
        "" | "write" => send_write(&mut stream, &amount)?,
        "sendfile" => send_sendfile(&stream, &amount)?,
        "splice" => send_splice(&stream, &amount)?,
        "uring" => send_uring(&stream, &amount)?,
        other => return Err(format!("unknown send mode {other}")),
    };
    finish(stream)?;
    println!("bytes={sent}");
    Ok(())
}

pub fn source(bind: &str, seconds: &str) -> Result {
    let listener = TcpListener::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    let (mut stream, _) = listener.accept().map_err(|e| e.to_string())?;
    let sent = send_write(&mut stream, &Amount::parse(&format!("{seconds}s"))?)?;
    println!("bytes={sent}");
    Ok(())
}

fn recv_uring(stream: &TcpStream) -> Result<u64> {
    use io_uring::{opcode, types, IoUring};
    let mut ring = IoUring::new(8).map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let recv = opcode::Recv::new(
            types::Fd(stream.as_raw_fd()),
            buffer.as_mut_ptr(),
            CHUNK as u32,
        )
        .build();
        // SAFETY: the buffer outlives the operation, which completes before the next push.
        unsafe { ring.submission().push(&recv) }.map_err(|e| e.to_string())?;
        ring.submit_and_wait(1).map_err(|e| e.to_string())?;
        let done = ring.completion().next().ok_or("no io_uring completion")?;
        match check(done.result() as isize)? {
            0 => return Ok(received),
            n => received += n as u64,
        }
    }
}

pub fn recv(target: &str, mode: &str) -> Result {
    let mut stream = TcpStream::connect(addr(target)?).map_err(|e| e.to_string())?;
    let received = match mode {
        "uring" => recv_uring(&stream)?,
        "" | "read" => {
            let mut buffer = vec![0u8; CHUNK];
            let mut received = 0u64;
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) => break received,
                    Ok(n) => received += n as u64,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        other => return Err(format!("unknown receive mode {other}")),
    };
    println!("bytes={received}");
    Ok(())
}

/// Sends for `seconds` while a second thread reads everything the peer sends.
fn duplex(mut stream: TcpStream, seconds: &str) -> Result {
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let reading = std::thread::spawn(move || {
        let mut buffer = vec![0u8; CHUNK];
        let mut received = 0u64;
        while let Ok(n @ 1..) = reader.read(&mut buffer) {
            received += n as u64;
        }
        received
    });
    let sent = send_write(&mut stream, &Amount::parse(&format!("{seconds}s"))?)?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let received = reading.join().map_err(|_| "reader panicked")?;
    println!("bytes={sent} received={received}");
    Ok(())
}

pub fn duplex_client(target: &str, seconds: &str) -> Result {
    duplex(
        TcpStream::connect(addr(target)?).map_err(|e| e.to_string())?,
        seconds,
    )
}

pub fn duplex_server(bind: &str, seconds: &str) -> Result {
    let listener = TcpListener::bind(addr(bind)?).map_err(|e| e.to_string())?;
    println!("listening");
    let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
    duplex(stream, seconds)
}

/// The parent connects; a forked child, renamed ng-child, does all the sending.
pub fn fork_send(target: &str, amount: &str) -> Result {
    let stream = TcpStream::connect(addr(target)?).map_err(|e| e.to_string())?;
    let amount = Amount::parse(amount)?;
    // SAFETY: the child only sends on the inherited socket and exits.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().to_string()),
        0 => {
            // SAFETY: PR_SET_NAME with a NUL-terminated name.
            unsafe { libc::prctl(libc::PR_SET_NAME, c"ng-child".as_ptr()) };
            let mut child_stream = stream;
            let code = match send_write(&mut child_stream, &amount) {
                Ok(sent) => {
                    println!("bytes={sent}");
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: leave at once, without the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            finish(stream)
        }
    }
}

pub fn short_lived(myself: &str, target: &str, count: &str, bytes: &str) -> Result {
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

/// Opens COUNT connections at once and sends on each in turn for SECONDS.
pub fn many(target: &str, count: &str, seconds: &str) -> Result {
    raise_open_file_limit();
    let target = addr(target)?;
    let mut streams = Vec::new();
    for _ in 0..number(count)? {
        let stream = TcpStream::connect(target).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        streams.push(stream);
    }
    let buffer = vec![0x5au8; 4096];
    let deadline = Instant::now() + Duration::from_secs(number(seconds)?);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        for stream in &mut streams {
            // A full socket buffer is skipped; the next round tries again.
            if let Ok(n) = stream.write(&buffer) {
                sent += n as u64;
            }
        }
    }
    for stream in streams {
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        finish(stream)?;
    }
    println!("bytes={sent}");
    Ok(())
}

/// A thousand sockets need more than the usual soft limit of 1024 descriptors.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get and set our own limits from a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Runs PROCESSES short-lived copies of this tool, PARALLEL at a time, each opening
/// CONNECTIONS connections one after another and sending BYTES on each.
pub fn churn(
    myself: &str,
    target: &str,
    processes: &str,
    connections: &str,
    bytes: &str,
) -> Result {
    let (processes, parallel) = (number(processes)?, 50);
    let mut running: Vec<std::process::Child> = Vec::new();
    let mut started = 0;
    let mut total = 0u64;
    while started < processes || !running.is_empty() {
        while started < processes && running.len() < parallel {
            let child = Command::new(myself)
                .args(["churn-child", target, connections, bytes])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            running.push(child);
            started += 1;
        }
        let child = running.remove(0);
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!("a churn child failed: {}", output.status));
        }
        total += crate::printed_bytes(&String::from_utf8_lossy(&output.stdout))?;
    }
    println!("bytes={total}");
    Ok(())
}

/// CONNECTIONS connections one after another, BYTES sent on each.
pub fn churn_child(target: &str, connections: &str, bytes: &str) -> Result {
    let target = addr(target)?;
    let payload = vec![0x5au8; number(bytes)? as usize];
    let mut sent = 0u64;
    for _ in 0..number(connections)? {
        let mut stream = TcpStream::connect(target).map_err(|e| e.to_string())?;
        stream.write_all(&payload).map_err(|e| e.to_string())?;
        finish(stream)?;
        sent += payload.len() as u64;
    }
    println!("bytes={sent}");
    Ok(())
}

/// Opens COUNT connections and holds them, idle, for SECONDS; says `holding` once all
/// are open.
pub fn hold(target: &str, count: &str, seconds: &str) -> Result {
    raise_open_file_limit();
    let target = addr(target)?;
    let streams = (0..number(count)?)
        .map(|_| TcpStream::connect(target).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>>>()?;
    println!("holding");
    std::thread::sleep(Duration::from_secs(number(seconds)?));
    drop(streams);
    println!("bytes=0");
    Ok(())
}

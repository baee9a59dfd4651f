//! The capture ring: a packet socket bound to one interface, whose frames the kernel
//! writes into memory shared with us (TPACKET_V3), a block of many frames at a time.
//! libpcap reads the same rings, but either a wakeup per packet (immediate mode) or in
//! 256 KiB blocks that a timeout hands over part-empty, so that a reader held up for
//! 64 ms lost packets; here the blocks are small enough for the ring to last.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Small blocks: a block the timeout hands over holds few packets, and a ring of many
/// blocks still lasts a quarter of a second of such handovers.
const BLOCK_BYTES: usize = 64 << 10;
/// A block that is not full is handed over after this long (the kernel rounds up to a
/// clock tick): what delays a packet of a quiet flow.
const BLOCK_TIMEOUT_MS: u32 = 2;
/// Longer than the kernel takes to hand over a block that is not full: the block
/// timeout rounded up to a clock tick (4 ms at 250 Hz), with room for a late timer.
pub const HANDOVER: Duration = Duration::from_millis(25);
/// Where the frame's packet starts relative to its header, at most (sockaddr_ll, padding).
const FRAME_HEADROOM: u32 = 128;
/// Classic BPF `ret #k`: keep the first k bytes of every packet.
const BPF_RET_K: u16 = 0x06;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;

/// One captured frame.
pub struct Frame<'a> {
    /// The link-layer frame (Ethernet interfaces) or the network-layer packet (all others).
    pub data: &'a [u8],
    /// The whole frame's length, of which `data` may hold only the first bytes.
    pub wire_len: u32,
    pub outgoing: bool,
    /// The EtherType of what `data` carries, on interfaces without an Ethernet header.
    pub protocol: u16,
    /// When the kernel received or sent it, since the Unix epoch.
    pub time: std::time::Duration,
}

/// What the kernel counted for this socket since it opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    pub received: u64,
    pub dropped: u64,
    /// The interface's own drops (`rx_dropped`) since the ring opened.
    pub if_dropped: u64,
}

pub struct Ring {
    socket: OwnedFd,
    wake: Arc<OwnedFd>,
    map: *mut u8,
    map_len: usize,
    blocks: usize,
    next: usize,
    /// Frames start with an Ethernet header (else with the network header).
    ethernet: bool,
    /// On a loopback interface each packet passes twice, out and in: it is read once.
    loopback: bool,
    interface: String,
    stats: RingStats,
    if_dropped_at_open: Option<u64>,
}

// The mapping is the ring's alone; the thread that reads it owns the Ring.
unsafe impl Send for Ring {}

/// Wakes a `Ring::wait` from another thread.
#[derive(Clone)]
pub struct RingWaker(Arc<OwnedFd>);

impl RingWaker {
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

impl Ring {
    /// Opens a ring of about `buffer_bytes` on `interface`, keeping `snaplen` bytes of
    /// each packet. Needs CAP_NET_RAW.
    pub fn open(interface: &str, snaplen: u32, buffer_bytes: usize) -> io::Result<Ring> {
        let named = |what: &str, error: io::Error| {
            io::Error::new(
                error.kind(),
                format!("{what} on {interface}: {error}; run as root or with CAP_NET_RAW"),
            )
        };
        let index = interface_index(interface)?;
        let hardware = std::fs::read_to_string(format!("/sys/class/net/{interface}/type"))
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok());
        let ethernet = matches!(hardware, Some(ARPHRD_ETHER | ARPHRD_LOOPBACK));
        // Other link layers (tunnels, PPP, ...) are read from the network header on.
        let kind = if ethernet {
            libc::SOCK_RAW
        } else {
            libc::SOCK_DGRAM
        };
        let wake = syscall(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(|e| named("cannot make an eventfd", e))?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        // Protocol 0: no packet is queued before the ring exists and the socket is bound.
        let socket =
            syscall(unsafe { libc::socket(libc::AF_PACKET, kind | libc::SOCK_CLOEXEC, 0) })
                .map_err(|e| named("cannot open a packet socket", e))?;
        // SAFETY: a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(socket) };
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        set_option(&socket, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
            .map_err(|e| named("TPACKET_V3 is not available", e))?;
        let keep = [libc::sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: snaplen,
        }];
        let program = libc::sock_fprog {
            len: 1,
            filter: keep.as_ptr().cast_mut(),
        };
        set_option(&socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
            .map_err(|e| named("cannot set the snap length", e))?;
        let blocks = buffer_bytes.div_ceil(BLOCK_BYTES).max(2);
        let frame_size = (snaplen + FRAME_HEADROOM).next_multiple_of(16);
        let frames_per_block = BLOCK_BYTES as u32 / frame_size;
        let request = libc::tpacket_req3 {
            tp_block_size: BLOCK_BYTES as u32,
            tp_block_nr: blocks as u32,
            tp_frame_size: frame_size,
            tp_frame_nr: frames_per_block * blocks as u32,
            tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_option(&socket, libc::SOL_PACKET, libc::PACKET_RX_RING, &request)
            .map_err(|e| named("cannot set up the capture ring", e))?;
        let map_len = blocks * BLOCK_BYTES;
        // SAFETY: maps the ring the kernel just made for this socket; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                socket.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(named(
                "cannot map the capture ring",
                io::Error::last_os_error(),
            ));
        }
        let ring = Ring {
            socket,
            wake,
            map: map.cast(),
            map_len,
            blocks,
            next: 0,
            ethernet,
            loopback: hardware == Some(ARPHRD_LOOPBACK),
            interface: interface.to_string(),
            stats: RingStats::default(),
            if_dropped_at_open: interface_drops(interface),
        };
        let address = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as u16,
            sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
            sll_ifindex: index,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        // SAFETY: a sockaddr_ll of the size given.
        syscall(unsafe {
            libc::bind(
                ring.socket.as_raw_fd(),
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })
        .map_err(|e| named("cannot bind the packet socket", e))?;
        Ok(ring)
    }

    /// Frames start with an Ethernet header.
    pub fn is_ethernet(&self) -> bool {
        self.ethernet
    }

    /// How its frames start: the ring says each frame's direction, the link type only
    /// where IP starts.
    pub fn link(&self) -> super::link::Link {
        super::link::Link {
            link_type: if self.is_ethernet() {
                super::link::LinkType::Ethernet
            } else {
                super::link::LinkType::RawIp
            },
            own_mac: None,
        }
    }

    pub fn waker(&self) -> RingWaker {
        RingWaker(self.wake.clone())
    }

    /// Waits until a block is ready, `timeout` passes or a waker wakes us. An error
    /// when the socket fails (the interface went away).
    pub fn wait(&self, timeout: Duration) -> io::Result<()> {
        if self.block_ready(self.next) {
            return Ok(());
        }
        let mut polled = [
            libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: two pollfds in a live array.
        match syscall(unsafe { libc::poll(polled.as_mut_ptr(), 2, millis) }) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(error) => return Err(error),
        }
        if polled[1].revents != 0 {
            let mut count = 0u64;
            // SAFETY: reads 8 bytes into a live u64 (emptying the eventfd).
            unsafe { libc::read(self.wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        }
        if polled[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            let error = socket_error(&self.socket);
            return Err(io::Error::new(
                error.kind(),
                format!("the capture on {} failed: {error}", self.interface),
            ));
        }
        Ok(())
    }

    /// Hands each frame of every ready block to `each`, then the blocks back to the
    /// kernel. Returns the frames read.
    pub fn read(&mut self, mut each: impl FnMut(Frame<'_>)) -> usize {
        let mut frames = 0;
        // At most one pass over the ring: the kernel may fill blocks behind us.
        for _ in 0..self.blocks {
            if !self.block_ready(self.next) {
                break;
            }
            frames += self.read_block(self.next, &mut each);
            self.release(self.next);
            self.next = (self.next + 1) % self.blocks;
        }
        frames
    }

    /// Adds what the kernel counted since it was last asked (it resets its counters).
    pub fn stats(&mut self) -> RingStats {
        let mut counted = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut length = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `length` bytes into `counted`.
        let read = unsafe {
            libc::getsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut counted as *mut libc::tpacket_stats_v3).cast(),
                &mut length,
            )
        };
        if read == 0 {
            // The kernel's packet count includes the drops, as libpcap's ps_recv does.
            self.stats.received += u64::from(counted.tp_packets);
            self.stats.dropped += u64::from(counted.tp_drops);
        }
        if let (Some(at_open), Some(now)) =
            (self.if_dropped_at_open, interface_drops(&self.interface))
        {
            self.stats.if_dropped = now.saturating_sub(at_open);
        }
        self.stats
    }

    fn block(&self, index: usize) -> *mut u8 {
        // SAFETY: index < blocks, so the block lies inside the mapping.
        unsafe { self.map.add(index * BLOCK_BYTES) }
    }

    fn block_status(&self, index: usize) -> *mut u32 {
        let offset = std::mem::offset_of!(libc::tpacket_block_desc, hdr)
            + std::mem::offset_of!(libc::tpacket_hdr_v1, block_status);
        // SAFETY: inside the block's descriptor.
        unsafe { self.block(index).add(offset).cast() }
    }

    fn block_ready(&self, index: usize) -> bool {
        // SAFETY: an aligned u32 in the mapping, written by the kernel: read volatile.
        let status = unsafe { std::ptr::read_volatile(self.block_status(index)) };
        let ready = status & libc::TP_STATUS_USER != 0;
        if ready {
            // The frames were written before the status said so.
            fence(Ordering::Acquire);
        }
        ready
    }

    fn release(&self, index: usize) {
        fence(Ordering::Release);
        // SAFETY: as in block_ready; the block is ours until this write.
        unsafe { std::ptr::write_volatile(self.block_status(index), libc::TP_STATUS_KERNEL) };
    }

    fn read_block(&self, index: usize, each: &mut impl FnMut(Frame<'_>)) -> usize {
        // SAFETY: the block is ours (status USER) until released; BLOCK_BYTES long.
        let block = unsafe { std::slice::from_raw_parts(self.block(index), BLOCK_BYTES) };
        // SAFETY: the descriptor is at the block's start, and the mapping page-aligned.
        let header = unsafe {
            (*self.block(index).cast::<libc::tpacket_block_desc>())
                .hdr
                .bh1
        };
        let mut offset = header.offset_to_first_pkt as usize;
        let mut frames = 0;
        for _ in 0..header.num_pkts {
            let Some(frame) = self.frame_at(block, offset) else {
                break;
            };
            let next = frame.1;
            if let Some(frame) = frame.0 {
                each(frame);
                frames += 1;
            }
            if next == 0 {
                break;
            }
            offset += next as usize;
        }
        frames
    }

    /// The frame whose header is at `offset` (none for a loopback duplicate), and the
    /// offset to the next; `None` where the kernel's offsets leave the block.
    fn frame_at<'a>(&self, block: &'a [u8], offset: usize) -> Option<(Option<Frame<'a>>, u32)> {
        let size = std::mem::size_of::<libc::tpacket3_hdr>();
        let bytes = block.get(offset..offset + size)?;
        // SAFETY: `size` bytes of the block; read unaligned, as the kernel aligns to 16 only.
        let header =
            unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<libc::tpacket3_hdr>()) };
        let address_at = offset + size.next_multiple_of(16);
        let address =
            block.get(address_at..address_at + std::mem::size_of::<libc::sockaddr_ll>())?;
        // SAFETY: a whole sockaddr_ll's bytes, read unaligned.
        let address =
            unsafe { std::ptr::read_unaligned(address.as_ptr().cast::<libc::sockaddr_ll>()) };
        let outgoing = address.sll_pkttype == libc::PACKET_OUTGOING;
        let frame = if outgoing && self.loopback {
            None
        } else {
            let start = offset + usize::from(header.tp_mac);
            let data = block.get(start..start + header.tp_snaplen as usize)?;
            Some(Frame {
                data,
                wire_len: header.tp_len,
                outgoing,
                protocol: u16::from_be(address.sll_protocol),
                time: std::time::Duration::new(u64::from(header.tp_sec), header.tp_nsec),
            })
        };
        Some((frame, header.tp_next_offset))
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmaps what open mapped, once.
        unsafe { libc::munmap(self.map.cast(), self.map_len) };
    }
}

fn syscall(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

fn set_option<T>(socket: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: passes a live T and its size.
    syscall(unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

fn socket_error(socket: &OwnedFd) -> io::Error {
    let mut error: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes one c_int.
    unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut length,
        )
    };
    io::Error::from_raw_os_error(error)
}

fn interface_index(interface: &str) -> io::Result<i32> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name holds a NUL"))?;
    // SAFETY: a NUL-terminated name.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {interface}"),
        )),
        index => Ok(index as i32),
    }
}

fn interface_drops(interface: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/rx_dropped"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

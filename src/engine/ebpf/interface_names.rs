//! Interface names for (network namespace, ifindex) pairs: an ifindex only means
//! something inside its namespace, and sockets of every namespace are counted.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use crate::engine::InterfaceName;

const SO_NETNS_COOKIE: libc::c_int = 71;

pub struct InterfaceNames {
    own_netns: Option<u64>,
    names: HashMap<(u64, u32), InterfaceName>,
}

impl InterfaceNames {
    pub fn new() -> Self {
        InterfaceNames {
            own_netns: current_netns_cookie(),
            names: HashMap::new(),
        }
    }

    /// The interface's name; for another namespace, looked up inside it through a
    /// process (`tgid`) that lives there, and suffixed `@netns<cookie>` when no such
    /// process is left to ask.
    pub fn name(&mut self, netns: Option<u64>, ifindex: u32, tgid: Option<u32>) -> InterfaceName {
        let netns = netns.filter(|&n| n != 0).or(self.own_netns).unwrap_or(0);
        if let Some(name) = self.names.get(&(netns, ifindex)) {
            return name.clone();
        }
        let own = Some(netns) == self.own_netns || self.own_netns.is_none();
        let found = if own {
            index_to_name(ifindex)
        } else {
            tgid.and_then(|tgid| name_in_namespace_of(tgid, netns, ifindex))
        };
        let name: InterfaceName = match found {
            Some(name) => Arc::from(name),
            // Not cached: a later lookup, with a live process, may do better.
            None if own => return Arc::from(format!("if{ifindex}")),
            None => return Arc::from(format!("if{ifindex}@netns{netns}")),
        };
        self.names.insert((netns, ifindex), name.clone());
        name
    }

    /// Interfaces come and go and indexes are reused: forget and ask again.
    pub fn forget(&mut self) {
        self.names.clear();
    }
}

fn index_to_name(ifindex: u32) -> Option<String> {
    let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer has the IF_NAMESIZE bytes if_indextoname writes at most.
    let name = unsafe { libc::if_indextoname(ifindex, buffer.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    Some(
        unsafe { CStr::from_ptr(buffer.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The network namespace cookie of the calling thread.
fn current_netns_cookie() -> Option<u64> {
    // SAFETY: a plain socket, closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a new socket we own.
    let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: cookie and len describe a valid u64 buffer.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (result == 0).then_some(cookie)
}

/// Enters the process's network namespace on a short-lived thread (namespaces are per
/// thread) and resolves the name there, if that namespace is still the one asked for.
fn name_in_namespace_of(tgid: u32, netns: u64, ifindex: u32) -> Option<String> {
    let namespace = std::fs::File::open(format!("/proc/{tgid}/ns/net")).ok()?;
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file, affecting only this thread.
        if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        if current_netns_cookie() != Some(netns) {
            return None;
        }
        index_to_name(ifindex)
    })
    .join()
    .ok()
    .flatten()
}

//! Interface names for (network namespace, ifindex) pairs: an ifindex only means
//! something inside its namespace, and sockets of every namespace are counted.
//! Namespaces are known by inode number and entered through any handle to them:
//! a name under /run/netns (ip netns, container runtimes) or a live process in it.

use crate::engine::offloads::Offloads;
use crate::engine::InterfaceName;
use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where named network namespaces live (ip netns, docker, podman, containerd).
const NAMED_NAMESPACES: [&str; 3] = ["/run/netns", "/run/docker/netns", "/var/run/netns"];

pub struct InterfaceNames {
    own_netns: Option<u64>,
    names: HashMap<(u64, u32), (InterfaceName, Offloads)>,
}

impl InterfaceNames {
    pub fn new() -> Self {
        InterfaceNames {
            own_netns: namespace_inode(&PathBuf::from("/proc/self/ns/net")),
            names: HashMap::new(),
        }
    }

    pub fn own_netns(&self) -> Option<u64> {
        self.own_netns
    }

    /// The interface's name, looked up inside the socket's namespace; `if<index>`
    /// (with `@netns<inode>` for another namespace) when that is not possible.
    pub fn name(&mut self, netns: Option<u64>, ifindex: u32) -> InterfaceName {
        self.link(netns, ifindex).0
    }

    /// What the link does with offloaded packets (none where it cannot be asked).
    pub fn offloads(&mut self, netns: Option<u64>, ifindex: u32) -> Offloads {
        self.link(netns, ifindex).1
    }

    fn link(&mut self, netns: Option<u64>, ifindex: u32) -> (InterfaceName, Offloads) {
        let netns = netns.filter(|&n| n != 0).or(self.own_netns).unwrap_or(0);
        if let Some(link) = self.names.get(&(netns, ifindex)) {
            return link.clone();
        }
        let own = Some(netns) == self.own_netns || self.own_netns.is_none();
        let found = if own {
            describe(ifindex)
        } else {
            find_namespace(netns).and_then(|path| describe_inside(path, ifindex))
        };
        match found {
            Some((name, offloads)) => {
                let link = (Arc::from(name), offloads);
                self.names.insert((netns, ifindex), link.clone());
                link
            }
            // Not cached: the interface or a way into its namespace may appear later.
            None if own => (Arc::from(format!("if{ifindex}")), Offloads::UNKNOWN),
            None => (
                Arc::from(format!("if{ifindex}@netns{netns}")),
                Offloads::UNKNOWN,
            ),
        }
    }

    /// Interfaces come and go and indexes are reused: forget and ask again.
    pub fn forget(&mut self) {
        self.names.clear();
    }
}

fn namespace_inode(path: &PathBuf) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// A path that opens the namespace with this inode: a named one, else a process's.
fn find_namespace(inode: u64) -> Option<PathBuf> {
    let named = NAMED_NAMESPACES
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten().map(|e| e.path()));
    let processes = std::fs::read_dir("/proc")
        .into_iter()
        .flat_map(|entries| entries.flatten())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path().join("ns/net"));
    named
        .chain(processes)
        .find(|path| namespace_inode(path) == Some(inode))
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

/// The interface's name and offloads, in the calling thread's namespace.
fn describe(ifindex: u32) -> Option<(String, Offloads)> {
    let name = index_to_name(ifindex)?;
    let offloads = Offloads::of_interface(&name).unwrap_or(Offloads::UNKNOWN);
    Some((name, offloads))
}

/// Enters the namespace on a short-lived thread (namespaces are per thread) and
/// describes the interface there.
fn describe_inside(namespace: PathBuf, ifindex: u32) -> Option<(String, Offloads)> {
    let file = std::fs::File::open(namespace).ok()?;
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file, affecting only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return None;
        }
        describe(ifindex)
    })
    .join()
    .ok()
    .flatten()
}

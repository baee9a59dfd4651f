//! TC hooks on every interface of the host's namespace, counting everything that
//! crosses it (tcx links, Linux 6.6+, which the kernel detaches when netgraph exits),
//! and the traffic among it that no local socket moved.

use super::skeleton::{types, NetgraphSkel};
use crate::traffic::{Counter, Protocol, Traffic};
use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, MapMut};
use std::collections::HashMap;
use std::ptr::NonNull;

/// tcx, the link-based TC attachment that detaches itself, came with Linux 6.6.
pub fn kernel_has_tcx() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (6, 6)
}

struct Hooked {
    _links: [Link; 2],
}

/// (ifindex, direction is egress, protocol number).
type Key = (u32, bool, u8);

#[derive(Default)]
pub struct InterfaceHooks {
    hooked: HashMap<u32, Hooked>,
    complained: bool,
    /// Per key: traffic local sockets moved, and what was reported as no socket's.
    attributed: HashMap<Key, Counter>,
    unattributed: HashMap<Key, Counter>,
    non_ip_reported: HashMap<u32, Counter>,
}

/// One interface's traffic that no socket moved, by protocol, and its non-IP frames.
pub struct Unattributed {
    pub ifindex: u32,
    pub protocol: Protocol,
    pub traffic: Traffic,
}

impl InterfaceHooks {
    /// Attaches to interfaces that appeared and lets go of vanished ones.
    pub fn sync(&mut self, skel: &NetgraphSkel<'_>) {
        let present = host_interfaces();
        self.hooked
            .retain(|ifindex, _| present.iter().any(|(i, _)| i == ifindex));
        for (ifindex, link_len) in present {
            if self.hooked.contains_key(&ifindex) {
                continue;
            }
            let _ = skel.maps.link_header_length.update(
                &ifindex.to_ne_bytes(),
                &link_len.to_ne_bytes(),
                MapFlags::ANY,
            );
            let ingress = attach_tcx(&skel.progs.interface_ingress, ifindex);
            let egress = attach_tcx(&skel.progs.interface_egress, ifindex);
            match (ingress, egress) {
                (Ok(ingress), Ok(egress)) => {
                    self.hooked.insert(
                        ifindex,
                        Hooked {
                            _links: [ingress, egress],
                        },
                    );
                }
                (Err(error), _) | (_, Err(error)) => {
                    if !self.complained {
                        self.complained = true;
                        tracing::warn!(ifindex, %error, "cannot hook interface; traffic without a local socket on it is not counted");
                    }
                }
            }
        }
    }

    /// Notes traffic local sockets of this namespace moved (by IP protocol number).
    pub fn note_attributed(&mut self, ifindex: u32, egress: bool, ip_number: u8, counter: Counter) {
        self.attributed
            .entry((ifindex, egress, ip_number))
            .or_default()
            .merge(counter);
    }

    /// What crossed the interfaces beyond what sockets moved, since the last call.
    /// Cumulative totals make this exact over time: the socket hooks and TC see a packet
    /// at slightly different moments, so one interval's difference may run ahead, and
    /// only a growing excess is reported.
    pub fn unattributed(&mut self, map: &MapMut<'_>) -> (Vec<Unattributed>, HashMap<u32, Counter>) {
        let mut found: HashMap<(u32, Protocol), Traffic> = HashMap::new();
        let mut non_ip: HashMap<u32, Counter> = HashMap::new();
        for (raw_key, total) in totals(map) {
            let Some(key) = pod::<types::interface_key>(&raw_key) else {
                continue;
            };
            if !self.hooked.contains_key(&key.ifindex) {
                continue;
            }
            if key.non_ip != 0 {
                non_ip.entry(key.ifindex).or_default().merge(total);
                continue;
            }
            let egress = key.direction == 0;
            let k = (key.ifindex, egress, key.protocol);
            let attributed = self.attributed.get(&k).copied().unwrap_or_default();
            let excess = Counter {
                bytes: total.bytes.saturating_sub(attributed.bytes),
                packets: total.packets.saturating_sub(attributed.packets),
            };
            let reported = self.unattributed.entry(k).or_default();
            let grown = Counter {
                bytes: excess.bytes.saturating_sub(reported.bytes),
                packets: excess.packets.saturating_sub(reported.packets),
            };
            reported.bytes = reported.bytes.max(excess.bytes);
            reported.packets = reported.packets.max(excess.packets);
            if !grown.is_zero() {
                let traffic = found
                    .entry((key.ifindex, Protocol::from_ip_number(key.protocol)))
                    .or_default();
                if egress {
                    traffic.sent.merge(grown);
                } else {
                    traffic.recv.merge(grown);
                }
            }
        }
        let non_ip_new = non_ip
            .into_iter()
            .map(|(ifindex, total)| {
                let reported = self.non_ip_reported.entry(ifindex).or_default();
                let new = Counter {
                    bytes: total.bytes - reported.bytes.min(total.bytes),
                    packets: total.packets - reported.packets.min(total.packets),
                };
                *reported = total;
                (ifindex, new)
            })
            .collect();
        let unattributed = found
            .into_iter()
            .map(|((ifindex, protocol), traffic)| Unattributed {
                ifindex,
                protocol,
                traffic,
            })
            .collect();
        (unattributed, non_ip_new)
    }
}

fn pod<T: Copy + Default>(bytes: &[u8]) -> Option<T> {
    (bytes.len() == std::mem::size_of::<T>())
        // SAFETY: T is a plain C struct generated from the BPF object's BTF, valid for
        // any bit pattern, and the length matches.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Per-CPU counters summed.
fn totals(map: &MapMut<'_>) -> Vec<(Vec<u8>, Counter)> {
    map.keys()
        .filter_map(|key| {
            let per_cpu = map.lookup_percpu(&key, MapFlags::ANY).ok()??;
            let mut total = Counter::default();
            for value in per_cpu {
                if let Some(v) = pod::<types::traffic_value>(&value) {
                    total.bytes += v.bytes;
                    total.packets += v.packets;
                }
            }
            Some((key, total))
        })
        .collect()
}

/// (ifindex, link header length) of every interface in this namespace.
fn host_interfaces() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let read = |file: &str| {
                std::fs::read_to_string(entry.path().join(file))
                    .ok()?
                    .trim()
                    .parse::<u32>()
                    .ok()
            };
            let ifindex = read("ifindex")?;
            // ARPHRD_ETHER (1) and ARPHRD_LOOPBACK (772) frames start with 14 bytes of
            // Ethernet header; tun, WireGuard (ARPHRD_NONE) and others start with IP.
            let link_len = match read("type")? {
                1 | 772 => 14,
                _ => 0,
            };
            Some((ifindex, link_len))
        })
        .collect()
}

fn attach_tcx(program: &libbpf_rs::ProgramMut<'_>, ifindex: u32) -> Result<Link, std::io::Error> {
    let options = libbpf_sys::bpf_tcx_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tcx_opts>() as _,
        ..Default::default()
    };
    // SAFETY: a loaded program and valid options; libbpf returns a link or NULL with errno.
    let link = unsafe {
        libbpf_sys::bpf_program__attach_tcx(
            program.as_libbpf_object().as_ptr(),
            ifindex as i32,
            &options,
        )
    };
    match NonNull::new(link) {
        // SAFETY: a link libbpf just created, owned from here on.
        Some(link) => Ok(unsafe { Link::from_ptr(link) }),
        None => Err(std::io::Error::last_os_error()),
    }
}

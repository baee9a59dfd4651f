//! The floor of per-packet cost, for bench/cost.py: empty programs (bench/floor) at
//! every hook netgraph's eBPF engine runs at per packet, attached the same way (the
//! cgroup v2 root, the typed send/receive tracepoints, tcx on the interfaces named). Prints
//! `attached` once they run; they detach when the process ends. With `--one-call`, the
//! cgroup and tracepoint programs each make one trivial helper call instead.
//! Usage (root): bpf_floor [--one-call] [INTERFACE...]

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use std::io::Write;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

#[allow(clippy::all, dead_code, unused_imports, non_camel_case_types)]
mod floor {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}

fn main() -> anyhow::Result<()> {
    let mut storage = MaybeUninit::uninit();
    let mut open = floor::FloorSkelBuilder::default().open(&mut storage)?;
    open.progs
        .f_iface_ingress
        .set_attach_type(libbpf_rs::ProgramAttachType::TcxIngress);
    open.progs
        .f_iface_egress
        .set_attach_type(libbpf_rs::ProgramAttachType::TcxEgress);
    let skel = open.load()?;
    let root = netgraph::cgroup::cgroup2_root()
        .ok_or_else(|| anyhow::anyhow!("no cgroup v2 hierarchy to attach to"))?;
    let cgroup = std::fs::File::open(root)?;
    let progs = &skel.progs;
    let one_call = std::env::args().any(|arg| arg == "--one-call");
    let (egress, ingress, send, recv) = if one_call {
        (
            &progs.c_count_egress,
            &progs.c_count_ingress,
            &progs.c_on_send,
            &progs.c_on_recv,
        )
    } else {
        (
            &progs.f_count_egress,
            &progs.f_count_ingress,
            &progs.f_on_send,
            &progs.f_on_recv,
        )
    };
    let mut links = vec![
        egress.attach_cgroup(cgroup.as_raw_fd())?,
        ingress.attach_cgroup(cgroup.as_raw_fd())?,
        send.attach()?,
        recv.attach()?,
    ];
    for name in std::env::args().skip(1).filter(|arg| arg != "--one-call") {
        let ifindex = nix::net::if_::if_nametoindex(name.as_str())
            .map_err(|e| anyhow::anyhow!("no interface {name}: {e}"))?;
        use netgraph::engine::ebpf::Direction;
        for (program, direction) in [
            (&progs.f_iface_ingress, Direction::Ingress),
            (&progs.f_iface_egress, Direction::Egress),
        ] {
            links.push(netgraph::engine::ebpf::attach_tcx(
                program, ifindex, direction,
            )?);
        }
    }
    println!("attached");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

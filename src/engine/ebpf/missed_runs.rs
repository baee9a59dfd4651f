//! Runs of netgraph's tracing programs the kernel skipped: a kprobe or classic
//! tracepoint program does not run while another such program runs on the same CPU
//! (an interrupt that fires inside one), and the kernel counts each skip in the
//! program's `recursion_misses` (bpf_prog_info, Linux 5.12+; 0 before). A skipped
//! run is an event netgraph did not see, so it is reported as lost.

use libbpf_rs::{AsRawLibbpf, Object};

/// The sum of `recursion_misses` over every loaded program of `object`.
pub fn total(object: &Object) -> u64 {
    object
        .progs()
        .filter_map(|program| {
            // SAFETY: the program belongs to `object`, which outlives this call; a
            // program that was not loaded has fd -1, which is checked before use.
            let fd = unsafe { libbpf_sys::bpf_program__fd(program.as_libbpf_object().as_ptr()) };
            (fd >= 0).then(|| misses_of(fd))
        })
        .sum()
}

fn misses_of(fd: i32) -> u64 {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut length = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a plain struct of the size given; the kernel fills at most
    // `length` bytes (older kernels fewer, leaving the rest zero).
    let result = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut length) };
    if result == 0 {
        info.recursion_misses
    } else {
        0
    }
}

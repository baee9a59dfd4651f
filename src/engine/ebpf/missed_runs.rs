//! Runs of netgraph's tracing programs the kernel skipped: a kprobe or classic
//! tracepoint program does not run while another such program runs on the same CPU,
//! a typed one while the same program runs there (an interrupt that fires inside it),
//! and the kernel counts each skip in the program's `recursion_misses`
//! (bpf_prog_info, Linux 5.12+; 0 before). A skipped run is an event netgraph did
//! not see, so it is reported as lost, with the programs it hit.

use std::collections::BTreeMap;

use libbpf_rs::{AsRawLibbpf, Object};

/// Skipped runs per program, as reported so far.
#[derive(Default)]
pub struct MissedRuns {
    reported: BTreeMap<String, u64>,
}

impl MissedRuns {
    /// Runs skipped since the last call, per program that had any (by name).
    pub fn new_misses(&mut self, object: &Object) -> BTreeMap<String, u64> {
        let mut new = BTreeMap::new();
        for program in object.progs() {
            // SAFETY: the program belongs to `object`, which outlives this call; a
            // program that was not loaded has fd -1, which is checked before use.
            let fd = unsafe { libbpf_sys::bpf_program__fd(program.as_libbpf_object().as_ptr()) };
            if fd < 0 {
                continue;
            }
            let total = misses_of(fd);
            let name = program.name().to_string_lossy().into_owned();
            let reported = self.reported.entry(name.clone()).or_default();
            if total > *reported {
                new.insert(name, total - *reported);
                *reported = total;
            }
        }
        new
    }
}

/// `program:count` pairs for a log line.
pub fn describe(misses: &BTreeMap<String, u64>) -> String {
    misses
        .iter()
        .map(|(name, count)| format!("{name}:{count}"))
        .collect::<Vec<_>>()
        .join(",")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_names_each_program_with_its_count() {
        let misses = BTreeMap::from([
            ("drops_on_free_typed".into(), 2),
            ("owner_on_send".into(), 1),
        ]);
        assert_eq!(describe(&misses), "drops_on_free_typed:2,owner_on_send:1");
    }
}

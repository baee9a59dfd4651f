//! glibc gives threads malloc arenas of their own, up to eight per core, and keeps
//! what each once held: with threads that come and go (queries of the page, the runtime
//! clients, the receivers) a long-running daemon's memory grows in steps for hours
//! (measured: bench/soak.py). Two arenas serve netgraph's few busy threads as well.

/// Limits glibc's malloc to two arenas; elsewhere (musl) nothing to do.
pub fn limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; called before the threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

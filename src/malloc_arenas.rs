//! glibc gives threads malloc arenas of their own, up to eight per core, and keeps
//! what each once held: with threads that come and go (queries of the page, the runtime
//! clients, the receivers) a long-running daemon's memory grows in steps for hours
//! (measured: bench/soak.py). Two arenas serve netgraph's few busy threads as well,
//! and what they freed is given back to the system now and then.

/// Limits glibc's malloc to two arenas; elsewhere (musl) nothing to do.
pub fn limit() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc parameter; called before the threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the arenas' free pages back to the system (glibc keeps them otherwise, and a
/// query that once needed many MiB would hold them for good); elsewhere nothing to do.
/// Costs a walk over the free lists: call it off the interval loop, now and then.
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

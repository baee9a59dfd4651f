//! Nice values for the threads that must keep up with a saturated host.

/// Gives the calling thread `nice`, unless it already runs at that or better (a unit's
/// `Nice=`). Fails without CAP_SYS_NICE; the thread then runs as it is.
pub fn raise(nice: i32) -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let thread = unsafe { libc::gettid() } as libc::id_t;
    // SAFETY: get/setpriority on our own thread id; no memory is passed.
    if unsafe { libc::getpriority(libc::PRIO_PROCESS, thread) } <= nice {
        return Ok(());
    }
    // SAFETY: as above.
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, thread, nice) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

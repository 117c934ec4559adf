//! Ctrl-C: the first one asks the launch to stop and roll back (or, once `bottle run` has
//! attached, the agent to be stopped and the bottle removed), instead of killing bottle halfway
//! and leaving resources behind.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set when SIGINT or SIGTERM arrives.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether SIGINT or SIGTERM has arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Routes SIGINT and SIGTERM to [`INTERRUPTED`].
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `on_signal` only performs an atomic store, which is async-signal-safe, and
    // replacing the default disposition of these two signals affects nothing else.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Lets a closed stdout (`bottle ls | head`) end bottle quietly, as it ends other command-line
/// tools, instead of making every later `println!` panic.
pub fn restore_default_sigpipe() {
    // SAFETY: restoring the default disposition of SIGPIPE touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

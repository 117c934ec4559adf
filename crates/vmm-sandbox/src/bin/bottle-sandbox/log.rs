//! The helper's log lines, on stderr: the machine's `supervisor.log` once it runs detached.

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one line, stamped with the time (seconds since the epoch) and the process id, so
/// that the lines of the supervisor, the sandbox's init and its builder can be told apart.
pub fn line(message: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "{}.{:03} [{}] {message}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    );
}

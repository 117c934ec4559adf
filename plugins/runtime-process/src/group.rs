//! Process groups: whether a recorded service still runs, and stopping its whole group
//! (SIGTERM, a bounded wait, then SIGKILL).
//!
//! Each service runs in a process group of its own, so that whatever it forks is stopped with
//! it. A record may outlive its processes (a crash, a reboot); before signalling a group the
//! record is checked against the running processes, so that a reused pid is never signalled.
//!
//! Limitations: a service that moves its children to another process group or session
//! (daemonising) takes them out of bottle's reach.

use std::io;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bottle_plugin_api::bottle_core::{BackendError, ErrorKind};

use crate::record::ServiceRecord;

/// How long a group may take to vanish after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// Collects the exit status of `pid` if it is a child of this process, so that it does not
/// linger as a zombie; does nothing for other processes.
pub fn reap(pid: u32) {
    // 0 and -1 would mean "any child": never wait for another's child.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    let mut status = 0;
    // SAFETY: `status` is a valid place for the exit status; WNOHANG makes the call return
    // at once, and a pid that is not our child only gives ECHILD.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Whether any process of group `pgid` still runs (zombies do not count).
fn group_running(pgid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        !crate::procfs::group_members(pgid).is_empty()
    }
    #[cfg(not(target_os = "linux"))]
    {
        signal_group(pgid, 0).unwrap_or(false)
    }
}

/// Whether the processes the record names still run, and are the ones it recorded.
pub fn still_running(service: &ServiceRecord) -> bool {
    reap(service.pid);
    #[cfg(target_os = "linux")]
    if let Some(stat) = crate::procfs::stat(service.pid).filter(|s| s.state != 'Z') {
        // The leader runs; it is the service only if it started when the service did.
        return service.start_time.is_none_or(|t| t == stat.start_time);
    }
    // No leader: a group number is not reused while any member of the group lives.
    group_running(service.pgid)
}

/// Sends `signal` to group `pgid`; `Ok(false)` when the group no longer exists.
fn signal_group(pgid: u32, signal: libc::c_int) -> Result<bool, io::Error> {
    let pgid = libc::pid_t::try_from(pgid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a process group id"))?;
    // SAFETY: killpg only sends a signal; it touches no memory of this process.
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(false),
        _ => Err(err),
    }
}

/// Refuses to signal a group that cannot be a service's: 0 and 1 (which `killpg` reads as
/// "my own group" and "init's"), and this process's own group.
fn check_signallable(service: &ServiceRecord) -> Result<(), BackendError> {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let own = unsafe { libc::getpgrp() };
    let own = u32::try_from(own).unwrap_or(0);
    if service.pgid <= 1 || service.pgid == own {
        return Err(BackendError::new(
            ErrorKind::InvalidInput,
            format!(
                "the record of service `{}` names process group {}, which is never a service's",
                service.name, service.pgid
            ),
        ));
    }
    Ok(())
}

/// Waits until nothing of the service's group runs, or `timeout` passes.
fn wait_gone(service: &ServiceRecord, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        reap(service.pid);
        if !group_running(service.pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(POLL);
    }
}

/// Stops the service's whole process group: SIGTERM, up to `timeout` to exit, then SIGKILL.
/// A service that is already gone is not an error.
pub fn stop(service: &ServiceRecord, timeout: Duration) -> Result<(), BackendError> {
    check_signallable(service)?;
    if !still_running(service) {
        tracing::debug!(service = %service.name, pid = service.pid, "service already gone");
        return Ok(());
    }
    let signal_error = |signal: &str, e: io::Error| {
        BackendError::new(
            ErrorKind::CommandFailed,
            format!(
                "cannot send {signal} to process group {} of service `{}`",
                service.pgid, service.name
            ),
        )
        .with_cause(&e)
    };
    tracing::debug!(service = %service.name, pgid = service.pgid, "sending SIGTERM");
    if !signal_group(service.pgid, libc::SIGTERM).map_err(|e| signal_error("SIGTERM", e))? {
        return Ok(());
    }
    if wait_gone(service, timeout) {
        return Ok(());
    }
    tracing::warn!(
        service = %service.name,
        pgid = service.pgid,
        "service still runs {} ms after SIGTERM; sending SIGKILL",
        timeout.as_millis()
    );
    signal_group(service.pgid, libc::SIGKILL).map_err(|e| signal_error("SIGKILL", e))?;
    if wait_gone(service, KILL_GRACE) {
        return Ok(());
    }
    Err(BackendError::new(
        ErrorKind::Timeout,
        format!(
            "process group {} of service `{}` still runs after SIGKILL",
            service.pgid, service.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use super::*;

    fn record_of(child: &std::process::Child) -> ServiceRecord {
        ServiceRecord {
            name: "sleeper".parse().unwrap(),
            pid: child.id(),
            pgid: child.id(),
            start_time: None,
            port: 1,
            host_port: 1,
            log: "/dev/null".into(),
        }
    }

    #[test]
    // `stop` reaps the shell itself, as it does for every service started by this process.
    #[allow(clippy::zombie_processes)]
    fn a_group_that_ignores_sigterm_is_killed() {
        // The shell ignores TERM and waits on a child in the same group.
        let child = Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let record = record_of(&child);
        sleep(Duration::from_millis(100));
        assert!(still_running(&record));
        stop(&record, Duration::from_millis(200)).unwrap();
        assert!(!still_running(&record));
        assert!(!group_running(record.pgid));
    }

    #[test]
    fn stopping_a_service_that_is_gone_is_not_an_error() {
        let mut child = Command::new("true").process_group(0).spawn().unwrap();
        child.wait().unwrap();
        let record = record_of(&child);
        assert!(!still_running(&record));
        stop(&record, Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn our_own_group_and_the_special_groups_are_never_signalled() {
        let mut record = ServiceRecord {
            name: "x".parse().unwrap(),
            pid: 0,
            pgid: 0,
            start_time: None,
            port: 1,
            host_port: 1,
            log: "/dev/null".into(),
        };
        // SAFETY: getpgrp has no preconditions and cannot fail.
        let own = u32::try_from(unsafe { libc::getpgrp() }).unwrap();
        for pgid in [0, 1, own] {
            record.pgid = pgid;
            record.pid = pgid;
            let err = stop(&record, Duration::from_millis(10)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput);
        }
    }
}

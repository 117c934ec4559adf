//! `bottle-sandbox start DIR`: the machine's supervisor, detached, once the sandbox is ready.

use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::time::Duration;

use bottle_vmm_sandbox::{relay_targets, MachineDir};

use crate::failure::{Context, Failure};
use crate::idmap::IdMaps;
use crate::sandbox::Plan;
use crate::supervisor::{self, Readiness};
use crate::{log, sys};

/// How long to wait for the supervisor's word; it bounds its own setup more tightly.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts the supervisor of the machine in `dir`.
pub fn start(dir: &MachineDir) -> Result<(), Failure> {
    let record = dir.read_record().map_err(|e| Failure::new(e.to_string()))?;
    let relay =
        relay_targets(&record.agent, &record.policy).map_err(|e| Failure::new(e.to_string()))?;
    if relay != record.relay {
        return Err(Failure::new(format!(
            "{} names relay addresses that its agent and policy do not give",
            dir.record_path().display()
        )));
    }
    dir.clear_supervisor()
        .map_err(|e| Failure::new(e.to_string()))?;
    let staging = dir.staging();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&staging)
        .context(|| format!("cannot create {}", staging.display()))?;
    let log_file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(dir.supervisor_log())
        .context(|| format!("cannot open {}", dir.supervisor_log().display()))?;
    let dev_null = fs::File::open("/dev/null").context(|| "cannot open /dev/null".to_owned())?;
    let (euid, egid) = sys::effective_ids();
    let plan = Plan {
        record,
        staging,
        agent_log: Some(dir.agent_log()),
        maps: IdMaps::for_invoker(euid, egid),
        check_only: false,
    };
    let (ready_read, ready_write) = sys::pipe().context(|| "cannot make a pipe".to_owned())?;

    // SAFETY: the helper has a single thread here: `main` started none.
    match unsafe { sys::fork() }.context(|| "cannot fork the supervisor".to_owned())? {
        sys::Fork::Child => {
            drop(ready_read);
            // Detached: a session of its own, its log as stdout and stderr (so that bottle,
            // reading this command's output, is not kept waiting), and nothing else it may
            // have inherited from bottle (a lock, a database) held open for its lifetime.
            let detached = sys::setsid()
                .and_then(|()| sys::dup2(dev_null.as_fd(), 0))
                .and_then(|()| sys::dup2(log_file.as_fd(), 1))
                .and_then(|()| sys::dup2(log_file.as_fd(), 2));
            drop(log_file);
            drop(dev_null);
            let detached =
                detached.and_then(|()| sys::close_other_fds(&[0, 1, 2, ready_write.as_raw_fd()]));
            let mut readiness = Readiness::new(Some(ready_write));
            let code = match detached
                .context(|| "cannot detach the supervisor".to_owned())
                .and_then(|()| supervisor::run(dir, &plan, &mut readiness))
            {
                Ok(code) => code,
                Err(failure) => {
                    log::line(&format!("cannot start the sandbox: {}", failure.report()));
                    readiness.failed(&failure);
                    1
                }
            };
            sys::exit_now(code)
        }
        sys::Fork::Parent(pid) => {
            drop(ready_write);
            let word = read_word(ready_read, READY_TIMEOUT);
            let _ = sys::wait_child(pid, true);
            let failure = match word {
                Ok(word) if word == "ready" => return Ok(()),
                Ok(word) => match word.strip_prefix("failed: ") {
                    Some(reason) => Failure::new(reason.to_owned()),
                    None => Failure::new("the supervisor exited before the sandbox was ready"),
                },
                Err(e) => {
                    let _ = sys::kill(pid, libc::SIGKILL);
                    let _ = sys::wait_child(pid, false);
                    e
                }
            };
            let tail = dir.supervisor_log_tail(20);
            Err(Failure::new(format!(
                "{}\n--- {} (last lines) ---\n{tail}",
                failure.report(),
                dir.supervisor_log().display()
            )))
        }
    }
}

/// Reads the supervisor's one line, or what it wrote before it exited.
fn read_word(pipe: std::os::fd::OwnedFd, timeout: Duration) -> Result<String, Failure> {
    let ready = sys::poll(
        &[(pipe.as_fd(), libc::POLLIN)],
        timeout.as_millis() as libc::c_int,
    )
    .context(|| "cannot wait for the supervisor".to_owned())?;
    if ready[0] == 0 {
        return Err(Failure::new(format!(
            "the supervisor said nothing within {}s",
            timeout.as_secs()
        )));
    }
    let mut text = String::new();
    fs::File::from(pipe)
        .read_to_string(&mut text)
        .context(|| "cannot read the supervisor's word".to_owned())?;
    Ok(text.trim().to_owned())
}

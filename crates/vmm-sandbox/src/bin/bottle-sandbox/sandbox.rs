//! The sandbox side's first process: it enters the new namespaces and is the init's parent.

use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;

use bottle_vmm_sandbox::MachineRecord;

use crate::control::{Channel, Message};
use crate::failure::{Context, Failure};
use crate::idmap::IdMaps;
use crate::{init, log, sys};

/// What the sandbox side is to build and run.
pub struct Plan {
    pub record: MachineRecord,
    /// The empty directory the new root is mounted on (in the sandbox's mount namespace).
    pub staging: PathBuf,
    /// Where the agent's command writes its output; `None` in a check.
    pub agent_log: Option<PathBuf>,
    pub maps: IdMaps,
    /// A check builds the sandbox, reports it ready, and ends at once.
    pub check_only: bool,
}

/// The namespaces the sandbox gets at once; the mount namespace comes later, from the init.
const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

/// Runs in the supervisor's forked child; never returns. It moves into the new user,
/// network, PID, IPC and UTS namespaces, waits for its id maps, forks the init and mirrors
/// its exit. It stays in the host's mount namespace, so that the init's change of root does
/// not touch it, and outside the new PID namespace, so that no agent process can see it.
pub fn run(channel: Channel, plan: &Plan) -> ! {
    let code = match steps(&channel, plan) {
        Ok(code) => code,
        Err(failure) => {
            let report = failure.report();
            log::line(&format!("sandbox setup failed: {report}"));
            let _ = channel.send(&Message::Failed(report));
            1
        }
    };
    sys::exit_now(code)
}

fn steps(channel: &Channel, plan: &Plan) -> Result<i32, Failure> {
    sys::set_parent_death_signal(libc::SIGKILL)
        .context(|| "cannot ask to die with the supervisor".to_owned())?;
    sys::close_other_fds(&[0, 1, 2, channel.as_fd().as_raw_fd()])
        .context(|| "cannot close inherited descriptors".to_owned())?;
    if sys::effective_ids().0 == 0 {
        sys::clear_groups().context(|| "cannot drop supplementary groups".to_owned())?;
    }
    sys::unshare(NAMESPACES)
        .context(|| "cannot create user, network, PID, IPC and UTS namespaces".to_owned())?;
    channel
        .send(&Message::Unshared)
        .context(|| "cannot tell the supervisor".to_owned())?;
    channel
        .expect(&Message::Mapped)
        .context(|| "the supervisor did not map the sandbox's ids".to_owned())?;

    // SAFETY: this process has a single thread: it was forked from the single-threaded
    // supervisor and started none.
    match unsafe { sys::fork() }.context(|| "cannot fork the sandbox's init".to_owned())? {
        sys::Fork::Child => init::run(channel, plan),
        sys::Fork::Parent(pid) => {
            let pid =
                u32::try_from(pid).map_err(|_| Failure::new("fork returned a negative pid"))?;
            channel
                .send(&Message::Init(pid))
                .context(|| "cannot tell the supervisor the init's pid".to_owned())?;
            let ended = loop {
                match sys::wait_child(pid as libc::pid_t, false) {
                    Ok(Some((_, ended))) => break ended,
                    Ok(None) => continue,
                    Err(e) => return Err(e).context(|| "cannot wait for the init".to_owned()),
                }
            };
            Ok(ended.code())
        }
    }
}

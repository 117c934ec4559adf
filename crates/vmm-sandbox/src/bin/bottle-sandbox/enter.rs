//! `bottle-sandbox exec DIR -- COMMAND...`: a command run in a running sandbox, as its agent.

use std::os::fd::AsFd;

use bottle_vmm_sandbox::MachineDir;

use crate::failure::{Context, Failure};
use crate::program::Program;
use crate::sys;

/// Every namespace of the sandbox's init: the agent's own user and mount namespaces, and the
/// network, PID, IPC and UTS namespaces of the sandbox.
const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

/// The signals passed on to the command, as a terminal or `bottle` would send them.
const FORWARDED: &[libc::c_int] = &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Runs `command` in the sandbox of the machine in `dir`; returns its exit code, or ends
/// this process by the signal that killed it.
pub fn exec(dir: &MachineDir, command: &[String]) -> Result<i32, Failure> {
    let record = dir.read_record().map_err(|e| Failure::new(e.to_string()))?;
    let running = dir
        .read_supervisor()
        .map_err(|e| Failure::new(e.to_string()))?
        .filter(|r| r.init.is_alive())
        .ok_or_else(|| Failure::new(format!("{} is not running", record.agent.machine_name)))?;
    let program = Program::new(command, &record.environment())
        .context(|| "cannot use the command".to_owned())?;
    let init_pid = running
        .init
        .raw()
        .ok_or_else(|| Failure::new("the recorded init pid is not a pid"))?;

    if sys::effective_ids().0 == 0 {
        sys::clear_groups().context(|| "cannot drop supplementary groups".to_owned())?;
    }
    // Not dumpable from here until exec: once inside, the agent (same uid, same namespaces)
    // could otherwise ptrace this process while it still holds anything of the host.
    sys::set_dumpable(false).context(|| "cannot mark the helper not dumpable".to_owned())?;
    let init = sys::pidfd_open(init_pid).context(|| format!("cannot open process {init_pid}"))?;
    if !running.init.is_alive() {
        return Err(Failure::new(format!(
            "{} stopped",
            record.agent.machine_name
        )));
    }
    sys::setns(init.as_fd(), NAMESPACES)
        .context(|| "cannot enter the sandbox's namespaces".to_owned())?;
    drop(init);
    sys::set_ids(0, 0).context(|| "cannot become the sandbox's agent user".to_owned())?;

    let set = sys::SignalSet::of(&[FORWARDED, &[libc::SIGCHLD]].concat());
    set.block().context(|| "cannot block signals".to_owned())?;
    let signals = set
        .signal_fd()
        .context(|| "cannot open a signal fd".to_owned())?;

    // SAFETY: the helper has a single thread: `main` started none.
    let child =
        match unsafe { sys::fork() }.context(|| "cannot fork into the sandbox".to_owned())? {
            sys::Fork::Child => run_child(&program),
            sys::Fork::Parent(pid) => pid,
        };
    loop {
        let signal =
            sys::read_signal(signals.as_fd()).context(|| "cannot read a signal".to_owned())?;
        if signal != libc::SIGCHLD {
            let _ = sys::kill(child, signal);
            continue;
        }
        if let Some((_, ended)) =
            sys::wait_child(child, true).context(|| "cannot wait for the command".to_owned())?
        {
            return Ok(end_like(ended));
        }
    }
}

/// The command's side: a session of its own (no controlling terminal, so that it cannot push
/// input into the user's terminal), the standard streams only, and the program.
fn run_child(program: &Program) -> ! {
    sys::reset_signals();
    // Like the agent, the command gets a session keyring of its own, not the invoker's.
    let _ = sys::join_new_session_keyring();
    let prepared = sys::setsid()
        .and_then(|()| sys::chdir(c"/"))
        .and_then(|()| sys::close_other_fds(&[0, 1, 2]));
    let (code, err) = match prepared {
        Ok(()) => program.exec(),
        Err(e) => (crate::program::NOT_EXECUTABLE, e),
    };
    eprintln!(
        "{}cannot run `{}`: {err}",
        bottle_vmm_sandbox::HELPER_MESSAGE_PREFIX,
        program.name()
    );
    sys::exit_now(code)
}

/// The exit code for a command that exited; for one that was killed, this process kills
/// itself the same way, so that the caller sees the signal.
fn end_like(ended: sys::Ended) -> i32 {
    match ended {
        sys::Ended::Exited(code) => code,
        sys::Ended::Killed(signal) => {
            sys::reset_signals();
            let _ = sys::kill(std::process::id() as libc::pid_t, signal);
            128 + signal
        }
    }
}

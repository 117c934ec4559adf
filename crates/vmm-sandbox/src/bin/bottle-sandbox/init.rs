//! The sandbox's init, pid 1 of its PID namespace: it builds the sandbox, runs the agent, reaps.

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use crate::control::{Channel, Message};
use crate::failure::{Context, Failure};
use crate::program::{Program, NOT_EXECUTABLE};
use crate::rootfs::{self, Owner};
use crate::sandbox::Plan;
use crate::{log, sys};

/// How long the agent's processes get between SIGTERM and the end of the sandbox.
const GRACE: Duration = Duration::from_secs(2);

/// The signals the init handles (through a signal fd, never a handler).
const SIGNALS: &[libc::c_int] = &[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Runs as the sandbox's init; never returns.
pub fn run(channel: &Channel, plan: &Plan) -> ! {
    let code = match setup(channel, plan) {
        Ok(running) if plan.check_only => {
            drop(running);
            0
        }
        Ok(running) => serve(channel, running),
        Err(failure) => {
            let report = failure.report();
            log::line(&format!("sandbox setup failed: {report}"));
            let _ = channel.send(&Message::Failed(report));
            1
        }
    };
    sys::exit_now(code)
}

/// A sandbox that is up: its signal fd, and the agent's pid when it runs a command.
struct Running {
    signals: OwnedFd,
    agent: Option<libc::pid_t>,
}

fn setup(channel: &Channel, plan: &Plan) -> Result<Running, Failure> {
    let record = &plan.record;
    sys::set_parent_death_signal(libc::SIGKILL)
        .context(|| "cannot ask to die with the sandbox's first process".to_owned())?;
    sys::unshare(libc::CLONE_NEWNS).context(|| "cannot create a mount namespace".to_owned())?;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
        .context(|| "cannot make the sandbox's mounts private".to_owned())?;

    sys::loopback_up().context(|| "cannot bring up the loopback interface".to_owned())?;
    for address in &record.relay {
        let listener = TcpListener::bind(address)
            .context(|| format!("cannot listen on {address} inside the sandbox"))?;
        channel
            .send_with(&Message::Listener(*address), &[listener.as_fd()])
            .context(|| format!("cannot pass the listener for {address} to the supervisor"))?;
    }
    sys::sethostname(&record.agent.machine_name)
        .context(|| "cannot set the sandbox's host name".to_owned())?;

    let sources = rootfs::open_sources(&record.agent.mounts)?;
    let agent_log = match &plan.agent_log {
        Some(path) => Some(
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)
                .context(|| format!("cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let owner = Owner {
        uid: plan.maps.agent_uid,
        gid: plan.maps.agent_gid,
    };
    rootfs::build(&plan.staging, sources, owner)?;
    let dev_null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context(|| "cannot open /dev/null in the sandbox".to_owned())?;

    enter_agent_namespaces(plan)?;
    if let Err(e) = sys::join_new_session_keyring() {
        log::line(&format!("the sandbox shares its session keyring: {e}"));
    }
    sys::chdir(c"/").context(|| "cannot enter /".to_owned())?;

    keep_nothing_of_the_host(dev_null.as_fd())?;
    let set = sys::SignalSet::of(SIGNALS);
    set.block().context(|| "cannot block signals".to_owned())?;
    let signals = set
        .signal_fd()
        .context(|| "cannot open a signal fd".to_owned())?;
    let agent = match (
        &agent_log,
        record.agent.command.is_empty() || plan.check_only,
    ) {
        (Some(log_file), false) => {
            let program = Program::new(&record.agent.command, &record.environment())
                .context(|| "cannot use the agent's command".to_owned())?;
            Some(spawn_agent(&program, log_file.as_fd(), dev_null.as_fd())?)
        }
        _ => None,
    };
    channel
        .send(&Message::Ready)
        .context(|| "cannot tell the supervisor the sandbox is ready".to_owned())?;
    Ok(Running { signals, agent })
}

/// Moves the init into the agent's user and mount namespaces, nested in the builder's: every
/// mount made so far becomes locked (the agent can neither remount a read-only view writable
/// nor unmount one), and the agent gets no capability over the network namespace.
fn enter_agent_namespaces(plan: &Plan) -> Result<(), Failure> {
    let maps = &plan.maps;
    if maps.switches_ids() {
        sys::clear_groups().context(|| "cannot drop supplementary groups".to_owned())?;
        sys::set_ids(maps.agent_uid, maps.agent_gid)
            .context(|| "cannot switch to the agent's ids".to_owned())?;
    }
    sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS)
        .context(|| "cannot create the agent's user and mount namespaces".to_owned())?;
    // The map files belong to the process only while it is dumpable, which a change of ids
    // (root's switch to `nobody`) has just undone.
    sys::set_dumpable(true).context(|| "cannot mark the init dumpable".to_owned())?;
    let proc_self = std::path::Path::new("/proc/self");
    sys::write_once(&proc_self.join("setgroups"), "deny")
        .context(|| "cannot deny setgroups in the agent's namespace".to_owned())?;
    sys::write_once(&proc_self.join("uid_map"), &maps.inner_uid_map())
        .context(|| "cannot write the agent's uid map".to_owned())?;
    sys::write_once(&proc_self.join("gid_map"), &maps.inner_gid_map())
        .context(|| "cannot write the agent's gid map".to_owned())?;
    // It stays dumpable, so that `exec`, run by an unprivileged user, may join its
    // namespaces; the agent may then ptrace it too, which is why it keeps nothing of the host
    // once it runs the agent (see `keep_nothing_of_the_host`).
    sys::set_parent_death_signal(libc::SIGKILL)
        .context(|| "cannot ask to die with the sandbox's first process".to_owned())
}

/// Points the init's standard streams (the supervisor's log, on the host) at the sandbox's
/// `/dev/null`: the agent could read the init's descriptors, and after this the only ones
/// left are the agent log (closed once the agent runs), a signal fd, and the channel, which
/// the supervisor never reads from once the sandbox is ready.
fn keep_nothing_of_the_host(dev_null: BorrowedFd<'_>) -> Result<(), Failure> {
    for fd in 0..=2 {
        sys::dup2(dev_null, fd)
            .context(|| "cannot redirect the init's standard streams".to_owned())?;
    }
    Ok(())
}

/// Starts the agent's command in a session of its own, with its output in the agent log,
/// and waits until it has been executed (or failed to be).
fn spawn_agent(
    program: &Program,
    log_file: BorrowedFd<'_>,
    dev_null: BorrowedFd<'_>,
) -> Result<libc::pid_t, Failure> {
    // The child writes why exec failed into the pipe; a successful exec closes it unwritten.
    let (report_read, report_write) = sys::pipe().context(|| "cannot make a pipe".to_owned())?;
    // SAFETY: the init has a single thread: it was forked from the single-threaded first
    // process and started none.
    match unsafe { sys::fork() }.context(|| "cannot fork the agent".to_owned())? {
        sys::Fork::Child => {
            let (code, err) = agent_child(program, log_file, dev_null, report_write.as_fd());
            let message = format!("cannot run `{}`: {err}", program.name());
            let _ = fs::File::from(report_write).write_all(message.as_bytes());
            sys::exit_now(code)
        }
        sys::Fork::Parent(pid) => {
            drop(report_write);
            let mut report = String::new();
            fs::File::from(report_read)
                .read_to_string(&mut report)
                .context(|| "cannot read whether the agent started".to_owned())?;
            if report.is_empty() {
                Ok(pid)
            } else {
                let _ = sys::wait_child(pid, false);
                Err(Failure::new(report))
            }
        }
    }
}

/// The agent's side of the fork: a fresh session, standard streams, nothing else open, and
/// the command. Returns only when exec failed.
fn agent_child(
    program: &Program,
    log_file: BorrowedFd<'_>,
    dev_null: BorrowedFd<'_>,
    report: BorrowedFd<'_>,
) -> (i32, io::Error) {
    sys::reset_signals();
    let prepared = sys::setsid()
        .and_then(|()| sys::dup2(dev_null, 0))
        .and_then(|()| sys::dup2(log_file, 1))
        .and_then(|()| sys::dup2(log_file, 2))
        .and_then(|()| sys::close_other_fds(&[0, 1, 2, report.as_raw_fd()]));
    if let Err(e) = prepared {
        return (NOT_EXECUTABLE, e);
    }
    program.exec()
}

/// Waits for the agent to end, a request to stop, or the supervisor to go away; then takes
/// every process of the sandbox down and returns the exit code to end with. It logs nothing:
/// its standard streams are the sandbox's `/dev/null` by now, and the supervisor logs how
/// the sandbox ended.
fn serve(channel: &Channel, running: Running) -> i32 {
    let mut agent_ended = None;
    loop {
        let fds = [
            (running.signals.as_fd(), libc::POLLIN),
            (channel.as_fd(), 0),
        ];
        let Ok(ready) = sys::poll(&fds, -1) else {
            break;
        };
        if ready[0] != 0 {
            match sys::read_signal(running.signals.as_fd()) {
                Ok(libc::SIGCHLD) => {
                    agent_ended = agent_ended.or(reap(running.agent));
                    if agent_ended.is_some() {
                        break;
                    }
                }
                Ok(_) | Err(_) => break,
            }
        }
        // Watched for hang-up only (no events asked): the supervisor's end closes when it
        // dies, and nothing is read from the channel once the sandbox runs.
        if ready[1] != 0 {
            break;
        }
    }
    take_down(&running);
    agent_ended.map_or(0, sys::Ended::code)
}

/// Reaps every child that has ended; returns how the agent ended if it was among them.
fn reap(agent: Option<libc::pid_t>) -> Option<sys::Ended> {
    let mut agent_ended = None;
    while let Ok(Some((pid, ended))) = sys::wait_child(-1, true) {
        if Some(pid) == agent {
            agent_ended = Some(ended);
        }
    }
    agent_ended
}

/// Asks every process of the sandbox to stop, waits a little, and returns; the kernel kills
/// what is left when the init exits.
fn take_down(running: &Running) {
    if sys::kill(-1, libc::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + GRACE;
    loop {
        reap(None);
        if let Err(e) = sys::wait_child(-1, true) {
            if e.raw_os_error() == Some(libc::ECHILD) {
                return;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let timeout = left.as_millis().min(100) as libc::c_int;
        if let Ok(ready) = sys::poll(&[(running.signals.as_fd(), libc::POLLIN)], timeout) {
            if ready[0] != 0 {
                let _ = sys::read_signal(running.signals.as_fd());
            }
        }
    }
}

//! The supervisor: it builds the sandbox from the host's namespaces, relays, and stops it all.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use bottle_vmm_sandbox::{MachineDir, ProcessId, SupervisorRecord};

use crate::control::{Channel, Message};
use crate::failure::{Context, Failure};
use crate::sandbox::{self, Plan};
use crate::{log, relay, sys};

/// How long building the sandbox may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the sandbox gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// The signals the supervisor handles (through a signal fd, never a handler).
const SIGNALS: &[libc::c_int] = &[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Tells whoever started the supervisor that the sandbox is ready, or why it is not.
pub struct Readiness {
    pipe: Option<OwnedFd>,
}

impl Readiness {
    pub fn new(pipe: Option<OwnedFd>) -> Self {
        Readiness { pipe }
    }

    fn tell(&mut self, line: &str) {
        if let Some(pipe) = self.pipe.take() {
            let _ = fs::File::from(pipe).write_all(format!("{line}\n").as_bytes());
        }
    }

    pub fn ready(&mut self) {
        self.tell("ready");
    }

    /// Reports a failure, unless readiness was already told.
    pub fn failed(&mut self, failure: &Failure) {
        self.tell(&format!("failed: {}", failure.report()));
    }
}

/// The processes of a sandbox being built or running.
struct Sandbox {
    /// The sandbox side's first process, our child.
    first: libc::pid_t,
    /// Its init, once it told us.
    init: Option<libc::pid_t>,
}

impl Sandbox {
    /// Kills the sandbox at once and reaps our child.
    fn kill(&self) {
        if let Some(init) = self.init {
            let _ = sys::kill(init, libc::SIGKILL);
        }
        let _ = sys::kill(self.first, libc::SIGKILL);
        let _ = sys::wait_child(self.first, false);
    }
}

/// Builds the sandbox `plan` describes and, unless it is a check, supervises it until it
/// ends. Returns the exit code to end with.
///
/// Must be called while the process has a single thread: it forks.
pub fn run(dir: &MachineDir, plan: &Plan, readiness: &mut Readiness) -> Result<i32, Failure> {
    let set = sys::SignalSet::of(SIGNALS);
    set.block().context(|| "cannot block signals".to_owned())?;
    let signals = set
        .signal_fd()
        .context(|| "cannot open a signal fd".to_owned())?;
    let (ours, theirs) =
        sys::seqpacket_pair().context(|| "cannot make a socket pair".to_owned())?;

    // SAFETY: the supervisor has a single thread until the relay starts, after this.
    let first = match unsafe { sys::fork() }.context(|| "cannot fork the sandbox".to_owned())? {
        sys::Fork::Child => {
            drop(ours);
            sandbox::run(Channel::new(theirs), plan)
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop(theirs);
    let channel = Channel::new(ours);
    let mut sandbox = Sandbox { first, init: None };
    if let Err(failure) = bring_up(dir, &channel, &signals, plan, &mut sandbox) {
        sandbox.kill();
        return Err(failure);
    }
    if plan.check_only {
        return match wait_first(&sandbox) {
            Some(sys::Ended::Exited(0)) => Ok(0),
            other => Err(Failure::new(format!(
                "the checked sandbox ended with {other:?}"
            ))),
        };
    }
    readiness.ready();
    let code = supervise(&signals, &sandbox);
    drop(channel);
    Ok(code)
}

/// Takes the sandbox through its setup and, unless it is a check, starts the relay and
/// records the sandbox's processes.
fn bring_up(
    dir: &MachineDir,
    channel: &Channel,
    signals: &OwnedFd,
    plan: &Plan,
    sandbox: &mut Sandbox,
) -> Result<(), Failure> {
    let listeners = set_up(channel, signals, plan, sandbox)?;
    let init = sandbox
        .init
        .ok_or_else(|| Failure::new("the sandbox never named its init"))?;
    if plan.check_only {
        return Ok(());
    }
    relay::start(listeners)?;
    dir.write_supervisor(&identify(init)?)
        .map_err(|e| Failure::new(e.to_string()))?;
    log::line(&format!(
        "sandbox ready: init {init}, relay to {}",
        describe_relay(&plan.record.relay)
    ));
    Ok(())
}

fn describe_relay(relay: &[SocketAddrV4]) -> String {
    if relay.is_empty() {
        "nothing".to_owned()
    } else {
        relay
            .iter()
            .map(SocketAddrV4::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn identify(init: libc::pid_t) -> Result<SupervisorRecord, Failure> {
    let me = ProcessId::of(std::process::id())
        .context(|| "cannot read the supervisor's own start time".to_owned())?;
    let init = ProcessId::of(init as u32)
        .context(|| "cannot read the sandbox init's start time".to_owned())?;
    Ok(SupervisorRecord {
        supervisor: me,
        init,
    })
}

/// Answers the sandbox side's setup messages until it is ready; returns the relay's
/// listening sockets, one per relay address.
fn set_up(
    channel: &Channel,
    signals: &OwnedFd,
    plan: &Plan,
    sandbox: &mut Sandbox,
) -> Result<Vec<(SocketAddrV4, TcpListener)>, Failure> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let mut listeners = BTreeMap::new();
    let mut ready_seen = false;
    loop {
        // The init and the first process both write to the channel, so the init's pid may
        // come after the init's own `ready`.
        if ready_seen && sandbox.init.is_some() {
            return Ok(listeners.into_iter().collect());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Failure::new(format!(
                "the sandbox was not ready within {}s",
                SETUP_TIMEOUT.as_secs()
            )));
        }
        let ready = sys::poll(
            &[
                (channel.as_fd(), libc::POLLIN),
                (signals.as_fd(), libc::POLLIN),
            ],
            left.as_millis().min(i32::MAX as u128) as libc::c_int,
        )
        .context(|| "cannot wait for the sandbox".to_owned())?;
        if ready[1] != 0 {
            let signal =
                sys::read_signal(signals.as_fd()).context(|| "cannot read a signal".to_owned())?;
            if signal != libc::SIGCHLD {
                return Err(Failure::new(format!(
                    "stopped by signal {signal} during setup"
                )));
            }
        }
        if ready[0] == 0 {
            continue;
        }
        let Some((message, mut fds)) = channel
            .recv()
            .context(|| "cannot read from the sandbox".to_owned())?
        else {
            return Err(Failure::new(match wait_first(sandbox) {
                Some(ended) => format!("the sandbox ended during setup ({ended:?})"),
                None => "the sandbox closed its channel during setup".to_owned(),
            }));
        };
        match message {
            Message::Unshared => {
                write_maps(sandbox.first, plan)?;
                channel
                    .send(&Message::Mapped)
                    .context(|| "cannot tell the sandbox its ids are mapped".to_owned())?;
            }
            Message::Init(pid) => {
                let pid = libc::pid_t::try_from(pid)
                    .map_err(|_| Failure::new(format!("the sandbox named init pid {pid}")))?;
                sandbox.init = Some(pid);
            }
            Message::Listener(address) => {
                let fd = fds.pop().filter(|_| fds.is_empty()).ok_or_else(|| {
                    Failure::new(format!(
                        "the listener for {address} came without one socket"
                    ))
                })?;
                let listener = checked_listener(plan, address, fd)?;
                if listeners.insert(address, listener).is_some() {
                    return Err(Failure::new(format!("two listeners for {address}")));
                }
            }
            Message::Ready => {
                if listeners.len() != plan.record.relay.len() {
                    return Err(Failure::new("the sandbox was ready without every listener"));
                }
                ready_seen = true;
            }
            Message::Failed(reason) => return Err(Failure::new(reason)),
            Message::Mapped => return Err(Failure::new("unexpected `mapped` from the sandbox")),
        }
    }
}

/// Takes a listening socket only for an address of the relay, and only when it really is a
/// socket bound there.
fn checked_listener(
    plan: &Plan,
    address: SocketAddrV4,
    fd: OwnedFd,
) -> Result<TcpListener, Failure> {
    if !plan.record.relay.contains(&address) {
        return Err(Failure::new(format!(
            "the sandbox offered a listener for {address}, which is not a relay address"
        )));
    }
    let listener = TcpListener::from(fd);
    let bound = listener
        .local_addr()
        .context(|| format!("the listener for {address} is not a socket"))?;
    if bound != SocketAddr::V4(address) {
        return Err(Failure::new(format!(
            "the listener for {address} is bound to {bound}"
        )));
    }
    Ok(listener)
}

/// Writes the outer user namespace's maps for the sandbox's first process.
fn write_maps(first: libc::pid_t, plan: &Plan) -> Result<(), Failure> {
    let proc_dir = std::path::PathBuf::from(format!("/proc/{first}"));
    let maps = &plan.maps;
    if maps.outer_deny_setgroups {
        sys::write_once(&proc_dir.join("setgroups"), "deny")
            .context(|| "cannot deny setgroups in the sandbox".to_owned())?;
    }
    sys::write_once(&proc_dir.join("uid_map"), &maps.outer_uid_map).context(|| {
        format!(
            "cannot write the sandbox's uid map ({:?})",
            maps.outer_uid_map
        )
    })?;
    sys::write_once(&proc_dir.join("gid_map"), &maps.outer_gid_map).context(|| {
        format!(
            "cannot write the sandbox's gid map ({:?})",
            maps.outer_gid_map
        )
    })
}

/// Waits for the sandbox's first process to end.
fn wait_first(sandbox: &Sandbox) -> Option<sys::Ended> {
    loop {
        match sys::wait_child(sandbox.first, false) {
            Ok(Some((_, ended))) => return Some(ended),
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
}

/// Runs until the sandbox ends, or a signal asks to stop it; returns the exit code.
///
/// The channel stays open, unread: the init watches it to learn of the supervisor's death,
/// and nothing the sandbox might write to it (the agent can ptrace the init) is ever read.
fn supervise(signals: &OwnedFd, sandbox: &Sandbox) -> i32 {
    loop {
        match sys::read_signal(signals.as_fd()) {
            Ok(libc::SIGCHLD) => {
                if let Ok(Some((_, ended))) = sys::wait_child(sandbox.first, true) {
                    log::line(&format!("the sandbox ended ({ended:?})"));
                    return ended.code();
                }
            }
            Ok(signal) => {
                log::line(&format!("signal {signal}: stopping the sandbox"));
                return stop(signals, sandbox);
            }
            Err(e) => {
                log::line(&format!("cannot read a signal: {e}; stopping the sandbox"));
                return stop(signals, sandbox);
            }
        }
    }
}

/// Asks the init to take the sandbox down, then kills it if it has not within the timeout.
fn stop(signals: &OwnedFd, sandbox: &Sandbox) -> i32 {
    if let Some(init) = sandbox.init {
        let _ = sys::kill(init, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        if let Ok(Some((_, ended))) = sys::wait_child(sandbox.first, true) {
            log::line(&format!("the sandbox stopped ({ended:?})"));
            return 0;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let timeout = left.as_millis().min(100) as libc::c_int;
        if let Ok(ready) = sys::poll(&[(signals.as_fd(), libc::POLLIN)], timeout) {
            if ready[0] != 0 {
                let _ = sys::read_signal(signals.as_fd());
            }
        }
    }
    log::line("the sandbox did not stop in time; killing it");
    sandbox.kill();
    0
}

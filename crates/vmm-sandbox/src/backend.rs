//! `SandboxBackend`: the `VmmBackend` trait, carried out by the helper and a machine directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use bottle_core::{
    AgentSpec, BackendError, EgressPolicy, ExecOutput, ExecStdio, Machine, MachineState,
    ScopeSupport, VmmBackend, VmmProbe,
};

use crate::command::{HelperCommand, HELPER_FAILURE, HELPER_MESSAGE_PREFIX};
use crate::error::Error;
use crate::host::{self, UsernsSettings};
use crate::machine::{check_name, MachineDir, MachineRecord, MACHINE_PREFIX};
use crate::process::ProcessId;
use crate::settings::{find_helper, Settings, HELPER_NAME};
use crate::validate;

/// This crate's version, which the helper must report too.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long `stop` waits for the supervisor to take the sandbox down before killing it.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long `stop` waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(3);

const REMEDY: &str = "run bottle where unprivileged user namespaces are allowed and /proc is \
                      not masked (a plain Linux host or VM, not a default Docker container), or \
                      use a VMM such as smolvm (vmm = \"smolvm\")";

/// The `vmm-sandbox` plugin: each bottle's agent in new user, network, mount, PID, IPC and
/// UTS namespaces, whose only way out is a relay to the bundle's own endpoints.
#[derive(Debug, Clone)]
pub struct SandboxBackend {
    settings: Settings,
}

impl SandboxBackend {
    /// Builds it from its settings (the plugin's table of `config.toml`, as JSON):
    /// `state_dir`, the directory it keeps its machines in (the host always passes one), and
    /// `helper`, the path of `bottle-sandbox` (default: next to the running executable, else
    /// on `PATH`). Other keys are ignored.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BackendError> {
        Ok(SandboxBackend {
            settings: Settings::from_json(settings)?,
        })
    }

    /// The helper this backend runs, or why none was found.
    pub fn helper(&self) -> Result<PathBuf, BackendError> {
        Ok(find_helper(self.settings.helper.as_deref())?)
    }

    fn dir(&self, machine: &Machine) -> Result<MachineDir, Error> {
        MachineDir::new(&self.settings.machines_dir(), &machine.name)
    }

    /// The directory of a machine that `create` made.
    fn existing(&self, machine: &Machine) -> Result<MachineDir, Error> {
        let dir = self.dir(machine)?;
        if dir.exists() {
            Ok(dir)
        } else {
            Err(Error::NoMachine {
                name: machine.name.clone(),
            })
        }
    }

    /// Has the helper build (and at once take down) a sandbox, and returns what it reports:
    /// `bottle-sandbox VERSION`.
    fn check(&self, helper: &Path) -> Result<String, Error> {
        let output = HelperCommand::new(helper).arg("check").run()?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    fn is_running(&self, dir: &MachineDir) -> Result<bool, Error> {
        Ok(dir
            .read_supervisor()?
            .is_some_and(|r| r.supervisor.is_alive() && r.init.is_alive()))
    }

    /// Takes the sandbox down: the supervisor first (it stops the agent and its relay), then
    /// whatever is left, by force.
    fn stop_dir(&self, name: &str, dir: &MachineDir) -> Result<(), Error> {
        let Some(running) = dir.read_supervisor()? else {
            return Ok(());
        };
        let processes = [running.supervisor, running.init];
        if running.supervisor.is_alive() {
            signal(name, running.supervisor, libc::SIGTERM)?;
            if wait_gone(&processes, STOP_GRACE) {
                return Ok(());
            }
            tracing::warn!(
                machine = name,
                "the supervisor did not stop in time; killing it"
            );
        }
        for process in processes.iter().filter(|p| p.is_alive()) {
            signal(name, *process, libc::SIGKILL)?;
        }
        if wait_gone(&processes, KILL_WAIT) {
            return Ok(());
        }
        let pid = processes
            .iter()
            .find(|p| p.is_alive())
            .map_or(running.init.pid, |p| p.pid);
        Err(Error::StopTimeout {
            name: name.to_owned(),
            pid,
        })
    }
}

/// Sends `sig` to `process` if it is still the recorded one; a process that is gone is fine.
fn signal(name: &str, process: ProcessId, sig: libc::c_int) -> Result<(), Error> {
    let Some(pid) = process.raw() else {
        return Ok(());
    };
    if !process.is_alive() {
        return Ok(());
    }
    // SAFETY: kill has no memory-safety preconditions; the pid was checked to be the recorded
    // process (same start time) just above, so no stranger is signalled.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc == 0 {
        return Ok(());
    }
    let source = io::Error::last_os_error();
    if source.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(Error::Signal {
        name: name.to_owned(),
        pid: process.pid,
        source,
    })
}

/// Waits until none of `processes` is alive; false when `timeout` ran out first.
fn wait_gone(processes: &[ProcessId], timeout: Duration) -> bool {
    let started = Instant::now();
    loop {
        if processes.iter().all(|p| !p.is_alive()) {
            return true;
        }
        if started.elapsed() >= timeout {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

impl VmmBackend for SandboxBackend {
    fn name(&self) -> String {
        "vmm-sandbox".to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        let euid = host::effective_uid();
        let mut lines = Vec::new();
        let helper = self.helper();
        match &helper {
            Ok(path) => lines.push(format!("helper: {}", path.display())),
            Err(e) => lines.push(format!("helper: {e}")),
        }
        lines.extend(UsernsSettings::read().describe());
        if let Ok(path) = &helper {
            match self.check(path) {
                Ok(reported) => lines.push(format!("sandbox check: passed ({reported})")),
                Err(e) => lines.push(format!("sandbox check: failed: {e}")),
            }
        }
        lines.push(host::agent_identity(euid));
        lines.push(format!(
            "machines: {}",
            self.settings.machines_dir().display()
        ));
        lines.push("not enforced: the agent's cpus and memory_mib".to_owned());
        Ok(lines)
    }

    fn probe(&self) -> Result<VmmProbe, BackendError> {
        let euid = host::effective_uid();
        let notes = vec![
            host::agent_identity(euid),
            "the agent sees this host's /usr, /etc and libraries, read-only".to_owned(),
            "the agent's cpus and memory_mib are not enforced".to_owned(),
        ];
        let probe = |scope| VmmProbe {
            version: Some(VERSION.to_owned()),
            scope,
            notes: notes.clone(),
        };
        let unenforceable = |reason: String, remedy: &str| {
            probe(ScopeSupport::Unenforceable {
                reason,
                remedy: remedy.to_owned(),
            })
        };

        let helper = match self.helper() {
            Ok(helper) => helper,
            Err(e) => {
                return Ok(unenforceable(
                    e.message,
                    "build it with `cargo build` (it is a binary of bottle-vmm-sandbox), or \
                     install it next to bottle",
                ))
            }
        };
        if let Some((reason, remedy)) = UsernsSettings::read().blocker(euid) {
            return Ok(unenforceable(reason, &remedy));
        }
        let expected = format!("{HELPER_NAME} {VERSION}");
        match self.check(&helper) {
            Ok(reported) if reported == expected => Ok(probe(ScopeSupport::Exact)),
            Ok(reported) => Ok(unenforceable(
                format!(
                    "the helper {} reports `{reported}`, not `{expected}`",
                    helper.display()
                ),
                "install the bottle-sandbox that was built with this plugin",
            )),
            Err(e) => Ok(unenforceable(
                format!("the helper could not build a sandbox on this host: {e}"),
                REMEDY,
            )),
        }
    }

    fn create(&self, agent: &AgentSpec, policy: &EgressPolicy) -> Result<Machine, BackendError> {
        validate::check_agent(agent)?;
        let relay = validate::relay_targets(agent, policy)?;
        if agent.cpus.is_some() || agent.memory_mib.is_some() {
            tracing::warn!(
                machine = %agent.machine_name,
                "the sandbox does not limit the agent's cpus or memory"
            );
        }
        let dir = MachineDir::new(&self.settings.machines_dir(), &agent.machine_name)?;
        let record = MachineRecord {
            agent: agent.clone(),
            policy: policy.clone(),
            relay,
        };
        dir.create(&record)?;
        tracing::debug!(machine = %agent.machine_name, relay = ?record.relay, "machine created");
        Ok(Machine {
            name: agent.machine_name.clone(),
        })
    }

    fn effective_policy(&self, machine: &Machine) -> Result<EgressPolicy, BackendError> {
        let record = self.existing(machine)?.read_record()?;
        Ok(validate::effective_policy(&record.relay))
    }

    fn start(&self, machine: &Machine) -> Result<(), BackendError> {
        let dir = self.existing(machine)?;
        if self.is_running(&dir)? {
            tracing::debug!(machine = %machine.name, "already running");
            return Ok(());
        }
        let helper = self.helper()?;
        HelperCommand::new(helper)
            .arg("start")
            .arg(dir.path())
            .run()?;
        Ok(())
    }

    fn stop(&self, machine: &Machine) -> Result<(), BackendError> {
        let dir = self.dir(machine)?;
        if !dir.path().exists() {
            return Ok(());
        }
        Ok(self.stop_dir(&machine.name, &dir)?)
    }

    fn remove(&self, machine: &Machine) -> Result<(), BackendError> {
        let dir = self.dir(machine)?;
        if !dir.path().exists() {
            return Ok(());
        }
        self.stop_dir(&machine.name, &dir)?;
        match fs::remove_dir_all(dir.path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::Io {
                action: "remove",
                path: dir.path().to_path_buf(),
                source,
            }
            .into()),
        }
    }

    fn status(&self, machine: &Machine) -> Result<MachineState, BackendError> {
        let dir = self.dir(machine)?;
        if !dir.exists() {
            return Ok(MachineState::Missing);
        }
        Ok(match dir.read_supervisor()? {
            None => MachineState::Created,
            Some(r) if r.supervisor.is_alive() && r.init.is_alive() => MachineState::Running,
            Some(_) => MachineState::Stopped,
        })
    }

    fn exec(
        &self,
        machine: &Machine,
        command: &[String],
        stdio: ExecStdio,
    ) -> Result<ExecOutput, BackendError> {
        let dir = self.existing(machine)?;
        if command.is_empty() {
            return Err(Error::EmptyCommand {
                name: machine.name.clone(),
            }
            .into());
        }
        if !self.is_running(&dir)? {
            return Err(Error::NotRunning {
                name: machine.name.clone(),
            }
            .into());
        }
        let command = HelperCommand::new(self.helper()?)
            .arg("exec")
            .arg(dir.path())
            .arg("--")
            .args(command);
        match stdio {
            ExecStdio::Capture => {
                let output = command.run_capturing()?;
                let helper_failed = output.status.code() == Some(HELPER_FAILURE)
                    && output.stderr.starts_with(HELPER_MESSAGE_PREFIX.as_bytes());
                if helper_failed {
                    return Err(command.failed(output.status, &output.stderr).into());
                }
                Ok(ExecOutput {
                    exit_code: output.status.code(),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                })
            }
            ExecStdio::Inherit => {
                let status = command.run_inheriting()?;
                Ok(ExecOutput {
                    exit_code: status.code(),
                    stdout: String::new(),
                    stderr: String::new(),
                })
            }
        }
    }

    fn list_machines(&self) -> Result<Vec<Machine>, BackendError> {
        let machines_dir = self.settings.machines_dir();
        let entries = match fs::read_dir(&machines_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    action: "list",
                    path: machines_dir,
                    source,
                }
                .into())
            }
        };
        let mut machines: Vec<Machine> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.starts_with(MACHINE_PREFIX) && check_name(name).is_ok())
            .map(|name| Machine { name })
            .collect();
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(machines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(state: &Path) -> SandboxBackend {
        let json = serde_json::json!({ "state_dir": state, "helper": "/nonexistent/helper" });
        SandboxBackend::from_settings(&json).unwrap()
    }

    #[test]
    fn a_created_machine_is_listed_and_reports_its_relay_as_policy() {
        let state = tempfile::tempdir().unwrap();
        let backend = backend(state.path());
        let agent = validate::tests::agent();
        let machine = backend
            .create(&agent, &EgressPolicy::alias_only(agent.alias))
            .unwrap();
        assert_eq!(machine.name, "bottle-a");
        assert_eq!(backend.status(&machine).unwrap(), MachineState::Created);
        assert_eq!(
            backend.effective_policy(&machine).unwrap(),
            EgressPolicy::alias_only(agent.alias)
        );
        assert_eq!(backend.list_machines().unwrap(), vec![machine.clone()]);
        let again = backend
            .create(&agent, &EgressPolicy::alias_only(agent.alias))
            .unwrap_err();
        assert_eq!(again.kind, bottle_core::ErrorKind::Conflict);
    }

    #[test]
    fn gone_machines_stop_and_remove_quietly_and_report_missing() {
        let state = tempfile::tempdir().unwrap();
        let backend = backend(state.path());
        let machine = Machine {
            name: "bottle-gone".into(),
        };
        backend.stop(&machine).unwrap();
        backend.remove(&machine).unwrap();
        assert_eq!(backend.status(&machine).unwrap(), MachineState::Missing);
        assert_eq!(
            backend.effective_policy(&machine).unwrap_err().kind,
            bottle_core::ErrorKind::NotFound
        );
        assert!(backend.list_machines().unwrap().is_empty());
    }

    #[test]
    fn names_that_could_escape_the_state_dir_are_refused() {
        let state = tempfile::tempdir().unwrap();
        let backend = backend(state.path());
        let machine = Machine {
            name: "../etc".into(),
        };
        let err = backend.remove(&machine).unwrap_err();
        assert_eq!(err.kind, bottle_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_missing_helper_makes_the_scope_unenforceable() {
        let state = tempfile::tempdir().unwrap();
        let probe = backend(state.path()).probe().unwrap();
        assert_eq!(probe.version.as_deref(), Some(VERSION));
        match probe.scope {
            ScopeSupport::Unenforceable { reason, .. } => {
                assert!(reason.contains("/nonexistent/helper"), "{reason}")
            }
            ScopeSupport::Exact => panic!("a missing helper cannot enforce anything"),
        }
    }
}

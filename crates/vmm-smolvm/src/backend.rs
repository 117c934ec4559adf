//! `SmolvmBackend`: bottle's `VmmBackend` trait carried out with the smolvm command line and,
//! for the egress allow-list, smolvm's own database.

use std::path::Path;

use bottle_core::{
    AgentSpec, BackendError, EgressPolicy, ExecOutput, ExecStdio, Machine, MachineState,
    ScopeSupport, VmmBackend, VmmProbe,
};

use crate::cli::{self, Cli, Listed, MACHINE_PREFIX};
use crate::command::SmolvmCommand;
use crate::error::{says_unknown_machine, Error};
use crate::from_drops_allow_cidr;
use crate::record;
use crate::settings::Settings;
use crate::version::{CliForm, EgressBehaviour, SmolvmVersion};

/// The `vmm-smolvm` plugin: each bottle's agent in a smolvm microVM whose egress allow-list is
/// the bottle's alias, as a `/32`, and nothing else.
#[derive(Debug, Clone)]
pub struct SmolvmBackend {
    settings: Settings,
}

/// What `smolvm --version` told about the installed smolvm.
#[derive(Debug, Clone)]
struct Installed {
    /// What it printed, trimmed.
    reported: String,
    version: Option<SmolvmVersion>,
    behaviour: EgressBehaviour,
}

impl Installed {
    fn form(&self) -> CliForm {
        CliForm::of(self.version)
    }

    fn scope(&self) -> ScopeSupport {
        let reported = if self.reported.is_empty() {
            "(nothing)"
        } else {
            &self.reported
        };
        self.behaviour.scope_support(reported)
    }
}

impl SmolvmBackend {
    /// Builds it from its settings (the plugin's table of `config.toml`, as JSON): `smolvm`,
    /// the executable (default: `smolvm` on `PATH`), and `database`, smolvm's state database
    /// (default: where smolvm itself puts it). Other keys are ignored.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BackendError> {
        Ok(SmolvmBackend {
            settings: Settings::from_json(settings)?,
        })
    }

    /// The smolvm executable this backend runs.
    pub fn program(&self) -> &str {
        &self.settings.program
    }

    /// smolvm's state database, where the egress allow-list is read (and repaired).
    pub fn database(&self) -> &Path {
        &self.settings.database
    }

    fn installed(&self) -> Result<Installed, Error> {
        let printed = Cli::version(self.program()).run()?;
        let reported = printed.stdout.trim().to_owned();
        let version = SmolvmVersion::from_version_output(&reported);
        Ok(Installed {
            reported,
            version,
            behaviour: EgressBehaviour::of(version),
        })
    }

    /// The command line in the form of the installed smolvm.
    fn cli(&self, installed: &Installed) -> Cli<'_> {
        Cli {
            program: self.program(),
            form: installed.form(),
        }
    }

    /// Commands that read the same in every form need no version check first.
    fn any_form_cli(&self) -> Cli<'_> {
        Cli {
            program: self.program(),
            form: CliForm::Named,
        }
    }

    /// Runs `command` about machine `name`, telling an unknown machine from other failures.
    fn run_about(&self, command: &SmolvmCommand, name: &str) -> Result<String, Error> {
        match command.run() {
            Ok(printed) => Ok(printed.stdout),
            Err(err) if err.is_unknown_machine(name) => Err(Error::UnknownMachine {
                name: name.to_owned(),
            }),
            Err(err) => Err(err),
        }
    }

    /// Removes a machine that `create` made but could not finish, so nothing is left behind.
    fn undo_create(&self, installed: &Installed, machine: &Machine, err: Error) -> BackendError {
        let removed = self
            .cli(installed)
            .delete(&machine.name)
            .and_then(|c| c.run());
        let mut backend = BackendError::from(err);
        if let Err(remove_err) = removed {
            tracing::error!(
                machine = %machine.name,
                error = %remove_err,
                "could not remove the machine of a failed create"
            );
            backend.message = format!(
                "{}; the machine {} could not be removed afterwards either: {remove_err}",
                backend.message, machine.name
            );
        }
        backend
    }
}

impl VmmBackend for SmolvmBackend {
    fn name(&self) -> String {
        "vmm-smolvm".to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        let database = self.database();
        let presence = if database.is_file() {
            "present"
        } else {
            "missing"
        };
        let mut lines = vec![
            format!("smolvm executable: {}", self.program()),
            format!("smolvm database: {} ({presence})", database.display()),
        ];
        match self.probe() {
            Ok(probe) => {
                lines.push(format!(
                    "version: {}",
                    probe.version.as_deref().unwrap_or("unknown")
                ));
                lines.push(match probe.scope {
                    ScopeSupport::Exact => "alias scope: exact".to_owned(),
                    ScopeSupport::Unenforceable { reason, remedy } => {
                        format!("alias scope: cannot be enforced: {reason}; {remedy}")
                    }
                });
                lines.extend(probe.notes);
            }
            Err(err) => lines.push(format!("unusable: {err}")),
        }
        Ok(lines)
    }

    fn probe(&self) -> Result<VmmProbe, BackendError> {
        let installed = self.installed()?;
        let scope = installed.scope();
        let mut notes = Vec::new();
        if installed.behaviour == EgressBehaviour::TsiDropsAllowCidr {
            notes.push(
                "this smolvm drops --allow-cidr for machines created --from an artifact; bottle \
                 writes the allow-list into smolvm's database between create and start"
                    .to_owned(),
            );
        }
        let version = installed
            .reported
            .strip_prefix("smolvm ")
            .unwrap_or(&installed.reported);
        let version = (!version.is_empty()).then(|| version.to_owned());
        Ok(VmmProbe {
            version,
            scope,
            notes,
        })
    }

    fn create(&self, agent: &AgentSpec, policy: &EgressPolicy) -> Result<Machine, BackendError> {
        let EgressPolicy::AllowOnly(allowed) = policy else {
            return Err(Error::UnrestrictedRequested.into());
        };

        let installed = self.installed()?;
        if let ScopeSupport::Unenforceable { reason, remedy } = installed.scope() {
            return Err(Error::ScopeNotEnforceable { reason, remedy }.into());
        }

        // A failed `machine create` is not undone: the name may belong to a machine that
        // existed before, which is not this call's to remove.
        self.cli(&installed).create(agent, allowed)?.run()?;
        let machine = Machine {
            name: agent.machine_name.clone(),
        };

        let patched = from_drops_allow_cidr::enforce_requested_allow_list(
            self.database(),
            &machine.name,
            installed.version,
            allowed,
        );
        if let Err(err) = patched {
            return Err(self.undo_create(&installed, &machine, err));
        }
        tracing::debug!(machine = %machine.name, allowed = %policy, "created the smolvm machine");
        Ok(machine)
    }

    fn effective_policy(&self, machine: &Machine) -> Result<EgressPolicy, BackendError> {
        let conn = record::open(self.database(), false)?;
        let record = record::read(&conn, self.database(), &machine.name)?;
        Ok(record::egress_policy(&record.fields, &machine.name)?)
    }

    fn start(&self, machine: &Machine) -> Result<(), BackendError> {
        let command = self.any_form_cli().start(&machine.name)?;
        self.run_about(&command, &machine.name)?;
        Ok(())
    }

    fn stop(&self, machine: &Machine) -> Result<(), BackendError> {
        let command = self.any_form_cli().stop(&machine.name)?;
        match self.run_about(&command, &machine.name) {
            Err(Error::UnknownMachine { .. }) => {
                tracing::debug!(machine = %machine.name, "unknown to smolvm; nothing to stop");
                Ok(())
            }
            other => other.map(drop).map_err(Into::into),
        }
    }

    fn remove(&self, machine: &Machine) -> Result<(), BackendError> {
        // Stopped first, so that no smolvm leaves a VM running behind a deleted record.
        self.stop(machine)?;
        let installed = self.installed()?;
        let command = self.cli(&installed).delete(&machine.name)?;
        match self.run_about(&command, &machine.name) {
            Err(Error::UnknownMachine { .. }) => {
                tracing::debug!(machine = %machine.name, "unknown to smolvm; nothing to remove");
                Ok(())
            }
            other => other.map(drop).map_err(Into::into),
        }
    }

    fn status(&self, machine: &Machine) -> Result<MachineState, BackendError> {
        let installed = self.installed()?;
        let command = self.cli(&installed).status(&machine.name)?;
        let stdout = self.run_about(&command, &machine.name)?;
        cli::parse_status(installed.form(), &machine.name, &stdout).map_err(|problem| {
            Error::Output {
                command: command.to_string(),
                problem,
            }
            .into()
        })
    }

    fn exec(
        &self,
        machine: &Machine,
        command: &[String],
        stdio: ExecStdio,
    ) -> Result<ExecOutput, BackendError> {
        let exec = self.any_form_cli().exec(&machine.name, command)?;
        match stdio {
            ExecStdio::Inherit => {
                let status = exec.run_inheriting()?;
                Ok(ExecOutput {
                    exit_code: status.code(),
                    stdout: String::new(),
                    stderr: String::new(),
                })
            }
            ExecStdio::Capture => {
                let (status, printed) = exec.run_capturing()?;
                if !status.success() && says_unknown_machine(&printed.stderr, &machine.name) {
                    let name = machine.name.clone();
                    return Err(Error::UnknownMachine { name }.into());
                }
                Ok(ExecOutput {
                    exit_code: status.code(),
                    stdout: printed.stdout,
                    stderr: printed.stderr,
                })
            }
        }
    }

    fn list_machines(&self) -> Result<Vec<Machine>, BackendError> {
        let installed = self.installed()?;
        let command = self.cli(&installed).list();
        let stdout = command.run()?.stdout;
        let listed =
            cli::parse_list(installed.form(), &stdout).map_err(|problem| Error::Output {
                command: command.to_string(),
                problem,
            })?;

        let mut names = Vec::new();
        let mut known: Option<Vec<String>> = None;
        for entry in listed {
            match entry {
                Listed::Name(name) => names.push(name),
                Listed::Truncated(prefix) => {
                    if known.is_none() {
                        let conn = record::open(self.database(), false)?;
                        known = Some(record::machine_names(&conn, self.database())?);
                    }
                    let full = known.iter().flatten().filter(|n| n.starts_with(&prefix));
                    names.extend(full.cloned());
                }
            }
        }
        names.retain(|n| n.starts_with(MACHINE_PREFIX));
        names.sort();
        names.dedup();
        Ok(names.into_iter().map(|name| Machine { name }).collect())
    }
}

//! smolvm invocations as values: built, shown, logged, then run.

use std::fmt;
use std::io;
use std::process::ExitStatus;

use bottle_command::{stderr_text, CommandLine};

use crate::error::Error;

/// One run of the smolvm executable. Built whole before it runs, so that the exact command
/// can be tested, logged at debug, and shown when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmolvmCommand {
    program: String,
    line: CommandLine,
}

/// What a command that succeeded printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Printed {
    pub stdout: String,
    pub stderr: String,
}

impl SmolvmCommand {
    pub fn new(program: impl Into<String>) -> Self {
        let program = program.into();
        SmolvmCommand {
            line: CommandLine::new(&program),
            program,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.line = self.line.arg(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.line = self.line.args(args.into_iter().map(Into::into));
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    fn spawn_error(&self, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::NotFound {
            Error::Missing {
                program: self.program.clone(),
                source,
            }
        } else {
            Error::Spawn {
                command: self.to_string(),
                source,
            }
        }
    }

    fn failed(&self, status: ExitStatus, stderr: &str) -> Error {
        Error::Failed {
            command: self.to_string(),
            status: status.to_string(),
            stderr: stderr_text(stderr.as_bytes()),
        }
    }

    /// Runs the command with its output captured; a non-zero exit is an error.
    pub(crate) fn run(&self) -> Result<Printed, Error> {
        let (status, printed) = self.run_capturing()?;
        if !status.success() {
            return Err(self.failed(status, &printed.stderr));
        }
        Ok(printed)
    }

    /// Runs the command with its output captured, whatever its exit status.
    pub(crate) fn run_capturing(&self) -> Result<(ExitStatus, Printed), Error> {
        let output = self.line.output().map_err(|e| self.spawn_error(e))?;
        let printed = Printed {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        Ok((output.status, printed))
    }

    /// Runs the command on bottle's own terminal, whatever its exit status.
    pub(crate) fn run_inheriting(&self) -> Result<ExitStatus, Error> {
        self.line
            .status_on_terminal()
            .map_err(|e| self.spawn_error(e))
    }
}

impl fmt::Display for SmolvmCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.line.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_reported_as_not_installed() {
        let err = SmolvmCommand::new("/nonexistent/smolvm")
            .arg("--version")
            .run()
            .unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err:?}");
        assert_eq!(err.kind(), bottle_core::ErrorKind::Unavailable);
    }

    #[test]
    fn a_failure_shows_the_command_status_and_stderr() {
        let err = SmolvmCommand::new("sh")
            .args(["-c", "echo 'Error: vm not found: bottle-x' >&2; exit 1"])
            .run()
            .unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("`sh -c "), "{message}");
        assert!(message.contains("exit status: 1"), "{message}");
        assert!(
            message.ends_with("Error: vm not found: bottle-x"),
            "{message}"
        );
        assert!(err.is_unknown_machine("bottle-x"));
        assert!(!err.is_unknown_machine("bottle-y"));
    }
}

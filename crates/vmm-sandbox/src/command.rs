//! Helper invocations as values: built, shown, logged, then run.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Output};

use bottle_command::{stderr_text, CommandLine};

use crate::error::Error;

/// The exit code with which the helper reports a failure of its own (as opposed to the exit
/// code of a command it ran inside the sandbox), with a message on stderr.
pub const HELPER_FAILURE: i32 = 125;

/// The prefix of every message the helper itself writes to stderr.
pub const HELPER_MESSAGE_PREFIX: &str = "bottle-sandbox: ";

/// One run of the helper. Built whole before it runs, so that the exact command can be
/// tested, logged at debug, and shown when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperCommand {
    line: CommandLine,
}

impl HelperCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        HelperCommand {
            line: CommandLine::new(program.into()),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.line = self.line.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.line = self.line.args(args);
        self
    }

    fn spawn_error(&self, source: io::Error) -> Error {
        Error::Spawn {
            command: self.to_string(),
            source,
        }
    }

    /// The error for a run that ended with `status`, showing what it wrote to stderr.
    pub(crate) fn failed(&self, status: ExitStatus, stderr: &[u8]) -> Error {
        Error::Failed {
            command: self.to_string(),
            status: status.to_string(),
            stderr: stderr_text(stderr),
        }
    }

    /// Runs the command with its output captured; a non-zero exit is an error.
    pub(crate) fn run(&self) -> Result<Output, Error> {
        let output = self.run_capturing()?;
        if !output.status.success() {
            return Err(self.failed(output.status, &output.stderr));
        }
        Ok(output)
    }

    /// Runs the command with its output captured, whatever its exit status.
    pub(crate) fn run_capturing(&self) -> Result<Output, Error> {
        self.line.output().map_err(|e| self.spawn_error(e))
    }

    /// Runs the command on bottle's own terminal, whatever its exit status.
    pub(crate) fn run_inheriting(&self) -> Result<ExitStatus, Error> {
        self.line
            .status_on_terminal()
            .map_err(|e| self.spawn_error(e))
    }
}

impl fmt::Display for HelperCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.line.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_the_command_status_and_stderr() {
        let err = HelperCommand::new("sh")
            .args(["-c", "echo 'bottle-sandbox: no such machine' >&2; exit 125"])
            .run()
            .unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("`sh -c "), "{message}");
        assert!(message.contains("exit status: 125"), "{message}");
        assert!(
            message.ends_with("bottle-sandbox: no such machine"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_program_cannot_be_spawned() {
        let err = HelperCommand::new("/nonexistent/bottle-sandbox")
            .arg("check")
            .run()
            .unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    }
}

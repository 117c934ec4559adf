//! Helper invocations as values: built, shown, logged, then run.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Output, Stdio};

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
    program: PathBuf,
    args: Vec<OsString>,
}

impl HelperCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        HelperCommand {
            program: program.into(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    fn process(&self) -> Command {
        let mut process = Command::new(&self.program);
        process.args(&self.args).stdin(Stdio::null());
        process
    }

    fn spawn_error(&self, source: io::Error) -> Error {
        Error::Spawn {
            command: self.to_string(),
            source,
        }
    }

    /// The error for a run that ended with `status`, showing what it wrote to stderr.
    pub(crate) fn failed(&self, status: ExitStatus, stderr: &[u8]) -> Error {
        let stderr = String::from_utf8_lossy(stderr);
        let stderr = stderr.trim();
        Error::Failed {
            command: self.to_string(),
            status: status.to_string(),
            stderr: if stderr.is_empty() {
                "(no output on stderr)".to_owned()
            } else {
                stderr.to_owned()
            },
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
        tracing::debug!(command = %self, "running the sandbox helper");
        // In a process group of its own, so that a Ctrl-C meant for bottle (which then rolls
        // back) does not also kill the command bottle is waiting for, or an undo under way.
        let output = self
            .process()
            .process_group(0)
            .output()
            .map_err(|e| self.spawn_error(e))?;
        tracing::debug!(command = %self, status = %output.status, "the sandbox helper exited");
        Ok(output)
    }

    /// Runs the command on bottle's own terminal, whatever its exit status.
    pub(crate) fn run_inheriting(&self) -> Result<ExitStatus, Error> {
        tracing::debug!(command = %self, "running the sandbox helper on the terminal");
        let mut process = self.process();
        process
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let status = process.status().map_err(|e| self.spawn_error(e))?;
        tracing::debug!(command = %self, %status, "the sandbox helper exited");
        Ok(status)
    }
}

/// Shows the command as a shell would take it, quoting only the words that need it.
impl fmt::Display for HelperCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_word(f, &self.program.to_string_lossy())?;
        for arg in &self.args {
            f.write_str(" ")?;
            write_word(f, &arg.to_string_lossy())?;
        }
        Ok(())
    }
}

fn write_word(f: &mut fmt::Formatter<'_>, word: &str) -> fmt::Result {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        f.write_str(word)
    } else {
        write!(f, "'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_as_a_shell_command() {
        let command = HelperCommand::new("/opt/bottle-sandbox")
            .args(["exec", "/m/bottle-a", "--"])
            .args(["sh", "-c", "echo 'hi' there", ""]);
        assert_eq!(
            command.to_string(),
            r#"/opt/bottle-sandbox exec /m/bottle-a -- sh -c 'echo '\''hi'\'' there' ''"#
        );
    }

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

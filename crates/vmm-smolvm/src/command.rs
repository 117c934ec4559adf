//! smolvm invocations as values: built, shown, logged, then run.

use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};

use crate::error::Error;

/// One run of the smolvm executable. Built whole before it runs, so that the exact command
/// can be tested, logged at debug, and shown when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmolvmCommand {
    program: String,
    args: Vec<String>,
}

/// What a command that succeeded printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Printed {
    pub stdout: String,
    pub stderr: String,
}

impl SmolvmCommand {
    pub fn new(program: impl Into<String>) -> Self {
        SmolvmCommand {
            program: program.into(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments after the program.
    pub fn arguments(&self) -> &[String] {
        &self.args
    }

    fn process(&self) -> Command {
        let mut process = Command::new(&self.program);
        process.args(&self.args).stdin(Stdio::null());
        process
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
    pub(crate) fn run(&self) -> Result<Printed, Error> {
        let (status, printed) = self.run_capturing()?;
        if !status.success() {
            return Err(self.failed(status, &printed.stderr));
        }
        Ok(printed)
    }

    /// Runs the command with its output captured, whatever its exit status.
    pub(crate) fn run_capturing(&self) -> Result<(ExitStatus, Printed), Error> {
        tracing::debug!(command = %self, "running smolvm");
        // In a process group of its own, so that a Ctrl-C meant for bottle (which then rolls
        // back) does not also kill the command bottle is waiting for, or an undo under way.
        let output = self
            .process()
            .process_group(0)
            .output()
            .map_err(|e| self.spawn_error(e))?;
        let printed = Printed {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        tracing::debug!(command = %self, status = %output.status, "smolvm exited");
        Ok((output.status, printed))
    }

    /// Runs the command on bottle's own terminal, whatever its exit status.
    pub(crate) fn run_inheriting(&self) -> Result<ExitStatus, Error> {
        tracing::debug!(command = %self, "running smolvm on the terminal");
        let mut process = self.process();
        process
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let status = process.status().map_err(|e| self.spawn_error(e))?;
        tracing::debug!(command = %self, %status, "smolvm exited");
        Ok(status)
    }
}

/// Shows the command as a shell would take it, quoting only the words that need it.
impl fmt::Display for SmolvmCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_word(f, &self.program)?;
        for arg in &self.args {
            f.write_str(" ")?;
            write_word(f, arg)?;
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
        let command = SmolvmCommand::new("smolvm")
            .args(["machine", "exec", "-e"])
            .arg("GREETING=hello world")
            .args(["--", "sh", "-c", "echo 'hi'", ""]);
        assert_eq!(
            command.to_string(),
            r#"smolvm machine exec -e 'GREETING=hello world' -- sh -c 'echo '\''hi'\''' ''"#
        );
    }

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

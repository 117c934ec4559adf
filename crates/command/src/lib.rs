//! External commands as values: built whole before they run, so that the exact command can
//! be tested, logged at debug, and shown when it fails; then run in a process group of their
//! own, so that a Ctrl-C meant for bottle (which then rolls back) does not also kill the
//! command bottle is waiting for, or an undo under way.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Output, Stdio};

/// One run of an external program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    program: OsString,
    args: Vec<OsString>,
}

impl CommandLine {
    pub fn new(program: impl Into<OsString>) -> Self {
        CommandLine {
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

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    pub fn arguments(&self) -> &[OsString] {
        &self.args
    }

    fn process(&self) -> Command {
        let mut process = Command::new(&self.program);
        process.args(&self.args).stdin(Stdio::null());
        process
    }

    /// Runs the command with its output captured and no input, in its own process group,
    /// whatever its exit status; errors only when it cannot be started.
    pub fn output(&self) -> io::Result<Output> {
        tracing::debug!(command = %self, "running");
        let output = self.process().process_group(0).output()?;
        tracing::debug!(command = %self, status = %output.status, "exited");
        Ok(output)
    }

    /// Runs the command on bottle's own terminal (standard streams and process group
    /// shared, so that the user can type to it and interrupt it), whatever its exit status.
    pub fn status_on_terminal(&self) -> io::Result<ExitStatus> {
        tracing::debug!(command = %self, "running on the terminal");
        let mut process = self.process();
        process
            .stdin(Stdio::inherit())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        let status = process.status()?;
        tracing::debug!(command = %self, %status, "exited");
        Ok(status)
    }
}

/// Shows the command as a shell would take it, quoting only the words that need it.
impl fmt::Display for CommandLine {
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

/// What a failed command wrote to stderr, for an error message: trimmed, and never empty.
pub fn stderr_text(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    match text.trim() {
        "" => "(no output on stderr)".to_owned(),
        text => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_as_a_shell_command() {
        let command = CommandLine::new("smolvm")
            .args(["machine", "exec", "-e"])
            .arg("GREETING=hello world")
            .args(["--", "sh", "-c", "echo 'hi'", ""]);
        assert_eq!(
            command.to_string(),
            r#"smolvm machine exec -e 'GREETING=hello world' -- sh -c 'echo '\''hi'\''' ''"#
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn runs_in_a_process_group_of_its_own_with_no_input() {
        // Field 5 of /proc/PID/stat is the process group; `cat` ends at once on no input.
        let script = "cut -d' ' -f5 /proc/$$/stat; cat";
        let out = CommandLine::new("sh")
            .args(["-c", script])
            .output()
            .unwrap();
        assert!(out.status.success());
        let theirs: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // SAFETY: getpgrp has no preconditions and cannot fail.
        let ours = unsafe { libc::getpgrp() } as u32;
        assert_ne!(theirs, ours, "the command shares bottle's process group");
    }

    #[test]
    fn stderr_text_is_never_empty() {
        assert_eq!(
            stderr_text(b"  Error: vm not found: x\n"),
            "Error: vm not found: x"
        );
        assert_eq!(stderr_text(b"\n"), "(no output on stderr)");
    }
}

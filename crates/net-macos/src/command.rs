//! External commands as values: built by pure functions, printed the way a user would type
//! them, and run through a [`Host`] that tests replace.

use std::borrow::Cow;
use std::fmt;

use bottle_core::{BackendError, ErrorKind};

/// One external command: a program, its arguments and what it reads on its standard input,
/// with no shell in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostCommand {
    pub program: String,
    pub args: Vec<String>,
    /// The whole standard input; `None` runs the command with none at all.
    pub stdin: Option<String>,
}

impl HostCommand {
    pub(crate) fn new(program: &str, args: &[&str]) -> Self {
        HostCommand {
            program: program.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdin: None,
        }
    }

    /// The command, to be run with `text` as its standard input.
    pub(crate) fn with_stdin(mut self, text: String) -> Self {
        self.stdin = Some(text);
        self
    }

    /// The command as a user pastes it into a POSIX shell: its line, followed by its
    /// standard input as a here-document when it has one.
    pub(crate) fn pasteable(&self) -> String {
        let Some(stdin) = &self.stdin else {
            return self.to_string();
        };
        let mut delimiter = String::from("BOTTLE_INPUT");
        while stdin.lines().any(|line| line == delimiter) {
            delimiter.push('_');
        }
        let newline = if stdin.is_empty() || stdin.ends_with('\n') {
            ""
        } else {
            "\n"
        };
        format!("{self} <<'{delimiter}'\n{stdin}{newline}{delimiter}")
    }
}

/// The command as a POSIX shell line, without its standard input, so that a user can see
/// what ran in an error; [`HostCommand::pasteable`] adds the input.
impl fmt::Display for HostCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// `word` as one shell word: bare when no character is special, else in single quotes.
fn shell_quote(word: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b);
    if !word.is_empty() && word.bytes().all(plain) {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandOutput {
    /// The exit code; `None` when a signal ended the command.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub(crate) fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// The seam between the scoper's logic and the OS: everything else is pure.
pub(crate) trait Host: Send + Sync {
    /// Runs `command` to completion with `command.stdin` as its standard input (or none),
    /// capturing its output.
    fn run(&self, command: &HostCommand) -> Result<CommandOutput, BackendError>;

    /// Whether standard input is a terminal, i.e. whether sudo may ask for a password.
    fn stdin_is_terminal(&self) -> bool;
}

/// Runs `command`, logging it first; the caller judges the exit status.
pub(crate) fn run(host: &dyn Host, command: &HostCommand) -> Result<CommandOutput, BackendError> {
    tracing::debug!(%command, "running");
    let output = host.run(command)?;
    tracing::debug!(%command, status = ?output.status, "finished");
    Ok(output)
}

/// Runs `command` and turns a non-zero exit into an error.
pub(crate) fn run_checked(
    host: &dyn Host,
    command: &HostCommand,
) -> Result<CommandOutput, BackendError> {
    let output = run(host, command)?;
    if output.success() {
        Ok(output)
    } else {
        Err(failed(command, &output))
    }
}

/// The error for a command that ran and failed: the command, its status, and its stderr.
pub(crate) fn failed(command: &HostCommand, output: &CommandOutput) -> BackendError {
    let message = match output.status {
        Some(code) => format!("`{command}` failed with exit status {code}"),
        None => format!("`{command}` was killed by a signal"),
    };
    tracing::debug!(%command, stderr = output.stderr.trim(), "failed");
    let err = BackendError::new(ErrorKind::CommandFailed, message);
    match output.stderr.trim() {
        "" => err,
        stderr => err.with_cause_text(stderr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_print_bare_and_others_quoted() {
        let cmd = HostCommand::new("sudo", &["-p", "pass for %u: ", "/bin/sh", "-c", "a && b"]);
        assert_eq!(
            cmd.to_string(),
            "sudo -p 'pass for %u: ' /bin/sh -c 'a && b'"
        );
        let quote = HostCommand::new("echo", &["it's", ""]);
        assert_eq!(quote.to_string(), r"echo 'it'\''s' ''");
    }

    #[test]
    fn a_command_with_input_pastes_as_a_here_document() {
        let plain = HostCommand::new("/bin/cat", &[]);
        assert_eq!(plain.pasteable(), "/bin/cat");
        let cat = HostCommand::new("sudo", &["/bin/sh", "-c", "cat > /x"]);
        let cat = cat.with_stdin("<a>\n</a>\n".into());
        assert_eq!(cat.to_string(), "sudo /bin/sh -c 'cat > /x'");
        assert_eq!(
            cat.pasteable(),
            "sudo /bin/sh -c 'cat > /x' <<'BOTTLE_INPUT'\n<a>\n</a>\nBOTTLE_INPUT"
        );
    }

    #[test]
    fn a_here_document_never_ends_early() {
        let tricky = HostCommand::new("/bin/cat", &[]).with_stdin("BOTTLE_INPUT\nlast".into());
        assert_eq!(
            tricky.pasteable(),
            "/bin/cat <<'BOTTLE_INPUT_'\nBOTTLE_INPUT\nlast\nBOTTLE_INPUT_"
        );
    }

    #[test]
    fn a_failure_names_the_command_its_status_and_its_stderr() {
        let cmd = HostCommand::new("/sbin/ifconfig", &["lo0"]);
        let output = CommandOutput {
            status: Some(1),
            stdout: String::new(),
            stderr: "ifconfig: interface lo0 does not exist\n".into(),
        };
        let err = failed(&cmd, &output);
        assert_eq!(err.kind, ErrorKind::CommandFailed);
        assert_eq!(
            err.message,
            "`/sbin/ifconfig lo0` failed with exit status 1"
        );
        assert_eq!(err.causes, ["ifconfig: interface lo0 does not exist"]);
    }

    #[test]
    fn a_signal_and_a_silent_failure_are_reported_too() {
        let cmd = HostCommand::new("/usr/sbin/netstat", &["-an"]);
        let killed = CommandOutput {
            status: None,
            stdout: String::new(),
            stderr: " \n".into(),
        };
        let err = failed(&cmd, &killed);
        assert_eq!(
            err.message,
            "`/usr/sbin/netstat -an` was killed by a signal"
        );
        assert!(err.causes.is_empty());
    }
}

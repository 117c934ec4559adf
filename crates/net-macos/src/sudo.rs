//! Running one shell line as root with sudo: asking for a password on a terminal, and never
//! without one, so that bottle in a script fails at once with the command to run instead of
//! hanging on a prompt nobody sees.

use bottle_core::BackendError;

use crate::command::{self, Host, HostCommand};

/// Absolute, so that sudo's `secure_path` and the user's `PATH` stay out of the question.
pub(crate) const SH: &str = "/bin/sh";
/// Bare, since the user may be shown this command to paste.
const SUDO: &str = "sudo";

/// How sudo is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sudo {
    /// With a terminal: sudo may ask, with a prompt that says why.
    Ask,
    /// Without one: `-n`, so that sudo fails at once instead of waiting for a password.
    NeverAsk,
    /// The plain line to show a user, to run by hand.
    ForUser,
}

/// `sudo /bin/sh -c SCRIPT`, run as `sudo` says; with [`Sudo::Ask`] the prompt reads
/// `bottle: password for USER, to WHY: `.
pub(crate) fn sudo_sh(script: String, sudo: Sudo, why: &str) -> HostCommand {
    let mut args: Vec<String> = match sudo {
        Sudo::Ask => vec!["-p".into(), format!("bottle: password for %u, to {why}: ")],
        Sudo::NeverAsk => vec!["-n".into()],
        Sudo::ForUser => Vec::new(),
    };
    args.extend([SH.to_owned(), "-c".to_owned(), script]);
    HostCommand {
        program: SUDO.to_owned(),
        args,
        stdin: None,
    }
}

/// How a command run as root ended, when it did not fail outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AsRoot {
    Done,
    /// There is no terminal and sudo needs a password: nothing ran. `sudo_said` is sudo's
    /// stderr, for the caller's error.
    NeedsPassword {
        sudo_said: String,
    },
}

/// Runs the command `build` makes for how sudo may be run here: one that may ask on a
/// terminal, one that never asks without. A failure of the command itself is an error
/// naming the command, its exit status and its stderr.
pub(crate) fn run_as_root(
    host: &dyn Host,
    build: impl Fn(Sudo) -> HostCommand,
) -> Result<AsRoot, BackendError> {
    if host.stdin_is_terminal() {
        command::run_checked(host, &build(Sudo::Ask))?;
        return Ok(AsRoot::Done);
    }
    let command = build(Sudo::NeverAsk);
    let output = command::run(host, &command)?;
    if output.success() {
        Ok(AsRoot::Done)
    } else if needs_password(&output.stderr) {
        Ok(AsRoot::NeedsPassword {
            sudo_said: output.stderr.trim().to_owned(),
        })
    } else {
        Err(command::failed(&command, &output))
    }
}

/// Whether sudo's stderr says that it stopped because it needed a password.
fn needs_password(stderr: &str) -> bool {
    stderr.contains("password is required") || stderr.contains("terminal is required")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::{failure, success, FakeHost};

    fn build(sudo: Sudo) -> HostCommand {
        sudo_sh("/usr/bin/true".into(), sudo, "do nothing")
    }

    #[test]
    fn each_way_of_running_sudo_has_its_flags() {
        assert_eq!(
            build(Sudo::Ask).args,
            [
                "-p",
                "bottle: password for %u, to do nothing: ",
                "/bin/sh",
                "-c",
                "/usr/bin/true"
            ]
        );
        assert_eq!(
            build(Sudo::NeverAsk).to_string(),
            "sudo -n /bin/sh -c /usr/bin/true"
        );
        assert_eq!(
            build(Sudo::ForUser).to_string(),
            "sudo /bin/sh -c /usr/bin/true"
        );
    }

    #[test]
    fn a_terminal_lets_sudo_ask() {
        let host = FakeHost::new(true, [success("")]);
        assert_eq!(run_as_root(&host, build).unwrap(), AsRoot::Done);
        assert_eq!(host.ran(), [build(Sudo::Ask)]);
    }

    #[test]
    fn without_a_terminal_a_needed_password_is_reported_not_awaited() {
        for said in [
            "sudo: a password is required\n",
            "sudo: a terminal is required to read the password\n",
        ] {
            let host = FakeHost::new(false, [failure(1, said)]);
            assert_eq!(
                run_as_root(&host, build).unwrap(),
                AsRoot::NeedsPassword {
                    sudo_said: said.trim().to_owned()
                }
            );
            assert_eq!(host.ran(), [build(Sudo::NeverAsk)]);
        }
    }

    #[test]
    fn any_other_failure_names_the_command() {
        let host = FakeHost::new(false, [failure(2, "sh: /usr/bin/true: not found\n")]);
        let err = run_as_root(&host, build).unwrap_err();
        assert_eq!(
            err.message,
            "`sudo -n /bin/sh -c /usr/bin/true` failed with exit status 2"
        );
        assert_eq!(err.causes, ["sh: /usr/bin/true: not found"]);
    }
}

//! The real [`Host`]: runs commands and asks about the terminal, on macOS only.
//!
//! Everything else in the crate compiles and is tested on any OS; elsewhere this host says
//! that the plugin does not apply, so the crate still builds in a Linux workspace.

use bottle_core::BackendError;

use crate::command::{CommandOutput, Host, HostCommand};

/// The machine bottle runs on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemHost;

#[cfg(target_os = "macos")]
impl Host for SystemHost {
    /// Standard input is closed: sudo asks for a password on /dev/tty, never on stdin.
    fn run(&self, command: &HostCommand) -> Result<CommandOutput, BackendError> {
        use bottle_core::ErrorKind;
        use std::process::{Command, Stdio};

        let output = Command::new(&command.program)
            .args(&command.args)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| {
                let kind = match err.kind() {
                    std::io::ErrorKind::NotFound => ErrorKind::Unavailable,
                    _ => ErrorKind::CommandFailed,
                };
                tracing::debug!(%command, %err, "cannot start");
                BackendError::new(kind, format!("cannot run `{command}`")).with_cause(&err)
            })?;
        Ok(CommandOutput {
            status: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    fn stdin_is_terminal(&self) -> bool {
        use std::io::IsTerminal;

        std::io::stdin().is_terminal()
    }
}

#[cfg(not(target_os = "macos"))]
impl Host for SystemHost {
    fn run(&self, _command: &HostCommand) -> Result<CommandOutput, BackendError> {
        Err(BackendError::new(
            bottle_core::ErrorKind::NotSupported,
            "net-macos runs only on macOS",
        ))
    }

    fn stdin_is_terminal(&self) -> bool {
        false
    }
}

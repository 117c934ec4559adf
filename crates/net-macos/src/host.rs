//! The real [`Host`]: runs commands and asks about the terminal, on macOS only.
//!
//! Everything else in the crate compiles and is tested on any OS; elsewhere this host says
//! that the plugin does not apply, so the crate still builds in a Linux workspace.

use std::fs::File;
use std::io::{self, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU32, Ordering};

use bottle_core::BackendError;

use crate::command::{CommandOutput, Host, HostCommand};

/// The machine bottle runs on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemHost;

#[cfg(target_os = "macos")]
impl Host for SystemHost {
    /// Standard input is `command.stdin` or closed: sudo asks for a password on /dev/tty,
    /// never on stdin.
    fn run(&self, command: &HostCommand) -> Result<CommandOutput, BackendError> {
        use bottle_core::ErrorKind;
        use std::process::{Command, Stdio};

        let cannot_run = |err: io::Error| {
            let kind = match err.kind() {
                io::ErrorKind::NotFound => ErrorKind::Unavailable,
                _ => ErrorKind::CommandFailed,
            };
            tracing::debug!(%command, %err, "cannot start");
            BackendError::new(kind, format!("cannot run `{command}`")).with_cause(&err)
        };
        let stdin = match &command.stdin {
            Some(text) => Stdio::from(stdin_file(text).map_err(cannot_run)?),
            None => Stdio::null(),
        };
        let output = Command::new(&command.program)
            .args(&command.args)
            .stdin(stdin)
            .output()
            .map_err(cannot_run)?;
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

/// An open, already unlinked file holding `text`, positioned at its start: a command's
/// standard input.
///
/// A file rather than a pipe: bottle restores the default SIGPIPE, so writing into a pipe
/// whose reader already exited (a `sudo -n` that refused) would kill bottle outright, and a
/// pipe's buffer may be smaller than the input. The file is created afresh (`O_EXCL`, mode
/// 0600) in the user's temporary directory and removed before the command starts.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
fn stdin_file(text: &str) -> io::Result<File> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "bottle-stdin-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let path = std::env::temp_dir().join(name);
    let mut file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    let written = file.write_all(text.as_bytes()).and_then(|()| file.rewind());
    std::fs::remove_file(&path)?;
    written?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_input_file_reads_back_from_its_start_and_leaves_no_name_behind() {
        let mut first = stdin_file("<plist/>\n").unwrap();
        let second = stdin_file("").unwrap();
        let mut text = String::new();
        first.read_to_string(&mut text).unwrap();
        assert_eq!(text, "<plist/>\n");
        assert_eq!(second.metadata().unwrap().len(), 0);
        let prefix = format!("bottle-stdin-{}-", std::process::id());
        let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

//! A command to run in the sandbox, its program found on the agent's `PATH`, not the host's.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// The exit code of a command whose program was not found, as shells report it.
pub const NOT_FOUND: i32 = 127;
/// The exit code of a command whose program was found but could not be run.
pub const NOT_EXECUTABLE: i32 = 126;

/// A command, ready to be executed once the process is inside the sandbox.
#[derive(Debug, Clone)]
pub struct Program {
    name: String,
    argv: Vec<CString>,
    envp: Vec<CString>,
    search_path: String,
}

impl Program {
    /// `command` run with exactly `env` as its environment.
    pub fn new(command: &[String], env: &BTreeMap<String, String>) -> io::Result<Self> {
        let nul = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} holds a NUL byte"),
            )
        };
        let name = command
            .first()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"))?
            .clone();
        let argv = command
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("an argument")))
            .collect::<io::Result<_>>()?;
        let envp = env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")).map_err(|_| nul("a variable")))
            .collect::<io::Result<_>>()?;
        Ok(Program {
            name,
            argv,
            envp,
            search_path: env.get("PATH").cloned().unwrap_or_default(),
        })
    }

    /// The program's name as given, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Finds the program as the agent's shell would: a name with a `/` as it is, any other on
    /// the agent's `PATH`, in the filesystem the process sees now.
    pub fn resolve(&self) -> Option<PathBuf> {
        if self.name.contains('/') {
            return Some(PathBuf::from(&self.name));
        }
        self.search_path
            .split(':')
            .filter(|dir| dir.starts_with('/'))
            .map(|dir| Path::new(dir).join(&self.name))
            .find(|candidate| is_executable_file(candidate))
    }

    /// Replaces this process with the program. Returns only when that failed, with the exit
    /// code a shell would give and the reason.
    pub fn exec(&self) -> (i32, io::Error) {
        let Some(path) = self.resolve() else {
            let err = io::Error::new(io::ErrorKind::NotFound, "not found on the agent's PATH");
            return (NOT_FOUND, err);
        };
        let path = match sys::c_path(&path) {
            Ok(path) => path,
            Err(e) => return (NOT_EXECUTABLE, e),
        };
        let err = sys::execve(&path, &self.argv, &self.envp);
        let code = if err.kind() == io::ErrorKind::NotFound {
            NOT_FOUND
        } else {
            NOT_EXECUTABLE
        };
        (code, err)
    }
}

fn is_executable_file(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(path: &str) -> BTreeMap<String, String> {
        BTreeMap::from([("PATH".to_owned(), path.to_owned())])
    }

    #[test]
    fn names_are_found_on_the_given_path_only() {
        let program = Program::new(&["sh".into(), "-c".into()], &env("/nonexistent:/bin")).unwrap();
        assert_eq!(program.resolve(), Some(PathBuf::from("/bin/sh")));
        let nowhere = Program::new(&["sh".into()], &env("relative:/nonexistent")).unwrap();
        assert_eq!(nowhere.resolve(), None);
        let absolute = Program::new(&["/x/y".into()], &env("")).unwrap();
        assert_eq!(absolute.resolve(), Some(PathBuf::from("/x/y")));
    }

    #[test]
    fn empty_commands_and_nul_bytes_are_refused() {
        assert!(Program::new(&[], &env("/bin")).is_err());
        assert!(Program::new(&["".into()], &env("/bin")).is_err());
        assert!(Program::new(&["a\0b".into()], &env("/bin")).is_err());
    }

    #[test]
    fn a_missing_program_gives_127() {
        let program = Program::new(&["no-such-program".into()], &env("/bin")).unwrap();
        assert_eq!(program.exec().0, NOT_FOUND);
    }
}

//! A machine's directory: the one place its file names and formats are defined.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddrV4;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bottle_core::{AgentSpec, EgressPolicy};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::process::ProcessId;

/// The prefix of the names of bottle's machines (`bottle-<slug>`), by which `list_machines`
/// knows them.
pub const MACHINE_PREFIX: &str = "bottle-";

/// The agent's `PATH` when its spec sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The agent's `HOME` when its spec sets none: the one writable directory every sandbox has.
pub const DEFAULT_HOME: &str = "/tmp";

const RECORD_FILE: &str = "machine.json";
const SUPERVISOR_FILE: &str = "supervisor.json";
const SUPERVISOR_LOG: &str = "supervisor.log";
const AGENT_LOG: &str = "agent.log";
const STAGING_DIR: &str = "root";

/// What `create` wrote: the agent, the policy it was created with, and the exact addresses
/// the relay forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub agent: AgentSpec,
    pub policy: EgressPolicy,
    /// One relay listener per address, each forwarding to the same address on the host.
    pub relay: Vec<SocketAddrV4>,
}

impl MachineRecord {
    /// The agent's environment: its spec's variables (the bottle's own among them), with
    /// `PATH` and `HOME` filled in when the spec sets none. Nothing comes from the host.
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = self.agent.env.clone();
        env.entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        env.entry("HOME".to_owned())
            .or_insert_with(|| DEFAULT_HOME.to_owned());
        env
    }
}

/// The processes of a running sandbox, written by its supervisor once the sandbox is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorRecord {
    /// The supervisor, in the host's namespaces; it owns the relay.
    pub supervisor: ProcessId,
    /// The sandbox's init (pid 1 of its pid namespace), as the host sees it. Killing it kills
    /// every process of the sandbox; `exec` enters its namespaces.
    pub init: ProcessId,
}

/// Checks that `name` is a machine name: a single path component of a-z, 0-9 and '-'.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= 128
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::MachineName {
            name: name.to_owned(),
        })
    }
}

/// The directory `STATE_DIR/machines/NAME` of one machine, which the backend (in bottle's
/// process) and the helper both read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineDir {
    path: PathBuf,
}

impl MachineDir {
    /// The directory of machine `name` below `machines`; the name is checked first, so that
    /// it can never point elsewhere.
    pub fn new(machines: &Path, name: &str) -> Result<Self, Error> {
        check_name(name)?;
        Ok(MachineDir {
            path: machines.join(name),
        })
    }

    /// A machine directory given by path, as the helper receives it.
    pub fn at(path: PathBuf) -> Self {
        MachineDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.join(RECORD_FILE).is_file()
    }

    pub fn record_path(&self) -> PathBuf {
        self.path.join(RECORD_FILE)
    }

    pub fn supervisor_path(&self) -> PathBuf {
        self.path.join(SUPERVISOR_FILE)
    }

    /// The supervisor's own log: its setup steps and failures, and the relay's errors.
    pub fn supervisor_log(&self) -> PathBuf {
        self.path.join(SUPERVISOR_LOG)
    }

    /// Where the agent's command writes its standard output and error.
    pub fn agent_log(&self) -> PathBuf {
        self.path.join(AGENT_LOG)
    }

    /// An empty directory the sandbox mounts its root filesystem on, in its own mount
    /// namespace only; on the host it stays empty.
    pub fn staging(&self) -> PathBuf {
        self.path.join(STAGING_DIR)
    }

    /// Creates the directory (private to the user) and writes the record; a machine that
    /// already exists is a conflict.
    pub fn create(&self, record: &MachineRecord) -> Result<(), Error> {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(parent) = self.path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|source| self.io("create", parent, source))?;
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::MachineExists { name })
            }
            Err(source) => return Err(self.io("create", &self.path, source)),
        }
        let written = serde_json::to_string_pretty(record)
            .map_err(|source| Error::Record {
                path: self.record_path(),
                source,
            })
            .and_then(|json| {
                write_new(&self.record_path(), &json)
                    .map_err(|source| self.io("write", &self.record_path(), source))
            });
        if written.is_err() {
            // A directory without its record would block the name for the next create.
            let _ = fs::remove_dir_all(&self.path);
        }
        written
    }

    pub fn read_record(&self) -> Result<MachineRecord, Error> {
        read_json(&self.record_path())
    }

    /// The running sandbox's processes; `None` when it was never started.
    pub fn read_supervisor(&self) -> Result<Option<SupervisorRecord>, Error> {
        match read_json(&self.supervisor_path()) {
            Ok(record) => Ok(Some(record)),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records the running sandbox's processes, replacing an earlier run's record whole (a
    /// reader never sees half a file).
    pub fn write_supervisor(&self, record: &SupervisorRecord) -> Result<(), Error> {
        let path = self.supervisor_path();
        let json = serde_json::to_string(record).map_err(|source| Error::Record {
            path: path.clone(),
            source,
        })?;
        let partial = self.path.join(format!("{SUPERVISOR_FILE}.partial"));
        write_new_replacing(&partial, &json)
            .and_then(|()| fs::rename(&partial, &path))
            .map_err(|source| self.io("write", &path, source))
    }

    /// Forgets an earlier run's processes before a new run starts.
    pub fn clear_supervisor(&self) -> Result<(), Error> {
        match fs::remove_file(self.supervisor_path()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.io("remove", &self.supervisor_path(), source)),
        }
    }

    /// The last `lines` lines of the supervisor's log, for error messages.
    pub fn supervisor_log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.supervisor_log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn io(&self, action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Record {
        path: path.to_path_buf(),
        source,
    })
}

fn write_new(path: &Path, text: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn write_new_replacing(path: &Path, text: &str) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_new(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_are_single_safe_components() {
        for ok in ["bottle-a", "bottle-review-bot2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "a/b", "Bottle", "-x", "bottle_a", "bottle-a/../b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_second_create_is_a_conflict_and_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let machine = MachineDir::new(&dir.path().join("machines"), "bottle-a").unwrap();
        assert!(machine.read_supervisor().unwrap().is_none());
        let record = crate::validate::tests::record();
        machine.create(&record).unwrap();
        assert!(machine.exists());
        assert_eq!(machine.read_record().unwrap(), record);
        let err = machine.create(&record).unwrap_err();
        assert!(matches!(err, Error::MachineExists { .. }), "{err:?}");

        let me = ProcessId::of(std::process::id()).unwrap();
        let running = SupervisorRecord {
            supervisor: me,
            init: me,
        };
        machine.write_supervisor(&running).unwrap();
        machine.write_supervisor(&running).unwrap();
        assert_eq!(machine.read_supervisor().unwrap(), Some(running));
        machine.clear_supervisor().unwrap();
        machine.clear_supervisor().unwrap();
        assert_eq!(machine.read_supervisor().unwrap(), None);
    }

    #[test]
    fn the_environment_has_defaults_but_nothing_from_the_host() {
        let mut record = crate::validate::tests::record();
        let env = record.environment();
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert_eq!(env["HOME"], DEFAULT_HOME);
        assert_eq!(env["BOTTLE_ALIAS"], "127.0.0.17");
        assert!(!env.contains_key("USER"));
        record.agent.env.insert("HOME".into(), "/work".into());
        assert_eq!(record.environment()["HOME"], "/work");
    }
}

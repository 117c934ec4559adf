//! Test support: the fake smolvm, built once by cargo, run with a home directory of each
//! test's own.
//!
//! Shared by the unit tests (through `#[path]`) and the integration tests.

#![allow(dead_code)]

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

/// The fake `smolvm` executable, built on first use into the target directory these tests
/// were built in.
pub fn fake_binary() -> &'static Path {
    static FAKE: OnceLock<PathBuf> = OnceLock::new();
    FAKE.get_or_init(build_fake)
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .expect("the tests run from inside a cargo target directory")
}

fn build_fake() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "bottle-fake-smolvm",
            "--message-format=json",
        ])
        .env("CARGO_TARGET_DIR", target_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo could not build the fake smolvm"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact" && message["target"]["name"] == "smolvm" {
            if let Some(exe) = message["executable"].as_str() {
                return PathBuf::from(exe);
            }
        }
    }
    panic!("cargo built no `smolvm` executable:\n{stdout}");
}

/// One test's fake smolvm: a home directory of its own, and a launcher script that runs the
/// fake with that home, a version and faults, so that tests never change their own process's
/// environment.
pub struct FakeSmolvm {
    dir: TempDir,
    launcher: PathBuf,
}

impl FakeSmolvm {
    pub fn new(version: &str) -> Self {
        Self::with_faults(version, "")
    }

    pub fn with_faults(version: &str, faults: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let home = dir.path().join("home");
        let data = dir.path().join("data");
        fs::create_dir_all(&home).expect("a home dir");
        let launcher = dir.path().join("smolvm");
        let script = format!(
            "#!/bin/sh\n\
             [ \"$1\" = --launcher-ready ] && exit 0\n\
             export HOME={home} XDG_DATA_HOME={data} FAKE_SMOLVM_VERSION={version} \
             FAKE_SMOLVM_FAIL={faults}\n\
             exec {fake} \"$@\"\n",
            home = quoted(&home),
            data = quoted(&data),
            version = quoted(Path::new(version)),
            faults = quoted(Path::new(faults)),
            fake = quoted(fake_binary()),
        );
        let mut file = fs::File::create(&launcher).expect("the launcher");
        file.write_all(script.as_bytes())
            .expect("the launcher written");
        file.set_permissions(fs::Permissions::from_mode(0o755))
            .expect("an executable launcher");
        drop(file);
        wait_until_executable(&launcher);
        FakeSmolvm { dir, launcher }
    }

    /// The path to give as the `smolvm` setting.
    pub fn program(&self) -> &Path {
        &self.launcher
    }

    /// smolvm's data directory, where the fake puts it on this OS.
    pub fn data_dir(&self) -> PathBuf {
        if cfg!(target_os = "macos") {
            self.dir
                .path()
                .join("home/Library/Application Support/smolvm")
        } else {
            self.dir.path().join("data/smolvm")
        }
    }

    pub fn database(&self) -> PathBuf {
        self.data_dir().join("server/smolvm.db")
    }

    /// The backend's settings for this fake.
    pub fn settings(&self) -> serde_json::Value {
        serde_json::json!({
            "smolvm": self.program(),
            "database": self.database(),
            "state_dir": self.dir.path().join("bottle-state"),
        })
    }

    /// An empty `.smolmachine` artifact; the fake only checks that it exists.
    pub fn artifact(&self) -> PathBuf {
        let path = self.dir.path().join("agent.smolmachine");
        fs::write(&path, b"").expect("the artifact");
        path
    }

    pub fn smolvm(&self, args: &[&str]) -> Output {
        Command::new(&self.launcher)
            .args(args)
            .output()
            .expect("the fake runs")
    }

    /// Runs the fake and returns its stdout; it must succeed.
    pub fn smolvm_ok(&self, args: &[&str]) -> String {
        let output = self.smolvm(args);
        assert!(
            output.status.success(),
            "smolvm {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Every command line the fake was run with, in order.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let Ok(log) = fs::read_to_string(self.data_dir().join("fake/calls.log")) else {
            return Vec::new();
        };
        log.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON array per call"))
            .collect()
    }

    /// What the fake's `start` recorded it would enforce for `machine`.
    pub fn enforced(&self, machine: &str) -> Option<serde_json::Value> {
        let path = self
            .data_dir()
            .join(format!("fake/{machine}.enforced.json"));
        let text = fs::read_to_string(path).ok()?;
        Some(serde_json::from_str(&text).expect("the enforced file is JSON"))
    }

    /// The stored bytes of `machine`'s row and their SQLite type, if the row exists.
    pub fn row(&self, machine: &str) -> Option<(Vec<u8>, String)> {
        if !self.database().exists() {
            return None;
        }
        let conn = rusqlite::Connection::open(self.database()).expect("the fake's database");
        let mut statement = conn
            .prepare("SELECT CAST(data AS BLOB), typeof(data) FROM vms WHERE name = ?1")
            .ok()?;
        statement
            .query_row([machine], |row| Ok((row.get(0)?, row.get(1)?)))
            .ok()
    }

    /// Replaces `machine`'s row with `bytes`, stored as a BLOB.
    pub fn write_row(&self, machine: &str, bytes: &[u8]) {
        let conn = rusqlite::Connection::open(self.database()).expect("the fake's database");
        let changed = conn
            .execute(
                "UPDATE vms SET data = ?1 WHERE name = ?2",
                rusqlite::params![bytes, machine],
            )
            .expect("the row rewritten");
        assert_eq!(changed, 1, "no row for {machine}");
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Waits until the new launcher can be executed. While another test thread forks, its child
/// briefly holds a copy of our write handle, and exec then fails with "text file busy"; once
/// one exec succeeds no such copy is left, since the handle is closed.
fn wait_until_executable(launcher: &Path) {
    const TEXT_FILE_BUSY: i32 = 26;
    for _ in 0..100 {
        match Command::new(launcher).arg("--launcher-ready").status() {
            Ok(status) if status.success() => return,
            Err(err) if err.raw_os_error() == Some(TEXT_FILE_BUSY) => {
                thread::sleep(Duration::from_millis(10))
            }
            other => panic!("the launcher does not run: {other:?}"),
        }
    }
    panic!("{}", io::Error::from_raw_os_error(TEXT_FILE_BUSY));
}

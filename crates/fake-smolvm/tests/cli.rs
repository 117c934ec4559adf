//! The fake smolvm speaks the command line, database and version behaviours that bottle's tests
//! rely on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tempfile::TempDir;

/// A home directory for one test, and the fake run inside it.
struct Home {
    dir: TempDir,
    version: &'static str,
    faults: &'static str,
}

impl Home {
    fn new(version: &'static str) -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
            version,
            faults: "",
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_smolvm"));
        command
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("XDG_DATA_HOME")
            .env("FAKE_SMOLVM_VERSION", self.version)
            .env("FAKE_SMOLVM_FAIL", self.faults);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn data(&self) -> PathBuf {
        if cfg!(target_os = "macos") {
            self.dir.path().join("Library/Application Support/smolvm")
        } else {
            self.dir.path().join(".local/share/smolvm")
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data().join("server/smolvm.db")).unwrap()
    }

    fn record(&self, name: &str) -> (Vec<u8>, String) {
        self.db()
            .query_row(
                "SELECT CAST(data AS BLOB), typeof(data) FROM vms WHERE name = ?1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
    }

    fn artifact(&self) -> String {
        let path = self.dir.path().join("x.smolmachine");
        std::fs::write(&path, b"").unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn keys(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).unwrap();
    let fields: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    let mut keys: Vec<(usize, String)> = fields
        .keys()
        .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

/// The keys of the record smolvm 1.9.2 writes, in its order.
const REFERENCE_KEYS: &str = "name created_at state pid pid_start_time cpus mem mounts ports \
    published_sockets network gpu gpu_vram_mib rosetta restart last_exit_code init \
    init_completed remote_volumes env workdir storage_gb overlay_gb allowed_cidrs image \
    entrypoint cmd health_cmd health_interval_secs health_timeout_secs health_retries \
    health_startup_grace_secs ssh_agent cuda docker_socket ephemeral source_smolmachine \
    runtime_managed";

#[test]
fn prints_the_version_it_plays() {
    assert_eq!(Home::new("0.8.0").ok(&["--version"]), "smolvm 0.8.0\n");
    assert_eq!(Home::new("garbage").ok(&["--version"]), "smolvm garbage\n");
}

#[test]
fn the_wrong_form_for_the_version_is_a_usage_error() {
    let old = Home::new("0.8.0");
    for args in [
        &["machine", "create", "--name", "m"][..],
        &["machine", "create", "m", "--label", "a=b"],
        &["machine", "delete", "--name", "m", "-f"],
        &["machine", "ls", "--json"],
        &["machine", "status", "--name", "m", "--json"],
    ] {
        assert_eq!(old.run(args).status.code(), Some(2), "0.8.0 {args:?}");
    }
    let new = Home::new("1.9.2");
    for args in [
        &["machine", "create", "m"][..],
        &["machine", "delete", "m", "-f"],
    ] {
        let out = new.run(args);
        assert_eq!(out.status.code(), Some(2), "1.9.2 {args:?}");
        assert!(stderr(&out).contains("Usage:"), "{}", stderr(&out));
    }
    assert!(
        !old.data().join("server/smolvm.db").exists(),
        "a usage error touches nothing"
    );
}

#[test]
fn version_0_8_drops_the_allow_list_with_from_and_writes_the_older_record() {
    let home = Home::new("0.8.0");
    let artifact = home.artifact();
    let args = [
        "machine",
        "create",
        "m",
        "--from",
        &artifact,
        "--allow-cidr",
        "127.0.0.17",
    ];
    assert_eq!(home.ok(&args), "Created machine: m\n");
    let (bytes, stored_as) = home.record("m");
    assert_eq!(stored_as, "blob");
    let fields: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(fields["allowed_cidrs"], Value::Null);
    assert_eq!(fields["network"], json!(false));
    let older: Vec<&str> = REFERENCE_KEYS
        .split_whitespace()
        .filter(|k| {
            ![
                "published_sockets",
                "rosetta",
                "remote_volumes",
                "cuda",
                "docker_socket",
            ]
            .contains(k)
                && *k != "runtime_managed"
        })
        .collect();
    assert_eq!(keys(&bytes), older);
}

#[test]
fn version_1_9_honours_the_allow_list_and_writes_the_reference_record() {
    let home = Home::new("1.9.2");
    let artifact = home.artifact();
    let args = [
        "machine",
        "create",
        "--name",
        "t2",
        "--from",
        &artifact,
        "--allow-cidr",
        "127.0.0.17",
    ];
    home.ok(&[&args[..], &["-p", "8080:80"]].concat());
    let (bytes, _) = home.record("t2");
    assert_eq!(
        keys(&bytes),
        REFERENCE_KEYS.split_whitespace().collect::<Vec<_>>()
    );
    let fields: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(fields["allowed_cidrs"], json!(["127.0.0.17/32"]));
    assert_eq!(fields["network"], json!(true));
    assert_eq!(fields["ports"], json!([[8080, 80]]));
}

#[test]
fn the_database_is_smolvms() {
    let home = Home::new("1.9.2");
    home.ok(&["machine", "create", "--name", "m", "-I", "alpine"]);
    let db = home.db();
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let schema: String = db
        .query_row(
            "SELECT sql FROM sqlite_master WHERE name = 'vms'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        schema,
        "CREATE TABLE vms (name TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL)"
    );
    for table in ["vm_create_reservations", "config", "fork_lineage"] {
        let found: i64 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(found, 1, "{table}");
    }
}

#[test]
fn a_text_row_breaks_ls_and_start_as_in_smolvm() {
    let mut home = Home::new("1.9.2");
    home.ok(&["machine", "create", "--name", "good", "-I", "alpine"]);
    home.faults = "store-text";
    home.ok(&["machine", "create", "--name", "bad", "-I", "alpine"]);
    home.faults = "";
    assert_eq!(home.record("bad").1, "text");
    for args in [
        &["machine", "ls", "--json"][..],
        &["machine", "start", "--name", "bad"],
    ] {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            "Error: Invalid column type Text at index: 1, name: data\n"
        );
    }
}

#[test]
fn start_reads_the_record_afresh_and_writes_down_what_it_enforces() {
    let home = Home::new("0.8.0");
    let artifact = home.artifact();
    home.ok(&[
        "machine",
        "create",
        "m",
        "--from",
        &artifact,
        "--allow-cidr",
        "127.0.0.17/32",
    ]);
    let (bytes, _) = home.record("m");
    let mut fields: Value = serde_json::from_slice(&bytes).unwrap();
    fields["allowed_cidrs"] = json!(["127.0.0.17/32"]);
    fields["network"] = json!(true);
    home.db()
        .execute(
            "UPDATE vms SET data = ?1 WHERE name = 'm'",
            [serde_json::to_vec(&fields).unwrap()],
        )
        .unwrap();

    home.ok(&["machine", "start", "--name", "m"]);
    let enforced = std::fs::read_to_string(home.data().join("fake/m.enforced.json")).unwrap();
    let enforced: Value = serde_json::from_str(&enforced).unwrap();
    assert_eq!(
        enforced,
        json!({ "name": "m", "network": true, "allowed_cidrs": ["127.0.0.17/32"] })
    );
    assert_eq!(
        home.ok(&["machine", "status", "-n", "m"]),
        "Machine 'm': running\n"
    );
}

#[test]
fn stop_delete_status_and_exec() {
    let home = Home::new("1.9.2");
    home.ok(&[
        "machine",
        "create",
        "--name",
        "m",
        "-I",
        "alpine",
        "-e",
        "GREETING=hi",
    ]);
    assert_eq!(
        home.ok(&["machine", "stop", "--name", "m"]),
        "Machine 'm' is not running (state: created)\n"
    );
    let out = home.run(&["machine", "exec", "--name", "m", "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "exec needs a running machine");

    home.ok(&["machine", "start", "--name", "m"]);
    let status: Value =
        serde_json::from_str(&home.ok(&["machine", "status", "--name", "m", "--json"])).unwrap();
    assert_eq!(status["state"], "running");
    assert!(
        status.get("allowed_cidrs").is_none(),
        "status never shows the allow-list"
    );
    let out = home.run(&[
        "machine",
        "exec",
        "--name",
        "m",
        "--",
        "sh",
        "-c",
        "echo $GREETING; exit 4",
    ]);
    assert_eq!((out.status.code(), out.stdout), (Some(4), b"hi\n".to_vec()));

    let mut ask = home.command(&["machine", "delete", "--name", "m"]);
    let mut child = ask
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert_eq!(
        home.record("m").1,
        "blob",
        "a refused prompt deletes nothing"
    );

    home.ok(&["machine", "delete", "--name", "m", "-f"]);
    let out = home.run(&["machine", "status", "--name", "m", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "Error: vm not found: m\n");
    assert!(!Path::new(&home.data().join("fake/m.enforced.json")).exists());
}

#[test]
fn every_call_is_logged() {
    let home = Home::new("1.0.3");
    home.ok(&["--version"]);
    home.ok(&["machine", "ls", "--json"]);
    let log = std::fs::read_to_string(home.data().join("fake/calls.log")).unwrap();
    assert_eq!(log, "[\"--version\"]\n[\"machine\",\"ls\",\"--json\"]\n");
}

#[test]
fn injected_failures_change_nothing() {
    let mut home = Home::new("1.9.2");
    home.faults = "create";
    let out = home.run(&["machine", "create", "--name", "m", "-I", "alpine"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: injected failure (FAKE_SMOLVM_FAIL=create)\n"
    );
    home.faults = "";
    assert_eq!(home.ok(&["machine", "ls", "--json"]), "[]\n");
}

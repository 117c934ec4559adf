//! Workaround for smolvm dropping `--allow-cidr` when a machine is created `--from` an artifact.
//!
//! # The defect
//!
//! `smolvm machine create --from X.smolmachine --allow-cidr 127.0.0.17/32` stores
//! `"allowed_cidrs": null` in the machine's record on every smolvm from 0.8.0 to 1.7.x, and
//! `--allow-cidr` alone does not even turn `network` on. A null list means unrestricted: the
//! agent would reach the whole of host loopback (127.0.0.0/8), every other bottle's bundle
//! and the host's own services included. smolvm 1.8.0 fixed it ("preserve egress policy for
//! --from"). Of the affected releases, bottle drives only 0.8.x to 1.0.3, the ones whose
//! allow-list can name one loopback alias; 1.0.4 to 1.7.x are refused by the probe anyway.
//!
//! # What it does
//!
//! Right after `machine create` and before `machine start`, it reads the machine's record
//! from smolvm's database and compares `network` and `allowed_cidrs` with what bottle asked
//! for. When they match (a smolvm that honours the flag, or an `--image` machine) it changes
//! nothing. Otherwise, inside one `BEGIN IMMEDIATE` transaction, it sets exactly those two keys
//! (`network: true`, `allowed_cidrs: [requested blocks]`), keeps every other key as it was,
//! unknown ones included, writes the JSON back as a BLOB, commits, and reads the row again to
//! confirm. Any record it cannot read, parse or confirm stops the launch.
//!
//! # Why it is safe
//!
//! smolvm reads the record afresh at `machine start`, so the patched list is the one the
//! machine gets (the launcher also reads it back before starting the agent). The write takes
//! the database's write lock up front (`BEGIN IMMEDIATE`) and waits up to 15 s for it, as
//! smolvm's own updates do, so it never interleaves with a smolvm write. The JSON is written as
//! a BLOB because smolvm fails to read any row stored as TEXT, and not only that machine's.
//! The key order of the record may change; smolvm decodes it by name.
//!
//! # Removing it
//!
//! Delete this module and its one call in `SmolvmBackend::create` once bottle stops driving
//! smolvm 0.8.x to 1.0.3, in the same change that makes the probe refuse them
//! (`EgressBehaviour::TsiDropsAllowCidr` no longer `ScopeSupport::Exact`). Every later release
//! either honours `--allow-cidr` (1.8.0 on) or is refused anyway, and on a smolvm that honours
//! the flag this code only reads and compares, so removing it changes nothing there. Removed
//! too early, it fails closed: the launcher's read-back of the effective policy would find
//! `allowed_cidrs: null` and refuse to start the agent.

use std::path::Path;

use bottle_core::Ipv4Cidr;
use rusqlite::TransactionBehavior;
use serde_json::Value;

use crate::error::Error;
use crate::record::{self, ALLOWED_CIDRS, NETWORK};
use crate::version::SmolvmVersion;

/// What [`enforce_requested_allow_list`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The record already held the requested allow-list; nothing was written.
    AlreadyEnforced,
    /// The record was patched, and the patch read back.
    Patched,
}

/// Makes the record of `machine` hold `requested` as its allow-list, with `network` on.
pub(crate) fn enforce_requested_allow_list(
    database: &Path,
    machine: &str,
    version: Option<SmolvmVersion>,
    requested: &[Ipv4Cidr],
) -> Result<Outcome, Error> {
    let smolvm = version.map_or_else(|| "an unreadable version".to_owned(), |v| v.to_string());
    let mut conn = record::open(database, true)?;

    let current = record::read(&conn, database, machine)?;
    if holds(&current.fields, machine, requested)? {
        tracing::debug!(
            machine,
            smolvm = %smolvm,
            "the record already holds the requested allow-list; not patching it"
        );
        return Ok(Outcome::AlreadyEnforced);
    }

    let write_error = |source| Error::PatchWrite {
        name: machine.to_owned(),
        path: database.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(write_error)?;
    let mut fields = record::read(&tx, database, machine)?.fields;
    fields.insert(NETWORK.to_owned(), Value::Bool(true));
    let blocks = requested
        .iter()
        .map(|b| Value::String(b.to_string()))
        .collect();
    fields.insert(ALLOWED_CIDRS.to_owned(), Value::Array(blocks));
    let bytes: Vec<u8> =
        serde_json::to_vec(&Value::Object(fields)).map_err(|source| Error::RecordJson {
            name: machine.to_owned(),
            source,
        })?;
    let changed = tx
        .execute(
            "UPDATE vms SET data = ?1 WHERE name = ?2",
            rusqlite::params![bytes, machine],
        )
        .map_err(write_error)?;
    if changed != 1 {
        return Err(Error::NoRecord {
            name: machine.to_owned(),
            path: database.to_path_buf(),
        });
    }
    tx.commit().map_err(write_error)?;

    let written = record::read(&conn, database, machine)?;
    if !holds(&written.fields, machine, requested)? {
        let shown = |key: &str| {
            written
                .fields
                .get(key)
                .map_or("(absent)".into(), Value::to_string)
        };
        return Err(Error::PatchDidNotStick {
            name: machine.to_owned(),
            network: shown(NETWORK),
            allowed: shown(ALLOWED_CIDRS),
        });
    }
    let allowed: Vec<String> = requested.iter().map(Ipv4Cidr::to_string).collect();
    tracing::info!(
        machine,
        smolvm = %smolvm,
        allowed = %allowed.join(","),
        "smolvm left the requested allow-list out of the machine's record; wrote it there"
    );
    Ok(Outcome::Patched)
}

/// Whether the record turns the network on and allows exactly the `requested` blocks. An
/// entry bottle cannot read counts as a difference, so that the patch replaces it.
fn holds(
    fields: &serde_json::Map<String, Value>,
    machine: &str,
    requested: &[Ipv4Cidr],
) -> Result<bool, Error> {
    if !record::network(fields, machine)? {
        return Ok(false);
    }
    let Ok(Some(mut allowed)) = record::allowed_cidrs(fields, machine) else {
        return Ok(false);
    };
    let mut requested = requested.to_vec();
    allowed.sort();
    requested.sort();
    Ok(allowed == requested)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use rusqlite::Connection;
    use serde_json::json;

    use super::*;
    use crate::support::FakeSmolvm;

    const MACHINE: &str = "bottle-demo";

    fn alias_block() -> Vec<Ipv4Cidr> {
        vec!["127.0.0.17/32".parse().unwrap()]
    }

    /// A machine created `--from` an artifact through the fake's own command line, the way a
    /// smolvm of `version` stores it.
    fn created_from_artifact(version: &str) -> FakeSmolvm {
        let fake = FakeSmolvm::new(version);
        let artifact = fake.artifact();
        let artifact = artifact.to_str().unwrap();
        let name_args: &[&str] = if version.starts_with("0.") {
            &[MACHINE]
        } else {
            &["--name", MACHINE]
        };
        let mut args = vec!["machine", "create"];
        args.extend_from_slice(name_args);
        args.extend_from_slice(&["--from", artifact, "--allow-cidr", "127.0.0.17"]);
        fake.smolvm_ok(&args);
        fake
    }

    fn version(text: &str) -> Option<SmolvmVersion> {
        SmolvmVersion::from_version_output(&format!("smolvm {text}"))
    }

    fn fields(bytes: &[u8]) -> serde_json::Map<String, Value> {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn patches_the_allow_list_smolvm_0_8_dropped_and_keeps_every_other_key() {
        let fake = created_from_artifact("0.8.0");
        let (before, _) = fake.row(MACHINE).unwrap();
        let before = fields(&before);
        assert_eq!(before["allowed_cidrs"], Value::Null);
        assert_eq!(before["network"], json!(false));

        let outcome = enforce_requested_allow_list(
            &fake.database(),
            MACHINE,
            version("0.8.0"),
            &alias_block(),
        );
        assert_eq!(outcome.unwrap(), Outcome::Patched);

        let (after, stored_as) = fake.row(MACHINE).unwrap();
        assert_eq!(stored_as, "blob");
        let mut after = fields(&after);
        assert_eq!(
            after.remove("allowed_cidrs"),
            Some(json!(["127.0.0.17/32"]))
        );
        assert_eq!(after.remove("network"), Some(json!(true)));
        let mut before = before;
        before.remove("allowed_cidrs");
        before.remove("network");
        assert_eq!(after, before);
    }

    #[test]
    fn changes_nothing_when_smolvm_honoured_the_flag() {
        let fake = created_from_artifact("1.9.2");
        let (before, _) = fake.row(MACHINE).unwrap();
        assert_eq!(fields(&before)["allowed_cidrs"], json!(["127.0.0.17/32"]));

        let outcome = enforce_requested_allow_list(
            &fake.database(),
            MACHINE,
            version("1.9.2"),
            &alias_block(),
        );
        assert_eq!(outcome.unwrap(), Outcome::AlreadyEnforced);
        assert_eq!(
            fake.row(MACHINE).unwrap().0,
            before,
            "the row must be byte-identical"
        );
    }

    #[test]
    fn keeps_keys_it_does_not_know() {
        let fake = created_from_artifact("0.8.0");
        let (bytes, _) = fake.row(MACHINE).unwrap();
        let mut record = fields(&bytes);
        let future = json!({ "nested": [1, { "deep": null, "s": "x" }], "flag": true });
        record.insert("from_a_future_smolvm".into(), future.clone());
        fake.write_row(MACHINE, &serde_json::to_vec(&record).unwrap());

        enforce_requested_allow_list(&fake.database(), MACHINE, version("0.8.0"), &alias_block())
            .unwrap();
        let (after, _) = fake.row(MACHINE).unwrap();
        assert_eq!(fields(&after)["from_a_future_smolvm"], future);
    }

    #[test]
    fn writes_a_blob_that_smolvm_still_reads() {
        let fake = created_from_artifact("0.8.0");
        enforce_requested_allow_list(&fake.database(), MACHINE, version("0.8.0"), &alias_block())
            .unwrap();
        assert_eq!(fake.row(MACHINE).unwrap().1, "blob");
        let listed = fake.smolvm_ok(&["machine", "ls"]);
        assert!(listed.contains(MACHINE), "{listed}");
    }

    #[test]
    fn waits_out_another_writer_within_the_busy_timeout() {
        let fake = created_from_artifact("0.8.0");
        let (locked_tx, locked_rx) = mpsc::channel();
        let database = fake.database();
        let holder = thread::spawn(move || {
            let conn = Connection::open(&database).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            thread::sleep(Duration::from_secs(1));
            conn.execute_batch("COMMIT").unwrap();
        });
        locked_rx.recv().unwrap();

        let started = Instant::now();
        let outcome = enforce_requested_allow_list(
            &fake.database(),
            MACHINE,
            version("0.8.0"),
            &alias_block(),
        );
        let waited = started.elapsed();
        holder.join().unwrap();
        assert_eq!(outcome.unwrap(), Outcome::Patched);
        assert!(
            waited >= Duration::from_millis(800),
            "it did not wait: {waited:?}"
        );
    }

    #[test]
    fn leaves_a_corrupt_record_untouched() {
        let fake = created_from_artifact("0.8.0");
        let corrupt = br#"{"name":"bottle-demo","network":tru"#.to_vec();
        fake.write_row(MACHINE, &corrupt);

        let err = enforce_requested_allow_list(
            &fake.database(),
            MACHINE,
            version("0.8.0"),
            &alias_block(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::RecordJson { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the record of machine bottle-demo in smolvm's database is not valid JSON"
        );
        assert_eq!(fake.row(MACHINE).unwrap(), (corrupt, "blob".to_owned()));
    }

    #[test]
    fn refuses_a_record_stored_as_text() {
        let fake = FakeSmolvm::with_faults("0.8.0", "store-text");
        let artifact = fake.artifact();
        fake.smolvm_ok(&[
            "machine",
            "create",
            MACHINE,
            "--from",
            artifact.to_str().unwrap(),
        ]);
        let before = fake.row(MACHINE).unwrap();
        assert_eq!(before.1, "text");

        let err = enforce_requested_allow_list(
            &fake.database(),
            MACHINE,
            version("0.8.0"),
            &alias_block(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::RecordNotBlob { .. }), "{err:?}");
        assert_eq!(fake.row(MACHINE).unwrap(), before);
    }

    #[test]
    fn a_missing_record_or_database_is_an_error() {
        let fake = created_from_artifact("0.8.0");
        let err = enforce_requested_allow_list(
            &fake.database(),
            "bottle-other",
            version("0.8.0"),
            &alias_block(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoRecord { .. }), "{err:?}");

        let nowhere = fake.database().with_file_name("absent.db");
        let err = enforce_requested_allow_list(&nowhere, MACHINE, version("0.8.0"), &alias_block())
            .unwrap_err();
        assert!(matches!(err, Error::DatabaseOpen { .. }), "{err:?}");
        assert!(
            !nowhere.exists(),
            "smolvm's database must never be created here"
        );
    }
}

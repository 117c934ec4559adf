//! The fake's state database, in smolvm's real schema, place and settings, so that bottle
//! reads and patches it exactly as it would smolvm's.

use std::fs;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::record::{self, Fields};
use crate::Failure;

/// How long smolvm waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// smolvm's `vms` table, exactly; the other tables carry smolvm's names with columns of the
/// fake's own, only so that a patch can be seen to leave them alone.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS vms (name TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS vm_create_reservations (
        name TEXT PRIMARY KEY NOT NULL, pid INTEGER NOT NULL, created_at INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS config (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS fork_lineage (
        clone TEXT PRIMARY KEY NOT NULL, golden TEXT NOT NULL);
";

pub struct Store {
    conn: Connection,
}

fn db_error(err: rusqlite::Error) -> Failure {
    Failure(err.to_string())
}

/// Parses a stored record; a row that is not JSON fails like smolvm's own decoding.
fn parse(bytes: &[u8]) -> Result<Fields, Failure> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Failure(
            "invalid machine record: expected a JSON object".to_owned(),
        )),
        Err(err) => Err(Failure(format!("invalid machine record: {err}"))),
    }
}

impl Store {
    /// Opens (creating when needed) the database the way smolvm does: WAL, synchronous NORMAL,
    /// a 15 s busy timeout.
    pub fn open(path: &Path) -> Result<Store, Failure> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(db_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
        // Processes creating the file at once race for the switch to WAL, and SQLite refuses
        // the losers at once rather than through the busy timeout: try again until it sticks.
        let started = std::time::Instant::now();
        while let Err(e) = conn.pragma_update(None, "journal_mode", "WAL") {
            let busy = e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy);
            if !busy || started.elapsed() > BUSY_TIMEOUT {
                return Err(db_error(e));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        Ok(Store { conn })
    }

    /// Reads one record. Its `data` is read as a BLOB, so that a TEXT row fails with the error
    /// smolvm gives: `Invalid column type Text at index: 1, name: data`.
    pub fn get(&self, name: &str) -> Result<Option<Fields>, Failure> {
        let bytes = self
            .conn
            .query_row(
                "SELECT name, data FROM vms WHERE name = ?1",
                [name],
                |row| row.get::<_, Vec<u8>>(1),
            )
            .optional()
            .map_err(db_error)?;
        bytes.map(|b| parse(&b)).transpose()
    }

    /// Reads every record, failing on any TEXT row as smolvm's `machine ls` does.
    pub fn all(&self) -> Result<Vec<(String, Fields)>, Failure> {
        let mut statement = self
            .conn
            .prepare("SELECT name, data FROM vms ORDER BY name")
            .map_err(db_error)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
            })
            .map_err(db_error)?;
        let mut records = Vec::new();
        for row in rows {
            let (name, bytes) = row.map_err(db_error)?;
            records.push((name, parse(&bytes)?));
        }
        Ok(records)
    }

    /// Stores a new record as a BLOB, or as TEXT when a fault asks for the row smolvm cannot
    /// read.
    pub fn insert(&self, name: &str, fields: &Fields, as_text: bool) -> Result<(), Failure> {
        let bytes = record::to_bytes(fields);
        let inserted = if as_text {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            self.conn
                .execute("INSERT INTO vms (name, data) VALUES (?1, ?2)", (name, text))
        } else {
            self.conn.execute(
                "INSERT INTO vms (name, data) VALUES (?1, ?2)",
                (name, bytes),
            )
        };
        inserted.map(drop).map_err(db_error)
    }

    /// Changes one record inside a `BEGIN IMMEDIATE` transaction, as smolvm's updates do, and
    /// returns it as written.
    pub fn update(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Fields),
    ) -> Result<Fields, Failure> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let bytes = tx
            .query_row(
                "SELECT name, data FROM vms WHERE name = ?1",
                [name],
                |row| row.get::<_, Vec<u8>>(1),
            )
            .optional()
            .map_err(db_error)?
            .ok_or_else(|| Failure::not_found(name))?;
        let mut fields = parse(&bytes)?;
        change(&mut fields);
        tx.execute(
            "UPDATE vms SET data = ?1 WHERE name = ?2",
            (record::to_bytes(&fields), name),
        )
        .map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        Ok(fields)
    }

    /// Makes every later change of a record's `allowed_cidrs` undo itself, whoever writes it:
    /// a patch that does not stick.
    pub fn revert_allow_list_changes(&self) -> Result<(), Failure> {
        let trigger = "
            CREATE TRIGGER IF NOT EXISTS fake_patch_revert AFTER UPDATE OF data ON vms
            WHEN json_extract(CAST(OLD.data AS TEXT), '$.allowed_cidrs')
                IS NOT json_extract(CAST(NEW.data AS TEXT), '$.allowed_cidrs')
            BEGIN
                UPDATE vms SET data = OLD.data WHERE name = OLD.name;
            END;
        ";
        self.conn.execute_batch(trigger).map_err(db_error)
    }

    pub fn delete(&self, name: &str) -> Result<(), Failure> {
        self.conn
            .execute("DELETE FROM vms WHERE name = ?1", [name])
            .map(drop)
            .map_err(db_error)
    }
}

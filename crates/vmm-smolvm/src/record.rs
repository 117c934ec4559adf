//! smolvm's state database, read directly: the only place that shows the egress allow-list a
//! machine will get when it starts (`ls` and `status` never show it).

use std::path::Path;
use std::time::Duration;

use bottle_core::{EgressPolicy, Ipv4Cidr};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value};

use crate::error::Error;

/// How long to wait for smolvm's own writers; smolvm waits as long for others.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// The keys of a record that decide a machine's egress.
pub(crate) const NETWORK: &str = "network";
pub(crate) const ALLOWED_CIDRS: &str = "allowed_cidrs";

/// One row of smolvm's `vms` table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// The bytes stored, exactly.
    pub bytes: Vec<u8>,
    pub fields: Map<String, Value>,
}

/// Opens smolvm's existing database; it is never created here, because a database that is
/// not there means smolvm is not where the settings say.
pub(crate) fn open(path: &Path, writable: bool) -> Result<Connection, Error> {
    let flags = if writable {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let open_error = |source| Error::DatabaseOpen {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    Ok(conn)
}

/// Reads and parses the record of machine `name`.
pub(crate) fn read(conn: &Connection, path: &Path, name: &str) -> Result<Record, Error> {
    let read_error = |source| Error::DatabaseRead {
        path: path.to_path_buf(),
        source,
    };
    let mut statement = conn
        .prepare("SELECT data FROM vms WHERE name = ?1")
        .map_err(read_error)?;
    let stored = statement
        .query_row([name], |row| {
            Ok(match row.get_ref(0)? {
                ValueRef::Blob(bytes) => Ok(bytes.to_vec()),
                ValueRef::Text(_) => Err("TEXT"),
                ValueRef::Null => Err("NULL"),
                ValueRef::Integer(_) => Err("INTEGER"),
                ValueRef::Real(_) => Err("REAL"),
            })
        })
        .optional()
        .map_err(read_error)?;
    let bytes = match stored {
        None => {
            return Err(Error::NoRecord {
                name: name.to_owned(),
                path: path.to_path_buf(),
            })
        }
        Some(Err(stored_as)) => {
            return Err(Error::RecordNotBlob {
                name: name.to_owned(),
                stored_as: stored_as.into(),
            })
        }
        Some(Ok(bytes)) => bytes,
    };
    let fields = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(field_error(name, "expected a JSON object".to_owned())),
        Err(source) => {
            return Err(Error::RecordJson {
                name: name.to_owned(),
                source,
            })
        }
    };
    Ok(Record { bytes, fields })
}

/// The names of every machine smolvm knows.
pub(crate) fn machine_names(conn: &Connection, path: &Path) -> Result<Vec<String>, Error> {
    let read_error = |source| Error::DatabaseRead {
        path: path.to_path_buf(),
        source,
    };
    let mut statement = conn
        .prepare("SELECT name FROM vms ORDER BY name")
        .map_err(read_error)?;
    let names = statement
        .query_map([], |row| row.get(0))
        .map_err(read_error)?;
    names.collect::<Result<_, _>>().map_err(read_error)
}

fn field_error(name: &str, problem: String) -> Error {
    Error::RecordField {
        name: name.to_owned(),
        problem,
    }
}

/// The record's `network`: absent means off, as smolvm fills a missing key with its default.
pub(crate) fn network(fields: &Map<String, Value>, name: &str) -> Result<bool, Error> {
    match fields.get(NETWORK) {
        None => Ok(false),
        Some(Value::Bool(on)) => Ok(*on),
        Some(other) => Err(field_error(
            name,
            format!("`{NETWORK}` is {other}, expected a bool"),
        )),
    }
}

/// The record's `allowed_cidrs`: `None` when it is null or absent (unrestricted), else every
/// block. An entry that is not an IPv4 block (`::1/128`) is an error rather than dropped,
/// because dropping it would make the policy look narrower than what smolvm enforces.
pub(crate) fn allowed_cidrs(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<Ipv4Cidr>>, Error> {
    let entries = match fields.get(ALLOWED_CIDRS) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            let problem = format!("`{ALLOWED_CIDRS}` is {other}, expected null or a list");
            return Err(field_error(name, problem));
        }
    };
    let mut blocks = Vec::with_capacity(entries.len());
    for entry in entries {
        let block = entry
            .as_str()
            .and_then(|text| text.parse::<Ipv4Cidr>().ok());
        match block {
            Some(block) => blocks.push(block),
            None => {
                let problem = format!(
                    "`{ALLOWED_CIDRS}` holds {entry}, which is not an IPv4 CIDR block; bottle \
                     cannot tell what it allows, so it will not start the agent"
                );
                return Err(field_error(name, problem));
            }
        }
    }
    Ok(Some(blocks))
}

/// The egress policy smolvm will enforce for this record when the machine starts. `network`
/// does not narrow it: a list is the list whatever `network` says, and no list is reported as
/// unrestricted, the widest reading.
pub(crate) fn egress_policy(
    fields: &Map<String, Value>,
    name: &str,
) -> Result<EgressPolicy, Error> {
    network(fields, name)?;
    Ok(match allowed_cidrs(fields, name)? {
        None => EgressPolicy::Unrestricted,
        Some(blocks) => EgressPolicy::AllowOnly(blocks),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: Value) -> Map<String, Value> {
        match json {
            Value::Object(map) => map,
            _ => unreachable!("the tests pass objects"),
        }
    }

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    #[test]
    fn null_or_absent_is_unrestricted() {
        let record = fields(serde_json::json!({ "network": true, "allowed_cidrs": null }));
        assert_eq!(
            egress_policy(&record, "m").unwrap(),
            EgressPolicy::Unrestricted
        );
        let record = fields(serde_json::json!({ "network": true }));
        assert_eq!(
            egress_policy(&record, "m").unwrap(),
            EgressPolicy::Unrestricted
        );
    }

    #[test]
    fn a_list_is_the_list_even_without_network() {
        let record =
            fields(serde_json::json!({ "network": false, "allowed_cidrs": ["127.0.0.17/32"] }));
        let expected = EgressPolicy::AllowOnly(vec![cidr("127.0.0.17/32")]);
        assert_eq!(egress_policy(&record, "m").unwrap(), expected);
        let record = fields(serde_json::json!({ "network": true, "allowed_cidrs": [] }));
        assert_eq!(
            egress_policy(&record, "m").unwrap(),
            EgressPolicy::AllowOnly(vec![])
        );
    }

    #[test]
    fn an_entry_that_is_not_ipv4_fails_closed() {
        for entry in [
            serde_json::json!("::1/128"),
            serde_json::json!("127.0.0.17/8"),
            serde_json::json!(17),
        ] {
            let record = fields(serde_json::json!({
                "network": true,
                "allowed_cidrs": ["127.0.0.17/32", entry.clone()],
            }));
            let err = egress_policy(&record, "bottle-a").unwrap_err();
            assert!(err.to_string().contains(&entry.to_string()), "{err}");
            assert!(err.to_string().contains("not an IPv4 CIDR block"), "{err}");
        }
    }

    #[test]
    fn keys_of_the_wrong_type_are_errors() {
        let record = fields(serde_json::json!({ "network": "yes", "allowed_cidrs": null }));
        assert!(egress_policy(&record, "m").is_err());
        let record = fields(serde_json::json!({ "network": true, "allowed_cidrs": "all" }));
        assert!(egress_policy(&record, "m").is_err());
    }
}

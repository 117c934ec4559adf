//! The plugin's settings: which smolvm to run and where its state database lives.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The executable run when the settings name none: `smolvm` on `PATH`.
pub const DEFAULT_PROGRAM: &str = "smolvm";

/// Where smolvm keeps its database below its platform's data directory.
const DATABASE_BELOW_DATA_DIR: &str = "smolvm/server/smolvm.db";

/// The operating systems whose data directory smolvm's database follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOs {
    /// Linux and other Unix systems: the XDG base directories.
    Linux,
    MacOs,
}

impl HostOs {
    /// The system this build runs on.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            HostOs::MacOs
        } else {
            HostOs::Linux
        }
    }
}

/// Where smolvm puts its state database, given the user's home directory and
/// `XDG_DATA_HOME`; `None` when neither gives a place (no home directory).
///
/// smolvm uses the platform's local data directory: `~/Library/Application Support` on macOS;
/// on Linux `$XDG_DATA_HOME` when it is an absolute path, else `~/.local/share`.
pub fn default_database_path(
    os: HostOs,
    home: Option<&Path>,
    xdg_data_home: Option<&Path>,
) -> Option<PathBuf> {
    let home = home.filter(|h| h.is_absolute());
    let data_dir = match os {
        HostOs::MacOs => home?.join("Library/Application Support"),
        HostOs::Linux => match xdg_data_home.filter(|x| x.is_absolute()) {
            Some(xdg) => xdg.to_path_buf(),
            None => home?.join(".local/share"),
        },
    };
    Some(data_dir.join(DATABASE_BELOW_DATA_DIR))
}

/// The settings of the `vmm-smolvm` plugin, read from its JSON table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The smolvm executable: a path, or a name looked up on `PATH`.
    pub program: String,
    /// smolvm's state database.
    pub database: PathBuf,
}

impl Settings {
    /// Reads `smolvm` and `database`; other keys belong to the host and are ignored.
    pub fn from_json(settings: &serde_json::Value) -> Result<Self, Error> {
        let table = match settings {
            serde_json::Value::Null => None,
            serde_json::Value::Object(table) => Some(table),
            _ => {
                return Err(Error::Setting {
                    key: "(settings)".to_owned(),
                    expected: "a table of settings".to_owned(),
                })
            }
        };
        let text = |key: &str| -> Result<Option<String>, Error> {
            match table.and_then(|t| t.get(key)) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(Error::Setting {
                    key: key.to_owned(),
                    expected: "a non-empty string".to_owned(),
                }),
            }
        };
        let program = text("smolvm")?.unwrap_or_else(|| DEFAULT_PROGRAM.to_owned());
        let database = match text("database")? {
            Some(path) => PathBuf::from(path),
            None => {
                let home = std::env::var_os("HOME").map(PathBuf::from);
                let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
                default_database_path(HostOs::current(), home.as_deref(), xdg.as_deref())
                    .ok_or(Error::NoDefaultDatabase)?
            }
        };
        Ok(Settings { program, database })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Option<&Path> {
        Some(Path::new(p))
    }

    #[test]
    fn linux_prefers_an_absolute_xdg_data_home() {
        let db = default_database_path(HostOs::Linux, path("/home/u"), path("/data"));
        assert_eq!(db, Some(PathBuf::from("/data/smolvm/server/smolvm.db")));
        let db = default_database_path(HostOs::Linux, path("/home/u"), None);
        assert_eq!(
            db,
            Some(PathBuf::from(
                "/home/u/.local/share/smolvm/server/smolvm.db"
            ))
        );
        let db = default_database_path(HostOs::Linux, path("/home/u"), path("relative"));
        assert_eq!(
            db,
            Some(PathBuf::from(
                "/home/u/.local/share/smolvm/server/smolvm.db"
            ))
        );
        let db = default_database_path(HostOs::Linux, None, path("/data"));
        assert_eq!(db, Some(PathBuf::from("/data/smolvm/server/smolvm.db")));
        assert_eq!(default_database_path(HostOs::Linux, None, None), None);
        assert_eq!(
            default_database_path(HostOs::Linux, path("home"), None),
            None
        );
    }

    #[test]
    fn macos_uses_application_support_and_ignores_xdg() {
        let db = default_database_path(HostOs::MacOs, path("/Users/u"), path("/data"));
        let expected = "/Users/u/Library/Application Support/smolvm/server/smolvm.db";
        assert_eq!(db, Some(PathBuf::from(expected)));
        assert_eq!(
            default_database_path(HostOs::MacOs, None, path("/data")),
            None
        );
    }

    #[test]
    fn settings_name_the_program_and_database_and_ignore_other_keys() {
        let json = serde_json::json!({
            "smolvm": "/opt/smolvm/bin/smolvm",
            "database": "/tmp/smolvm.db",
            "state_dir": "/whatever",
        });
        let settings = Settings::from_json(&json).unwrap();
        assert_eq!(settings.program, "/opt/smolvm/bin/smolvm");
        assert_eq!(settings.database, PathBuf::from("/tmp/smolvm.db"));
    }

    #[test]
    fn the_program_defaults_to_smolvm_on_path() {
        let json = serde_json::json!({ "database": "/tmp/smolvm.db" });
        assert_eq!(Settings::from_json(&json).unwrap().program, "smolvm");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Settings::from_json(&serde_json::json!({ "smolvm": 3 })).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `smolvm`: expected a non-empty string"
        );
        let err = Settings::from_json(&serde_json::json!([1])).unwrap_err();
        assert!(
            err.to_string().contains("expected a table of settings"),
            "{err}"
        );
    }
}

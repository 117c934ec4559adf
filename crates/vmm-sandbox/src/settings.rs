//! The plugin's settings, and where the helper executable is found.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// The helper's file name.
pub const HELPER_NAME: &str = "bottle-sandbox";

/// The settings of the `vmm-sandbox` plugin, read from its JSON table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Where machine directories live (`STATE_DIR/machines/NAME`).
    pub state_dir: PathBuf,
    /// The helper, when the settings name it.
    pub helper: Option<PathBuf>,
}

impl Settings {
    /// Reads `state_dir` (required, absolute) and `helper` (optional); other keys belong to
    /// the host and are ignored.
    pub fn from_json(settings: &serde_json::Value) -> Result<Self, Error> {
        let table = match settings {
            serde_json::Value::Object(table) => table,
            _ => {
                return Err(Error::Setting {
                    key: "(settings)".to_owned(),
                    expected: "a table of settings".to_owned(),
                })
            }
        };
        let path = |key: &str| -> Result<Option<PathBuf>, Error> {
            match table.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if Path::new(s).is_absolute() => {
                    Ok(Some(PathBuf::from(s)))
                }
                Some(_) => Err(Error::Setting {
                    key: key.to_owned(),
                    expected: "an absolute path".to_owned(),
                }),
            }
        };
        let state_dir = path("state_dir")?.ok_or_else(|| Error::Setting {
            key: "state_dir".to_owned(),
            expected: "an absolute path (the host always passes one)".to_owned(),
        })?;
        Ok(Settings {
            state_dir,
            helper: path("helper")?,
        })
    }

    /// The directory holding one directory per machine.
    pub fn machines_dir(&self) -> PathBuf {
        self.state_dir.join("machines")
    }
}

/// Finds the helper: the configured path; else next to the running executable (the `bottle`
/// binary, or cargo's target directory); else on `PATH`.
pub(crate) fn find_helper(configured: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = configured {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(Error::HelperMissing {
                name: HELPER_NAME.to_owned(),
                searched: format!("{} (the `helper` setting)", path.display()),
            })
        };
    }
    let mut searched = Vec::new();
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(HELPER_NAME)));
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(HELPER_NAME))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for candidate in beside_exe.into_iter().chain(on_path) {
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
    }
    Err(Error::HelperMissing {
        name: HELPER_NAME.to_owned(),
        searched: if searched.is_empty() {
            "nowhere: no executable directory and no PATH".to_owned()
        } else {
            searched.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_state_dir_and_helper_and_ignores_other_keys() {
        let json = serde_json::json!({
            "state_dir": "/var/lib/bottle/plugins/vmm-sandbox",
            "helper": "/opt/bottle/bottle-sandbox",
            "other": 3,
        });
        let settings = Settings::from_json(&json).unwrap();
        assert_eq!(
            settings.machines_dir(),
            Path::new("/var/lib/bottle/plugins/vmm-sandbox/machines")
        );
        assert_eq!(
            settings.helper.as_deref(),
            Some(Path::new("/opt/bottle/bottle-sandbox"))
        );
    }

    #[test]
    fn a_missing_or_relative_path_names_the_key() {
        let err = Settings::from_json(&serde_json::json!({})).unwrap_err();
        assert!(err.to_string().starts_with("setting `state_dir`"), "{err}");
        let json = serde_json::json!({ "state_dir": "/s", "helper": "bin/x" });
        let err = Settings::from_json(&json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `helper`: expected an absolute path"
        );
        let err = Settings::from_json(&serde_json::json!(null)).unwrap_err();
        assert!(err.to_string().contains("a table of settings"), "{err}");
    }

    #[test]
    fn a_configured_helper_must_exist() {
        let err = find_helper(Some(Path::new("/nonexistent/bottle-sandbox"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/bottle-sandbox"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join(HELPER_NAME);
        std::fs::write(&helper, b"").unwrap();
        assert_eq!(find_helper(Some(&helper)).unwrap(), helper);
    }
}

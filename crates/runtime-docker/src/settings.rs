//! The runtime's settings: its table of the user's `config.toml`, handed over as JSON.

use std::path::PathBuf;
use std::time::Duration;

use bottle_core::{BackendError, ErrorKind};
use serde_json::Value;

/// How the runtime reaches Docker and how long it waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The docker CLI; a bare name is looked up in `PATH`. Key `docker`.
    pub docker: PathBuf,
    /// How long a bundle's ports may take to accept connections. Key `ready_timeout_secs`.
    pub ready_timeout: Duration,
    /// How long one docker command may take before the daemon is taken for hung. Key
    /// `command_timeout_secs`.
    pub command_timeout: Duration,
    /// The bottle home this runtime works for (the host's `instance` setting): its objects
    /// are labelled with it, and only those are stopped, so that homes sharing one engine
    /// never remove each other's containers.
    pub instance: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            docker: PathBuf::from("docker"),
            ready_timeout: Duration::from_secs(20),
            command_timeout: Duration::from_secs(120),
            instance: None,
        }
    }
}

/// The longest wait a setting may ask for; longer is a typo, not a wish.
const MAX_SECS: f64 = 3600.0;

impl Settings {
    /// Reads the keys this runtime knows and ignores the rest (such as `state_dir`), since
    /// the host passes every plugin the same table.
    pub fn from_json(settings: &Value) -> Result<Self, BackendError> {
        let mut out = Settings::default();
        let table = match settings {
            Value::Null => return Ok(out),
            Value::Object(table) => table,
            other => return Err(invalid("", "a table of settings", other)),
        };
        if let Some(value) = table.get("docker") {
            match value.as_str() {
                Some(path) if !path.trim().is_empty() => out.docker = PathBuf::from(path),
                _ => {
                    return Err(invalid(
                        "docker",
                        "the path or name of the docker binary",
                        value,
                    ))
                }
            }
        }
        if let Some(value) = table.get("instance") {
            match value.as_str() {
                Some(id) if !id.trim().is_empty() => out.instance = Some(id.to_owned()),
                _ => return Err(invalid("instance", "the bottle home's instance id", value)),
            }
        }
        if let Some(value) = table.get("ready_timeout_secs") {
            out.ready_timeout = seconds("ready_timeout_secs", value)?;
        }
        if let Some(value) = table.get("command_timeout_secs") {
            out.command_timeout = seconds("command_timeout_secs", value)?;
        }
        Ok(out)
    }
}

fn seconds(key: &str, value: &Value) -> Result<Duration, BackendError> {
    match value.as_f64() {
        Some(secs) if secs > 0.0 && secs <= MAX_SECS => Ok(Duration::from_secs_f64(secs)),
        _ => Err(invalid(
            key,
            "a number of seconds, more than 0 and at most 3600",
            value,
        )),
    }
}

fn invalid(key: &str, expected: &str, got: &Value) -> BackendError {
    let at = if key.is_empty() {
        String::new()
    } else {
        format!(" `{key}`")
    };
    BackendError::new(
        ErrorKind::InvalidInput,
        format!("runtime-docker settings{at}: expected {expected}, got {got}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_apply_and_unknown_keys_are_ignored() {
        assert_eq!(
            Settings::from_json(&Value::Null).unwrap(),
            Settings::default()
        );
        let s = Settings::from_json(&json!({"state_dir": "/tmp/x", "colour": true})).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.ready_timeout, Duration::from_secs(20));
    }

    #[test]
    fn known_keys_are_read() {
        let s = Settings::from_json(&json!({
            "docker": "/opt/docker/bin/docker",
            "ready_timeout_secs": 2.5,
            "command_timeout_secs": 30,
        }))
        .unwrap();
        assert_eq!(s.docker, PathBuf::from("/opt/docker/bin/docker"));
        assert_eq!(s.ready_timeout, Duration::from_millis(2500));
        assert_eq!(s.command_timeout, Duration::from_secs(30));
    }

    #[test]
    fn wrong_values_name_the_key_and_what_was_expected() {
        let cases = [
            (
                json!({"docker": 3}),
                "`docker`: expected the path or name of the docker binary, got 3",
            ),
            (json!({"docker": " "}), "`docker`"),
            (
                json!({"ready_timeout_secs": 0}),
                "`ready_timeout_secs`: expected a number",
            ),
            (json!({"ready_timeout_secs": "20"}), "got \"20\""),
            (
                json!({"command_timeout_secs": 1e9}),
                "`command_timeout_secs`",
            ),
            (json!(["docker"]), "settings: expected a table of settings"),
        ];
        for (value, needle) in cases {
            let err = Settings::from_json(&value).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert!(err.message.contains(needle), "{err}");
        }
    }
}

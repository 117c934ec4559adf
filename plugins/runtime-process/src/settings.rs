//! The plugin's settings: its table of bottle's `config.toml`, plus the host's `state_dir`.

use std::path::PathBuf;
use std::time::Duration;

use bottle_plugin_api::bottle_core::{BackendError, ErrorKind};
use serde::Deserialize;

/// How long a service may take to accept connections when the settings do not say.
const DEFAULT_START_TIMEOUT_MS: u64 = 10_000;
/// How long a service may take to exit after SIGTERM before it gets SIGKILL.
const DEFAULT_STOP_TIMEOUT_MS: u64 = 5_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    state_dir: PathBuf,
    #[serde(default)]
    instance: Option<String>,
    #[serde(default = "default_start_timeout_ms")]
    start_timeout_ms: u64,
    #[serde(default = "default_stop_timeout_ms")]
    stop_timeout_ms: u64,
}

fn default_start_timeout_ms() -> u64 {
    DEFAULT_START_TIMEOUT_MS
}

fn default_stop_timeout_ms() -> u64 {
    DEFAULT_STOP_TIMEOUT_MS
}

/// The validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where bundle records and service logs live; the host creates it.
    pub state_dir: PathBuf,
    /// The id of the bottle home that uses the plugin, when the host gives one; recorded
    /// with every bundle, so that a record says which home started it.
    pub instance: Option<String>,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
}

impl Settings {
    pub fn from_json(value: &serde_json::Value) -> Result<Self, BackendError> {
        let raw = Raw::deserialize(value).map_err(|e| {
            BackendError::new(
                ErrorKind::InvalidInput,
                "invalid settings for runtime-process",
            )
            .with_cause(&e)
        })?;
        if !raw.state_dir.is_absolute() {
            return Err(BackendError::new(
                ErrorKind::InvalidInput,
                format!(
                    "runtime-process: state_dir {} is not absolute",
                    raw.state_dir.display()
                ),
            ));
        }
        Ok(Settings {
            state_dir: raw.state_dir,
            instance: raw.instance,
            start_timeout: Duration::from_millis(raw.start_timeout_ms),
            stop_timeout: Duration::from_millis(raw.stop_timeout_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timeouts_default_and_can_be_set() {
        let s = Settings::from_json(&json!({"state_dir": "/s"})).unwrap();
        assert_eq!(s.start_timeout, Duration::from_secs(10));
        let s = Settings::from_json(&json!({"state_dir": "/s", "start_timeout_ms": 250})).unwrap();
        assert_eq!(s.start_timeout, Duration::from_millis(250));
        let s = Settings::from_json(&json!({"state_dir": "/s", "instance": "h1"})).unwrap();
        assert_eq!(s.instance.as_deref(), Some("h1"));
    }

    #[test]
    fn a_missing_state_dir_or_an_unknown_key_is_invalid_input() {
        let err = Settings::from_json(&json!({})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.causes[0].contains("state_dir"), "{:?}", err.causes);
        let err = Settings::from_json(&json!({"state_dir": "/s", "start_timeout": 1})).unwrap_err();
        assert!(
            err.causes[0].contains("unknown field `start_timeout`"),
            "{:?}",
            err.causes
        );
    }
}

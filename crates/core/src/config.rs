//! Where bottle keeps its state, and the optional `config.toml` beside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::addr::AliasPool;

/// The configuration file's name inside bottle's home.
pub const CONFIG_FILE_NAME: &str = "config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find a home for bottle's state: set BOTTLE_HOME or HOME")]
    NoHome,
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
}

/// Settings that apply to every bottle on this host.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The alias pool; [`AliasPool::default`] when absent.
    #[serde(default)]
    pub pool: AliasPool,
    /// The VMM plugin for specs that do not name one.
    pub vmm: Option<String>,
    /// The bundle runtime plugin for specs that do not name one.
    pub runtime: Option<String>,
    /// Each plugin's own settings, by plugin name (`[plugins.vmm-smolvm]`), handed to the
    /// plugin as JSON.
    #[serde(default)]
    pub plugins: BTreeMap<String, toml::Table>,
}

impl Config {
    /// Reads `config.toml` from `home`; a missing file gives the defaults.
    pub fn load(home: &Path) -> Result<Self, ConfigError> {
        let path = home.join(CONFIG_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path,
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })
    }

    /// A plugin's settings as a JSON object (empty when the file has none).
    pub fn plugin_settings(&self, plugin: &str) -> serde_json::Map<String, serde_json::Value> {
        match self.plugins.get(plugin) {
            Some(table) => match serde_json::to_value(table) {
                Ok(serde_json::Value::Object(map)) => map,
                _ => serde_json::Map::new(),
            },
            None => serde_json::Map::new(),
        }
    }
}

/// bottle's home: `BOTTLE_HOME` if set, else the platform's state directory
/// (`$XDG_STATE_HOME/bottle` or `~/.local/state/bottle` on Linux,
/// `~/Library/Application Support/bottle` on macOS).
pub fn home_dir(lookup: impl Fn(&str) -> Option<String>) -> Result<PathBuf, ConfigError> {
    let set = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(home) = set("BOTTLE_HOME") {
        return Ok(home);
    }
    if cfg!(target_os = "macos") {
        let home = set("HOME").ok_or(ConfigError::NoHome)?;
        return Ok(home.join("Library/Application Support/bottle"));
    }
    if let Some(state) = set("XDG_STATE_HOME") {
        return Ok(state.join("bottle"));
    }
    let home = set("HOME").ok_or(ConfigError::NoHome)?;
    Ok(home.join(".local/state/bottle"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn bottle_home_wins() {
        let home = home_dir(env(&[("BOTTLE_HOME", "/x"), ("HOME", "/h")])).unwrap();
        assert_eq!(home, PathBuf::from("/x"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_uses_xdg_state_home_then_home() {
        let xdg = home_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])).unwrap();
        assert_eq!(xdg, PathBuf::from("/s/bottle"));
        let home = home_dir(env(&[("HOME", "/h")])).unwrap();
        assert_eq!(home, PathBuf::from("/h/.local/state/bottle"));
        assert!(matches!(home_dir(env(&[])), Err(ConfigError::NoHome)));
    }

    #[test]
    fn config_file_sets_pool_and_plugin_settings() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "pool = \"127.0.3.0/24\"\nvmm = \"smolvm\"\n\
             [plugins.vmm-smolvm]\nsmolvm = \"/opt/smolvm\"\n",
        )
        .unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.pool.to_string(), "127.0.3.0/24");
        assert_eq!(config.vmm.as_deref(), Some("smolvm"));
        assert_eq!(
            config.plugin_settings("vmm-smolvm")["smolvm"],
            "/opt/smolvm"
        );
        assert!(config.plugin_settings("runtime-docker").is_empty());
    }

    #[test]
    fn a_bad_pool_in_the_file_names_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE_NAME),
            "pool = \"10.0.0.0/28\"\n",
        )
        .unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        assert!(err.contains("outside 127.0.0.0/8"), "{err}");
    }

    #[test]
    fn no_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), Config::default());
    }
}

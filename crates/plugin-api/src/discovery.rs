//! Finding plugins on disk, and building the host's backends from them.
//!
//! The search path, in order: the directories given on the command line (`--plugin-dir`),
//! those in `BOTTLE_PLUGIN_PATH` (colon-separated), `<exe>/../lib/bottle/plugins` (an
//! installed bottle) and the executable's own directory (a `cargo build`, whose plugins land
//! next to the binary). A file is a candidate when it is named `libbottle_plugin_*.so`
//! (`.dylib` on macOS). One bad file never stops discovery: it is listed as rejected, with
//! the reason. When two files carry the same plugin name, the first in search order wins and
//! the other is listed as shadowed.
//!
//! # Settings and `state_dir`
//!
//! Every plugin is built from a JSON object: its table of `config.toml` (`[plugins.NAME]`),
//! to which the host adds `"state_dir"`, a directory the plugin may keep files in
//! (`<state root>/<plugin name>`, created by the host, mode 0700). A `state_dir` the user set
//! in the plugin's table is kept as it is, and created all the same.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use abi_stable::std_types::RStr;
use bottle_core::{BackendError, BundleRuntime, NetScoper, VmmBackend};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::host::{HostBundleRuntime, HostNetScoper, HostVmmBackend};
use crate::load::{self, Loaded, Rejection};
use crate::manifest::{Manifest, PluginKind};
use crate::PLUGIN_FILE_PREFIX;

/// The environment variable holding extra plugin directories, colon-separated.
pub const PLUGIN_PATH_ENV: &str = "BOTTLE_PLUGIN_PATH";

/// The setting the host adds to every plugin's settings: a directory for the plugin's files.
pub const STATE_DIR_SETTING: &str = "state_dir";

/// Why the host could not get the backend it asked for.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "no {kind} plugin named `{name}` was found (loaded {kind} plugins: {}){}",
        list_or_none(available),
        rejected_hint(*rejected)
    )]
    NotFound {
        kind: PluginKind,
        name: String,
        available: Vec<String>,
        rejected: usize,
    },
    #[error(
        "no net plugin for {os} was found (loaded net plugins: {}){}",
        list_or_none(available),
        rejected_hint(*rejected)
    )]
    NoNetScoper {
        os: String,
        available: Vec<String>,
        rejected: usize,
    },
    #[error("plugin `{name}` supports {} only, not {os}", supported.join(", "))]
    UnsupportedOs {
        name: String,
        os: String,
        supported: Vec<String>,
    },
    #[error("cannot create the state directory {} of plugin `{name}`", path.display())]
    StateDir {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("plugin `{name}` did not start")]
    Start {
        name: String,
        #[source]
        source: BackendError,
    },
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

fn rejected_hint(rejected: usize) -> String {
    match rejected {
        0 => String::new(),
        1 => "; 1 plugin file was rejected, `bottle plugins` says why".to_owned(),
        n => format!("; {n} plugin files were rejected, `bottle plugins` says why"),
    }
}

/// What became of one candidate file.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Loaded {
        #[serde(flatten)]
        manifest: Manifest,
    },
    /// A plugin of the same name was found earlier in the search path, at `by`.
    Shadowed {
        #[serde(flatten)]
        manifest: Manifest,
        by: PathBuf,
    },
    Rejected {
        #[serde(serialize_with = "as_text")]
        reason: Rejection,
    },
}

fn as_text<S: Serializer>(reason: &Rejection, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(reason)
}

/// One candidate file and what became of it.
#[derive(Clone, Serialize)]
pub struct PluginEntry {
    pub path: PathBuf,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(skip)]
    loaded: Option<Loaded>,
}

impl fmt::Debug for PluginEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEntry")
            .field("path", &self.path)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl PluginEntry {
    /// The manifest of a loaded or shadowed plugin.
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.outcome {
            Outcome::Loaded { manifest } | Outcome::Shadowed { manifest, .. } => Some(manifest),
            Outcome::Rejected { .. } => None,
        }
    }

    fn usable(&self) -> Option<(&Manifest, Loaded)> {
        match (&self.outcome, self.loaded) {
            (Outcome::Loaded { manifest }, Some(loaded)) => Some((manifest, loaded)),
            _ => None,
        }
    }
}

/// Every plugin found, loaded or not, and the directories searched.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    searched: Vec<PathBuf>,
    plugins: Vec<PluginEntry>,
}

/// Searches the standard plugin directories, `extra_dirs` (`--plugin-dir`) first.
pub fn discover(extra_dirs: &[PathBuf]) -> Discovery {
    let exe = std::env::current_exe().ok();
    let plugin_path = std::env::var_os(PLUGIN_PATH_ENV);
    Discovery::scan(&search_path(
        extra_dirs,
        plugin_path.as_deref(),
        exe.as_deref(),
    ))
}

/// The directories [`discover`] searches, in order and without repeats: `extra_dirs`, the
/// entries of `plugin_path` (the value of `BOTTLE_PLUGIN_PATH`), then `../lib/bottle/plugins`
/// relative to the executable `exe`, then the executable's own directory.
pub fn search_path(
    extra_dirs: &[PathBuf],
    plugin_path: Option<&OsStr>,
    exe: Option<&Path>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra_dirs.to_vec();
    if let Some(value) = plugin_path {
        dirs.extend(std::env::split_paths(value).filter(|d| !d.as_os_str().is_empty()));
    }
    if let Some(exe_dir) = exe.and_then(Path::parent) {
        if let Some(prefix) = exe_dir.parent() {
            dirs.push(prefix.join("lib/bottle/plugins"));
        }
        dirs.push(exe_dir.to_path_buf());
    }
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
    dirs
}

/// Whether `name` is a plugin file name on this platform.
fn is_candidate(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let prefix = format!("{}{PLUGIN_FILE_PREFIX}", std::env::consts::DLL_PREFIX);
    name.starts_with(&prefix)
        && name.ends_with(std::env::consts::DLL_SUFFIX)
        && name.len() > prefix.len() + std::env::consts::DLL_SUFFIX.len()
}

/// The candidate files of one directory, sorted by name so that discovery is repeatable.
fn candidates(dir: &Path) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(dir = %dir.display(), "plugin directory does not exist");
            return Vec::new();
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), "cannot read plugin directory: {e}");
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| is_candidate(&e.file_name()))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

impl Discovery {
    /// Loads every candidate file of `dirs`, in order.
    pub fn scan(dirs: &[PathBuf]) -> Discovery {
        let mut plugins: Vec<PluginEntry> = Vec::new();
        let mut files_seen = HashSet::new();
        for dir in dirs {
            for path in candidates(dir) {
                let real = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if !files_seen.insert(real) {
                    continue;
                }
                let entry = Self::entry(&plugins, path);
                plugins.push(entry);
            }
        }
        Discovery {
            searched: dirs.to_vec(),
            plugins,
        }
    }

    fn entry(earlier: &[PluginEntry], path: PathBuf) -> PluginEntry {
        match load::load(&path) {
            Ok((loaded, manifest)) => {
                let winner = earlier.iter().find(|e| {
                    matches!(&e.outcome, Outcome::Loaded { manifest: m } if m.name == manifest.name)
                });
                if let Some(winner) = winner {
                    tracing::debug!(
                        path = %path.display(),
                        by = %winner.path.display(),
                        "plugin `{}` is shadowed", manifest.name
                    );
                    let by = winner.path.clone();
                    return PluginEntry {
                        path,
                        outcome: Outcome::Shadowed { manifest, by },
                        loaded: None,
                    };
                }
                tracing::debug!(path = %path.display(), "loaded plugin `{}`", manifest.name);
                PluginEntry {
                    path,
                    outcome: Outcome::Loaded { manifest },
                    loaded: Some(loaded),
                }
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), "plugin rejected: {reason}");
                PluginEntry {
                    path,
                    outcome: Outcome::Rejected { reason },
                    loaded: None,
                }
            }
        }
    }

    /// The directories searched, in order.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }

    /// Every candidate file found, in search order.
    pub fn entries(&self) -> &[PluginEntry] {
        &self.plugins
    }

    fn rejected(&self) -> usize {
        self.plugins
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Rejected { .. }))
            .count()
    }

    fn loaded_of(&self, kind: PluginKind) -> impl Iterator<Item = (&Manifest, Loaded)> {
        self.plugins
            .iter()
            .filter_map(PluginEntry::usable)
            .filter(move |(m, _)| m.kind == kind)
    }

    /// The plugin of `kind` that answers to `name` (`smolvm` or `vmm-smolvm`), checked
    /// against the running OS.
    fn find(&self, kind: PluginKind, name: &str) -> Result<(&Manifest, Loaded), PluginError> {
        let Some((manifest, loaded)) = self.loaded_of(kind).find(|(m, _)| m.answers_to(name))
        else {
            return Err(PluginError::NotFound {
                kind,
                name: name.to_owned(),
                available: self
                    .loaded_of(kind)
                    .map(|(m, _)| m.short_name().to_owned())
                    .collect(),
                rejected: self.rejected(),
            });
        };
        if !manifest.supports_current_os() {
            return Err(PluginError::UnsupportedOs {
                name: manifest.name.clone(),
                os: std::env::consts::OS.to_owned(),
                supported: manifest.os.clone(),
            });
        }
        Ok((manifest, loaded))
    }

    /// The net plugin for the running OS (the first in search order), built from `settings`;
    /// its state directory is `state_root/<plugin name>` unless `settings` names one.
    pub fn net_scoper(
        &self,
        settings: Map<String, Value>,
        state_root: &Path,
    ) -> Result<Box<dyn NetScoper>, PluginError> {
        let found = self
            .loaded_of(PluginKind::Net)
            .find(|(m, _)| m.supports_current_os());
        let Some((manifest, loaded)) = found else {
            return Err(PluginError::NoNetScoper {
                os: std::env::consts::OS.to_owned(),
                available: self
                    .loaded_of(PluginKind::Net)
                    .map(|(m, _)| m.name.clone())
                    .collect(),
                rejected: self.rejected(),
            });
        };
        let settings = settings_json(manifest, settings, state_root)?;
        let inner = (loaded.module.new_net())(RStr::from_str(&settings))
            .into_result()
            .map_err(|e| start_error(manifest, e.into()))?;
        Ok(Box::new(HostNetScoper {
            plugin: manifest.name.clone(),
            inner,
        }))
    }

    /// The VMM plugin called `name` (`smolvm` or `vmm-smolvm`), built from `settings`.
    pub fn vmm(
        &self,
        name: &str,
        settings: Map<String, Value>,
        state_root: &Path,
    ) -> Result<Box<dyn VmmBackend>, PluginError> {
        let (manifest, loaded) = self.find(PluginKind::Vmm, name)?;
        let settings = settings_json(manifest, settings, state_root)?;
        let inner = (loaded.module.new_vmm())(RStr::from_str(&settings))
            .into_result()
            .map_err(|e| start_error(manifest, e.into()))?;
        Ok(Box::new(HostVmmBackend {
            plugin: manifest.name.clone(),
            inner,
        }))
    }

    /// The runtime plugin called `name` (`docker` or `runtime-docker`), built from `settings`.
    pub fn runtime(
        &self,
        name: &str,
        settings: Map<String, Value>,
        state_root: &Path,
    ) -> Result<Box<dyn BundleRuntime>, PluginError> {
        let (manifest, loaded) = self.find(PluginKind::Runtime, name)?;
        let settings = settings_json(manifest, settings, state_root)?;
        let inner = (loaded.module.new_runtime())(RStr::from_str(&settings))
            .into_result()
            .map_err(|e| start_error(manifest, e.into()))?;
        Ok(Box::new(HostBundleRuntime {
            plugin: manifest.name.clone(),
            inner,
        }))
    }
}

fn start_error(manifest: &Manifest, source: BackendError) -> PluginError {
    PluginError::Start {
        name: manifest.name.clone(),
        source,
    }
}

/// The settings a plugin is built from, as JSON, with its state directory added and created.
fn settings_json(
    manifest: &Manifest,
    mut settings: Map<String, Value>,
    state_root: &Path,
) -> Result<String, PluginError> {
    let state_dir = match settings.get(STATE_DIR_SETTING) {
        Some(Value::String(dir)) => PathBuf::from(dir),
        _ => state_root.join(&manifest.name),
    };
    let state_dir_error = |source| PluginError::StateDir {
        name: manifest.name.clone(),
        path: state_dir.clone(),
        source,
    };
    create_private_dir(&state_dir).map_err(state_dir_error)?;
    let Some(dir) = state_dir.to_str() else {
        let source = io::Error::new(io::ErrorKind::InvalidInput, "the path is not UTF-8");
        return Err(state_dir_error(source));
    };
    settings.insert(STATE_DIR_SETTING.to_owned(), Value::String(dir.to_owned()));
    Ok(Value::Object(settings).to_string())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_path_is_flags_then_env_then_install_then_exe_dir() {
        let dirs = search_path(
            &[PathBuf::from("/flag")],
            Some(OsStr::new("/env/a::/env/b")),
            Some(Path::new("/opt/bottle/bin/bottle")),
        );
        let expected = [
            "/flag",
            "/env/a",
            "/env/b",
            "/opt/bottle/lib/bottle/plugins",
            "/opt/bottle/bin",
        ];
        assert_eq!(dirs, expected.map(PathBuf::from));
    }

    #[test]
    fn a_directory_named_twice_is_searched_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let dirs = search_path(&[d.clone(), d.join(".")], None, None);
        assert_eq!(dirs, [d]);
    }

    #[test]
    fn only_bottle_plugin_libraries_are_candidates() {
        let so = std::env::consts::DLL_SUFFIX;
        let lib = std::env::consts::DLL_PREFIX;
        assert!(is_candidate(OsStr::new(&format!(
            "{lib}bottle_plugin_vmm_smolvm{so}"
        ))));
        assert!(!is_candidate(OsStr::new(&format!("{lib}bottle_core{so}"))));
        assert!(!is_candidate(OsStr::new(&format!(
            "{lib}bottle_plugin_{so}"
        ))));
        assert!(!is_candidate(OsStr::new(&format!(
            "{lib}bottle_plugin_x.rlib"
        ))));
        assert!(!is_candidate(OsStr::new(&format!(
            "{lib}testplugin_fixture{so}"
        ))));
    }

    #[test]
    fn the_host_adds_and_creates_the_state_dir() {
        let root = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            name: "runtime-process".to_owned(),
            kind: PluginKind::Runtime,
            version: "0.1.0".to_owned(),
            api_version: 1,
            os: vec!["linux".to_owned()],
        };
        let mut settings = Map::new();
        settings.insert("start_timeout_ms".to_owned(), Value::from(500));
        let json = settings_json(&manifest, settings, root.path()).unwrap();
        let back: Value = serde_json::from_str(&json).unwrap();
        let dir = root.path().join("runtime-process");
        assert_eq!(back["state_dir"], dir.to_str().unwrap());
        assert_eq!(back["start_timeout_ms"], 500);
        assert!(dir.is_dir());
    }

    #[test]
    fn errors_name_what_was_found() {
        let err = PluginError::NotFound {
            kind: PluginKind::Vmm,
            name: "smolvm".to_owned(),
            available: vec!["sandbox".to_owned()],
            rejected: 2,
        };
        assert_eq!(
            err.to_string(),
            "no vmm plugin named `smolvm` was found (loaded vmm plugins: sandbox); 2 plugin \
             files were rejected, `bottle plugins` says why"
        );
    }
}

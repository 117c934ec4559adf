//! What every command starts from: bottle's home, its configuration, its state database and
//! the plugins found on this host.

use std::path::PathBuf;
use std::sync::OnceLock;

use bottle_core::claims::{ClaimDir, DEFAULT_CLAIM_DIR};
use bottle_core::config::home_dir;
use bottle_core::{BundleRuntime, Config, NetScoper, Slug, StateDb, VmmBackend};
use bottle_plugin_api::{Discovery, Outcome, PluginKind};

use crate::cli::GlobalArgs;
use crate::exit::NoSuchBottle;

/// The VMM used when neither the command line, the spec nor the config names one.
const DEFAULT_VMM: &str = if cfg!(target_os = "macos") {
    "smolvm"
} else {
    "sandbox"
};
/// The bundle runtime used when nothing names one: it needs nothing installed.
const DEFAULT_RUNTIME: &str = "process";

pub struct Context {
    pub home: PathBuf,
    pub config: Config,
    plugin_dirs: Vec<PathBuf>,
    discovery: OnceLock<Discovery>,
    instance: OnceLock<String>,
}

impl Context {
    pub fn new(global: &GlobalArgs) -> anyhow::Result<Self> {
        // Absolute, because the database's path names this home in host-wide alias claims.
        let home = std::path::absolute(home_dir(|name| std::env::var(name).ok())?)?;
        let config = Config::load(&home)?;
        Ok(Context {
            home,
            config,
            plugin_dirs: global.plugin_dir.clone(),
            discovery: OnceLock::new(),
            instance: OnceLock::new(),
        })
    }

    /// The state database, claiming leased aliases host-wide in [`Context::claim_dir`], so
    /// that other bottle homes on this host skip them.
    pub fn db(&self) -> anyhow::Result<StateDb> {
        Ok(StateDb::open_in(&self.home)?.with_claims(self.claim_dir()))
    }

    /// Where every home on this host claims its aliases: `BOTTLE_CLAIM_DIR`, by default
    /// `/tmp/bottle-aliases`.
    pub fn claim_dir(&self) -> ClaimDir {
        let dir = std::env::var_os("BOTTLE_CLAIM_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_CLAIM_DIR), PathBuf::from);
        ClaimDir::new(dir)
    }

    /// The plugins found on this host, discovered once per process.
    pub fn plugins(&self) -> &Discovery {
        self.discovery
            .get_or_init(|| bottle_plugin_api::discover(&self.plugin_dirs))
    }

    /// The names of the loaded plugins of one kind, in search order.
    pub fn plugin_names(&self, kind: PluginKind) -> Vec<String> {
        self.plugins()
            .entries()
            .iter()
            .filter_map(|e| match &e.outcome {
                Outcome::Loaded { manifest } if manifest.kind == kind => {
                    Some(manifest.name.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Where plugins keep their files: one directory each below this one.
    fn plugin_state_root(&self) -> PathBuf {
        self.home.join("plugins")
    }

    /// This home's instance id (see [`StateDb::instance_id`]).
    pub fn instance(&self) -> anyhow::Result<&str> {
        if let Some(id) = self.instance.get() {
            return Ok(id);
        }
        let id = self.db()?.instance_id()?;
        Ok(self.instance.get_or_init(|| id))
    }

    /// A plugin's settings: its `[plugins.NAME]` table, plus `instance`, the id that labels
    /// what this home's bottles run.
    fn settings(&self, plugin: &str) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        let mut settings = self.config.plugin_settings(plugin);
        settings.insert("instance".into(), self.instance()?.into());
        Ok(settings)
    }

    /// The net plugin for this OS, with the settings of `[plugins.net-<os>]`.
    pub fn net(&self) -> anyhow::Result<Box<dyn NetScoper>> {
        let settings = self.settings(&format!("net-{}", std::env::consts::OS))?;
        Ok(self
            .plugins()
            .net_scoper(settings, &self.plugin_state_root())?)
    }

    pub fn vmm(&self, name: &str) -> anyhow::Result<Box<dyn VmmBackend>> {
        let settings = self.settings(&full_name("vmm", name))?;
        Ok(self
            .plugins()
            .vmm(name, settings, &self.plugin_state_root())?)
    }

    pub fn runtime(&self, name: &str) -> anyhow::Result<Box<dyn BundleRuntime>> {
        let settings = self.settings(&full_name("runtime", name))?;
        Ok(self
            .plugins()
            .runtime(name, settings, &self.plugin_state_root())?)
    }

    /// Removes a bottle's directory once the bottle is gone.
    pub fn remove_bottle_dir(&self, slug: &Slug) {
        let dir = self.bottle_dir(slug);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                let dir = dir.display();
                tracing::warn!(%dir, error = %e, "cannot remove the bottle's directory");
            }
        }
    }

    /// The bottle directory shared read-only with the agent.
    pub fn bottle_dir(&self, slug: &Slug) -> PathBuf {
        self.home.join("bottles").join(slug.as_str())
    }

    /// The VMM plugin's full name: the flag, else the spec, else the config, else the default.
    pub fn vmm_name(&self, flag: Option<&str>, spec: Option<&str>) -> String {
        let name = flag
            .or(spec)
            .or(self.config.vmm.as_deref())
            .unwrap_or(DEFAULT_VMM);
        full_name("vmm", name)
    }

    /// The runtime plugin's full name, chosen as [`Context::vmm_name`] is.
    pub fn runtime_name(&self, flag: Option<&str>, spec: Option<&str>) -> String {
        let name = flag
            .or(spec)
            .or(self.config.runtime.as_deref())
            .unwrap_or(DEFAULT_RUNTIME);
        full_name("runtime", name)
    }
}

/// `smolvm` → `vmm-smolvm`; a full name stays as it is.
pub fn full_name(kind: &str, name: &str) -> String {
    let prefix = format!("{kind}-");
    if name.starts_with(&prefix) {
        name.to_owned()
    } else {
        prefix + name
    }
}

/// Parses a slug given on the command line, as a user-facing "no such bottle" when invalid.
pub fn parse_slug(input: &str) -> anyhow::Result<Slug> {
    input
        .parse::<Slug>()
        .map_err(|_| NoSuchBottle(input.to_owned()).into())
}

/// Whether process `pid` is alive, for finding bottles whose launcher died.
pub fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists and that we
    // may signal it.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_full_plugin_names() {
        assert_eq!(full_name("vmm", "smolvm"), "vmm-smolvm");
        assert_eq!(full_name("runtime", "runtime-docker"), "runtime-docker");
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(is_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }
}

//! What a plugin says about itself: its name, kind, versions and operating systems.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ffi::FfiManifest;

/// Which of the three traits a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// A [`NetScoper`](bottle_core::NetScoper), chosen by the running OS.
    Net,
    /// A [`VmmBackend`](bottle_core::VmmBackend), chosen by configuration.
    Vmm,
    /// A [`BundleRuntime`](bottle_core::BundleRuntime), chosen by configuration.
    Runtime,
}

impl PluginKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PluginKind::Net => "net",
            PluginKind::Vmm => "vmm",
            PluginKind::Runtime => "runtime",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PluginKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "net" => Ok(PluginKind::Net),
            "vmm" => Ok(PluginKind::Vmm),
            "runtime" => Ok(PluginKind::Runtime),
            other => Err(other.to_owned()),
        }
    }
}

/// A loaded plugin's description of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The plugin's name, conventionally `<kind>-<short name>` (`vmm-smolvm`).
    pub name: String,
    pub kind: PluginKind,
    /// The plugin crate's own version.
    pub version: String,
    /// The plugin API version it was built against.
    pub api_version: u32,
    /// The operating systems it supports, as `std::env::consts::OS` names them.
    pub os: Vec<String>,
}

impl Manifest {
    pub(crate) fn from_ffi(ffi: FfiManifest) -> Result<Self, String> {
        let kind = ffi.kind.as_str().parse::<PluginKind>()?;
        Ok(Manifest {
            name: ffi.name.into_string(),
            kind,
            version: ffi.version.into_string(),
            api_version: ffi.api_version,
            os: ffi.os.into_iter().map(|os| os.into_string()).collect(),
        })
    }

    /// Whether the plugin supports the OS this process runs on.
    pub fn supports_current_os(&self) -> bool {
        self.os.iter().any(|os| os == std::env::consts::OS)
    }

    /// The name without its kind prefix: `smolvm` for `vmm-smolvm`.
    pub fn short_name(&self) -> &str {
        self.name
            .strip_prefix(self.kind.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(&self.name)
    }

    /// Whether `name` designates this plugin, in its full or its short form.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.short_name() == name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, kind: PluginKind) -> Manifest {
        Manifest {
            name: name.to_owned(),
            kind,
            version: "0.1.0".to_owned(),
            api_version: 1,
            os: vec!["linux".to_owned()],
        }
    }

    #[test]
    fn a_plugin_answers_to_its_full_and_short_names() {
        let m = manifest("vmm-smolvm", PluginKind::Vmm);
        assert!(m.answers_to("smolvm"));
        assert!(m.answers_to("vmm-smolvm"));
        assert!(!m.answers_to("runtime-smolvm"));
        assert!(!m.answers_to("smol"));
    }

    #[test]
    fn a_name_without_the_kind_prefix_is_its_own_short_name() {
        let m = manifest("my-runtime", PluginKind::Runtime);
        assert_eq!(m.short_name(), "my-runtime");
        assert!(m.answers_to("my-runtime"));
    }
}

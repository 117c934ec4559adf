//! The types that cross the plugin boundary: the root module a plugin exports, the FFI-safe
//! mirrors of the three plugin traits, errors and log records.
//!
//! Every argument and result is a core type serialised as JSON, so that the mirrors stay
//! small and the core types keep one definition. Everything here is part of the plugin API:
//! changing any of it means bumping [`PLUGIN_API_VERSION`](crate::PLUGIN_API_VERSION).

// `#[sabi_trait]` of abi_stable 0.11.3 (the latest) implements `InterfaceType` inside a const
// block, which this lint flags; the impls are the macro's, not ours.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, sabi_trait, StableAbi};
use bottle_core::{BackendError, ErrorKind};

/// The name of the static every plugin exports next to its root module, holding the plugin
/// API version it was built against. It is a plain `u32`, readable before the root module's
/// layout is checked, so that an old plugin gets a version message, not a layout report.
pub const API_VERSION_SYMBOL: &str = "BOTTLE_PLUGIN_API_VERSION";

/// A failed plugin call, as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    /// The [`ErrorKind`] in its serialised (snake case) form; unknown kinds become `other`.
    pub kind: RString,
    pub message: RString,
    /// The causes, outermost first.
    pub causes: RVec<RString>,
}

/// What every mirrored method returns: its result as JSON, or an error.
pub type FfiResult = RResult<RString, FfiError>;

impl From<BackendError> for FfiError {
    fn from(err: BackendError) -> Self {
        FfiError {
            kind: kind_name(err.kind).into(),
            message: err.message.into(),
            causes: err.causes.into_iter().map(RString::from).collect(),
        }
    }
}

impl From<FfiError> for BackendError {
    fn from(err: FfiError) -> Self {
        let kind = serde_json::from_value(serde_json::Value::String(err.kind.into_string()))
            .unwrap_or(ErrorKind::Other);
        let causes = err.causes.into_iter().map(RString::into_string).collect();
        BackendError::from_parts(kind, err.message.into_string(), causes)
    }
}

fn kind_name(kind: ErrorKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "other".to_owned(),
    }
}

/// The manifest as it crosses the boundary; see [`Manifest`](crate::Manifest).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct FfiManifest {
    pub name: RString,
    /// `net`, `vmm` or `runtime`.
    pub kind: RString,
    /// The plugin crate's own version.
    pub version: RString,
    pub api_version: u32,
    /// Values of `std::env::consts::OS` the plugin supports.
    pub os: RVec<RString>,
}

/// A `tracing` level as a number, the same on both sides whatever their `tracing` versions.
pub mod level {
    use tracing_core::Level;

    pub const ERROR: u8 = 1;
    pub const WARN: u8 = 2;
    pub const INFO: u8 = 3;
    pub const DEBUG: u8 = 4;
    pub const TRACE: u8 = 5;

    /// The number of a level.
    pub fn to_u8(level: &Level) -> u8 {
        match *level {
            Level::ERROR => ERROR,
            Level::WARN => WARN,
            Level::INFO => INFO,
            Level::DEBUG => DEBUG,
            _ => TRACE,
        }
    }

    /// The level of a number; anything unknown is the quietest level.
    pub fn from_u8(level: u8) -> Level {
        match level {
            ERROR => Level::ERROR,
            WARN => Level::WARN,
            INFO => Level::INFO,
            DEBUG => Level::DEBUG,
            _ => Level::TRACE,
        }
    }
}

/// The host's logging, handed to a plugin when it is loaded. A plugin library has its own
/// copy of `tracing` and of its global dispatcher, so its events would go nowhere without
/// these two callbacks.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostLog {
    /// Whether the host wants events of `level` from `plugin`; asked before formatting.
    pub enabled: extern "C" fn(plugin: RStr<'_>, level: u8) -> bool,
    /// Re-emits one event on the host; `target` is the plugin's own target (its module).
    pub emit: extern "C" fn(plugin: RStr<'_>, level: u8, target: RStr<'_>, message: RStr<'_>),
}

/// The FFI mirror of [`bottle_core::NetScoper`]; arguments and results are JSON.
#[sabi_trait]
pub trait FfiNetScoper: Send + Sync {
    fn name(&self) -> FfiResult;
    fn describe(&self) -> FfiResult;
    fn ensure_pool(&self, pool: RStr<'_>) -> FfiResult;
    fn pool_status(&self, pool: RStr<'_>) -> FfiResult;
    fn listeners_on(&self, pool: RStr<'_>) -> FfiResult;
    fn persist_plan(&self, pool: RStr<'_>) -> FfiResult;
    #[sabi(last_prefix_field)]
    fn persist(&self, pool: RStr<'_>) -> FfiResult;
}

/// The FFI mirror of [`bottle_core::VmmBackend`]; arguments and results are JSON.
#[sabi_trait]
pub trait FfiVmmBackend: Send + Sync {
    fn name(&self) -> FfiResult;
    fn describe(&self) -> FfiResult;
    fn probe(&self) -> FfiResult;
    fn create(&self, agent: RStr<'_>, policy: RStr<'_>) -> FfiResult;
    fn effective_policy(&self, machine: RStr<'_>) -> FfiResult;
    fn start(&self, machine: RStr<'_>) -> FfiResult;
    fn stop(&self, machine: RStr<'_>) -> FfiResult;
    fn remove(&self, machine: RStr<'_>) -> FfiResult;
    fn status(&self, machine: RStr<'_>) -> FfiResult;
    fn exec(&self, machine: RStr<'_>, command: RStr<'_>, stdio: RStr<'_>) -> FfiResult;
    #[sabi(last_prefix_field)]
    fn list_machines(&self) -> FfiResult;
}

/// The FFI mirror of [`bottle_core::BundleRuntime`]; arguments and results are JSON.
#[sabi_trait]
pub trait FfiBundleRuntime: Send + Sync {
    fn name(&self) -> FfiResult;
    fn describe(&self) -> FfiResult;
    fn start_bundle(&self, spec: RStr<'_>) -> FfiResult;
    fn host_port(&self, slug: RStr<'_>, service: RStr<'_>, container_port: u16) -> FfiResult;
    fn stop_bundle(&self, slug: RStr<'_>) -> FfiResult;
    #[sabi(last_prefix_field)]
    fn list_owned(&self) -> FfiResult;
}

/// A boxed [`FfiNetScoper`] owned by the host; dropping it drops the plugin's object.
pub type FfiNetScoperBox = FfiNetScoper_TO<'static, RBox<()>>;
/// A boxed [`FfiVmmBackend`] owned by the host.
pub type FfiVmmBackendBox = FfiVmmBackend_TO<'static, RBox<()>>;
/// A boxed [`FfiBundleRuntime`] owned by the host.
pub type FfiBundleRuntimeBox = FfiBundleRuntime_TO<'static, RBox<()>>;

/// The root module every plugin library exports. The constructors take the plugin's settings
/// as a JSON object; a plugin has one kind, and the constructors of the other two kinds
/// return an error.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    pub manifest: extern "C" fn() -> FfiManifest,
    /// Installs the host's logging in the plugin; called once, right after loading.
    pub init_logging: extern "C" fn(log: HostLog),
    pub new_net: extern "C" fn(settings: RStr<'_>) -> RResult<FfiNetScoperBox, FfiError>,
    pub new_vmm: extern "C" fn(settings: RStr<'_>) -> RResult<FfiVmmBackendBox, FfiError>,
    #[sabi(last_prefix_field)]
    pub new_runtime: extern "C" fn(settings: RStr<'_>) -> RResult<FfiBundleRuntimeBox, FfiError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "bottle_plugin";
    const NAME: &'static str = "bottle plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_kind_message_and_causes_across_the_boundary() {
        let err = BackendError::new(ErrorKind::ScopeNotEnforceable, "smolvm 0.7 drops the scope")
            .with_cause_text("allowed_cidrs is null")
            .with_cause_text("read from the machine record");
        let ffi = FfiError::from(err.clone());
        assert_eq!(ffi.kind.as_str(), "scope_not_enforceable");
        assert_eq!(BackendError::from(ffi), err);
    }

    #[test]
    fn an_unknown_kind_becomes_other() {
        let ffi = FfiError {
            kind: "from_a_newer_core".into(),
            message: "x".into(),
            causes: RVec::new(),
        };
        assert_eq!(BackendError::from(ffi).kind, ErrorKind::Other);
    }

    #[test]
    fn levels_round_trip() {
        use tracing_core::Level;
        for l in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(level::from_u8(level::to_u8(&l)), l);
        }
        assert_eq!(level::from_u8(0), Level::TRACE);
    }
}

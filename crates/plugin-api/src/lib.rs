//! bottle's plugin boundary: the FFI-safe mirrors of the three plugin traits, the loader that
//! finds and checks plugin libraries on disk, and the macro a plugin exports itself with.
//!
//! # Writing a plugin
//!
//! A plugin is a `cdylib` crate that depends on this crate only. It implements one of the
//! traits re-exported from [`bottle_core`] and exports itself in one line:
//!
//! ```ignore
//! bottle_plugin_api::export_plugin!(
//!     runtime: name = "runtime-process", os = ["linux"], new = ProcessRuntime::from_settings
//! );
//! ```
//!
//! `new` is called with the plugin's settings as a JSON object: the plugin's table of
//! bottle's `config.toml`, plus `"state_dir"`, a directory the plugin may keep files in (the
//! host creates it). The library file must be named `libbottle_plugin_<anything>.so`
//! (`.dylib` on macOS) for discovery to find it.
//!
//! # What crosses the boundary
//!
//! Every value crosses as JSON (all core types are serde types), every error as a kind, a
//! message and its chain of causes, and no panic crosses at all: the plugin side catches it
//! and returns an error of kind [`ErrorKind::Panicked`](bottle_core::ErrorKind::Panicked).
//! A plugin's `tracing` events are forwarded to the host's subscriber under the target
//! `plugin::<name>`.
//!
//! # Loading plugins
//!
//! [`discover`] searches the plugin directories, checks each candidate (plugin API version,
//! abi_stable layout) and returns a [`Discovery`], from which the host builds its
//! [`NetScoper`](bottle_core::NetScoper), [`VmmBackend`](bottle_core::VmmBackend) and
//! [`BundleRuntime`](bottle_core::BundleRuntime).

#[doc(hidden)]
pub use abi_stable;
pub use bottle_core;
#[doc(hidden)]
pub use serde_json;

mod discovery;
#[doc(hidden)]
pub mod export;
pub mod ffi;
mod host;
mod host_log;
mod load;
mod manifest;
mod plugin_log;
/// Helpers for this workspace's tests that build and load real plugin libraries; not part
/// of the plugin API.
#[doc(hidden)]
pub mod test_support;

pub use discovery::{
    discover, search_path, Discovery, Outcome, PluginEntry, PluginError, PLUGIN_PATH_ENV,
    STATE_DIR_SETTING,
};
pub use load::Rejection;
pub use manifest::{Manifest, PluginKind};

/// The version of the plugin boundary. A plugin built against another version is refused at
/// load time with a message naming both; bump it on every change to anything in [`ffi`] or
/// to the JSON form of a core type.
///
/// 2: `NetScoper::persist_plan` and `NetScoper::persist`.
pub const PLUGIN_API_VERSION: u32 = 2;

/// The file name prefix discovery looks for (after the platform's `lib`), so that other
/// libraries named `libbottle_*` are never opened.
pub const PLUGIN_FILE_PREFIX: &str = "bottle_plugin_";

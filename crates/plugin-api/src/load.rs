//! Loading one plugin library: open it, check that it is a bottle plugin of this plugin API
//! version with the expected layout, and read its manifest.
//!
//! abi_stable's own `RootModule::load_from*` keep one library per root module type in a
//! static, and bottle loads several plugins of one root module type; so this module uses the
//! lower-level steps (open, read the header, check the layout, run the initialiser) and keeps
//! each library itself, leaked, for the life of the process.

use std::path::Path;

use abi_stable::library::{abi_header_from_raw_library, AbiHeader, LibraryError, RawLibrary};
use serde::Serialize;

use crate::ffi::{PluginModRef, API_VERSION_SYMBOL};
use crate::manifest::Manifest;
use crate::{host_log, PLUGIN_API_VERSION};

/// Why a file that looked like a plugin was not loaded, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "rejection", rename_all = "snake_case")]
pub enum Rejection {
    #[error("cannot open it: {detail}")]
    CannotOpen { detail: String },
    #[error("not a bottle plugin: it exports no bottle plugin root module")]
    NotAPlugin,
    #[error(
        "built against plugin API version {found}, but this bottle uses version {expected}: \
         rebuild it against bottle-plugin-api with plugin API version {expected}"
    )]
    ApiVersion { found: u32, expected: u32 },
    #[error("built with abi_stable ABI {found}, but this bottle uses {expected}: rebuild it")]
    AbiStable { found: String, expected: String },
    #[error(
        "its types' layout does not match this bottle's: rebuild it (abi_stable's report is \
         logged at debug level)"
    )]
    Layout,
    #[error("its initialiser failed: {detail}")]
    InitFailed { detail: String },
    #[error("its manifest names an unknown plugin kind `{kind}` (expected net, vmm or runtime)")]
    UnknownKind { kind: String },
}

/// A plugin whose library passed every check.
#[derive(Clone, Copy)]
pub(crate) struct Loaded {
    pub(crate) module: PluginModRef,
}

/// Opens and checks the library at `path`. The library stays loaded whatever the outcome:
/// unloading a library whose initialisers ran is not reliably safe.
pub(crate) fn load(path: &Path) -> Result<(Loaded, Manifest), Rejection> {
    let library = RawLibrary::load_at(path).map_err(|e| match e {
        LibraryError::OpenError { err, .. } => Rejection::CannotOpen {
            detail: one_line(&err),
        },
        other => Rejection::CannotOpen {
            detail: one_line(&other),
        },
    })?;
    let library: &'static RawLibrary = Box::leak(Box::new(library));

    // SAFETY: the symbol abi_stable looks up is a static of type `LibHeader` in every library
    // that abi_stable built; nothing else exports that mangled name.
    let abi_header =
        unsafe { abi_header_from_raw_library(library) }.map_err(|_| Rejection::NotAPlugin)?;

    let found = api_version(library).ok_or(Rejection::NotAPlugin)?;
    if found != PLUGIN_API_VERSION {
        return Err(Rejection::ApiVersion {
            found,
            expected: PLUGIN_API_VERSION,
        });
    }

    if !abi_header.is_valid() {
        let version = |h: &AbiHeader| format!("{}.{}", h.abi_major, h.abi_minor);
        return Err(Rejection::AbiStable {
            found: version(&abi_header),
            expected: version(&AbiHeader::VALUE),
        });
    }
    let header = abi_header.upgrade().map_err(|e| Rejection::InitFailed {
        detail: one_line(&e),
    })?;
    let module = header.check_layout::<PluginModRef>().map_err(|e| match e {
        LibraryError::AbiInstability(report) => {
            tracing::debug!(path = %path.display(), "layout mismatch:\n{report}");
            Rejection::Layout
        }
        LibraryError::RootModule { err, .. } => Rejection::InitFailed {
            detail: one_line(&err),
        },
        other => Rejection::InitFailed {
            detail: one_line(&other),
        },
    })?;

    let ffi = (module.manifest())();
    let manifest = Manifest::from_ffi(ffi).map_err(|kind| Rejection::UnknownKind { kind })?;
    (module.init_logging())(host_log::host_log());
    Ok((Loaded { module }, manifest))
}

/// The plugin API version the library was built against, from its version static.
fn api_version(library: &'static RawLibrary) -> Option<u32> {
    let name = format!("{API_VERSION_SYMBOL}\0");
    // SAFETY: a library that exports the abi_stable root module and this name is a bottle
    // plugin, whose `export_plugin!` defines the name as a `static u32`; the symbol's value
    // is its address.
    let symbol = unsafe { library.get::<*const u32>(name.as_bytes()) }.ok()?;
    let address: *const u32 = *symbol;
    if address.is_null() {
        return None;
    }
    // SAFETY: `address` points at the plugin's `static u32`, which lives as long as the
    // library, and the library is never unloaded.
    Some(unsafe { address.read() })
}

/// An error's text on one line: abi_stable and dlopen messages span several.
fn one_line(err: &dyn std::fmt::Display) -> String {
    err.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

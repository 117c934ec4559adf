//! A library for the loader's tests that exports bottle's root module, of the current plugin
//! API version, from an initialiser that fails: the loader must reject it with the
//! initialiser's message.

use abi_stable::export_root_module;
use abi_stable::std_types::RBoxError;
use bottle_plugin_api::ffi::PluginModRef;

#[export_root_module]
pub fn root_module() -> Result<PluginModRef, RBoxError> {
    Err(RBoxError::from_fmt(
        &"the plugin found no configuration to start from",
    ))
}

/// The right plugin API version, so that the loader gets as far as the initialiser.
// SAFETY: the name of bottle's version static, which this library exports once.
#[unsafe(no_mangle)]
pub static BOTTLE_PLUGIN_API_VERSION: u32 = bottle_plugin_api::PLUGIN_API_VERSION;

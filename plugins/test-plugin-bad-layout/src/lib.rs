//! A library for the loader's tests that exports an abi_stable root module of the current
//! plugin API version whose layout is not bottle's, as a plugin built against a modified
//! bottle-plugin-api would: the loader must reject it as a layout mismatch.

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::{declare_root_module_statics, export_root_module, StableAbi};

/// Not bottle's root module: one field, from another package.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    #[sabi(last_prefix_field)]
    pub answer: extern "C" fn() -> u32,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "bottle_plugin";
    const NAME: &'static str = "bottle plugin";
    const VERSION_STRINGS: VersionStrings = abi_stable::package_version_strings!();
}

extern "C" fn answer() -> u32 {
    42
}

#[export_root_module]
pub fn root_module() -> PluginModRef {
    PluginMod { answer }.leak_into_prefix()
}

/// The right plugin API version, so that the loader gets as far as the layout check.
// SAFETY: the name of bottle's version static, which this library exports once.
#[unsafe(no_mangle)]
pub static BOTTLE_PLUGIN_API_VERSION: u32 = bottle_plugin_api::PLUGIN_API_VERSION;

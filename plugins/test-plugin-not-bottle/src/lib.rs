//! A shared library that exports a function but no bottle root module, for the loader's
//! tests: discovery must list it as "not a bottle plugin" and go on.

/// A symbol, so that the library is a real, loadable one.
// SAFETY: a name no other library uses.
#[unsafe(no_mangle)]
pub extern "C" fn test_plugin_not_bottle_answer() -> u32 {
    42
}

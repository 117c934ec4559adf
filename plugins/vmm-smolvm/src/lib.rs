//! The `vmm-smolvm` plugin: the agent in a smolvm microVM, as a library bottle loads at run time.
//!
//! The implementation lives in its own crate; this one only exports it.

bottle_plugin_api::export_plugin!(
    vmm: name = "vmm-smolvm",
    os = ["linux", "macos"],
    new = bottle_vmm_smolvm::SmolvmBackend::from_settings
);

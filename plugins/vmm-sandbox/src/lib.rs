//! The `vmm-sandbox` plugin: the agent in user, network, mount and PID namespaces, reaching
//! its bundle through a relay, as a library bottle loads at run time.
//!
//! The implementation lives in its own crate; this one only exports it. The plugin never
//! forks: it runs the `bottle-sandbox` helper, which must be installed next to `bottle` (or
//! named by the `helper` setting).

bottle_plugin_api::export_plugin!(
    vmm: name = "vmm-sandbox",
    os = ["linux"],
    new = bottle_vmm_sandbox::SandboxBackend::from_settings
);

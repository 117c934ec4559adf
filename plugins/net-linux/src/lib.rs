//! The `net-linux` plugin: bottle's alias pool on Linux, as a library bottle loads at run time.
//!
//! The implementation lives in its own crate; this one only exports it.

bottle_plugin_api::export_plugin!(
    net: name = "net-linux",
    os = ["linux"],
    new = bottle_net_linux::LinuxNetScoper::from_settings
);

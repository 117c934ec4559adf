//! The `net-macos` plugin: bottle's alias pool on macOS (lo0 aliases, one sudo call), as a
//! library bottle loads at run time.
//!
//! The implementation lives in its own crate; this one only exports it.

bottle_plugin_api::export_plugin!(
    net: name = "net-macos",
    os = ["macos"],
    new = bottle_net_macos::MacosNetScoper::from_settings
);

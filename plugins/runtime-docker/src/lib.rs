//! The `runtime-docker` plugin: a bottle's services as Docker containers, as a library
//! bottle loads at run time.
//!
//! The implementation lives in its own crate; this one only exports it.

bottle_plugin_api::export_plugin!(
    runtime: name = "runtime-docker",
    os = ["linux", "macos"],
    new = bottle_runtime_docker::DockerRuntime::from_settings
);

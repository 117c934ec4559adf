//! The first-party plugins as a fresh `cargo build` leaves them: found in the build
//! directory, each loaded with its manifest, and the test plugins never among them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bottle_plugin_api::{test_support, Discovery, Outcome, PluginKind, PLUGIN_API_VERSION};
use serde_json::Map;

const FIRST_PARTY: [(&str, &str, PluginKind, &[&str]); 6] = [
    (
        "bottle-plugin-net-linux",
        "net-linux",
        PluginKind::Net,
        &["linux"],
    ),
    (
        "bottle-plugin-net-macos",
        "net-macos",
        PluginKind::Net,
        &["macos"],
    ),
    (
        "bottle-plugin-vmm-smolvm",
        "vmm-smolvm",
        PluginKind::Vmm,
        &["linux", "macos"],
    ),
    (
        "bottle-plugin-vmm-sandbox",
        "vmm-sandbox",
        PluginKind::Vmm,
        &["linux"],
    ),
    (
        "bottle-plugin-runtime-docker",
        "runtime-docker",
        PluginKind::Runtime,
        &["linux", "macos"],
    ),
    (
        "bottle-plugin-runtime-process",
        "runtime-process",
        PluginKind::Runtime,
        &["linux"],
    ),
];

/// Builds the first-party plugins and a test plugin into the test's own target directory.
fn build() -> BTreeMap<String, PathBuf> {
    let mut packages: Vec<&str> = FIRST_PARTY.iter().map(|(package, ..)| *package).collect();
    packages.push("test-plugin-fixture");
    test_support::build_cdylibs(&packages).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_build_directory_holds_the_first_party_plugins_and_no_test_plugin() {
    let built = build();
    let build_dir = built["bottle-plugin-net-linux"]
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(
        built["test-plugin-fixture"].parent(),
        Some(build_dir.as_path())
    );

    let discovery = Discovery::scan(&[build_dir]);
    let mut loaded = BTreeMap::new();
    for entry in discovery.entries() {
        let name = entry
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            !name.contains("test_plugin"),
            "a test plugin was discovered: {name}"
        );
        match &entry.outcome {
            Outcome::Loaded { manifest } => loaded.insert(manifest.name.clone(), manifest.clone()),
            other => panic!("{name} did not load: {other:?}"),
        };
    }
    for (package, name, kind, os) in FIRST_PARTY {
        let manifest = loaded
            .get(name)
            .unwrap_or_else(|| panic!("{package} was not found"));
        assert_eq!(manifest.kind, kind, "{name}");
        assert_eq!(manifest.os, os, "{name}");
        assert_eq!(manifest.api_version, PLUGIN_API_VERSION, "{name}");
    }

    let state = tempfile::tempdir().unwrap();
    if cfg!(target_os = "linux") {
        let net = discovery.net_scoper(Map::new(), state.path()).unwrap();
        assert_eq!(net.name(), "net-linux");
        let runtime = discovery
            .runtime("process", Map::new(), state.path())
            .unwrap();
        assert_eq!(runtime.name(), "runtime-process");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn net_linux_says_through_its_library_that_the_pool_needs_nothing_to_persist() {
    use bottle_core::{AliasPool, PersistPlan};

    let built = build();
    let discovery = Discovery::scan(&[built["bottle-plugin-net-linux"]
        .parent()
        .unwrap()
        .to_path_buf()]);
    let state = tempfile::tempdir().unwrap();
    let net = discovery.net_scoper(Map::new(), state.path()).unwrap();
    let pool = AliasPool::default();
    let expected = PersistPlan::NotNeeded {
        reason: "Linux routes all of 127.0.0.0/8 to lo at every boot: the pool's aliases need \
                 no setup to survive a reboot"
            .to_owned(),
    };
    assert_eq!(net.persist_plan(&pool).unwrap(), expected);
    assert_eq!(net.persist(&pool).unwrap(), expected);
}

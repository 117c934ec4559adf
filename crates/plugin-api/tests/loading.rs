//! Loads real plugin libraries, built from this workspace, from disk and calls through them:
//! typed results and errors, panics, rejected files, shadowing and log forwarding.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bottle_core::{AliasPool, ErrorKind};
use bottle_plugin_api::{
    test_support, Discovery, Outcome, PluginError, PluginKind, Rejection, PLUGIN_API_VERSION,
};
use serde_json::{json, Map, Value};
use tracing_subscriber::layer::SubscriberExt;

const FIXTURE: &str = "test-plugin-fixture";
const OLD_API: &str = "test-plugin-old-api";
const NOT_BOTTLE: &str = "test-plugin-not-bottle";
const BAD_LAYOUT: &str = "test-plugin-bad-layout";
const INIT_FAILS: &str = "test-plugin-init-fails";

fn library(package: &str) -> &'static Path {
    static LIBRARIES: OnceLock<BTreeMap<String, PathBuf>> = OnceLock::new();
    let libraries = LIBRARIES.get_or_init(|| {
        let all = [FIXTURE, OLD_API, NOT_BOTTLE, BAD_LAYOUT, INIT_FAILS];
        test_support::build_cdylibs(&all).unwrap_or_else(|e| panic!("{e}"))
    });
    &libraries[package]
}

/// A plugin directory holding `installs` (package, plugin file name), scanned.
fn scan(installs: &[(&str, &str)]) -> (tempfile::TempDir, Discovery) {
    let dir = tempfile::tempdir().unwrap();
    for (package, name) in installs {
        test_support::install(library(package), dir.path(), name);
    }
    let discovery = Discovery::scan(&[dir.path().to_path_buf()]);
    (dir, discovery)
}

fn settings(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("settings are an object"),
    }
}

fn pool() -> AliasPool {
    "127.0.0.200/29".parse().unwrap()
}

fn outcome_of<'a>(discovery: &'a Discovery, file: &str) -> &'a Outcome {
    let entry = discovery
        .entries()
        .iter()
        .find(|e| {
            e.path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(file))
        })
        .unwrap_or_else(|| panic!("no entry for {file} in {:?}", discovery.entries()));
    &entry.outcome
}

#[test]
fn typed_results_and_typed_errors_cross_the_boundary() {
    let (_dir, discovery) = scan(&[(FIXTURE, "fixture")]);
    let Outcome::Loaded { manifest } = outcome_of(&discovery, "fixture") else {
        panic!("the fixture did not load: {:?}", discovery.entries());
    };
    assert_eq!(manifest.name, "net-fixture");
    assert_eq!(manifest.kind, PluginKind::Net);
    assert_eq!(manifest.api_version, PLUGIN_API_VERSION);
    assert_eq!(manifest.version, env!("CARGO_PKG_VERSION"));

    let state = tempfile::tempdir().unwrap();
    let net = discovery
        .net_scoper(settings(json!({"answer": 42})), state.path())
        .unwrap();
    assert_eq!(net.name(), "net-fixture");

    let described: Value = serde_json::from_str(&net.describe().unwrap()[0]).unwrap();
    assert_eq!(described["answer"], 42);
    let state_dir = state.path().join("net-fixture");
    assert_eq!(described["state_dir"], state_dir.to_str().unwrap());
    assert!(state_dir.is_dir());

    let report = net.ensure_pool(&pool()).unwrap();
    assert_eq!(report.present, pool().aliases().collect::<Vec<_>>());

    let err = net.pool_status(&pool()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed);
    assert_eq!(err.message, "cannot read the status of 127.0.0.200/29");
    let mut chain = Vec::new();
    let mut next = err.source();
    while let Some(cause) = next {
        chain.push(cause.to_string());
        next = cause.source();
    }
    assert_eq!(chain, ["permission denied", "ran `fixture-status`"]);
}

#[test]
fn a_net_plugin_that_leaves_persisting_out_says_so_through_the_boundary() {
    let (_dir, discovery) = scan(&[(FIXTURE, "fixture")]);
    let state = tempfile::tempdir().unwrap();
    let net = discovery.net_scoper(Map::new(), state.path()).unwrap();
    for (call, err) in [
        ("persist_plan", net.persist_plan(&pool()).unwrap_err()),
        ("persist", net.persist(&pool()).unwrap_err()),
    ] {
        assert_eq!(err.kind, ErrorKind::NotSupported, "{call}");
        assert_eq!(
            err.message,
            format!("net-fixture does not support `{call}` yet")
        );
    }
}

#[test]
fn a_panic_comes_back_as_panicked_and_the_host_lives_on() {
    let (_dir, discovery) = scan(&[(FIXTURE, "fixture")]);
    let state = tempfile::tempdir().unwrap();
    let net = discovery.net_scoper(Map::new(), state.path()).unwrap();
    for _ in 0..2 {
        let err = net.listeners_on(&pool()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Panicked);
        assert!(
            err.message.starts_with(
                "plugin `net-fixture` panicked in `listeners_on`: the fixture panics in \
                 listeners_on (at plugins/test-plugin-fixture/src/lib.rs:"
            ),
            "{}",
            err.message
        );
    }
    assert!(
        net.ensure_pool(&pool()).is_ok(),
        "the plugin still answers after its panics"
    );
}

#[test]
fn a_constructor_that_fails_or_panics_gives_an_error() {
    let (_dir, discovery) = scan(&[(FIXTURE, "fixture")]);
    let state = tempfile::tempdir().unwrap();

    let failed = discovery.net_scoper(settings(json!({"fail": true})), state.path());
    let Err(PluginError::Start { name, source }) = failed else {
        panic!("expected a start error");
    };
    assert_eq!(name, "net-fixture");
    assert_eq!(source.kind, ErrorKind::Unavailable);
    assert_eq!(source.causes, ["settings say fail"]);

    let panicked = discovery.net_scoper(settings(json!({"panic": true})), state.path());
    let Err(PluginError::Start { source, .. }) = panicked else {
        panic!("expected a start error");
    };
    assert_eq!(source.kind, ErrorKind::Panicked);
    assert!(
        source
            .message
            .contains("the fixture was told to panic in new"),
        "{source}"
    );
}

#[test]
fn a_plugin_built_against_another_api_version_is_rejected_in_one_line() {
    let (_dir, discovery) = scan(&[(OLD_API, "old"), (FIXTURE, "fixture")]);
    let Outcome::Rejected { reason } = outcome_of(&discovery, "old") else {
        panic!("the old plugin was not rejected: {:?}", discovery.entries());
    };
    let expected = PLUGIN_API_VERSION;
    let found = expected + 1;
    assert_eq!(*reason, Rejection::ApiVersion { found, expected });
    let line = reason.to_string();
    assert!(!line.contains('\n'));
    assert!(
        line.contains(&format!("built against plugin API version {found}")),
        "{line}"
    );
    assert!(
        line.contains(&format!("this bottle uses version {expected}")),
        "{line}"
    );
    assert!(line.contains("rebuild it"), "{line}");
    assert!(matches!(
        outcome_of(&discovery, "fixture"),
        Outcome::Loaded { .. }
    ));
}

#[test]
fn files_that_are_not_plugins_are_rejected_and_the_others_still_load() {
    let (dir, _) = scan(&[]);
    let so = std::env::consts::DLL_SUFFIX;
    std::fs::write(
        dir.path().join(format!("libbottle_plugin_junk{so}")),
        "not a library",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join(format!("libbottle_plugin_dir{so}"))).unwrap();
    test_support::install(library(NOT_BOTTLE), dir.path(), "not_bottle");
    test_support::install(library(FIXTURE), dir.path(), "zz_fixture");
    let discovery = Discovery::scan(&[dir.path().to_path_buf()]);

    assert_eq!(discovery.entries().len(), 3, "{:?}", discovery.entries());
    let Outcome::Rejected {
        reason: Rejection::CannotOpen { detail },
    } = outcome_of(&discovery, "junk")
    else {
        panic!(
            "junk was not rejected as unopenable: {:?}",
            discovery.entries()
        );
    };
    assert!(!detail.contains('\n'), "{detail}");
    assert!(matches!(
        outcome_of(&discovery, "not_bottle"),
        Outcome::Rejected {
            reason: Rejection::NotAPlugin
        }
    ));
    assert!(matches!(
        outcome_of(&discovery, "zz_fixture"),
        Outcome::Loaded { .. }
    ));

    let json = serde_json::to_value(&discovery).unwrap();
    let listed: Vec<(&str, &str)> = json["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["status"].as_str().unwrap(),
                p["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(listed[0].0, "rejected");
    assert!(listed[0].1.starts_with("cannot open it: "), "{listed:?}");
    assert_eq!(
        listed[1],
        (
            "rejected",
            "not a bottle plugin: it exports no bottle plugin root module"
        )
    );
    assert_eq!(listed[2], ("loaded", ""));
    assert_eq!(json["plugins"][2]["name"], "net-fixture");
    assert_eq!(json["plugins"][2]["kind"], "net");
}

#[test]
fn a_layout_mismatch_and_a_failing_initialiser_are_rejected_in_one_line() {
    let (_dir, discovery) = scan(&[
        (BAD_LAYOUT, "bad_layout"),
        (INIT_FAILS, "init_fails"),
        (FIXTURE, "fixture"),
    ]);
    let Outcome::Rejected { reason } = outcome_of(&discovery, "bad_layout") else {
        panic!("the bad layout was not rejected: {:?}", discovery.entries());
    };
    assert_eq!(*reason, Rejection::Layout);
    assert_eq!(
        reason.to_string(),
        "its types' layout does not match this bottle's: rebuild it (abi_stable's report is \
         logged at debug level)"
    );
    let Outcome::Rejected { reason } = outcome_of(&discovery, "init_fails") else {
        panic!(
            "the failing initialiser was not rejected: {:?}",
            discovery.entries()
        );
    };
    let line = reason.to_string();
    assert!(matches!(reason, Rejection::InitFailed { .. }), "{line}");
    assert!(
        line.contains("the plugin found no configuration to start from"),
        "{line}"
    );
    assert!(!line.contains('\n'), "{line}");
    assert!(matches!(
        outcome_of(&discovery, "fixture"),
        Outcome::Loaded { .. }
    ));
}

#[test]
fn the_first_plugin_of_a_name_wins_and_the_other_is_shadowed() {
    let (first, _) = scan(&[(FIXTURE, "fixture")]);
    let (second, _) = scan(&[(FIXTURE, "fixture_copy")]);
    let discovery = Discovery::scan(&[first.path().to_path_buf(), second.path().to_path_buf()]);
    let winner = &discovery.entries()[0];
    assert!(winner.path.starts_with(first.path()));
    assert!(matches!(winner.outcome, Outcome::Loaded { .. }));
    let Outcome::Shadowed { manifest, by } = &discovery.entries()[1].outcome else {
        panic!("the copy is not shadowed: {:?}", discovery.entries());
    };
    assert_eq!((manifest.name.as_str(), by), ("net-fixture", &winner.path));
}

#[test]
fn plugins_are_found_by_kind_and_name() {
    let (_dir, discovery) = scan(&[(FIXTURE, "fixture"), (OLD_API, "old")]);
    let state = tempfile::tempdir().unwrap();
    let err = discovery
        .runtime("process", Map::new(), state.path())
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "no runtime plugin named `process` was found (loaded runtime plugins: none); 1 plugin \
         file was rejected, `bottle plugins` says why"
    );
    // The fixture is a net plugin: asking for it as a VMM does not find it.
    let err = discovery
        .vmm("net-fixture", Map::new(), state.path())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            PluginError::NotFound {
                kind: PluginKind::Vmm,
                ..
            }
        ),
        "{err}"
    );
}

/// Collects `target level message` for every event.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {} {}", meta.target(), meta.level(), message.0));
    }
}

#[test]
fn plugin_logs_reach_the_host_subscriber_at_their_level() {
    let (_dir, discovery) = scan(&[(FIXTURE, "fixture")]);
    let state = tempfile::tempdir().unwrap();
    let net = discovery.net_scoper(Map::new(), state.path()).unwrap();

    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(captured.clone())
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::with_default(subscriber, || net.describe().unwrap());

    let lines = captured.0.lock().unwrap();
    let from_plugin: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("plugin::net-fixture "))
        .collect();
    assert_eq!(
        from_plugin,
        [
            "plugin::net-fixture ERROR fixture error event",
            "plugin::net-fixture WARN fixture warn event code=7",
            "plugin::net-fixture INFO fixture info event",
        ]
    );
}

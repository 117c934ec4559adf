//! The smolvm example spec stays a valid spec for this backend.

use std::path::Path;

use bottle_core::BottleSpec;

#[test]
fn the_example_spec_is_valid_once_its_artifact_exists() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/smolvm/bottle.toml");
    let text = std::fs::read_to_string(&example).expect("the example spec");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("agent.smolmachine"), b"").unwrap();

    let spec = BottleSpec::parse(&text, &dir.path().join("bottle.toml")).expect("a valid spec");
    assert_eq!(spec.vmm.as_deref(), Some("smolvm"));
    assert_eq!(spec.runtime.as_deref(), Some("process"));
    assert_eq!(spec.agent.from, Some(dir.path().join("agent.smolmachine")));
    let web = spec.services.values().next().expect("one service");
    assert_eq!(web.ports, [8000]);
    assert_eq!(
        web.command[..2],
        ["sh", "-c"],
        "the variables need a shell to expand"
    );

    let without_artifact = tempfile::tempdir().unwrap();
    let missing = BottleSpec::parse(&text, &without_artifact.path().join("bottle.toml"));
    assert!(missing.is_err(), "the spec needs the artifact to exist");
}

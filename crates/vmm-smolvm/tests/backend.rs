//! SmolvmBackend against the fake smolvm, with a real SQLite database in a home of each test's
//! own: the allow-list a started machine gets, refusals, and the machine's life cycle in both
//! command-line forms.

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use bottle_core::{
    AgentSpec, EgressPolicy, ErrorKind, ExecStdio, Machine, MachineState, Mount, ScopeSupport,
    VmmBackend,
};
use bottle_vmm_smolvm::SmolvmBackend;
use serde_json::{json, Value};
use support::FakeSmolvm;

const ALIAS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 17);

fn backend(fake: &FakeSmolvm) -> SmolvmBackend {
    SmolvmBackend::from_settings(&fake.settings()).expect("valid settings")
}

fn agent(fake: &FakeSmolvm) -> AgentSpec {
    AgentSpec {
        slug: "demo".parse().unwrap(),
        machine_name: "bottle-demo".to_owned(),
        from: Some(fake.artifact()),
        image: None,
        command: vec!["sleep".to_owned(), "infinity".to_owned()],
        env: BTreeMap::from([
            ("BOTTLE_ALIAS".to_owned(), ALIAS.to_string()),
            ("BOTTLE_SERVICE_WEB".to_owned(), format!("{ALIAS}:8000")),
        ]),
        mounts: vec![],
        cpus: Some(2),
        memory_mib: Some(512),
        alias: ALIAS,
        endpoints: vec![],
    }
}

fn alias_only() -> EgressPolicy {
    EgressPolicy::alias_only(ALIAS)
}

fn machine() -> Machine {
    Machine {
        name: "bottle-demo".to_owned(),
    }
}

fn record(fake: &FakeSmolvm, name: &str) -> serde_json::Map<String, Value> {
    let (bytes, _) = fake.row(name).expect("the machine's row");
    serde_json::from_slice(&bytes).expect("a JSON record")
}

fn called(fake: &FakeSmolvm, subcommand: &str) -> Vec<Vec<String>> {
    let wanted = ["machine", subcommand];
    fake.calls()
        .into_iter()
        .filter(|c| c.len() >= 2 && c[..2] == wanted)
        .collect()
}

#[test]
fn smolvm_0_8_drops_the_allow_list_of_a_machine_created_from_an_artifact() {
    let fake = FakeSmolvm::new("0.8.0");
    let artifact = fake.artifact();
    fake.smolvm_ok(&[
        "machine",
        "create",
        "plain",
        "--from",
        artifact.to_str().unwrap(),
        "--allow-cidr",
        "127.0.0.17/32",
    ]);
    let stored = record(&fake, "plain");
    assert_eq!(stored["allowed_cidrs"], Value::Null);
    assert_eq!(stored["network"], json!(false));

    let policy = backend(&fake).effective_policy(&Machine {
        name: "plain".to_owned(),
    });
    assert_eq!(policy.unwrap(), EgressPolicy::Unrestricted);
}

#[test]
fn on_0_8_the_started_machine_gets_exactly_the_alias() {
    let fake = FakeSmolvm::new("0.8.0");
    let smolvm = backend(&fake);

    let machine = smolvm.create(&agent(&fake), &alias_only()).unwrap();
    assert_eq!(machine, self::machine());
    assert_eq!(smolvm.effective_policy(&machine).unwrap(), alias_only());
    smolvm.start(&machine).unwrap();

    let enforced = fake
        .enforced("bottle-demo")
        .expect("start recorded what it enforces");
    assert_eq!(enforced["allowed_cidrs"], json!(["127.0.0.17/32"]));
    assert_eq!(enforced["network"], json!(true));

    let create = &called(&fake, "create")[0];
    assert_eq!(
        create[2], "bottle-demo",
        "0.8 takes the name positionally: {create:?}"
    );
    assert!(
        !create.contains(&"--label".to_owned()),
        "0.8 has no --label: {create:?}"
    );
}

#[test]
fn on_1_0_3_the_named_form_is_used_and_the_machine_labelled() {
    let fake = FakeSmolvm::new("1.0.3");
    let smolvm = backend(&fake);
    let machine = smolvm.create(&agent(&fake), &alias_only()).unwrap();
    smolvm.start(&machine).unwrap();
    assert_eq!(
        fake.enforced("bottle-demo").unwrap()["allowed_cidrs"],
        json!(["127.0.0.17/32"])
    );

    let create = &called(&fake, "create")[0];
    let expected_start: Vec<String> = ["machine", "create", "--name", "bottle-demo"]
        .map(String::from)
        .to_vec();
    assert_eq!(create[..4], expected_start[..]);
    let label = create
        .iter()
        .position(|a| a == "--label")
        .expect("a --label");
    assert_eq!(create[label + 1], "bottle.slug=demo");
    assert_eq!(create[create.len() - 3..], ["--", "sleep", "infinity"]);
}

#[test]
fn the_agent_gets_its_environment_resources_and_mounts() {
    let fake = FakeSmolvm::new("1.0.3");
    let shared = tempfile::tempdir().unwrap();
    let mut agent = agent(&fake);
    agent.mounts = vec![Mount {
        host: shared.path().to_path_buf(),
        guest: PathBuf::from("/shared"),
        read_only: true,
    }];
    backend(&fake).create(&agent, &alias_only()).unwrap();

    let stored = record(&fake, "bottle-demo");
    assert_eq!(stored["cpus"], json!(2));
    assert_eq!(stored["mem"], json!(512));
    assert_eq!(
        stored["env"],
        json!([
            ["BOTTLE_ALIAS", "127.0.0.17"],
            ["BOTTLE_SERVICE_WEB", "127.0.0.17:8000"]
        ])
    );
    assert_eq!(stored["mounts"], json!([[shared.path(), "/shared", true]]));
    assert_eq!(stored["cmd"], json!(["sleep", "infinity"]));
}

#[test]
fn versions_that_cannot_hold_the_agent_to_its_alias_create_nothing() {
    for version in ["1.0.4", "1.1.3", "1.9.2", "0.7.9", "2.0.0", "garbage"] {
        let fake = FakeSmolvm::new(version);
        let err = backend(&fake)
            .create(&agent(&fake), &alias_only())
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ScopeNotEnforceable, "{version}: {err}");
        assert!(err.message.contains(version), "{version}: {err}");
        assert!(err.message.contains("0.8.x to 1.0.3"), "{version}: {err}");
        assert_eq!(
            fake.calls(),
            vec![vec!["--version".to_owned()]],
            "{version}"
        );
        assert_eq!(fake.row("bottle-demo"), None, "{version}");
    }
}

#[test]
fn probe_reports_the_version_and_whether_the_scope_holds() {
    let fake = FakeSmolvm::new("0.8.0");
    let probe = backend(&fake).probe().unwrap();
    assert_eq!(probe.version.as_deref(), Some("0.8.0"));
    assert_eq!(probe.scope, ScopeSupport::Exact);
    assert!(
        probe.notes.iter().any(|n| n.contains("drops --allow-cidr")),
        "{:?}",
        probe.notes
    );

    let fake = FakeSmolvm::new("1.9.2");
    let probe = backend(&fake).probe().unwrap();
    assert_eq!(probe.version.as_deref(), Some("1.9.2"));
    let ScopeSupport::Unenforceable { reason, remedy } = probe.scope else {
        panic!("1.9.2 must not be exact");
    };
    assert!(reason.contains("smolvm 1.9.2"), "{reason}");
    assert!(remedy.contains("vmm = \"sandbox\""), "{remedy}");
}

#[test]
fn a_missing_smolvm_is_unavailable() {
    let settings = json!({ "smolvm": "/nonexistent/bin/smolvm", "database": "/nonexistent/db" });
    let smolvm = SmolvmBackend::from_settings(&settings).unwrap();
    let err = smolvm.probe().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("smolvm is not installed"), "{err}");
    let doctor = smolvm.describe().unwrap();
    assert!(
        doctor.iter().any(|l| l.contains("not installed")),
        "{doctor:?}"
    );
}

#[test]
fn the_machine_lives_and_goes_in_both_forms() {
    for version in ["0.8.0", "1.0.3"] {
        let fake = FakeSmolvm::new(version);
        let smolvm = backend(&fake);
        let other: &[&str] = match version {
            "0.8.0" => &["machine", "create", "other", "-I", "alpine"],
            _ => &["machine", "create", "--name", "other", "-I", "alpine"],
        };
        fake.smolvm_ok(other);
        let machine = smolvm.create(&agent(&fake), &alias_only()).unwrap();
        assert_eq!(
            smolvm.status(&machine).unwrap(),
            MachineState::Created,
            "{version}"
        );
        assert_eq!(
            smolvm.list_machines().unwrap(),
            vec![machine.clone()],
            "{version}"
        );

        smolvm.start(&machine).unwrap();
        assert_eq!(
            smolvm.status(&machine).unwrap(),
            MachineState::Running,
            "{version}"
        );
        let shell = ["sh", "-c", "echo \"$BOTTLE_SERVICE_WEB\"; exit 3"].map(String::from);
        let out = smolvm.exec(&machine, &shell, ExecStdio::Capture).unwrap();
        assert_eq!(
            (out.exit_code, out.stdout.as_str()),
            (Some(3), "127.0.0.17:8000\n")
        );
        let out = smolvm
            .exec(&machine, &["true".to_owned()], ExecStdio::Inherit)
            .unwrap();
        assert_eq!(out.exit_code, Some(0));

        smolvm.stop(&machine).unwrap();
        assert_eq!(
            smolvm.status(&machine).unwrap(),
            MachineState::Stopped,
            "{version}"
        );
        smolvm.stop(&machine).unwrap();
        smolvm.remove(&machine).unwrap();
        assert_eq!(fake.row("bottle-demo"), None, "{version}");
        assert_eq!(
            smolvm.status(&machine).unwrap_err().kind,
            ErrorKind::NotFound,
            "{version}"
        );
        smolvm.remove(&machine).unwrap();
        smolvm.stop(&machine).unwrap();
        assert!(
            fake.row("other").is_some(),
            "{version}: only bottle's machine is removed"
        );

        let deletes = called(&fake, "delete");
        assert!(
            deletes
                .iter()
                .all(|d| d.last().map(String::as_str) == Some("-f")),
            "{deletes:?}"
        );
    }
}

#[test]
fn a_patch_that_cannot_be_made_removes_the_machine() {
    let fake = FakeSmolvm::new("0.8.0");
    let mut settings = fake.settings();
    settings["database"] = json!(fake.database().with_file_name("elsewhere.db"));
    let smolvm = SmolvmBackend::from_settings(&settings).unwrap();

    let err = smolvm.create(&agent(&fake), &alias_only()).unwrap_err();
    assert!(
        err.message.contains("cannot open smolvm's database"),
        "{err}"
    );
    assert_eq!(
        fake.row("bottle-demo"),
        None,
        "the half-made machine is removed"
    );
    assert_eq!(called(&fake, "delete").len(), 1);
}

#[test]
fn a_patch_that_does_not_stick_stops_the_launch() {
    let fake = FakeSmolvm::with_faults("0.8.0", "patch-revert");
    let err = backend(&fake)
        .create(&agent(&fake), &alias_only())
        .unwrap_err();
    assert!(err.message.contains("did not stick"), "{err}");
    assert!(err.message.contains("allowed_cidrs = null"), "{err}");
    assert_eq!(
        fake.row("bottle-demo"),
        None,
        "the half-made machine is removed"
    );
    assert!(called(&fake, "start").is_empty());
}

#[test]
fn a_record_smolvm_cannot_read_stops_the_launch_and_says_so() {
    let fake = FakeSmolvm::with_faults("0.8.0", "store-text");
    let err = backend(&fake)
        .create(&agent(&fake), &alias_only())
        .unwrap_err();
    assert!(err.message.contains("stored as TEXT"), "{err}");
    assert!(
        err.message.contains("could not be removed afterwards"),
        "{err}"
    );
    assert!(
        err.message
            .contains("Invalid column type Text at index: 1, name: data"),
        "{err}"
    );
}

#[test]
fn a_failed_command_shows_the_command_its_status_and_stderr() {
    let fake = FakeSmolvm::with_faults("0.8.0", "create");
    let err = backend(&fake)
        .create(&agent(&fake), &alias_only())
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed);
    assert!(
        err.message.contains("machine create bottle-demo --from"),
        "{err}"
    );
    assert!(err.message.contains("exit status: 1"), "{err}");
    assert!(err.message.contains("Error: injected failure"), "{err}");

    let fake = FakeSmolvm::with_faults("1.0.3", "start");
    let smolvm = backend(&fake);
    let machine = smolvm.create(&agent(&fake), &alias_only()).unwrap();
    let err = smolvm.start(&machine).unwrap_err();
    assert_eq!(err.kind, ErrorKind::CommandFailed);
    assert!(
        err.message.contains("machine start --name bottle-demo"),
        "{err}"
    );
}

#[test]
fn an_allow_list_entry_that_is_not_ipv4_fails_closed() {
    let fake = FakeSmolvm::new("1.9.2");
    fake.smolvm_ok(&[
        "machine",
        "create",
        "--name",
        "bottle-v6",
        "-I",
        "alpine",
        "--allow-cidr",
        "127.0.0.17",
        "--allow-cidr",
        "::1",
    ]);
    assert_eq!(
        record(&fake, "bottle-v6")["allowed_cidrs"],
        json!(["127.0.0.17/32", "::1/128"])
    );
    let err = backend(&fake).effective_policy(&Machine {
        name: "bottle-v6".to_owned(),
    });
    let err = err.unwrap_err();
    assert!(err.message.contains("\"::1/128\""), "{err}");
}

#[test]
fn an_unrestricted_request_is_refused() {
    let fake = FakeSmolvm::new("0.8.0");
    let err = backend(&fake)
        .create(&agent(&fake), &EgressPolicy::Unrestricted)
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(fake.calls().is_empty());
}

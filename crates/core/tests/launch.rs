//! The launch sequence against in-process test doubles of the three plugins: the order of
//! the steps, the checks between them, and the rollback after a failure at each step.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use bottle_core::launch::{
    launch, teardown, Backends, LaunchError, LaunchRequest, Launched, Quiet, StepFailure,
};
use bottle_core::state::{BottleState, Step};
use bottle_core::{
    AgentSpec, AliasPool, AliasUse, BackendError, BottleSpec, BundleLaunchSpec, BundleRuntime,
    EgressPolicy, ErrorKind, ExecOutput, ExecStdio, Machine, MachineState, NetScoper,
    OwnedResource, PoolReport, ScopeSupport, ServiceEndpoint, ServiceName, Slug, StateDb,
    VmmBackend, VmmProbe,
};

/// What a double was asked to do, in order, shared by the three doubles of one test.
#[derive(Default)]
struct Journal(Mutex<Vec<String>>);

impl Journal {
    fn log(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }

    fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Which call should fail, and how the doubles behave otherwise.
#[derive(Default, Clone)]
struct Faults {
    fail: Option<&'static str>,
    scope_refused: bool,
    effective: Option<EgressPolicy>,
    publish_on: Option<Ipv4Addr>,
    foreign_listener: Option<Ipv4Addr>,
}

struct Doubles {
    journal: Journal,
    faults: Faults,
    /// Real listeners standing in for the services, so readiness checks pass.
    listeners: Mutex<Vec<TcpListener>>,
}

impl Doubles {
    fn new(faults: Faults) -> Self {
        Doubles {
            journal: Journal::default(),
            faults,
            listeners: Mutex::new(Vec::new()),
        }
    }

    fn call(&self, name: &str) -> Result<(), BackendError> {
        self.journal.log(name);
        if self.faults.fail == Some(name) {
            return Err(BackendError::new(
                ErrorKind::CommandFailed,
                format!("{name} broke"),
            ));
        }
        Ok(())
    }

    fn backends(&self) -> Backends<'_> {
        Backends {
            net: self,
            vmm: self,
            runtime: self,
        }
    }
}

impl NetScoper for Doubles {
    fn name(&self) -> String {
        "net-double".into()
    }
    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
    fn ensure_pool(&self, _: &AliasPool) -> Result<PoolReport, BackendError> {
        self.call("ensure_pool").map(|()| PoolReport::default())
    }
    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError> {
        Ok(pool
            .aliases()
            .map(|alias| AliasUse {
                alias,
                present: true,
                listening_ports: if Some(alias) == self.faults.foreign_listener {
                    vec![5432]
                } else {
                    vec![]
                },
            })
            .collect())
    }
}

impl BundleRuntime for Doubles {
    fn name(&self) -> String {
        "runtime-double".into()
    }
    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
    fn start_bundle(&self, spec: &BundleLaunchSpec) -> Result<Vec<ServiceEndpoint>, BackendError> {
        self.call("start_bundle")?;
        let ip = self.faults.publish_on.unwrap_or(spec.publish_host_ip);
        let mut endpoints = Vec::new();
        for service in &spec.services {
            for port in &service.ports {
                let listener = TcpListener::bind((spec.publish_host_ip, 0)).unwrap();
                endpoints.push(ServiceEndpoint {
                    service: service.name.clone(),
                    container_port: *port,
                    host_ip: ip,
                    host_port: listener.local_addr().unwrap().port(),
                });
                self.listeners.lock().unwrap().push(listener);
            }
        }
        Ok(endpoints)
    }
    fn host_port(
        &self,
        _: &Slug,
        _: &ServiceName,
        _: u16,
    ) -> Result<ServiceEndpoint, BackendError> {
        Err(BackendError::not_supported("runtime-double", "host_port"))
    }
    fn stop_bundle(&self, _: &Slug) -> Result<(), BackendError> {
        self.listeners.lock().unwrap().clear();
        self.call("stop_bundle")
    }
    fn list_owned(&self) -> Result<Vec<OwnedResource>, BackendError> {
        Ok(vec![])
    }
}

impl VmmBackend for Doubles {
    fn name(&self) -> String {
        "vmm-double".into()
    }
    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
    fn probe(&self) -> Result<VmmProbe, BackendError> {
        self.call("probe")?;
        let scope = if self.faults.scope_refused {
            ScopeSupport::Unenforceable {
                reason: "its allow-list cannot reach host loopback".into(),
                remedy: "use 1.0.3".into(),
            }
        } else {
            ScopeSupport::Exact
        };
        Ok(VmmProbe {
            version: Some("9.9.9".into()),
            scope,
            notes: vec![],
        })
    }
    fn create(&self, agent: &AgentSpec, policy: &EgressPolicy) -> Result<Machine, BackendError> {
        self.call("create")?;
        self.journal.log(format!("policy {policy}"));
        self.journal
            .log(format!("env BOTTLE_ALIAS={}", agent.env["BOTTLE_ALIAS"]));
        Ok(Machine {
            name: agent.machine_name.clone(),
        })
    }
    fn effective_policy(&self, _: &Machine) -> Result<EgressPolicy, BackendError> {
        self.call("effective_policy")?;
        Ok(self
            .faults
            .effective
            .clone()
            .unwrap_or_else(|| EgressPolicy::alias_only(Ipv4Addr::new(127, 0, 0, 16))))
    }
    fn start(&self, _: &Machine) -> Result<(), BackendError> {
        self.call("start")
    }
    fn stop(&self, _: &Machine) -> Result<(), BackendError> {
        self.call("stop")
    }
    fn remove(&self, _: &Machine) -> Result<(), BackendError> {
        self.call("remove")
    }
    fn status(&self, _: &Machine) -> Result<MachineState, BackendError> {
        Ok(MachineState::Running)
    }
    fn exec(&self, _: &Machine, _: &[String], _: ExecStdio) -> Result<ExecOutput, BackendError> {
        Err(BackendError::not_supported("vmm-double", "exec"))
    }
    fn list_machines(&self) -> Result<Vec<Machine>, BackendError> {
        Ok(vec![])
    }
}

struct Setup {
    dir: tempfile::TempDir,
    spec: BottleSpec,
    db: StateDb,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bottle.toml");
    let text = "name = \"demo\"\n[services.tools]\ncommand = [\"serve\"]\nports = [8080, 9090]\n";
    std::fs::write(&path, text).unwrap();
    let spec = BottleSpec::load(&path).unwrap();
    let db = StateDb::open_in(&dir.path().join("home")).unwrap();
    Setup { dir, spec, db }
}

fn up(s: &mut Setup, doubles: &Doubles, cancel: &AtomicBool) -> Result<Launched, LaunchError> {
    up_beside(s, doubles, cancel, &[])
}

/// Launches with `bystanders` as the host's other runtimes.
fn up_beside(
    s: &mut Setup,
    doubles: &Doubles,
    cancel: &AtomicBool,
    bystanders: &[&dyn BundleRuntime],
) -> Result<Launched, LaunchError> {
    let request = LaunchRequest {
        spec: &s.spec,
        vmm: "double",
        runtime: "double",
        pool: "127.0.0.16/31".parse().unwrap(),
        bottle_dir: s.dir.path().join("home/bottles/demo"),
        launcher_pid: std::process::id(),
        agent_command: None,
        attached: false,
        ready_timeout: Duration::from_secs(2),
        cancel,
        bystanders,
    };
    launch(&mut s.db, doubles.backends(), &request, &Quiet)
}

fn assert_nothing_left(db: &StateDb) {
    assert_eq!(db.bottles().unwrap(), vec![]);
    assert_eq!(db.leases().unwrap(), vec![]);
}

#[test]
fn a_launch_takes_the_steps_in_order_and_records_a_running_bottle() {
    let mut s = setup();
    let doubles = Doubles::new(Faults::default());
    let cancel = AtomicBool::new(false);
    let launched = up(&mut s, &doubles, &cancel).unwrap();
    assert_eq!(launched.alias, Ipv4Addr::new(127, 0, 0, 16));
    assert_eq!(launched.endpoints.len(), 2);
    assert_eq!(
        doubles.journal.entries(),
        [
            "probe",
            "ensure_pool",
            "start_bundle",
            "create",
            "policy [127.0.0.16/32]",
            "env BOTTLE_ALIAS=127.0.0.16",
            "effective_policy",
            "start"
        ]
    );
    let record = s.db.bottle(&launched.slug).unwrap().unwrap();
    assert_eq!(record.state, BottleState::Running);
    assert_eq!(record.step, Step::Running);
    assert_eq!(record.alias, Some(launched.alias));
    assert_eq!(record.endpoints, launched.endpoints);
    let endpoints_file = s.dir.path().join("home/bottles/demo/endpoints.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(endpoints_file).unwrap()).unwrap();
    assert_eq!(json["alias"], "127.0.0.16");
    assert_eq!(json["endpoints"].as_array().unwrap().len(), 2);

    teardown(&mut s.db, doubles.backends(), &launched.slug, &Quiet).unwrap();
    assert_eq!(
        &doubles.journal.entries()[8..],
        ["stop", "remove", "stop_bundle"]
    );
    assert_nothing_left(&s.db);
}

#[test]
fn a_failure_at_each_step_undoes_what_was_done_in_reverse() {
    let cases: [(&str, Step, &[&str]); 6] = [
        ("probe", Step::ProbingVmm, &[]),
        ("ensure_pool", Step::EnsuringPool, &[]),
        ("start_bundle", Step::StartingBundle, &["stop_bundle"]),
        (
            "create",
            Step::CreatingMachine,
            &["stop", "remove", "stop_bundle"],
        ),
        (
            "effective_policy",
            Step::VerifyingPolicy,
            &["stop", "remove", "stop_bundle"],
        ),
        (
            "start",
            Step::StartingMachine,
            &["stop", "remove", "stop_bundle"],
        ),
    ];
    for (failing, step, undos) in cases {
        let mut s = setup();
        let doubles = Doubles::new(Faults {
            fail: Some(failing),
            ..Faults::default()
        });
        let cancel = AtomicBool::new(false);
        let err = up(&mut s, &doubles, &cancel).unwrap_err();
        assert_eq!(err.step, step, "{failing}");
        assert!(err.undo_failures.is_empty());
        assert_eq!(
            err.to_string(),
            format!("bottle `demo`: {} failed", step.describe())
        );
        assert_eq!(err.failure.to_string(), format!("{failing} broke"));
        let entries = doubles.journal.entries();
        let after = entries.iter().position(|e| e == failing).unwrap() + 1;
        let tail: Vec<&str> = entries[after..]
            .iter()
            .map(String::as_str)
            .filter(|e| !e.contains(' '))
            .collect();
        assert_eq!(tail, undos, "undos after {failing} failed");
        assert_nothing_left(&s.db);
    }
}

#[test]
fn a_vmm_that_cannot_enforce_the_scope_stops_the_launch_before_anything_is_created() {
    let mut s = setup();
    let doubles = Doubles::new(Faults {
        scope_refused: true,
        ..Faults::default()
    });
    let cancel = AtomicBool::new(false);
    let err = up(&mut s, &doubles, &cancel).unwrap_err();
    assert_eq!(err.step, Step::ProbingVmm);
    assert_eq!(
        err.failure.to_string(),
        "vmm-double 9.9.9 cannot hold the agent to its alias: its allow-list cannot reach host \
         loopback; use 1.0.3"
    );
    assert_eq!(doubles.journal.entries(), ["probe"]);
    assert_nothing_left(&s.db);
}

#[test]
fn a_wider_effective_policy_is_refused_and_the_machine_never_starts() {
    for effective in [
        EgressPolicy::Unrestricted,
        EgressPolicy::AllowOnly(vec!["127.0.0.0/8".parse().unwrap()]),
    ] {
        let mut s = setup();
        let faults = Faults {
            effective: Some(effective),
            ..Faults::default()
        };
        let doubles = Doubles::new(faults);
        let cancel = AtomicBool::new(false);
        let err = up(&mut s, &doubles, &cancel).unwrap_err();
        assert_eq!(err.step, Step::VerifyingPolicy);
        assert!(matches!(*err.failure, StepFailure::PolicyMismatch { .. }));
        assert!(!doubles.journal.entries().contains(&"start".to_owned()));
        assert_nothing_left(&s.db);
    }
}

#[test]
fn an_endpoint_published_off_the_alias_is_refused() {
    let mut s = setup();
    let faults = Faults {
        publish_on: Some(Ipv4Addr::LOCALHOST),
        ..Faults::default()
    };
    let doubles = Doubles::new(faults);
    let cancel = AtomicBool::new(false);
    let err = up(&mut s, &doubles, &cancel).unwrap_err();
    assert_eq!(err.step, Step::StartingBundle);
    assert!(
        matches!(*err.failure, StepFailure::WrongAddress { .. }),
        "{:?}",
        err.failure
    );
    assert!(!doubles.journal.entries().contains(&"create".to_owned()));
    assert_nothing_left(&s.db);
}

#[test]
fn an_alias_with_a_foreign_listener_is_never_leased() {
    let mut s = setup();
    let busy = Ipv4Addr::new(127, 0, 0, 16);
    let faults = Faults {
        foreign_listener: Some(busy),
        effective: Some(EgressPolicy::alias_only(Ipv4Addr::new(127, 0, 0, 17))),
        ..Faults::default()
    };
    let doubles = Doubles::new(faults);
    let cancel = AtomicBool::new(false);
    let launched = up(&mut s, &doubles, &cancel).unwrap();
    assert_eq!(launched.alias, Ipv4Addr::new(127, 0, 0, 17));
}

#[test]
fn a_cancelled_launch_rolls_back() {
    let mut s = setup();
    let doubles = Doubles::new(Faults::default());
    let cancel = AtomicBool::new(true);
    let err = up(&mut s, &doubles, &cancel).unwrap_err();
    assert!(matches!(*err.failure, StepFailure::Interrupted));
    assert_eq!(
        err.to_string(),
        "bottle `demo`: stopped before probing the VMM"
    );
    assert_eq!(doubles.journal.entries(), Vec::<String>::new());
    assert_nothing_left(&s.db);
}

#[test]
fn a_slug_in_use_is_refused_without_touching_the_existing_bottle() {
    let mut s = setup();
    let doubles = Doubles::new(Faults::default());
    let cancel = AtomicBool::new(false);
    up(&mut s, &doubles, &cancel).unwrap();
    let before = doubles.journal.entries().len();
    let err = up(&mut s, &doubles, &cancel).unwrap_err();
    assert_eq!(err.step, Step::Validated);
    assert_eq!(
        doubles.journal.entries().len(),
        before,
        "nothing was called or undone"
    );
    assert_eq!(s.db.bottles().unwrap().len(), 1);
}

#[test]
fn a_failed_undo_keeps_the_lease_and_the_record_for_gc() {
    let mut s = setup();
    let doubles = Doubles::new(Faults {
        fail: Some("remove"),
        ..Faults::default()
    });
    let cancel = AtomicBool::new(false);
    let launched = up(&mut s, &doubles, &cancel).unwrap();
    let err = teardown(&mut s.db, doubles.backends(), &launched.slug, &Quiet).unwrap_err();
    let instance = s.db.instance_id().unwrap();
    assert_eq!(
        launched.machine.name,
        format!("bottle-demo-{}", &instance[..8])
    );
    assert_eq!(
        err.to_string(),
        format!(
            "bottle `demo` was not fully removed and its cleanup is incomplete (cannot remove \
             the machine {}: remove broke); `bottle gc` retries it",
            launched.machine.name
        )
    );
    let record = s.db.bottle(&launched.slug).unwrap().unwrap();
    assert_eq!(record.state, BottleState::Stopping);
    assert_eq!(
        s.db.lease_of(&launched.slug).unwrap().map(|l| l.alias),
        Some(launched.alias)
    );
}

/// Another runtime of the host, which only answers what it runs.
struct Bystander(Result<Vec<OwnedResource>, ErrorKind>);

impl BundleRuntime for Bystander {
    fn name(&self) -> String {
        "runtime-bystander".into()
    }
    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![])
    }
    fn start_bundle(&self, _: &BundleLaunchSpec) -> Result<Vec<ServiceEndpoint>, BackendError> {
        Err(BackendError::not_supported(
            "runtime-bystander",
            "start_bundle",
        ))
    }
    fn host_port(
        &self,
        _: &Slug,
        _: &ServiceName,
        _: u16,
    ) -> Result<ServiceEndpoint, BackendError> {
        Err(BackendError::not_supported(
            "runtime-bystander",
            "host_port",
        ))
    }
    fn stop_bundle(&self, _: &Slug) -> Result<(), BackendError> {
        Err(BackendError::not_supported(
            "runtime-bystander",
            "stop_bundle",
        ))
    }
    fn list_owned(&self) -> Result<Vec<OwnedResource>, BackendError> {
        self.0
            .clone()
            .map_err(|kind| BackendError::new(kind, "the engine said no"))
    }
}

#[test]
fn what_another_runtime_publishes_on_an_alias_keeps_it_from_being_leased() {
    let mut s = setup();
    let doubles = Doubles::new(Faults {
        effective: Some(EgressPolicy::alias_only(Ipv4Addr::new(127, 0, 0, 17))),
        ..Faults::default()
    });
    let cancel = AtomicBool::new(false);
    // The launching bottle's own name and home: a leftover of another runtime is still
    // running, and the agent would reach it on that alias.
    let container = Bystander(Ok(vec![OwnedResource {
        slug: "demo".parse().unwrap(),
        kind: "container".into(),
        name: "bottle-demo.web".into(),
        published_on: vec![Ipv4Addr::new(127, 0, 0, 16)],
        running: true,
        instance: Some(s.db.instance_id().unwrap()),
    }]));
    let absent = Bystander(Err(ErrorKind::Unavailable));
    let launched = up_beside(&mut s, &doubles, &cancel, &[&absent, &container]).unwrap();
    assert_eq!(
        launched.alias,
        Ipv4Addr::new(127, 0, 0, 17),
        "127.0.0.16 is published on by the other runtime's container"
    );
}

#[test]
fn a_runtime_that_cannot_say_what_it_runs_stops_the_lease() {
    let mut s = setup();
    let doubles = Doubles::new(Faults::default());
    let cancel = AtomicBool::new(false);
    let broken = Bystander(Err(ErrorKind::CommandFailed));
    let err = up_beside(&mut s, &doubles, &cancel, &[&broken]).unwrap_err();
    assert_eq!(err.step, Step::LeasingAlias, "{err}");
    assert!(
        err.failure.to_string().contains("the engine said no"),
        "{err:?}"
    );
    assert!(!doubles
        .journal
        .entries()
        .contains(&"start_bundle".to_owned()));
    assert_nothing_left(&s.db);
}

//! The launch sequence and its undo: `bottle up`, `bottle down`, rollback and crash recovery.
//!
//! Each step is recorded in the state database before it acts, so that whoever finds the
//! bottle next (this process rolling back, `bottle down`, or `bottle gc` after a crash) knows
//! which undos may be needed. Undos are idempotent: removing a machine or a bundle that never
//! came to exist is not an error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::addr::AliasPool;
use crate::backend::{BackendError, ErrorKind};
use crate::name::Slug;
use crate::net::NetScoper;
use crate::runtime::{
    BundleLaunchSpec, BundleRuntime, OwnedResource, ServiceEndpoint, ServiceLaunch,
};
use crate::spec::{BottleSpec, Mount};
use crate::state::{BottleRecord, BottleState, NewBottle, StateDb, StateError, Step};
use crate::vmm::{AgentSpec, EgressPolicy, Machine, ScopeSupport, VmmBackend};

/// Where the agent finds its endpoints file, and the directory it is shared in.
pub const AGENT_BOTTLE_DIR: &str = "/run/bottle";
/// The endpoints file's name, on the host (in the bottle's directory) and in the agent.
pub const ENDPOINTS_FILE_NAME: &str = "endpoints.json";

/// The three plugins one bottle is launched with.
#[derive(Clone, Copy)]
pub struct Backends<'a> {
    pub net: &'a dyn NetScoper,
    pub vmm: &'a dyn VmmBackend,
    pub runtime: &'a dyn BundleRuntime,
}

/// Everything `launch` needs besides the plugins and the database.
pub struct LaunchRequest<'a> {
    pub spec: &'a BottleSpec,
    /// The plugin names recorded on the bottle, so that `down` loads the same ones.
    pub vmm: &'a str,
    pub runtime: &'a str,
    pub pool: AliasPool,
    /// A host directory of the bottle's own, shared read-only with the agent.
    pub bottle_dir: PathBuf,
    pub launcher_pid: u32,
    /// Replaces the spec's agent command (`bottle run` passes an empty one and runs its
    /// command with `exec` once the machine is up).
    pub agent_command: Option<Vec<String>>,
    /// Whether the launcher stays attached and removes the bottle itself (`bottle run`).
    pub attached: bool,
    /// How long each published port may take to accept a connection.
    pub ready_timeout: Duration,
    /// Set by a Ctrl-C handler: the launch stops at the next step and rolls back.
    pub cancel: &'a AtomicBool,
    /// The host's other runtimes: what they run for other bottles keeps an alias from being
    /// leased too. One whose engine is not installed or not running is skipped.
    pub bystanders: &'a [&'a dyn BundleRuntime],
}

/// Told about each step as it starts, for progress lines.
pub trait Observer {
    fn step(&self, slug: &Slug, step: Step);
    fn undo(&self, slug: &Slug, what: &str);
}

/// An observer that says nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn step(&self, _: &Slug, _: Step) {}
    fn undo(&self, _: &Slug, _: &str) {}
}

/// A running bottle, as `bottle up` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Launched {
    pub slug: Slug,
    pub alias: Ipv4Addr,
    pub endpoints: Vec<ServiceEndpoint>,
    pub machine: Machine,
    pub vmm_version: Option<String>,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepFailure {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{vmm} {version} cannot hold the agent to its alias: {reason}; {remedy}")]
    ScopeRefused {
        vmm: String,
        version: String,
        reason: String,
        remedy: String,
    },
    #[error("the VMM would enforce {effective}, not {requested}: the agent was not started")]
    PolicyMismatch {
        requested: EgressPolicy,
        effective: EgressPolicy,
    },
    #[error(
        "service {service} port {port} was published on {published}, not on the alias {alias}"
    )]
    WrongAddress {
        service: String,
        port: u16,
        published: Ipv4Addr,
        alias: Ipv4Addr,
    },
    #[error("the runtime reported no endpoint for service {service} port {port}")]
    MissingEndpoint { service: String, port: u16 },
    #[error("service {service} did not accept connections on {address} within {waited:?}")]
    NotAnswering {
        service: String,
        address: String,
        waited: Duration,
    },
    #[error("cannot write {}", path.display())]
    WriteEndpoints {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// A launch that failed, after its rollback.
#[derive(Debug, thiserror::Error)]
#[error(
    "bottle `{slug}`: {}{}",
    what_failed(step, failure),
    undo_summary(undo_failures)
)]
pub struct LaunchError {
    pub slug: Slug,
    pub step: Step,
    #[source]
    pub failure: Box<StepFailure>,
    /// Undos that failed during the rollback; empty when nothing was left behind.
    pub undo_failures: Vec<String>,
}

/// A teardown that could not finish; the bottle stays recorded for `bottle gc`.
#[derive(Debug, thiserror::Error)]
#[error("bottle `{slug}` was not fully removed{}", undo_summary(failures))]
pub struct TeardownError {
    pub slug: Slug,
    pub failures: Vec<String>,
}

/// "starting the bundle failed", or for Ctrl-C, "stopped before starting the bundle".
fn what_failed(step: &Step, failure: &StepFailure) -> String {
    match failure {
        StepFailure::Interrupted => format!("stopped before {}", step.describe()),
        _ => format!("{} failed", step.describe()),
    }
}

fn undo_summary(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(
            " and its cleanup is incomplete ({}); `bottle gc` retries it",
            failures.join("; ")
        )
    }
}

/// Brings a bottle up: steps 1 to 9, each recorded before it acts; on any failure (or
/// `cancel`), the completed steps are undone in reverse before the error is returned.
pub fn launch(
    db: &mut StateDb,
    backends: Backends<'_>,
    request: &LaunchRequest<'_>,
    observer: &dyn Observer,
) -> Result<Launched, LaunchError> {
    let slug = &request.spec.slug;
    let new = NewBottle {
        slug,
        spec_path: &request.spec.path,
        vmm: request.vmm,
        runtime: request.runtime,
        launcher_pid: request.launcher_pid,
        attached: request.attached,
    };
    db.insert_bottle(&new).map_err(|e| LaunchError {
        slug: slug.clone(),
        step: Step::Validated,
        failure: Box::new(e.into()),
        undo_failures: Vec::new(),
    })?;

    let mut launch = Launch {
        db,
        backends,
        request,
        observer,
        step: Step::Validated,
    };
    match launch.run() {
        Ok(launched) => Ok(launched),
        Err(failure) => {
            let step = launch.step;
            tracing::debug!(%slug, step = step.as_str(), error = %failure, "rolling back");
            let _ = launch.db.set_last_error(slug, &failure.to_string());
            let undo_failures = match teardown(launch.db, backends, slug, observer) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&request.bottle_dir);
                    Vec::new()
                }
                Err(e) => e.failures,
            };
            Err(LaunchError {
                slug: slug.clone(),
                step,
                failure: Box::new(failure),
                undo_failures,
            })
        }
    }
}

struct Launch<'a, 'r> {
    db: &'a mut StateDb,
    backends: Backends<'a>,
    request: &'a LaunchRequest<'r>,
    observer: &'a dyn Observer,
    step: Step,
}

impl Launch<'_, '_> {
    /// Records `step` as the one being taken, after checking for Ctrl-C.
    fn enter(&mut self, step: Step) -> Result<(), StepFailure> {
        // The step is blamed for an interruption before it acted: "starting the machine
        // failed: interrupted" says where the launch stopped.
        self.step = step;
        if self.request.cancel.load(Ordering::SeqCst) {
            return Err(StepFailure::Interrupted);
        }
        self.db.set_step(&self.request.spec.slug, step)?;
        self.observer.step(&self.request.spec.slug, step);
        Ok(())
    }

    fn run(&mut self) -> Result<Launched, StepFailure> {
        let spec = self.request.spec;
        let slug = &spec.slug;
        let Backends { net, vmm, runtime } = self.backends;

        self.enter(Step::ProbingVmm)?;
        let probe = vmm.probe()?;
        let version = probe
            .version
            .clone()
            .unwrap_or_else(|| "(unknown version)".into());
        if let ScopeSupport::Unenforceable { reason, remedy } = probe.scope {
            return Err(StepFailure::ScopeRefused {
                vmm: vmm.name(),
                version,
                reason,
                remedy,
            });
        }

        self.enter(Step::EnsuringPool)?;
        net.ensure_pool(&self.request.pool)?;

        self.enter(Step::LeasingAlias)?;
        let instance = self.db.instance_id()?;
        let runtimes = Runtimes {
            own: runtime,
            bystanders: self.request.bystanders,
        };
        let busy = busy_aliases(net, runtimes, &self.request.pool, slug, &instance)?;
        let alias = self.db.lease_alias(slug, &self.request.pool, &busy)?.alias;

        self.enter(Step::StartingBundle)?;
        let endpoints = runtime.start_bundle(&bundle_spec(spec, alias))?;
        check_endpoints(spec, alias, &endpoints)?;
        wait_until_answering(&endpoints, self.request.ready_timeout)?;
        self.db.set_endpoints(slug, &endpoints)?;

        self.enter(Step::CreatingMachine)?;
        let requested = EgressPolicy::alias_only(alias);
        let agent = self.agent_spec(alias, &endpoints)?;
        self.db.set_machine(
            slug,
            &Machine {
                name: agent.machine_name.clone(),
            },
        )?;
        let machine = vmm.create(&agent, &requested)?;
        self.db.set_machine(slug, &machine)?;

        self.enter(Step::VerifyingPolicy)?;
        let effective = vmm.effective_policy(&machine)?;
        if !effective.is_within(&requested) {
            return Err(StepFailure::PolicyMismatch {
                requested,
                effective,
            });
        }

        self.enter(Step::StartingMachine)?;
        vmm.start(&machine)?;

        self.enter(Step::Running)?;
        self.db.set_state(slug, BottleState::Running)?;
        Ok(Launched {
            slug: slug.clone(),
            alias,
            endpoints,
            machine,
            vmm_version: probe.version,
        })
    }

    /// The agent's machine description, with the bottle's variables in its environment and
    /// the endpoints file shared read-only.
    fn agent_spec(
        &mut self,
        alias: Ipv4Addr,
        endpoints: &[ServiceEndpoint],
    ) -> Result<AgentSpec, StepFailure> {
        let spec = self.request.spec;
        let dir = &self.request.bottle_dir;
        let instance = self.db.instance_id()?;
        write_endpoints_file(dir, &spec.slug, alias, endpoints)?;
        let mut env = spec.agent.env.clone();
        env.extend(agent_env(&spec.slug, alias, endpoints));
        let mut mounts = spec.agent.mounts.clone();
        mounts.push(Mount {
            host: dir.clone(),
            guest: AGENT_BOTTLE_DIR.into(),
            read_only: true,
        });
        Ok(AgentSpec {
            slug: spec.slug.clone(),
            machine_name: spec.slug.machine_name(&instance),
            from: spec.agent.from.clone(),
            image: spec.agent.image.clone(),
            command: self
                .request
                .agent_command
                .clone()
                .unwrap_or_else(|| spec.agent.command.clone()),
            env,
            mounts,
            cpus: spec.agent.cpus,
            memory_mib: spec.agent.memory_mib,
            alias,
            endpoints: endpoints.to_vec(),
        })
    }
}

/// Something other than a lease that keeps an alias of the pool from being leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasUser {
    /// A socket on the host listens on the alias.
    Listener,
    /// A resource of another bottle, of this home or of another, publishes on the alias.
    Resource(OwnedResource),
}

impl fmt::Display for AliasUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AliasUser::Listener => f.write_str("a listener outside bottle"),
            AliasUser::Resource(r) => write!(f, "{} {} of bottle {}", r.kind, r.name, r.slug),
        }
    }
}

/// Who uses each alias of `pool` besides the leases, from the aliases something `listening`
/// on and what the runtimes report as `owned`: leasing skips these aliases, and `bottle net
/// status` shows them. The resources of `launching` (a bottle and its home's instance) are
/// its own and do not count.
pub fn alias_users(
    pool: &AliasPool,
    listening: &[Ipv4Addr],
    owned: &[OwnedResource],
    launching: Option<(&Slug, &str)>,
) -> BTreeMap<Ipv4Addr, Vec<AliasUser>> {
    let mut users: BTreeMap<Ipv4Addr, Vec<AliasUser>> = BTreeMap::new();
    for alias in listening.iter().filter(|a| pool.contains(**a)) {
        users.entry(*alias).or_default().push(AliasUser::Listener);
    }
    for resource in owned {
        let own = launching.is_some_and(|(slug, instance)| {
            &resource.slug == slug && resource.instance.as_deref() == Some(instance)
        });
        if own {
            continue;
        }
        for alias in resource.published_on.iter().filter(|a| pool.contains(**a)) {
            let user = AliasUser::Resource(resource.clone());
            users.entry(*alias).or_default().push(user);
        }
    }
    users
}

/// The runtime a bottle is launched with, and the host's others.
#[derive(Clone, Copy)]
struct Runtimes<'a> {
    own: &'a dyn BundleRuntime,
    bystanders: &'a [&'a dyn BundleRuntime],
}

impl Runtimes<'_> {
    /// Everything the bystanders run for bottles of any home. A bystander whose engine is
    /// missing or not answering runs nothing and is skipped; any other failure stops the
    /// lease, since what it runs cannot be known.
    fn bystanders_owned(self) -> Result<Vec<OwnedResource>, BackendError> {
        let mut owned = Vec::new();
        for bystander in self.bystanders {
            match bystander.list_owned() {
                Ok(found) => owned.extend(found),
                Err(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::NotSupported) => {
                    tracing::debug!(
                        runtime = %bystander.name(),
                        error = %e.one_line(),
                        "this runtime runs nothing here; it is not consulted for the lease"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(owned)
    }
}

/// The aliases of `pool` that leasing for `slug` skips, each with who uses it.
fn busy_aliases(
    net: &dyn NetScoper,
    runtimes: Runtimes<'_>,
    pool: &AliasPool,
    slug: &Slug,
    instance: &str,
) -> Result<BTreeMap<Ipv4Addr, String>, StepFailure> {
    let listening = net.listeners_on(pool)?;
    // The bottle's own runtime replaces what it still runs for this bottle, so that is no
    // reason to skip an alias; what another runtime runs for it stays, and is.
    let own = runtimes.own.list_owned()?;
    let mut users = alias_users(pool, &listening, &own, Some((slug, instance)));
    let others = runtimes.bystanders_owned()?;
    for (alias, more) in alias_users(pool, &[], &others, None) {
        users.entry(alias).or_default().extend(more);
    }
    Ok(users
        .into_iter()
        .map(|(alias, users)| {
            let names: Vec<String> = users.iter().map(AliasUser::to_string).collect();
            (alias, names.join(" and "))
        })
        .collect())
}

fn bundle_spec(spec: &BottleSpec, alias: Ipv4Addr) -> BundleLaunchSpec {
    BundleLaunchSpec {
        slug: spec.slug.clone(),
        publish_host_ip: alias,
        spec_dir: spec.dir().to_path_buf(),
        services: spec
            .services
            .iter()
            .map(|(name, s)| ServiceLaunch {
                name: name.clone(),
                image: s.image.clone(),
                command: s.command.clone(),
                ports: s.ports.clone(),
                env: s.env.clone(),
            })
            .collect(),
    }
}

/// Every port of every service has an endpoint, and every endpoint is on the alias.
fn check_endpoints(
    spec: &BottleSpec,
    alias: Ipv4Addr,
    endpoints: &[ServiceEndpoint],
) -> Result<(), StepFailure> {
    for e in endpoints {
        if e.host_ip != alias {
            return Err(StepFailure::WrongAddress {
                service: e.service.to_string(),
                port: e.container_port,
                published: e.host_ip,
                alias,
            });
        }
    }
    for (name, service) in &spec.services {
        for port in &service.ports {
            if !endpoints
                .iter()
                .any(|e| &e.service == name && e.container_port == *port)
            {
                return Err(StepFailure::MissingEndpoint {
                    service: name.to_string(),
                    port: *port,
                });
            }
        }
    }
    Ok(())
}

/// Waits until every endpoint accepts a TCP connection, or `timeout` runs out.
fn wait_until_answering(
    endpoints: &[ServiceEndpoint],
    timeout: Duration,
) -> Result<(), StepFailure> {
    let started = Instant::now();
    for e in endpoints {
        let address = SocketAddr::from((e.host_ip, e.host_port));
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match TcpStream::connect_timeout(&address, left.max(Duration::from_millis(10))) {
                Ok(_) => break,
                Err(_) if left > Duration::ZERO => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => {
                    return Err(StepFailure::NotAnswering {
                        service: e.service.to_string(),
                        address: e.address(),
                        waited: started.elapsed(),
                    })
                }
            }
        }
    }
    Ok(())
}

/// The variables the agent learns its bundle from: `BOTTLE_ALIAS`, `BOTTLE_SLUG`,
/// `BOTTLE_ENDPOINTS` (the JSON file), and per service `BOTTLE_SERVICE_<NAME>` (its first
/// port) and `BOTTLE_SERVICE_<NAME>_<PORT>` (each port), all `ALIAS:HOSTPORT`.
pub fn agent_env(
    slug: &Slug,
    alias: Ipv4Addr,
    endpoints: &[ServiceEndpoint],
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("BOTTLE_ALIAS".to_owned(), alias.to_string());
    env.insert("BOTTLE_SLUG".to_owned(), slug.to_string());
    env.insert(
        "BOTTLE_ENDPOINTS".to_owned(),
        format!("{AGENT_BOTTLE_DIR}/{ENDPOINTS_FILE_NAME}"),
    );
    for e in endpoints {
        let name = e.service.env_suffix();
        env.entry(format!("BOTTLE_SERVICE_{name}"))
            .or_insert_with(|| e.address());
        env.insert(
            format!("BOTTLE_SERVICE_{name}_{}", e.container_port),
            e.address(),
        );
    }
    env
}

fn write_endpoints_file(
    dir: &Path,
    slug: &Slug,
    alias: Ipv4Addr,
    endpoints: &[ServiceEndpoint],
) -> Result<(), StepFailure> {
    let path = dir.join(ENDPOINTS_FILE_NAME);
    let json = serde_json::json!({ "slug": slug, "alias": alias, "endpoints": endpoints });
    let text = serde_json::to_string_pretty(&json).expect("endpoints serialise");
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, text + "\n"))
        .map_err(|source| StepFailure::WriteEndpoints { path, source })
}

/// Takes a bottle apart in the order that keeps invariant 4: the machine (stopped, then
/// removed), then the bundle, and only when both are gone, the lease and the record.
///
/// Used by `bottle down`, by a failed launch's rollback and by `bottle gc`. Which undos run
/// depends on the step the bottle reached; each is idempotent. When one fails, the bottle
/// stays recorded (state `stopping`, with the error) so that `bottle gc` can retry.
pub fn teardown(
    db: &mut StateDb,
    backends: Backends<'_>,
    slug: &Slug,
    observer: &dyn Observer,
) -> Result<(), TeardownError> {
    let fail = |failures: Vec<String>| TeardownError {
        slug: slug.clone(),
        failures,
    };
    let record = match db.bottle(slug) {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(()),
        Err(e) => return Err(fail(vec![e.to_string()])),
    };
    let _ = db.set_state(slug, BottleState::Stopping);
    let mut failures = Vec::new();

    // The machine's name is recorded before the VMM is asked to create it: no name, no
    // machine. A name that another home uses cannot be recorded here (see
    // `Slug::machine_name`), so this never removes someone else's machine.
    if let Some(machine) = &record.machine {
        observer.undo(slug, &format!("removing machine {}", machine.name));
        for (what, result) in [
            ("stop the machine", backends.vmm.stop(machine)),
            ("remove the machine", backends.vmm.remove(machine)),
        ] {
            match result {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => failures.push(format!("cannot {what} {}: {}", machine.name, chain(&e))),
            }
        }
    }
    if record.step >= Step::StartingBundle {
        observer.undo(slug, "removing the bundle");
        if let Err(e) = backends.runtime.stop_bundle(slug) {
            failures.push(format!("cannot remove the bundle: {}", chain(&e)));
        }
    }
    if !failures.is_empty() {
        let _ = db.set_last_error(slug, &failures.join("; "));
        return Err(fail(failures));
    }
    observer.undo(slug, "releasing the lease");
    db.remove_bottle(slug)
        .map_err(|e| fail(vec![e.to_string()]))
}

fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// Whether a bottle was left half-done: the process that was working on it is gone while it
/// was not yet running, or while it was attached to it (`bottle run`) and so was to remove
/// it (`is_alive` answers for a process id).
pub fn is_half_done(record: &BottleRecord, is_alive: impl Fn(u32) -> bool) -> bool {
    let owned_by_its_launcher = record.state != BottleState::Running || record.attached;
    owned_by_its_launcher && !record.launcher_pid.is_some_and(is_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(slug: &str, instance: &str, on: Ipv4Addr) -> OwnedResource {
        OwnedResource {
            slug: slug.parse().unwrap(),
            kind: "container".into(),
            name: format!("bottle-{slug}-{instance}.web"),
            published_on: vec![on],
            running: true,
            instance: Some(instance.into()),
        }
    }

    #[test]
    fn alias_users_are_listeners_and_other_bottles_resources_in_the_pool() {
        let pool: AliasPool = "127.0.0.16/30".parse().unwrap();
        let a = |last| Ipv4Addr::new(127, 0, 0, last);
        let owned = [
            resource("me", "home1", a(17)),
            resource("me", "home2", a(18)),
            resource("other", "home1", a(16)),
            resource("far", "home1", a(99)),
        ];
        let me: Slug = "me".parse().unwrap();
        let users = alias_users(&pool, &[a(16), a(1)], &owned, Some((&me, "home1")));
        assert_eq!(
            users.keys().copied().collect::<Vec<_>>(),
            vec![a(16), a(18)],
            "the launching bottle's own resource and addresses outside the pool do not count"
        );
        assert_eq!(
            users[&a(16)]
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "a listener outside bottle",
                "container bottle-other-home1.web of bottle other"
            ]
        );
        let all = alias_users(&pool, &[], &owned, None);
        assert_eq!(
            all.len(),
            3,
            "without a launching bottle every resource counts"
        );
    }
}

//! The `runtime-process` plugin: a bottle's services as host processes bound to its alias,
//! for local tool servers that need no container engine.
//!
//! It is written against the public plugin API only (`bottle-plugin-api` and crates.io
//! crates), as a third party would write a plugin.
//!
//! Each service is started from its spec `command`, in the spec's directory, with one port:
//! the plugin picks a free port on the alias and passes it as `PORT`, and the alias as
//! `BOTTLE_ALIAS` (the service must bind exactly that address). The service runs in a
//! process group of its own; its output goes to a log file under the state directory. A
//! service is up when `ALIAS:PORT` accepts a TCP connection, and refused (and stopped) when
//! it listens anywhere else. What runs is recorded under the state directory, so that
//! another process can stop it or list it after a crash.
//!
//! Settings: `state_dir` and `instance` (added by the host), `start_timeout_ms` (default
//! 10000), `stop_timeout_ms` (default 5000).
//!
//! Limitations: Linux only (the listener check reads `/proc`); the service inherits the
//! host's environment, less bottle's own `BOTTLE_*` variables; a service that daemonises
//! out of its process group escapes `stop_bundle`.

mod group;
#[cfg(target_os = "linux")]
mod procfs;
mod record;
mod scope;
mod settings;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bottle_plugin_api::bottle_core::{
    BackendError, BundleLaunchSpec, BundleRuntime, ErrorKind, OwnedResource, ServiceEndpoint,
    ServiceLaunch, ServiceName, Slug,
};

use record::{BundleRecord, ServiceRecord, Store};
use settings::Settings;

/// This plugin's name, as the host and the logs know it.
const NAME: &str = "runtime-process";

/// How often a starting service is polled.
const POLL: Duration = Duration::from_millis(50);

/// How many lines of a service's log an error quotes.
const LOG_TAIL_LINES: usize = 10;

/// Services as host processes, each in its own process group, bound to the bottle's alias.
pub struct ProcessRuntime {
    settings: Settings,
    store: Store,
}

impl ProcessRuntime {
    /// Builds it from its settings (see the crate documentation).
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BackendError> {
        let settings = Settings::from_json(settings)?;
        let store = Store::new(&settings.state_dir);
        Ok(ProcessRuntime { settings, store })
    }

    /// Starts one service and waits until it answers on the alias only. The service enters
    /// `record` (and the record file) as soon as it runs, so that a failure, here or later,
    /// stops it too.
    fn start_service(
        &self,
        spec: &BundleLaunchSpec,
        service: &ServiceLaunch,
        record: &mut BundleRecord,
    ) -> Result<ServiceEndpoint, BackendError> {
        let alias = spec.publish_host_ip;
        let host_port = free_port(alias)?;
        let log_dir = self.store.log_dir(&spec.slug);
        let log = log_dir.join(format!("{}.log", service.name));
        let output = open_log(&log_dir, &log)?;

        let mut command = service_command(spec, service, host_port, output)?;
        tracing::debug!(service = %service.name, ?command, "starting service");
        let mut child = command.spawn().map_err(|e| {
            BackendError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot start service `{}`: `{}` did not run",
                    service.name, service.command[0]
                ),
            )
            .with_cause(&e)
            .with_cause_text(format!("in {}", spec.spec_dir.display()))
        })?;
        let pid = child.id();
        record.services.push(ServiceRecord {
            name: service.name.clone(),
            pid,
            pgid: pid,
            start_time: start_time(pid),
            port: service.ports[0],
            host_port,
            log: log.clone(),
        });
        self.store.write(record)?;

        let started = Started {
            name: &service.name,
            alias,
            port: host_port,
            log: &log,
        };
        started.wait_until_answering(&mut child, self.settings.start_timeout)?;
        scope::check(&service.name, pid, alias, host_port)?;
        tracing::info!(service = %service.name, "service answers on {alias}:{host_port}");
        Ok(ServiceEndpoint {
            service: service.name.clone(),
            container_port: service.ports[0],
            host_ip: alias,
            host_port,
        })
    }

    /// Undoes a failed start: stops what `record` says started and removes the record. A
    /// failure to clean up is added to `err`; the record then stays, for `stop_bundle`.
    fn roll_back(&self, record: &BundleRecord, err: BackendError) -> BackendError {
        let cleaned = self
            .stop_services(record)
            .and_then(|()| self.store.remove(&record.slug));
        match cleaned {
            Ok(()) => err,
            Err(cleanup) => err.with_cause_text(format!("and cleaning up failed: {cleanup}")),
        }
    }

    /// Stops every service of `record`, last started first; the first failure is returned
    /// after all were tried.
    fn stop_services(&self, record: &BundleRecord) -> Result<(), BackendError> {
        let mut first_error = None;
        for service in record.services.iter().rev() {
            if let Err(e) = group::stop(service, self.settings.stop_timeout) {
                tracing::warn!(service = %service.name, "cannot stop service: {e}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Refuses a bundle this runtime cannot run, before anything starts.
fn validate(spec: &BundleLaunchSpec) -> Result<(), BackendError> {
    let invalid = |message: String| Err(BackendError::new(ErrorKind::InvalidInput, message));
    if !spec.publish_host_ip.is_loopback() || spec.publish_host_ip == Ipv4Addr::LOCALHOST {
        return invalid(format!(
            "{NAME} binds services to a loopback alias only, not to {}",
            spec.publish_host_ip
        ));
    }
    for service in &spec.services {
        let name = &service.name;
        if let Some(image) = &service.image {
            return invalid(format!(
                "service `{name}` names an image ({image}), which {NAME} cannot run: give it a \
                 command, or use a container runtime such as runtime = \"docker\""
            ));
        }
        if service.ports.len() != 1 {
            return invalid(format!(
                "service `{name}` lists {} ports, but {NAME} gives each service exactly one, \
                 passed as $PORT",
                service.ports.len()
            ));
        }
        if service
            .command
            .first()
            .is_none_or(|program| program.is_empty())
        {
            return invalid(format!("service `{name}` has no command to run"));
        }
    }
    Ok(())
}

/// A port nothing listens on at `alias`: bind port 0 there, read it back, close.
fn free_port(alias: Ipv4Addr) -> Result<u16, BackendError> {
    let listener = TcpListener::bind((alias, 0)).and_then(|l| l.local_addr());
    listener.map(|addr| addr.port()).map_err(|e| {
        BackendError::new(
            ErrorKind::Unavailable,
            format!("cannot find a free port on {alias}"),
        )
        .with_cause(&e)
    })
}

/// Creates the service's log file, empty, for its stdout and stderr.
fn open_log(dir: &Path, log: &Path) -> Result<File, BackendError> {
    fs::create_dir_all(dir)
        .and_then(|()| File::create(log))
        .map_err(|e| {
            BackendError::new(
                ErrorKind::Other,
                format!("cannot create the log file {}", log.display()),
            )
            .with_cause(&e)
        })
}

/// The command that runs `service`: in its own process group, in the spec's directory, with
/// `PORT` and `BOTTLE_ALIAS` set and its output going to `output`.
fn service_command(
    spec: &BundleLaunchSpec,
    service: &ServiceLaunch,
    port: u16,
    output: File,
) -> Result<Command, BackendError> {
    let stderr = output.try_clone().map_err(|e| {
        BackendError::new(ErrorKind::Other, "cannot share the log file with stderr").with_cause(&e)
    })?;
    let mut command = Command::new(&service.command[0]);
    command
        .args(&service.command[1..])
        .current_dir(&spec.spec_dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BOTTLE_") {
            command.env_remove(key);
        }
    }
    command
        .envs(&service.env)
        .env("PORT", port.to_string())
        .env("BOTTLE_ALIAS", spec.publish_host_ip.to_string())
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(stderr)
        .process_group(0);
    Ok(command)
}

/// The process's start time, recorded so that a reused pid is never taken for the service.
fn start_time(pid: u32) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        procfs::stat(pid).map(|s| s.start_time)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// A service that was just spawned.
struct Started<'a> {
    name: &'a ServiceName,
    alias: Ipv4Addr,
    port: u16,
    log: &'a Path,
}

impl Started<'_> {
    /// Waits until `alias:port` accepts a connection; fails when the service exits first or
    /// `timeout` passes.
    fn wait_until_answering(
        &self,
        child: &mut Child,
        timeout: Duration,
    ) -> Result<(), BackendError> {
        let address = SocketAddr::from((self.alias, self.port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(self.with_log(BackendError::new(
                    ErrorKind::CommandFailed,
                    format!(
                        "service `{}` exited ({status}) before accepting connections on {address}",
                        self.name
                    ),
                )));
            }
            if TcpStream::connect_timeout(&address, POLL).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.with_log(BackendError::new(
                    ErrorKind::Timeout,
                    format!(
                        "service `{}` did not accept connections on {address} within {} ms",
                        self.name,
                        timeout.as_millis()
                    ),
                )));
            }
            sleep(POLL);
        }
    }

    /// Adds where the service's output is, and its last lines, to `err`.
    fn with_log(&self, err: BackendError) -> BackendError {
        match log_tail(self.log, LOG_TAIL_LINES) {
            Some(tail) if !tail.is_empty() => err.with_cause_text(format!(
                "its output, in {}, ends with:\n{tail}",
                self.log.display()
            )),
            _ => err.with_cause_text(format!("its output, in {}, is empty", self.log.display())),
        }
    }
}

/// The last `lines` lines of the file at `path`, from its last 8 KiB at most.
fn log_tail(path: &Path, lines: usize) -> Option<String> {
    const WINDOW: u64 = 8 * 1024;
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Some(all[all.len().saturating_sub(lines)..].join("\n"))
}

impl BundleRuntime for ProcessRuntime {
    fn name(&self) -> String {
        NAME.to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(vec![
            "services run as host processes, each in its own process group, bound to the \
             bottle's alias"
                .to_owned(),
            format!(
                "records and service logs: {}",
                self.settings.state_dir.display()
            ),
            if cfg!(target_os = "linux") {
                "listener check: /proc/net/tcp and /proc/net/tcp6".to_owned()
            } else {
                "listener check: unavailable on this OS, so every start is refused".to_owned()
            },
        ])
    }

    fn start_bundle(&self, spec: &BundleLaunchSpec) -> Result<Vec<ServiceEndpoint>, BackendError> {
        validate(spec)?;
        if let Some(existing) = self.store.read(&spec.slug)? {
            if existing.services.iter().any(group::still_running) {
                return Err(BackendError::new(
                    ErrorKind::Conflict,
                    format!("the bundle of bottle `{}` is already running", spec.slug),
                ));
            }
            self.store.remove(&spec.slug)?;
        }

        let mut record = BundleRecord {
            slug: spec.slug.clone(),
            instance: self.settings.instance.clone(),
            alias: spec.publish_host_ip,
            services: Vec::new(),
        };
        let mut endpoints = Vec::with_capacity(spec.services.len());
        for service in &spec.services {
            match self.start_service(spec, service, &mut record) {
                Ok(endpoint) => endpoints.push(endpoint),
                Err(err) => return Err(self.roll_back(&record, err)),
            }
        }
        Ok(endpoints)
    }

    fn host_port(
        &self,
        slug: &Slug,
        service: &ServiceName,
        container_port: u16,
    ) -> Result<ServiceEndpoint, BackendError> {
        let not_found = || {
            BackendError::new(
                ErrorKind::NotFound,
                format!("bottle `{slug}` runs no service `{service}` with port {container_port}"),
            )
        };
        let record = self.store.read(slug)?.ok_or_else(not_found)?;
        let found = record
            .services
            .iter()
            .find(|s| &s.name == service && s.port == container_port)
            .ok_or_else(not_found)?;
        Ok(ServiceEndpoint {
            service: found.name.clone(),
            container_port: found.port,
            host_ip: record.alias,
            host_port: found.host_port,
        })
    }

    fn stop_bundle(&self, slug: &Slug) -> Result<(), BackendError> {
        let Some(record) = self.store.read(slug)? else {
            return Ok(());
        };
        self.stop_services(&record)?;
        self.store.remove(slug)?;
        let logs = self.store.log_dir(slug);
        if let Err(e) = fs::remove_dir_all(&logs) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot remove the service logs in {}: {e}", logs.display());
            }
        }
        Ok(())
    }

    fn list_owned(&self) -> Result<Vec<OwnedResource>, BackendError> {
        let mut owned = Vec::new();
        for record in self.store.read_all()? {
            for service in &record.services {
                owned.push(OwnedResource {
                    slug: record.slug.clone(),
                    kind: "process".to_owned(),
                    name: service.pid.to_string(),
                    published_on: vec![record.alias],
                    running: group::still_running(service),
                    instance: record.instance.clone(),
                });
            }
        }
        Ok(owned)
    }
}

bottle_plugin_api::export_plugin!(
    runtime: name = "runtime-process", os = ["linux"], new = ProcessRuntime::from_settings
);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(services: Vec<ServiceLaunch>) -> BundleLaunchSpec {
        BundleLaunchSpec {
            slug: "t".parse().unwrap(),
            publish_host_ip: Ipv4Addr::new(127, 0, 0, 200),
            spec_dir: "/".into(),
            services,
        }
    }

    fn service(image: Option<&str>, command: &[&str], ports: &[u16]) -> ServiceLaunch {
        ServiceLaunch {
            name: "web".parse().unwrap(),
            image: image.map(str::to_owned),
            command: command.iter().map(|c| c.to_string()).collect(),
            ports: ports.to_vec(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn images_and_other_than_one_port_are_refused() {
        let cases = [
            (
                service(Some("nginx"), &["nginx"], &[80]),
                "names an image (nginx)",
            ),
            (service(None, &["srv"], &[80, 81]), "lists 2 ports"),
            (service(None, &["srv"], &[]), "lists 0 ports"),
            (service(None, &[], &[80]), "has no command"),
        ];
        for (svc, expected) in cases {
            let err = validate(&spec(vec![svc])).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert!(err.message.contains(expected), "{err}");
        }
        assert!(validate(&spec(vec![service(None, &["srv"], &[80])])).is_ok());
    }

    #[test]
    fn only_loopback_aliases_are_accepted() {
        let mut s = spec(vec![]);
        for bad in [
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::LOCALHOST,
        ] {
            s.publish_host_ip = bad;
            assert_eq!(validate(&s).unwrap_err().kind, ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn the_log_tail_is_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        fs::write(&log, text).unwrap();
        assert_eq!(log_tail(&log, 2).unwrap(), "line 29\nline 30");
        assert_eq!(log_tail(&dir.path().join("missing"), 2), None);
    }
}

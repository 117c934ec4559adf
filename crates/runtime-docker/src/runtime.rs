//! `DockerRuntime`: a bottle's services as containers on a network of the bottle's own, each
//! port published on the bottle's alias and nowhere else.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use bottle_core::{
    BackendError, BundleLaunchSpec, BundleRuntime, OwnedResource, ServiceEndpoint, ServiceLaunch,
    ServiceName, Slug,
};
use tracing::{debug, error, info, warn};

use crate::command::DockerCommand;
use crate::error::DockerError;
use crate::inspect::{self, VersionJson};
use crate::labels::{self, filter};
use crate::port;
use crate::ready;
use crate::settings::Settings;

/// Pause between two rounds of readiness checks.
const READY_ROUND: Duration = Duration::from_millis(200);
/// Lines of a service's output shown when it exits during start.
const LOG_LINES: &str = "20";

/// The `runtime-docker` plugin's [`BundleRuntime`], driving the `docker` CLI.
///
/// It keeps no state of its own: every container and network it creates carries bottle's
/// labels, and is found by them, so that another process (`bottle gc` after a crash) can stop
/// what this one started.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    settings: Settings,
}

/// One service of a bundle, checked and named before anything is created.
struct Planned<'a> {
    service: &'a ServiceLaunch,
    image: &'a str,
    container: String,
}

impl DockerRuntime {
    /// Builds the runtime from its table of the user's configuration, as JSON. Docker is not
    /// contacted, so that a host without Docker still loads the plugin and can say why it is
    /// unusable.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BackendError> {
        Ok(Self::new(Settings::from_json(settings)?))
    }

    pub fn new(settings: Settings) -> Self {
        DockerRuntime { settings }
    }

    /// The labels that say which bottle of which home, and which launch of it, an object
    /// belongs to.
    fn owner_labels(&self, spec: &BundleLaunchSpec, launch: &str) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            (labels::MANAGED, "1".to_owned()),
            (labels::SLUG, spec.slug.to_string()),
            (labels::ALIAS, spec.publish_host_ip.to_string()),
            (labels::LAUNCH, launch.to_owned()),
        ];
        if let Some(instance) = &self.settings.instance {
            labels.push((labels::INSTANCE, instance.clone()));
        }
        labels
    }

    fn network_name(&self, slug: &Slug) -> String {
        labels::network_name(slug, self.settings.instance.as_deref())
    }

    /// Filters that select bottle `slug`'s objects, of this home only when it has an id.
    fn bottle_filters(&self, slug: &Slug) -> Vec<String> {
        let mut filters = vec![
            filter(labels::MANAGED, "1"),
            filter(labels::SLUG, slug.as_str()),
        ];
        if let Some(instance) = &self.settings.instance {
            filters.push(filter(labels::INSTANCE, instance));
        }
        filters
    }

    fn docker(&self) -> DockerCommand {
        DockerCommand::new(&self.settings.docker)
    }

    fn run(&self, cmd: &DockerCommand) -> Result<String, DockerError> {
        cmd.run(self.settings.command_timeout)
    }

    /// Runs every service on the bottle's network, reads back each port and waits for all
    /// of them to answer.
    fn start_services(
        &self,
        spec: &BundleLaunchSpec,
        planned: &[Planned<'_>],
        launch: &str,
    ) -> Result<Vec<ServiceEndpoint>, DockerError> {
        for p in planned {
            self.run_service(spec, p, launch)
                .map_err(|e| e.in_service(&p.service.name))?;
        }

        let mut endpoints = Vec::new();
        for p in planned {
            for &container_port in &p.service.ports {
                let alias = spec.publish_host_ip;
                let endpoint = self
                    .published_port(&p.container, &p.service.name, alias, container_port)
                    .map_err(|e| self.exit_or(&p.container, &p.service.name, e))?;
                endpoints.push(endpoint);
            }
        }

        self.wait_until_ready(planned, &endpoints)?;
        Ok(endpoints)
    }

    fn create_network(&self, spec: &BundleLaunchSpec, launch: &str) -> Result<(), DockerError> {
        // The network's default host address for published ports is the alias too, so that
        // even a port published without an address would land on the alias, not 0.0.0.0.
        let binding = format!(
            "com.docker.network.bridge.host_binding_ipv4={}",
            spec.publish_host_ip
        );
        let cmd = self
            .docker()
            .args(["network", "create", "--driver", "bridge", "--opt", &binding])
            .args(label_args(&self.owner_labels(spec, launch)))
            .arg(self.network_name(&spec.slug));
        self.run(&cmd)?;
        Ok(())
    }

    fn run_service(
        &self,
        spec: &BundleLaunchSpec,
        p: &Planned<'_>,
        launch: &str,
    ) -> Result<(), DockerError> {
        let service = p.service;
        let mut labels = self.owner_labels(spec, launch);
        labels.push((labels::SERVICE, service.name.to_string()));
        let mut cmd = self
            .docker()
            .args(["run", "--detach", "--pull", "never", "--name", &p.container])
            .args(["--network", &self.network_name(&spec.slug)])
            // Services reach each other by service name, within their bottle's network only.
            .args(["--network-alias", service.name.as_str()])
            .args(label_args(&labels));
        for port in &service.ports {
            cmd = cmd.args([
                "--publish",
                &format!("{}::{port}/tcp", spec.publish_host_ip),
            ]);
        }
        for (key, value) in &service.env {
            cmd = cmd.env(key, value);
        }
        let cmd = cmd.arg(p.image).args(service.command.iter().cloned());
        self.run(&cmd)?;
        Ok(())
    }

    /// The container of `service` in bottle `slug`, found by its labels, and the alias its
    /// ports were published on.
    fn find_service(
        &self,
        slug: &Slug,
        service: &ServiceName,
    ) -> Result<(String, Ipv4Addr), DockerError> {
        let mut filters = self.bottle_filters(slug);
        filters.push(filter(labels::SERVICE, service.as_str()));
        let format = format!("{{{{.ID}}}} {{{{.Label \"{}\"}}}}", labels::ALIAS);
        let cmd = self
            .docker()
            .args(["ps", "--all", "--no-trunc", "--format", &format]);
        let out = self.run(&filter_args(cmd, &filters))?;
        let found: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let line = match found.as_slice() {
            [one] => *one,
            [] => {
                let (slug, service) = (slug.clone(), service.clone());
                return Err(DockerError::NoContainer { slug, service });
            }
            many => {
                let (slug, service, count) = (slug.clone(), service.clone(), many.len());
                return Err(DockerError::ManyContainers {
                    slug,
                    service,
                    count,
                });
            }
        };
        let (id, alias) = line.split_once(' ').unwrap_or((line, ""));
        let alias = alias.trim();
        match alias.parse() {
            Ok(alias) => Ok((id.to_owned(), alias)),
            Err(_) => Err(DockerError::BadAliasLabel {
                container: id.to_owned(),
                label: labels::ALIAS,
                value: alias.to_owned(),
            }),
        }
    }

    /// Where `container_port` of `container` is published on `alias`, read back from
    /// `docker port`; a binding on any other address is refused.
    fn published_port(
        &self,
        container: &str,
        service: &ServiceName,
        alias: Ipv4Addr,
        container_port: u16,
    ) -> Result<ServiceEndpoint, DockerError> {
        let cmd = self
            .docker()
            .args(["port", container, &format!("{container_port}/tcp")]);
        let output = cmd.output(self.settings.command_timeout)?;
        // A port that is not published is an error on some versions and empty output on
        // others; both mean no binding.
        let not_published = output
            .stderr
            .to_ascii_lowercase()
            .contains("no public port");
        if !output.status.success() && !not_published {
            return Err(DockerError::from_failure(cmd.failure(&output)));
        }
        // What is parsed is stdout; what the message shows is whatever docker said.
        let (bindings, printed) = if output.status.success() {
            (output.stdout.as_str(), &output.stdout)
        } else {
            ("", &output.stderr)
        };
        let host_port = port::parse_bindings(bindings)
            .and_then(|bindings| port::port_on_alias(alias, &bindings))
            .map_err(|error| DockerError::PortReadBack {
                service: service.clone(),
                container_port,
                command: cmd.to_string(),
                output: printed.trim().to_owned(),
                error,
            })?;
        debug!(%service, container_port, %alias, host_port, "port read back");
        Ok(ServiceEndpoint {
            service: service.clone(),
            container_port,
            host_ip: alias,
            host_port,
        })
    }

    fn wait_until_ready(
        &self,
        planned: &[Planned<'_>],
        endpoints: &[ServiceEndpoint],
    ) -> Result<(), DockerError> {
        let timeout = self.settings.ready_timeout;
        let deadline = Instant::now() + timeout;
        let mut waiting: Vec<&ServiceEndpoint> = endpoints.iter().collect();
        loop {
            let mut unready: Vec<(&ServiceEndpoint, io::Error)> = Vec::new();
            for endpoint in waiting {
                let address = SocketAddr::from((endpoint.host_ip, endpoint.host_port));
                match ready::answers(address) {
                    Ok(()) => debug!(service = %endpoint.service, %address, "port answers"),
                    Err(err) => unready.push((endpoint, err)),
                }
            }
            let Some((first, _)) = unready.first() else {
                return Ok(());
            };

            // A service that exited will never answer: say so now rather than at the deadline.
            let services: BTreeSet<&ServiceName> =
                unready.iter().map(|(e, _)| &e.service).collect();
            for p in planned
                .iter()
                .filter(|p| services.contains(&p.service.name))
            {
                self.fail_if_exited(&p.container, &p.service.name)?;
            }

            if Instant::now() >= deadline {
                let (endpoint, source) = unready.swap_remove(0);
                return Err(DockerError::NotReady {
                    service: endpoint.service.clone(),
                    container_port: endpoint.container_port,
                    address: endpoint.address(),
                    secs: timeout.as_secs(),
                    source,
                });
            }
            debug!(service = %first.service, port = first.container_port, "waiting for the port");
            waiting = unready.into_iter().map(|(e, _)| e).collect();
            thread::sleep(READY_ROUND);
        }
    }

    /// `err`, unless the service's container has exited, which is the better explanation.
    fn exit_or(&self, container: &str, service: &ServiceName, err: DockerError) -> DockerError {
        match self.fail_if_exited(container, service) {
            Err(exited @ DockerError::Exited { .. }) => exited,
            _ => err,
        }
    }

    fn fail_if_exited(&self, container: &str, service: &ServiceName) -> Result<(), DockerError> {
        let cmd = self.docker().args(["container", "inspect", container]);
        let json = self.run(&cmd)?;
        let state =
            inspect::container_state(&json).map_err(|source| DockerError::UnreadableJson {
                command: cmd.to_string(),
                source,
            })?;
        match state {
            Some(state) if !state.running => Err(DockerError::Exited {
                service: service.clone(),
                code: state.exit_code,
                logs: self.last_output(container),
            }),
            _ => Ok(()),
        }
    }

    /// The last lines a container printed, on either stream, for an error message.
    fn last_output(&self, container: &str) -> String {
        let cmd = self.docker().args(["logs", "--tail", LOG_LINES, container]);
        match cmd.output(self.settings.command_timeout) {
            Ok(out) if out.status.success() => {
                let text = format!("{}{}", out.stdout, out.stderr);
                let text = text.trim_end();
                if text.is_empty() {
                    "(none)".to_owned()
                } else {
                    text.to_owned()
                }
            }
            Ok(out) => format!("(cannot read it: {})", cmd.failure(&out)),
            Err(err) => format!("(cannot read it: {err})"),
        }
    }

    /// Turns a failed start into the error to return, after removing everything the failed
    /// launch created. If that removal fails too, the message says so.
    fn roll_back(&self, slug: &Slug, launch: &str, err: DockerError) -> BackendError {
        warn!(%slug, error = %err, "starting the bundle failed; removing what it created");
        let mut out = BackendError::from(err);
        let created = [filter(labels::MANAGED, "1"), filter(labels::LAUNCH, launch)];
        if let Err(cleanup) = self.remove_labelled(&created) {
            error!(%slug, error = %cleanup, "removing a failed bundle failed");
            out.message = format!(
                "{}; removing what the failed start created failed as well ({cleanup}): `bottle \
                 gc` retries",
                out.message
            );
        }
        out
    }

    /// Removes every container, then every network, that matches all `filters`.
    fn remove_labelled(&self, filters: &[String]) -> Result<(), DockerError> {
        let containers = self.container_ids(filters)?;
        if !containers.is_empty() {
            let rm = self
                .docker()
                .args(["rm", "--force", "--volumes"])
                .args(containers);
            self.remove(&rm, || self.container_ids(filters))?;
        }
        let networks = self.network_ids(filters)?;
        if !networks.is_empty() {
            let rm = self.docker().args(["network", "rm"]).args(networks);
            self.remove(&rm, || self.network_ids(filters))?;
        }
        Ok(())
    }

    /// Runs a removal. A failure is forgiven when nothing it was to remove is left, which is
    /// what happens when another process removes the same bottle at the same time.
    fn remove(
        &self,
        rm: &DockerCommand,
        remaining: impl Fn() -> Result<Vec<String>, DockerError>,
    ) -> Result<(), DockerError> {
        match self.run(rm) {
            Ok(_) => Ok(()),
            Err(err) if remaining()?.is_empty() => {
                debug!(error = %err, "already removed");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    fn container_ids(&self, filters: &[String]) -> Result<Vec<String>, DockerError> {
        let cmd = self.docker().args(["ps", "--all", "--quiet", "--no-trunc"]);
        self.ids(filter_args(cmd, filters))
    }

    fn network_ids(&self, filters: &[String]) -> Result<Vec<String>, DockerError> {
        let cmd = self
            .docker()
            .args(["network", "ls", "--quiet", "--no-trunc"]);
        self.ids(filter_args(cmd, filters))
    }

    fn ids(&self, cmd: DockerCommand) -> Result<Vec<String>, DockerError> {
        let out = self.run(&cmd)?;
        Ok(out.split_whitespace().map(str::to_owned).collect())
    }

    /// Runs `docker inspect`-like `cmd` over objects that may vanish meanwhile (those that
    /// did are left out) and reads the bottle's objects from its output.
    fn inspect_owned(
        &self,
        cmd: &DockerCommand,
        read: fn(&str) -> Result<Vec<OwnedResource>, serde_json::Error>,
    ) -> Result<Vec<OwnedResource>, DockerError> {
        let out = cmd.output(self.settings.command_timeout)?;
        let only_vanished = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.to_ascii_lowercase().contains("no such") || l.contains("not found"));
        let usable =
            out.status.success() || (only_vanished && out.stdout.trim_start().starts_with('['));
        if !usable {
            return Err(DockerError::from_failure(cmd.failure(&out)));
        }
        read(&out.stdout).map_err(|source| DockerError::UnreadableJson {
            command: cmd.to_string(),
            source,
        })
    }

    fn versions(&self) -> Result<Vec<String>, DockerError> {
        let cmd = self.docker().args(["version", "--format", "{{json .}}"]);
        let out = cmd.output(self.settings.command_timeout)?;
        if !out.status.success() {
            return Err(DockerError::from_failure(cmd.failure(&out)));
        }
        let unreadable = |source| DockerError::UnreadableJson {
            command: cmd.to_string(),
            source,
        };
        let version: VersionJson = serde_json::from_str(out.stdout.trim()).map_err(unreadable)?;
        if version.server.is_none() {
            return Err(DockerError::Unexpected {
                command: cmd.to_string(),
                expected: "a `Server` section",
                output: out.stdout.trim().to_owned(),
            });
        }
        let mut lines = Vec::new();
        if let Some(c) = &version.client {
            lines.push(format!(
                "docker client {} (API {}), context {}",
                c.version, c.api_version, c.context
            ));
        }
        if let Some(s) = &version.server {
            lines.push(format!(
                "docker server {} (API {}), {}/{}",
                s.version, s.api_version, s.os, s.arch
            ));
            if has_isolation_gap(&s.version) {
                lines.push(ISOLATION_GAP_WARNING.to_owned());
            }
        }
        Ok(lines)
    }
}

impl BundleRuntime for DockerRuntime {
    fn name(&self) -> String {
        "runtime-docker".to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.versions()?)
    }

    fn start_bundle(&self, spec: &BundleLaunchSpec) -> Result<Vec<ServiceEndpoint>, BackendError> {
        let planned = plan(spec, self.settings.instance.as_deref())?;
        let launch = labels::new_launch_id();
        info!(slug = %spec.slug, alias = %spec.publish_host_ip, %launch, "starting the bundle");

        // Creating a network either succeeds or creates nothing, so there is nothing to undo.
        self.create_network(spec, &launch)?;

        match self.start_services(spec, &planned, &launch) {
            Ok(endpoints) => {
                info!(slug = %spec.slug, ports = endpoints.len(), "the bundle answers");
                Ok(endpoints)
            }
            Err(err) => Err(self.roll_back(&spec.slug, &launch, err)),
        }
    }

    fn host_port(
        &self,
        slug: &Slug,
        service: &ServiceName,
        container_port: u16,
    ) -> Result<ServiceEndpoint, BackendError> {
        let (container, alias) = self.find_service(slug, service)?;
        Ok(self.published_port(&container, service, alias, container_port)?)
    }

    fn stop_bundle(&self, slug: &Slug) -> Result<(), BackendError> {
        info!(%slug, "removing the bundle");
        Ok(self.remove_labelled(&self.bottle_filters(slug))?)
    }

    fn list_owned(&self) -> Result<Vec<OwnedResource>, BackendError> {
        let managed = [filter(labels::MANAGED, "1")];
        let mut owned = Vec::new();

        let containers = self.container_ids(&managed)?;
        if !containers.is_empty() {
            let cmd = self
                .docker()
                .args(["container", "inspect"])
                .args(containers);
            owned.extend(self.inspect_owned(&cmd, inspect::owned_containers)?);
        }

        let networks = self.network_ids(&managed)?;
        if !networks.is_empty() {
            let cmd = self.docker().args(["network", "inspect"]).args(networks);
            owned.extend(self.inspect_owned(&cmd, inspect::owned_networks)?);
        }
        Ok(owned)
    }
}

/// The first engine version that manages its forwarding rules in a chain of its own
/// (moby/moby#49518), instead of deleting and re-inserting jumps in FORWARD.
const FIRST_VERSION_WITHOUT_GAP: u32 = 28;

const ISOLATION_GAP_WARNING: &str = "warning: this docker server lifts the isolation between \
     networks for a moment whenever a network is created (moby/moby#43585), so bottles' \
     bundles can reach each other then; examples/docker/README.md shows the host rule that \
     closes the gap";

/// Whether a server of this version has the isolation gap; an unreadable version is assumed
/// to have it, since saying nothing would claim a guarantee bottle cannot check.
fn has_isolation_gap(server_version: &str) -> bool {
    let major = server_version
        .split('.')
        .next()
        .and_then(|m| m.trim().parse::<u32>().ok());
    major.is_none_or(|m| m < FIRST_VERSION_WITHOUT_GAP)
}

/// Checks the whole bundle before anything is created, so that a bad spec leaves nothing to
/// roll back.
fn plan<'a>(
    spec: &'a BundleLaunchSpec,
    instance: Option<&str>,
) -> Result<Vec<Planned<'a>>, DockerError> {
    let alias = spec.publish_host_ip;
    if alias.is_unspecified() || alias.is_broadcast() || alias.is_multicast() {
        return Err(DockerError::NotAnAlias(alias));
    }
    spec.services
        .iter()
        .map(|service| {
            let name = service.name.clone();
            let image = match service.image.as_deref().map(str::trim) {
                None | Some("") => return Err(DockerError::NoImage { service: name }),
                // docker would read it as an option.
                Some(image) if image.starts_with('-') => {
                    let image = image.to_owned();
                    return Err(DockerError::BadImage {
                        service: name,
                        image,
                    });
                }
                Some(image) => image,
            };
            let container = labels::container_name(&spec.slug, &service.name, instance);
            Ok(Planned {
                service,
                image,
                container,
            })
        })
        .collect()
}

fn label_args(labels: &[(&str, String)]) -> Vec<String> {
    labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_owned(), format!("{k}={v}")])
        .collect()
}

fn filter_args(cmd: DockerCommand, filters: &[String]) -> DockerCommand {
    filters
        .iter()
        .fold(cmd, |cmd, f| cmd.args(["--filter", f.as_str()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use bottle_core::ErrorKind;

    fn spec(alias: Ipv4Addr, image: Option<&str>) -> BundleLaunchSpec {
        BundleLaunchSpec {
            slug: "unit".parse().unwrap(),
            publish_host_ip: alias,
            spec_dir: PathBuf::from("/"),
            services: vec![ServiceLaunch {
                name: "web".parse().unwrap(),
                image: image.map(str::to_owned),
                command: vec![],
                ports: vec![8080],
                env: BTreeMap::new(),
            }],
        }
    }

    /// A runtime whose docker would fail loudly if a bad spec ever reached it.
    fn runtime() -> DockerRuntime {
        DockerRuntime::new(Settings {
            docker: PathBuf::from("/nonexistent/bottle-unit/docker"),
            ..Settings::default()
        })
    }

    #[test]
    fn a_service_without_an_image_is_refused_before_docker_runs() {
        for image in [None, Some(""), Some("  ")] {
            let err = runtime()
                .start_bundle(&spec(Ipv4Addr::new(127, 0, 0, 17), image))
                .unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
            assert!(err.message.contains("service `web` has no image"), "{err}");
        }
    }

    #[test]
    fn an_image_that_docker_would_take_for_an_option_is_refused() {
        let alias = Ipv4Addr::new(127, 0, 0, 17);
        let err = runtime()
            .start_bundle(&spec(alias, Some("--privileged")))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
        assert_eq!(
            err.message,
            "service `web`: `--privileged` is not an image name"
        );
    }

    #[test]
    fn engines_before_28_are_warned_about() {
        for gap in ["20.10.24+dfsg1", "27.5.1", "", "dev"] {
            assert!(has_isolation_gap(gap), "{gap}");
        }
        for fixed in ["28.0.0", "28.2.2", "29.1.0-rc.1"] {
            assert!(!has_isolation_gap(fixed), "{fixed}");
        }
    }

    #[test]
    fn the_wildcard_address_is_never_an_alias() {
        let err = runtime()
            .start_bundle(&spec(Ipv4Addr::UNSPECIFIED, Some("a:1")))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.message.starts_with("cannot publish on 0.0.0.0"),
            "{err}"
        );
    }

    #[test]
    fn without_docker_every_operation_says_it_is_not_installed() {
        let rt = runtime();
        let slug: Slug = "unit".parse().unwrap();
        let errors = [
            rt.describe().unwrap_err(),
            rt.stop_bundle(&slug).unwrap_err(),
            rt.list_owned().unwrap_err(),
            rt.host_port(&slug, &"web".parse().unwrap(), 8080)
                .unwrap_err(),
            rt.start_bundle(&spec(Ipv4Addr::new(127, 0, 0, 17), Some("a:1")))
                .unwrap_err(),
        ];
        for err in errors {
            assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
            assert!(err.message.contains("docker is not installed"), "{err}");
        }
    }
}

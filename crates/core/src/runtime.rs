//! The `BundleRuntime` trait: starting a bottle's services so that they answer on its alias
//! only, and finding everything it runs on bottle's behalf.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::BackendError;
use crate::name::{ServiceName, Slug};

/// One service to start, as the spec describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLaunch {
    pub name: ServiceName,
    /// The image to run (container runtimes).
    pub image: Option<String>,
    /// The command to run: the container's command, or the host process (process runtime).
    pub command: Vec<String>,
    /// The ports the service listens on inside its container (or the one port of a process).
    pub ports: Vec<u16>,
    pub env: BTreeMap<String, String>,
}

/// Everything a runtime needs to start one bottle's bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleLaunchSpec {
    pub slug: Slug,
    /// The only host address the bundle's ports may be published on: the bottle's alias.
    pub publish_host_ip: Ipv4Addr,
    /// The directory of the spec file; relative paths in the spec are relative to it.
    pub spec_dir: PathBuf,
    pub services: Vec<ServiceLaunch>,
}

/// Where one port of one service answers on the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceEndpoint {
    pub service: ServiceName,
    /// The port inside the container (for a process, the port named in the spec).
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

impl ServiceEndpoint {
    /// `ALIAS:PORT`, as the agent sees it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host_ip, self.host_port)
    }
}

/// Something a runtime runs on a bottle's behalf: a container, a network, a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedResource {
    /// The bottle named in the resource's labels.
    pub slug: Slug,
    /// `container`, `network` or `process`.
    pub kind: String,
    /// The runtime's name for it (container name, network name, process id).
    pub name: String,
    /// Host addresses it publishes ports on.
    pub published_on: Vec<Ipv4Addr>,
    /// Whether it is running (a network always is).
    pub running: bool,
    /// The bottle home that launched it (the `instance` setting the runtime was given), so
    /// that `bottle gc` never removes what another home's bottles run.
    #[serde(default)]
    pub instance: Option<String>,
}

/// Runs a bottle's services, publishing their ports on the bottle's alias only.
pub trait BundleRuntime: Send + Sync {
    /// A short name for `bottle plugins` and logs, e.g. `runtime-docker`.
    fn name(&self) -> String;

    /// Lines for `bottle doctor`: whether the runtime is usable here, and its version.
    fn describe(&self) -> Result<Vec<String>, BackendError>;

    /// Starts every service of the bundle, publishing each port on `publish_host_ip` only,
    /// and returns each port's endpoint once it accepts connections. On failure, whatever
    /// this call started is removed before it returns.
    fn start_bundle(&self, spec: &BundleLaunchSpec) -> Result<Vec<ServiceEndpoint>, BackendError>;

    /// Reads back where `container_port` of a running service is published on the alias.
    fn host_port(
        &self,
        slug: &Slug,
        service: &ServiceName,
        container_port: u16,
    ) -> Result<ServiceEndpoint, BackendError>;

    /// Removes everything the bundle of `slug` runs. Idempotent: a bundle that is already
    /// gone, or was never started, is not an error.
    fn stop_bundle(&self, slug: &Slug) -> Result<(), BackendError>;

    /// Everything this runtime runs that carries bottle's labels, whatever bottle and
    /// whatever bottle home owns it: another home's container on an alias is still busy.
    fn list_owned(&self) -> Result<Vec<OwnedResource>, BackendError>;
}

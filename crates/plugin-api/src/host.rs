//! The host side of the boundary: FFI objects from a plugin, wrapped so that the rest of
//! bottle sees ordinary [`NetScoper`], [`VmmBackend`] and [`BundleRuntime`] values.

use std::net::Ipv4Addr;

use abi_stable::std_types::{RResult, RStr, RString};
use bottle_core::{
    AgentSpec, AliasPool, AliasUse, BackendError, BundleLaunchSpec, BundleRuntime, EgressPolicy,
    ErrorKind, ExecOutput, ExecStdio, Machine, MachineState, NetScoper, OwnedResource, PersistPlan,
    PoolReport, ServiceEndpoint, ServiceName, Slug, VmmBackend, VmmProbe,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ffi::{FfiBundleRuntimeBox, FfiError, FfiNetScoperBox, FfiVmmBackendBox};

/// Encodes one argument for the plugin. Core types always encode; a failure would be a bug
/// in a core type's `Serialize`, reported as an error rather than a panic all the same.
fn encode<T: Serialize>(plugin: &str, value: &T) -> Result<String, BackendError> {
    serde_json::to_string(value).map_err(|e| {
        BackendError::new(
            ErrorKind::Other,
            format!("cannot encode an argument for `{plugin}`"),
        )
        .with_cause(&e)
    })
}

/// Turns what a plugin call returned into a typed result.
fn decode<T: DeserializeOwned>(
    plugin: &str,
    call: &str,
    result: RResult<RString, FfiError>,
) -> Result<T, BackendError> {
    let json = result.into_result().map_err(BackendError::from)?;
    serde_json::from_str(json.as_str()).map_err(|e| {
        BackendError::new(
            ErrorKind::Other,
            format!("plugin `{plugin}` returned a malformed result from `{call}`"),
        )
        .with_cause(&e)
    })
}

fn rstr(s: &str) -> RStr<'_> {
    RStr::from_str(s)
}

/// A net plugin's scoper.
pub(crate) struct HostNetScoper {
    pub(crate) plugin: String,
    pub(crate) inner: FfiNetScoperBox,
}

impl NetScoper for HostNetScoper {
    fn name(&self) -> String {
        decode(&self.plugin, "name", self.inner.name()).unwrap_or_else(|_| self.plugin.clone())
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        decode(&self.plugin, "describe", self.inner.describe())
    }

    fn ensure_pool(&self, pool: &AliasPool) -> Result<PoolReport, BackendError> {
        let pool = encode(&self.plugin, pool)?;
        decode(
            &self.plugin,
            "ensure_pool",
            self.inner.ensure_pool(rstr(&pool)),
        )
    }

    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError> {
        let pool = encode(&self.plugin, pool)?;
        decode(
            &self.plugin,
            "pool_status",
            self.inner.pool_status(rstr(&pool)),
        )
    }

    fn listeners_on(&self, pool: &AliasPool) -> Result<Vec<Ipv4Addr>, BackendError> {
        let pool = encode(&self.plugin, pool)?;
        decode(
            &self.plugin,
            "listeners_on",
            self.inner.listeners_on(rstr(&pool)),
        )
    }

    fn persist_plan(&self, pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        let pool = encode(&self.plugin, pool)?;
        decode(
            &self.plugin,
            "persist_plan",
            self.inner.persist_plan(rstr(&pool)),
        )
    }

    fn persist(&self, pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        let pool = encode(&self.plugin, pool)?;
        decode(&self.plugin, "persist", self.inner.persist(rstr(&pool)))
    }
}

/// A VMM plugin's backend.
pub(crate) struct HostVmmBackend {
    pub(crate) plugin: String,
    pub(crate) inner: FfiVmmBackendBox,
}

impl HostVmmBackend {
    fn machine_call<T: DeserializeOwned>(
        &self,
        call: &str,
        machine: &Machine,
        f: impl FnOnce(&FfiVmmBackendBox, RStr<'_>) -> RResult<RString, FfiError>,
    ) -> Result<T, BackendError> {
        let machine = encode(&self.plugin, machine)?;
        decode(&self.plugin, call, f(&self.inner, rstr(&machine)))
    }
}

impl VmmBackend for HostVmmBackend {
    fn name(&self) -> String {
        decode(&self.plugin, "name", self.inner.name()).unwrap_or_else(|_| self.plugin.clone())
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        decode(&self.plugin, "describe", self.inner.describe())
    }

    fn probe(&self) -> Result<VmmProbe, BackendError> {
        decode(&self.plugin, "probe", self.inner.probe())
    }

    fn create(&self, agent: &AgentSpec, policy: &EgressPolicy) -> Result<Machine, BackendError> {
        let agent = encode(&self.plugin, agent)?;
        let policy = encode(&self.plugin, policy)?;
        decode(
            &self.plugin,
            "create",
            self.inner.create(rstr(&agent), rstr(&policy)),
        )
    }

    fn effective_policy(&self, machine: &Machine) -> Result<EgressPolicy, BackendError> {
        self.machine_call("effective_policy", machine, |b, m| b.effective_policy(m))
    }

    fn start(&self, machine: &Machine) -> Result<(), BackendError> {
        self.machine_call("start", machine, |b, m| b.start(m))
    }

    fn stop(&self, machine: &Machine) -> Result<(), BackendError> {
        self.machine_call("stop", machine, |b, m| b.stop(m))
    }

    fn remove(&self, machine: &Machine) -> Result<(), BackendError> {
        self.machine_call("remove", machine, |b, m| b.remove(m))
    }

    fn status(&self, machine: &Machine) -> Result<MachineState, BackendError> {
        self.machine_call("status", machine, |b, m| b.status(m))
    }

    fn exec(
        &self,
        machine: &Machine,
        command: &[String],
        stdio: ExecStdio,
    ) -> Result<ExecOutput, BackendError> {
        let command = encode(&self.plugin, &command)?;
        let stdio = encode(&self.plugin, &stdio)?;
        self.machine_call("exec", machine, |b, m| {
            b.exec(m, rstr(&command), rstr(&stdio))
        })
    }

    fn list_machines(&self) -> Result<Vec<Machine>, BackendError> {
        decode(&self.plugin, "list_machines", self.inner.list_machines())
    }
}

/// A runtime plugin's bundle runtime.
pub(crate) struct HostBundleRuntime {
    pub(crate) plugin: String,
    pub(crate) inner: FfiBundleRuntimeBox,
}

impl BundleRuntime for HostBundleRuntime {
    fn name(&self) -> String {
        decode(&self.plugin, "name", self.inner.name()).unwrap_or_else(|_| self.plugin.clone())
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        decode(&self.plugin, "describe", self.inner.describe())
    }

    fn start_bundle(&self, spec: &BundleLaunchSpec) -> Result<Vec<ServiceEndpoint>, BackendError> {
        let spec = encode(&self.plugin, spec)?;
        decode(
            &self.plugin,
            "start_bundle",
            self.inner.start_bundle(rstr(&spec)),
        )
    }

    fn host_port(
        &self,
        slug: &Slug,
        service: &ServiceName,
        container_port: u16,
    ) -> Result<ServiceEndpoint, BackendError> {
        let slug = encode(&self.plugin, slug)?;
        let service = encode(&self.plugin, service)?;
        let result = self
            .inner
            .host_port(rstr(&slug), rstr(&service), container_port);
        decode(&self.plugin, "host_port", result)
    }

    fn stop_bundle(&self, slug: &Slug) -> Result<(), BackendError> {
        let slug = encode(&self.plugin, slug)?;
        decode(
            &self.plugin,
            "stop_bundle",
            self.inner.stop_bundle(rstr(&slug)),
        )
    }

    fn list_owned(&self) -> Result<Vec<OwnedResource>, BackendError> {
        decode(&self.plugin, "list_owned", self.inner.list_owned())
    }
}

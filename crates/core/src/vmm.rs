//! The `VmmBackend` trait: the agent's machine, created with an egress policy that lets it
//! reach its own alias and nothing else, and the policy read back before it starts.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::addr::Ipv4Cidr;
use crate::backend::BackendError;
use crate::name::Slug;
use crate::runtime::ServiceEndpoint;
use crate::spec::Mount;

/// Where a machine may open connections to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "egress", content = "allowed")]
pub enum EgressPolicy {
    /// No filter at all: the agent reaches everything the host reaches. Never requested by
    /// bottle; a backend reports it when that is what it would enforce.
    Unrestricted,
    /// Only these blocks; an empty list denies everything.
    AllowOnly(Vec<Ipv4Cidr>),
}

impl EgressPolicy {
    /// The policy every bottle asks for: its own alias, as a `/32`, and nothing else.
    pub fn alias_only(alias: Ipv4Addr) -> Self {
        EgressPolicy::AllowOnly(vec![Ipv4Cidr::host(alias)])
    }

    /// Whether every destination this policy allows is also allowed by `bound`: the check
    /// that lets an agent start only when its effective policy is the requested one or
    /// narrower.
    pub fn is_within(&self, bound: &EgressPolicy) -> bool {
        match (self, bound) {
            (_, EgressPolicy::Unrestricted) => true,
            (EgressPolicy::Unrestricted, EgressPolicy::AllowOnly(_)) => false,
            (EgressPolicy::AllowOnly(mine), EgressPolicy::AllowOnly(allowed)) => {
                mine.iter().all(|m| allowed.iter().any(|a| a.covers(m)))
            }
        }
    }
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressPolicy::Unrestricted => f.write_str("unrestricted"),
            EgressPolicy::AllowOnly(blocks) => {
                let blocks: Vec<String> = blocks.iter().map(Ipv4Cidr::to_string).collect();
                write!(f, "[{}]", blocks.join(", "))
            }
        }
    }
}

/// Everything a VMM needs to create a bottle's machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub slug: Slug,
    /// The machine's name in the VMM: `bottle-<slug>`.
    pub machine_name: String,
    /// A VMM-specific artifact to boot (smolvm: a `.smolmachine` file), absolute.
    pub from: Option<PathBuf>,
    /// An image to boot, for backends that take one.
    pub image: Option<String>,
    /// The agent's command; empty means the machine's own default.
    pub command: Vec<String>,
    /// The agent's environment, the bottle's variables (`BOTTLE_ALIAS`, ...) included.
    pub env: BTreeMap<String, String>,
    /// Host directories to share with the agent, host paths absolute.
    pub mounts: Vec<Mount>,
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
    /// The bottle's alias, which the egress policy allows.
    pub alias: Ipv4Addr,
    /// The bundle's endpoints, all on the alias.
    pub endpoints: Vec<ServiceEndpoint>,
}

/// A VMM's handle on a bottle's machine; plain data, so that it can be stored and used again
/// by another process (`bottle down`, `bottle gc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub name: String,
}

/// Whether a backend can hold an agent to exactly its alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "scope")]
pub enum ScopeSupport {
    /// The agent reaches exactly `ALIAS/32` on host loopback (or less).
    Exact,
    /// It cannot: `reason` says why, `remedy` what would work.
    Unenforceable { reason: String, remedy: String },
}

/// What `probe` found out about the VMM on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmmProbe {
    /// The VMM's version as it reports it, when it does.
    pub version: Option<String>,
    pub scope: ScopeSupport,
    /// Anything else worth showing in `bottle doctor`.
    pub notes: Vec<String>,
}

/// A machine's state as its VMM reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineState {
    Created,
    Running,
    Stopped,
    Failed,
    Unreachable,
    /// The VMM does not know the machine.
    Missing,
}

impl MachineState {
    pub fn as_str(&self) -> &'static str {
        match self {
            MachineState::Created => "created",
            MachineState::Running => "running",
            MachineState::Stopped => "stopped",
            MachineState::Failed => "failed",
            MachineState::Unreachable => "unreachable",
            MachineState::Missing => "missing",
        }
    }
}

/// Where an executed command's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecStdio {
    /// Captured and returned in [`ExecOutput`].
    Capture,
    /// Passed through to bottle's own terminal (`bottle run`).
    Inherit,
}

/// The result of a command run inside a machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// The command's exit code; `None` when it was killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the agent in a machine whose egress is limited to the bottle's alias.
pub trait VmmBackend: Send + Sync {
    /// A short name for `bottle plugins` and logs, e.g. `vmm-smolvm`.
    fn name(&self) -> String;

    /// Lines for `bottle doctor`.
    fn describe(&self) -> Result<Vec<String>, BackendError>;

    /// Finds the VMM's version and whether it can enforce an exact `/32` scope.
    fn probe(&self) -> Result<VmmProbe, BackendError>;

    /// Creates (but does not start) the agent's machine with `policy` as its egress policy.
    fn create(&self, agent: &AgentSpec, policy: &EgressPolicy) -> Result<Machine, BackendError>;

    /// Reads back the egress policy the VMM will enforce when the machine starts.
    fn effective_policy(&self, machine: &Machine) -> Result<EgressPolicy, BackendError>;

    fn start(&self, machine: &Machine) -> Result<(), BackendError>;

    /// Stops the machine; a machine that is not running, or gone, is not an error.
    fn stop(&self, machine: &Machine) -> Result<(), BackendError>;

    /// Removes the machine without asking; a machine that is gone is not an error.
    fn remove(&self, machine: &Machine) -> Result<(), BackendError>;

    fn status(&self, machine: &Machine) -> Result<MachineState, BackendError>;

    /// Runs `command` inside the running machine.
    fn exec(
        &self,
        machine: &Machine,
        command: &[String],
        stdio: ExecStdio,
    ) -> Result<ExecOutput, BackendError>;

    /// Every machine of this VMM whose name marks it as bottle's (`bottle-*`), for `gc`.
    fn list_machines(&self) -> Result<Vec<Machine>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> EgressPolicy {
        EgressPolicy::AllowOnly(list.iter().map(|c| c.parse().unwrap()).collect())
    }

    #[test]
    fn the_requested_policy_or_narrower_is_within() {
        let requested = EgressPolicy::alias_only(Ipv4Addr::new(127, 0, 0, 17));
        assert!(requested.is_within(&requested));
        assert!(cidrs(&[]).is_within(&requested));
    }

    #[test]
    fn wider_or_unrestricted_policies_are_not() {
        let requested = EgressPolicy::alias_only(Ipv4Addr::new(127, 0, 0, 17));
        assert!(!EgressPolicy::Unrestricted.is_within(&requested));
        assert!(!cidrs(&["127.0.0.0/8"]).is_within(&requested));
        assert!(!cidrs(&["127.0.0.17/32", "127.0.0.18/32"]).is_within(&requested));
        assert!(!cidrs(&["127.0.0.18/32"]).is_within(&requested));
    }

    #[test]
    fn policy_json_is_tagged() {
        let p = EgressPolicy::alias_only(Ipv4Addr::new(127, 0, 0, 17));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"egress":"allow_only","allowed":["127.0.0.17/32"]}"#
        );
        assert_eq!(serde_json::from_str::<EgressPolicy>(&json).unwrap(), p);
    }
}

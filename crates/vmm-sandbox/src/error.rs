//! Everything that can go wrong in the sandbox backend, and the kind the host sees for each.

use std::error::Error as _;
use std::net::SocketAddrV4;
use std::path::PathBuf;

use bottle_core::{BackendError, EgressPolicy, ErrorKind};

/// A failed sandbox operation; it reaches the host as a [`BackendError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting `{key}`: expected {expected}")]
    Setting { key: String, expected: String },

    #[error(
        "the sandbox helper `{name}` was not found (looked in: {searched}); build or install \
         it next to bottle, or name its path with the `helper` setting of vmm-sandbox"
    )]
    HelperMissing { name: String, searched: String },

    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("`{name}` is not a machine name: expected a-z, 0-9 and '-', starting with a letter")]
    MachineName { name: String },

    #[error("the sandbox has no machine named {name}")]
    NoMachine { name: String },

    #[error("the sandbox already has a machine named {name}")]
    MachineExists { name: String },

    #[error("exec needs a command to run in machine {name}")]
    EmptyCommand { name: String },

    #[error("machine {name} is not running")]
    NotRunning { name: String },

    #[error("the sandbox enforces allow-lists only, never unrestricted egress")]
    Unrestricted,

    #[error("egress policy {policy} is wider than the bottle's alias {alias}/32")]
    PolicyTooWide { policy: EgressPolicy, alias: String },

    #[error("endpoint {endpoint} of service {service} is outside the egress policy {policy}")]
    EndpointOutsidePolicy {
        endpoint: SocketAddrV4,
        service: String,
        policy: EgressPolicy,
    },

    #[error(
        "endpoint {endpoint} of service {service} is not a loopback address: the sandbox relays \
         to loopback aliases only"
    )]
    EndpointNotLoopback {
        endpoint: SocketAddrV4,
        service: String,
    },

    #[error(
        "agent `{field}` is not supported by the sandbox, which runs the agent's command on a \
         read-only view of this host's own /usr, /etc and libraries; remove `{field}`, or use a \
         VMM that boots images (vmm = \"smolvm\")"
    )]
    Artifact { field: &'static str },

    #[error("mount {guest} in the agent: expected {expected}")]
    GuestPath { guest: String, expected: String },

    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{} is not a machine record bottle can read", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("machine {name} did not stop: process {pid} is still alive after SIGKILL")]
    StopTimeout { name: String, pid: u32 },

    #[error("cannot signal process {pid} of machine {name}")]
    Signal {
        name: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What the host can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Setting { .. }
            | Error::MachineName { .. }
            | Error::Unrestricted
            | Error::PolicyTooWide { .. }
            | Error::EndpointOutsidePolicy { .. }
            | Error::EndpointNotLoopback { .. }
            | Error::Artifact { .. }
            | Error::GuestPath { .. }
            | Error::EmptyCommand { .. } => ErrorKind::InvalidInput,
            Error::HelperMissing { .. } | Error::Spawn { .. } | Error::NotRunning { .. } => {
                ErrorKind::Unavailable
            }
            Error::Failed { .. } => ErrorKind::CommandFailed,
            Error::NoMachine { .. } => ErrorKind::NotFound,
            Error::MachineExists { .. } => ErrorKind::Conflict,
            Error::StopTimeout { .. } => ErrorKind::Timeout,
            Error::Io { .. } | Error::Record { .. } | Error::Signal { .. } => ErrorKind::Other,
        }
    }
}

impl From<Error> for BackendError {
    fn from(err: Error) -> Self {
        let backend = BackendError::new(err.kind(), err.to_string());
        match err.source() {
            Some(source) => backend.with_cause(source),
            None => backend,
        }
    }
}

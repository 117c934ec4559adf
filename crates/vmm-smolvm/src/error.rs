//! Everything that can go wrong while driving smolvm, and the kind the host sees for each.

use std::error::Error as _;
use std::path::PathBuf;

use bottle_core::{BackendError, ErrorKind};

/// A failed smolvm operation; it reaches the host as a [`BackendError`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting `{key}`: expected {expected}")]
    Setting { key: String, expected: String },

    #[error(
        "cannot tell where smolvm keeps its database: there is no home directory; name the \
         file with the `database` setting"
    )]
    NoDefaultDatabase,

    #[error(
        "smolvm is not installed: `{program}` was not found; install smolvm, or name its path \
         with the `smolvm` setting"
    )]
    Missing {
        program: String,
        #[source]
        source: std::io::Error,
    },

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

    #[error("smolvm has no machine named {name}")]
    UnknownMachine { name: String },

    #[error("`{command}` printed something bottle cannot read: {problem}")]
    Output { command: String, problem: String },

    #[error("refusing to create a smolvm machine: {reason}; instead, {remedy}")]
    ScopeNotEnforceable { reason: String, remedy: String },

    #[error(
        "bottle creates smolvm machines with an egress allow-list only, never with unrestricted \
         egress"
    )]
    UnrestrictedRequested,

    #[error("cannot pass the agent's {field} to smolvm: {problem}")]
    InvalidAgent { field: String, problem: String },

    #[error("cannot open smolvm's database {}", path.display())]
    DatabaseOpen {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("cannot read smolvm's database {}", path.display())]
    DatabaseRead {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("smolvm's database {} holds no record of machine {name}", path.display())]
    NoRecord { name: String, path: PathBuf },

    #[error(
        "the record of machine {name} is stored as {stored_as}, not as a BLOB, so smolvm itself \
         cannot read it"
    )]
    RecordNotBlob { name: String, stored_as: String },

    #[error("the record of machine {name} in smolvm's database is not valid JSON")]
    RecordJson {
        name: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("the record of machine {name} in smolvm's database: {problem}")]
    RecordField { name: String, problem: String },

    #[error("cannot write the allow-list into the record of machine {name} in {}", path.display())]
    PatchWrite {
        name: String,
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error(
        "the allow-list written into the record of machine {name} did not stick: smolvm's \
         database now says network = {network}, allowed_cidrs = {allowed}"
    )]
    PatchDidNotStick {
        name: String,
        network: String,
        allowed: String,
    },
}

impl Error {
    /// What the host can do about it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Setting { .. }
            | Error::NoDefaultDatabase
            | Error::UnrestrictedRequested
            | Error::InvalidAgent { .. } => ErrorKind::InvalidInput,
            Error::Missing { .. } | Error::Spawn { .. } | Error::DatabaseOpen { .. } => {
                ErrorKind::Unavailable
            }
            Error::Failed { .. } => ErrorKind::CommandFailed,
            Error::UnknownMachine { .. } | Error::NoRecord { .. } => ErrorKind::NotFound,
            Error::ScopeNotEnforceable { .. } => ErrorKind::ScopeNotEnforceable,
            Error::Output { .. }
            | Error::DatabaseRead { .. }
            | Error::RecordNotBlob { .. }
            | Error::RecordJson { .. }
            | Error::RecordField { .. }
            | Error::PatchWrite { .. }
            | Error::PatchDidNotStick { .. } => ErrorKind::Other,
        }
    }

    /// Whether smolvm said that it does not know machine `name`.
    pub(crate) fn is_unknown_machine(&self, name: &str) -> bool {
        match self {
            Error::UnknownMachine { name: n } | Error::NoRecord { name: n, .. } => n == name,
            Error::Failed { stderr, .. } => says_unknown_machine(stderr, name),
            _ => false,
        }
    }
}

/// Whether smolvm's stderr says that it does not know machine `name`: `vm not found: N`, or
/// `machine 'N' not found` from `status --json`.
pub(crate) fn says_unknown_machine(stderr: &str, name: &str) -> bool {
    let plain = format!("vm not found: {name}");
    let quoted = format!("machine '{name}' not found");
    stderr
        .lines()
        .map(str::trim)
        .any(|l| l.ends_with(&plain) || l.contains(&quoted))
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

//! The error that every plugin operation returns: a kind the host can act on, a message for
//! the user, and the chain of causes below it.
//!
//! It is deliberately plain data, so that it crosses the plugin boundary unchanged.

use std::error::Error;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, in terms the host can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The operation is not implemented by this plugin (or not on this OS).
    NotSupported,
    /// A tool or service the plugin needs is missing or not answering (no `docker`, no daemon).
    Unavailable,
    /// What was asked for does not exist (a machine, an image, a container).
    NotFound,
    /// The request itself is wrong: a spec the backend cannot honour.
    InvalidInput,
    /// Something else already holds what was asked for (a port, a name).
    Conflict,
    /// The backend cannot enforce the egress scope a bottle needs.
    ScopeNotEnforceable,
    /// A bounded wait ran out.
    Timeout,
    /// An external command failed.
    CommandFailed,
    /// The plugin panicked; the panic was caught at the boundary.
    Panicked,
    /// Anything else.
    Other,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::NotSupported => "not supported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Conflict => "conflict",
            ErrorKind::ScopeNotEnforceable => "scope not enforceable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::CommandFailed => "command failed",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Other => "other",
        }
    }
}

/// A failed plugin operation.
///
/// `Display` shows the message only; the causes are reachable through
/// [`Error::source`], so that a chain printer shows each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ErrorParts", into = "ErrorParts")]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
    /// The causes, outermost first.
    pub causes: Vec<String>,
    chain: Option<Box<Cause>>,
}

/// The serialised form of a [`BackendError`].
#[derive(Serialize, Deserialize)]
struct ErrorParts {
    kind: ErrorKind,
    message: String,
    #[serde(default)]
    causes: Vec<String>,
}

impl From<ErrorParts> for BackendError {
    fn from(p: ErrorParts) -> Self {
        BackendError::from_parts(p.kind, p.message, p.causes)
    }
}

impl From<BackendError> for ErrorParts {
    fn from(e: BackendError) -> Self {
        ErrorParts {
            kind: e.kind,
            message: e.message,
            causes: e.causes,
        }
    }
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            causes: Vec::new(),
            chain: None,
        }
    }

    /// An error of kind [`ErrorKind::NotSupported`] naming the operation and the plugin.
    pub fn not_supported(plugin: &str, operation: &str) -> Self {
        Self::new(
            ErrorKind::NotSupported,
            format!("{plugin} does not support `{operation}` yet"),
        )
    }

    /// Adds `cause` (and its own chain) below the causes already recorded.
    pub fn with_cause(mut self, cause: &(dyn Error + 'static)) -> Self {
        let mut next = Some(cause);
        while let Some(err) = next {
            self.causes.push(err.to_string());
            next = err.source();
        }
        self.rebuild_chain();
        self
    }

    /// Adds one cause given as text.
    pub fn with_cause_text(mut self, cause: impl Into<String>) -> Self {
        self.causes.push(cause.into());
        self.rebuild_chain();
        self
    }

    fn rebuild_chain(&mut self) {
        self.chain = self.causes.iter().rev().fold(None, |next, message| {
            Some(Box::new(Cause {
                message: message.clone(),
                next,
            }))
        });
    }

    /// Builds an error from parts that came over the plugin boundary.
    pub fn from_parts(kind: ErrorKind, message: String, causes: Vec<String>) -> Self {
        let mut err = BackendError {
            kind,
            message,
            causes,
            chain: None,
        };
        err.rebuild_chain();
        err
    }
}

impl BackendError {
    /// The message and its causes on one line, `: `-separated.
    pub fn one_line(&self) -> String {
        std::iter::once(self.message.as_str())
            .chain(self.causes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(": ")
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for BackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.chain.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

/// One link of a [`BackendError`]'s chain of causes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cause {
    message: String,
    next: Option<Box<Cause>>,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.next.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_walked_once_each() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = BackendError::new(ErrorKind::Unavailable, "docker is not installed")
            .with_cause(&io)
            .with_cause_text("searched PATH");
        let mut chain = vec![err.to_string()];
        let mut next = err.source();
        while let Some(e) = next {
            chain.push(e.to_string());
            next = e.source();
        }
        assert_eq!(
            chain,
            ["docker is not installed", "no such file", "searched PATH"]
        );
    }

    #[test]
    fn survives_a_json_round_trip() {
        let err = BackendError::new(ErrorKind::Timeout, "port 8080 never answered")
            .with_cause_text("connection refused");
        let back: BackendError =
            serde_json::from_str(&serde_json::to_string(&err).unwrap()).unwrap();
        assert_eq!(back, err);
        assert_eq!(back.source().unwrap().to_string(), "connection refused");
    }
}

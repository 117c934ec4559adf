//! Exit statuses: one per class of failure, as documented in `bottle --help`.

use bottle_core::launch::{LaunchError, StepFailure, TeardownError};
use bottle_core::{BackendError, ConfigError, ErrorKind, PoolError, SpecError, StateError};

pub const FAILURE: u8 = 1;
pub const INVALID_INPUT: u8 = 3;
pub const NO_ROOM: u8 = 4;
pub const REFUSED: u8 = 5;
pub const BACKEND: u8 = 6;
pub const NO_SUCH_BOTTLE: u8 = 7;
/// Ctrl-C (or SIGTERM) stopped a launch, which was rolled back.
pub const INTERRUPTED: u8 = 130;
/// `bottle run` failed itself, rather than passing on the agent's status.
pub const RUN_FAILED: u8 = 125;

/// A bottle that the command names does not exist.
#[derive(Debug, thiserror::Error)]
#[error("no bottle named `{0}`")]
pub struct NoSuchBottle(pub String);

/// `bottle probe` saw the agent reach what it must not, or miss its own services.
#[derive(Debug, thiserror::Error)]
#[error("the promise does not hold for bottle `{0}`: see the table")]
pub struct PromiseBroken(pub String);

/// The exit status for an error, from the first link of its chain that has a class.
pub fn classify(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<LaunchError>() {
            return match &*e.failure {
                StepFailure::State(s) => state_code(s),
                StepFailure::Backend(b) => backend_code(b),
                StepFailure::ScopeRefused { .. }
                | StepFailure::PolicyMismatch { .. }
                | StepFailure::WrongAddress { .. } => REFUSED,
                StepFailure::Interrupted => INTERRUPTED,
                _ => BACKEND,
            };
        }
        if let Some(e) = cause.downcast_ref::<StateError>() {
            return state_code(e);
        }
        if cause.is::<SpecError>() || cause.is::<ConfigError>() || cause.is::<PoolError>() {
            return INVALID_INPUT;
        }
        if cause.is::<PromiseBroken>() {
            return REFUSED;
        }
        if cause.is::<NoSuchBottle>() {
            return NO_SUCH_BOTTLE;
        }
        if let Some(e) = cause.downcast_ref::<BackendError>() {
            return backend_code(e);
        }
        if cause.is::<TeardownError>() || cause.is::<bottle_plugin_api::PluginError>() {
            return BACKEND;
        }
    }
    FAILURE
}

/// A plugin's error by its kind: a spec it cannot honour is invalid input, a scope it cannot
/// enforce is a refusal, anything else a backend failure.
fn backend_code(err: &BackendError) -> u8 {
    match err.kind {
        ErrorKind::InvalidInput => INVALID_INPUT,
        ErrorKind::ScopeNotEnforceable => REFUSED,
        _ => BACKEND,
    }
}

fn state_code(err: &StateError) -> u8 {
    match err {
        StateError::PoolExhausted { .. }
        | StateError::SlugInUse { .. }
        | StateError::Busy { .. } => NO_ROOM,
        StateError::UnknownBottle { .. } => NO_SUCH_BOTTLE,
        _ => FAILURE,
    }
}

/// The error and its causes, each once, separated by `: `.
pub fn render_chain(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err.chain().map(|c| c.to_string()).collect();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_found_anywhere_in_the_chain() {
        let exhausted = StateError::PoolExhausted {
            pool: Default::default(),
            holders: vec![],
        };
        let err = anyhow::Error::new(exhausted).context("cannot lease");
        assert_eq!(classify(&err), NO_ROOM);
        let err = anyhow::Error::new(NoSuchBottle("x".into())).context("down");
        assert_eq!(classify(&err), NO_SUCH_BOTTLE);
        let err = anyhow::anyhow!("plain");
        assert_eq!(classify(&err), FAILURE);
        let backend = BackendError::new(ErrorKind::Unavailable, "no docker");
        assert_eq!(classify(&anyhow::Error::new(backend)), BACKEND);
        let invalid = BackendError::new(ErrorKind::InvalidInput, "no image for processes");
        assert_eq!(classify(&anyhow::Error::new(invalid)), INVALID_INPUT);
        let scope = BackendError::new(ErrorKind::ScopeNotEnforceable, "1.9.2");
        assert_eq!(classify(&anyhow::Error::new(scope).context("up")), REFUSED);
    }

    #[test]
    fn the_chain_is_printed_once_each() {
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render_chain(&err), "outer: inner");
    }
}

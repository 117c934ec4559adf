//! The helper's one error type: what it was doing, and the system error that stopped it.

use std::error::Error as _;
use std::io;

/// A failed step of the helper.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Failure {
    what: String,
    #[source]
    source: Option<io::Error>,
}

impl Failure {
    pub fn new(what: impl Into<String>) -> Self {
        Failure {
            what: what.into(),
            source: None,
        }
    }

    /// The message with its cause, on one line, as the helper prints it.
    pub fn report(&self) -> String {
        match self.source() {
            Some(source) => format!("{}: {source}", self.what),
            None => self.what.clone(),
        }
    }
}

/// Adds what the helper was doing to an I/O error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Failure> {
        self.map_err(|source| Failure {
            what: what(),
            source: Some(source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_step_and_its_cause_once() {
        let err: Result<(), Failure> = Err(io::Error::from_raw_os_error(libc::EPERM))
            .context(|| "cannot mount proc on /proc".to_owned());
        let err = err.unwrap_err();
        assert_eq!(err.to_string(), "cannot mount proc on /proc");
        assert!(
            err.report()
                .starts_with("cannot mount proc on /proc: Operation not permitted"),
            "{}",
            err.report()
        );
        assert_eq!(Failure::new("no endpoints").report(), "no endpoints");
    }
}

//! bottle's NetScoper for macOS: puts the pool's aliases on `lo0`, with at most one sudo
//! prompt per reboot (none once `bottle net persist` installed a launchd job that adds them
//! at boot), and finds what already listens on them.
//!
//! All parsing and command building is plain code, compiled and tested on every OS against
//! macOS output in `tests/fixtures/`; only running a command and asking whether a terminal is
//! attached touch the OS (the `host` module), and elsewhere they report that this plugin runs
//! only on macOS.
//!
//! Limitations: only TCP listeners count. The fixtures were written from the documented
//! output formats of macOS's `ifconfig`, `netstat` and `lsof`, not captured on a Mac: replace
//! them with real captures at the first chance. Likewise the launchd job and the line that
//! installs it (`persist`) follow launchd's documentation and have not yet run on a Mac.

mod command;
mod host;
mod listeners;
mod lo0;
mod persist;
mod sudo;
#[cfg(test)]
mod test_host;

use std::fmt;

use bottle_core::{
    AliasPool, AliasUse, BackendError, ErrorKind, NetScoper, PersistPlan, PoolReport,
};
use serde_json::Value;

use crate::command::Host;
use crate::host::SystemHost;
use crate::listeners::ListenerSource;

/// The `net-macos` plugin's NetScoper.
pub struct MacosNetScoper {
    host: Box<dyn Host>,
    listeners: ListenerSource,
}

impl MacosNetScoper {
    /// Builds it from its settings (the plugin's table of `config.toml`, as JSON).
    ///
    /// One key is its own: `listeners`, `"netstat"` (the default: every process's sockets)
    /// or `"lsof"` (names the processes, but sees only the user's own unless run as root).
    /// Keys meant for others (`state_dir`, ...) are ignored, so that the host can hand every
    /// plugin the same context.
    pub fn from_settings(settings: &Value) -> Result<Self, BackendError> {
        let invalid = |message: String| BackendError::new(ErrorKind::InvalidInput, message);
        let listeners = match settings {
            Value::Null => ListenerSource::default(),
            Value::Object(map) => match map.get("listeners") {
                None | Some(Value::Null) => ListenerSource::default(),
                Some(value) => value
                    .as_str()
                    .and_then(ListenerSource::from_setting)
                    .ok_or_else(|| {
                        invalid(format!(
                            "net-macos setting `listeners` must be \"netstat\" or \"lsof\", \
                             not {value}"
                        ))
                    })?,
            },
            other => {
                let kind = json_type(other);
                return Err(invalid(format!(
                    "net-macos settings must be a table, not {kind}"
                )));
            }
        };
        Ok(MacosNetScoper {
            host: Box::new(SystemHost),
            listeners,
        })
    }
}

impl fmt::Debug for MacosNetScoper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacosNetScoper")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl NetScoper for MacosNetScoper {
    fn name(&self) -> String {
        "net-macos".to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        let host = self.host.as_ref();
        let lo0 = lo0::read_lo0(host)?;
        let mut lines = vec![
            "aliases live on lo0 until reboot; the missing ones are added in one sudo call \
             (`bottle net persist` re-adds them at every boot)"
                .to_owned(),
        ];
        let addresses: Vec<String> = lo0.inet.iter().map(ToString::to_string).collect();
        let state = if lo0.up {
            "up"
        } else {
            "down (`sudo ifconfig lo0 up` fixes it)"
        };
        lines.push(format!(
            "lo0 is {state} and carries {}",
            addresses.join(", ")
        ));
        let command = self.listeners.command();
        lines.push(match self.listeners.read(host) {
            Ok(found) => {
                format!(
                    "in-use detection runs `{command}`: {} listening TCP socket{} now",
                    found.len(),
                    if found.len() == 1 { "" } else { "s" }
                )
            }
            Err(err) => format!("in-use detection does not work: {}", err.one_line()),
        });
        if self.listeners == ListenerSource::Lsof {
            lines.push(
                "lsof sees only your own processes' sockets unless bottle runs as root".into(),
            );
        }
        lines.push(if host.stdin_is_terminal() {
            "stdin is a terminal: sudo may ask for a password when aliases are missing".to_owned()
        } else {
            "stdin is not a terminal: when aliases are missing, bottle prints the sudo command \
             to run instead of asking"
                .to_owned()
        });
        Ok(lines)
    }

    fn ensure_pool(&self, pool: &AliasPool) -> Result<PoolReport, BackendError> {
        lo0::ensure_aliases(self.host.as_ref(), pool)
    }

    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError> {
        let lo0 = lo0::read_lo0(self.host.as_ref())?;
        let found = self.listeners.read(self.host.as_ref())?;
        Ok(bottle_core::pool_usage(
            pool,
            |alias| lo0.carries(alias),
            &found,
        ))
    }

    fn persist_plan(&self, pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        Ok(persist::plan(pool))
    }

    fn persist(&self, pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        persist::install(self.host.as_ref(), pool)
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use serde_json::json;

    use super::*;
    use crate::test_host::{success, FakeHost};

    const ALIASED: &str = include_str!("../tests/fixtures/ifconfig-lo0-aliases.txt");
    const NETSTAT: &str = include_str!("../tests/fixtures/netstat-an-tcp.txt");

    fn scoper(host: FakeHost, listeners: ListenerSource) -> MacosNetScoper {
        MacosNetScoper {
            host: Box::new(host),
            listeners,
        }
    }

    #[test]
    fn settings_choose_the_listing_and_ignore_other_keys() {
        let default = MacosNetScoper::from_settings(&json!({"state_dir": "/x"})).unwrap();
        assert_eq!(default.listeners, ListenerSource::Netstat);
        let lsof = MacosNetScoper::from_settings(&json!({"listeners": "lsof"})).unwrap();
        assert_eq!(lsof.listeners, ListenerSource::Lsof);
        assert!(MacosNetScoper::from_settings(&Value::Null).is_ok());
    }

    #[test]
    fn bad_settings_say_what_was_expected() {
        let err = MacosNetScoper::from_settings(&json!({"listeners": "ss"})).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(
            err.message,
            "net-macos setting `listeners` must be \"netstat\" or \"lsof\", not \"ss\""
        );
        let err = MacosNetScoper::from_settings(&json!([1])).unwrap_err();
        assert_eq!(
            err.message,
            "net-macos settings must be a table, not an array"
        );
    }

    #[test]
    fn pool_status_joins_lo0_and_the_listing() {
        let host = FakeHost::new(false, [success(ALIASED), success(NETSTAT)]);
        let pool: AliasPool = "127.0.0.16/30".parse().unwrap();
        let status = scoper(host, ListenerSource::Netstat)
            .pool_status(&pool)
            .unwrap();
        let ip = |last| Ipv4Addr::new(127, 0, 0, last);
        assert_eq!(
            status,
            [
                AliasUse {
                    alias: ip(16),
                    present: true,
                    listening_ports: vec![]
                },
                AliasUse {
                    alias: ip(17),
                    present: true,
                    listening_ports: vec![49154, 49155]
                },
                AliasUse {
                    alias: ip(18),
                    present: true,
                    listening_ports: vec![3000]
                },
                AliasUse {
                    alias: ip(19),
                    present: false,
                    listening_ports: vec![]
                },
            ]
        );
    }

    #[test]
    fn describe_reports_lo0_the_listing_and_the_terminal() {
        let host = FakeHost::new(false, [success(ALIASED), success(NETSTAT)]);
        let lines = scoper(host, ListenerSource::Netstat).describe().unwrap();
        assert_eq!(
            lines[1..],
            [
                "lo0 is up and carries 127.0.0.1, 127.0.0.16, 127.0.0.17, 127.0.0.18, 127.0.0.20",
                "in-use detection runs `/usr/sbin/netstat -anW -p tcp`: \
                 11 listening TCP sockets now",
                "stdin is not a terminal: when aliases are missing, bottle prints the sudo command \
                 to run instead of asking",
            ]
        );
    }

    #[test]
    fn persisting_installs_what_the_plan_shows_in_one_command() {
        let host = FakeHost::new(true, [success("")]);
        let scoper = scoper(host, ListenerSource::Netstat);
        let pool = AliasPool::default();
        let plan = scoper.persist_plan(&pool).unwrap();
        assert!(matches!(plan, PersistPlan::Install { .. }), "{plan:?}");
        assert_eq!(scoper.persist(&pool).unwrap(), plan);
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn elsewhere_every_operation_says_it_needs_macos() {
        let scoper = MacosNetScoper::from_settings(&json!({})).unwrap();
        let err = scoper.ensure_pool(&AliasPool::default()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotSupported);
        assert_eq!(err.message, "net-macos runs only on macOS");
        assert_eq!(
            scoper.pool_status(&AliasPool::default()).unwrap_err().kind,
            ErrorKind::NotSupported
        );
        assert_eq!(
            scoper.persist(&AliasPool::default()).unwrap_err().kind,
            ErrorKind::NotSupported
        );
    }
}

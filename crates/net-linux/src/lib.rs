//! bottle's NetScoper for Linux: proves that the pool's aliases are usable on `lo` and finds
//! what already listens on them.
//!
//! Linux routes all of 127.0.0.0/8 to `lo`, so no alias is ever added: `ensure_pool` binds a
//! socket to each alias instead, which fails when `lo` is down or the route was removed. For
//! the same reason there is nothing to persist across reboots.
//! In-use detection reads the kernel's socket tables in /proc, so it needs no `ss` or
//! `netstat` and sees the sockets of every process in bottle's network namespace.
//!
//! Limitations: only TCP listeners of the caller's network namespace count. A port that Docker
//! publishes through iptables alone (its userland proxy off) has no listener to see; the
//! bundle runtime's list of bottle's own containers covers those.

mod probe;
mod proc_net;

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use bottle_core::{
    AliasPool, AliasUse, BackendError, ErrorKind, Listener, NetScoper, PersistPlan, PoolReport,
};
use serde_json::Value;

use crate::proc_net::WordOrder;

const PROC_NET_TCP: &str = "/proc/net/tcp";
const PROC_NET_TCP6: &str = "/proc/net/tcp6";
const LO_FLAGS: &str = "/sys/class/net/lo/flags";
const NONLOCAL_BIND: &str = "/proc/sys/net/ipv4/ip_nonlocal_bind";

/// Why `bottle net persist` has nothing to do here.
const NOTHING_TO_PERSIST: &str = "Linux routes all of 127.0.0.0/8 to lo at every boot: the \
                                  pool's aliases need no setup to survive a reboot";

/// `IFF_UP` in an interface's flags (linux/if.h).
const IFF_UP: u32 = 0x1;

/// The `net-linux` plugin's NetScoper.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LinuxNetScoper;

impl LinuxNetScoper {
    /// Builds it from its settings (the plugin's table of `config.toml`, as JSON).
    ///
    /// It has no settings of its own; keys meant for others (`state_dir`, ...) are ignored,
    /// so that the host can hand every plugin the same context.
    pub fn from_settings(settings: &Value) -> Result<Self, BackendError> {
        match settings {
            Value::Null | Value::Object(_) => Ok(LinuxNetScoper),
            other => Err(BackendError::new(
                ErrorKind::InvalidInput,
                format!(
                    "net-linux settings must be a table, not {}",
                    json_type(other)
                ),
            )),
        }
    }
}

impl NetScoper for LinuxNetScoper {
    fn name(&self) -> String {
        "net-linux".to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        let mut lines = vec![
            "127.0.0.0/8 is routed to lo: aliases need no setup, each is checked by binding to it"
                .to_owned(),
        ];
        lines.push(lo_state());
        lines.push(match read_listeners() {
            Ok(listeners) => format!(
                "in-use detection reads {PROC_NET_TCP} and {PROC_NET_TCP6}: \
                 {} listening TCP socket{} now",
                listeners.len(),
                if listeners.len() == 1 { "" } else { "s" }
            ),
            Err(err) => format!("in-use detection does not work: {}", err.one_line()),
        });
        if std::fs::read_to_string(NONLOCAL_BIND).is_ok_and(|v| v.trim() == "1") {
            lines.push(
                "net.ipv4.ip_nonlocal_bind is 1: any address binds, so a successful check does \
                 not prove that an alias is routed to lo"
                    .to_owned(),
            );
        }
        Ok(lines)
    }

    fn ensure_pool(&self, pool: &AliasPool) -> Result<PoolReport, BackendError> {
        let mut present = Vec::new();
        let mut failures: Vec<(Ipv4Addr, io::Error)> = Vec::new();
        for alias in pool.aliases() {
            match probe::bind_probe(alias) {
                Ok(()) => present.push(alias),
                Err(err) => failures.push((alias, err)),
            }
        }
        if let Some(err) = probe::unbindable(pool, &failures) {
            tracing::debug!(%pool, failed = failures.len(), "pool aliases cannot be bound");
            return Err(err);
        }
        tracing::debug!(%pool, "every alias of the pool binds on lo");
        Ok(PoolReport {
            present,
            added: Vec::new(),
        })
    }

    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError> {
        let listeners = read_listeners()?;
        Ok(bottle_core::pool_usage(
            pool,
            |alias| probe::bind_probe(alias).is_ok(),
            &listeners,
        ))
    }

    fn persist_plan(&self, _pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        Ok(PersistPlan::NotNeeded {
            reason: NOTHING_TO_PERSIST.to_owned(),
        })
    }

    fn persist(&self, pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        tracing::debug!(%pool, "nothing to persist on Linux");
        self.persist_plan(pool)
    }
}

/// Every listening TCP socket of this network namespace, IPv4 and IPv6.
fn read_listeners() -> Result<Vec<Listener>, BackendError> {
    let mut listeners = read_table(PROC_NET_TCP)?;
    if Path::new(PROC_NET_TCP6).exists() {
        listeners.extend(read_table(PROC_NET_TCP6)?);
    } else {
        tracing::debug!("{PROC_NET_TCP6} does not exist: IPv6 is off, IPv4 alone counts");
    }
    Ok(listeners)
}

/// The listeners in one of the kernel's TCP tables.
fn read_table(path: &str) -> Result<Vec<Listener>, BackendError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        BackendError::new(
            ErrorKind::Unavailable,
            format!("cannot read {path}: is /proc mounted?"),
        )
        .with_cause(&err)
    })?;
    proc_net::parse_listeners(&text, WordOrder::HOST).map_err(|err| {
        BackendError::new(ErrorKind::Other, format!("cannot parse {path}")).with_cause(&err)
    })
}

/// A `describe` line on whether `lo` is up: when it is down, no alias binds.
fn lo_state() -> String {
    match std::fs::read_to_string(LO_FLAGS)
        .ok()
        .and_then(|flags| is_up(&flags))
    {
        Some(true) => "lo is up".to_owned(),
        Some(false) => "lo is down: no alias can be bound; `ip link set lo up` fixes it".into(),
        None => format!("cannot read {LO_FLAGS}: whether lo is up is unknown"),
    }
}

/// Whether an interface's `flags` file (e.g. `0x9`) has `IFF_UP` set.
fn is_up(flags: &str) -> Option<bool> {
    let digits = flags.trim().strip_prefix("0x")?;
    let flags = u32::from_str_radix(digits, 16).ok()?;
    Some(flags & IFF_UP != 0)
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
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_may_be_absent_or_hold_keys_meant_for_others() {
        assert!(LinuxNetScoper::from_settings(&Value::Null).is_ok());
        assert!(LinuxNetScoper::from_settings(&json!({"state_dir": "/tmp/x", "k": 1})).is_ok());
    }

    #[test]
    fn settings_that_are_not_a_table_are_refused() {
        let err = LinuxNetScoper::from_settings(&json!("lo")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(
            err.message,
            "net-linux settings must be a table, not a string"
        );
    }

    #[test]
    fn there_is_nothing_to_persist_and_persisting_changes_nothing() {
        let pool = AliasPool::default();
        let expected = PersistPlan::NotNeeded {
            reason: "Linux routes all of 127.0.0.0/8 to lo at every boot: the pool's aliases \
                     need no setup to survive a reboot"
                .into(),
        };
        assert_eq!(LinuxNetScoper.persist_plan(&pool).unwrap(), expected);
        assert_eq!(LinuxNetScoper.persist(&pool).unwrap(), expected);
    }

    #[test]
    fn interface_flags_tell_whether_it_is_up() {
        assert_eq!(is_up("0x9\n"), Some(true));
        assert_eq!(is_up("0x8"), Some(false));
        assert_eq!(is_up("9"), None);
        assert_eq!(is_up("0xzz"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn describe_reports_lo_and_the_socket_tables() {
        let lines = LinuxNetScoper.describe().unwrap();
        assert!(lines.iter().any(|l| l == "lo is up"), "{lines:?}");
        assert!(
            lines.iter().any(|l| l.contains("listening TCP socket")),
            "{lines:?}"
        );
    }
}

//! The `NetScoper` trait: making a pool's aliases usable on this host, keeping them usable
//! across reboots, and finding which of them something else already listens on.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::addr::AliasPool;
use crate::backend::BackendError;

/// What `ensure_pool` found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolReport {
    /// Aliases that were already usable.
    pub present: Vec<Ipv4Addr>,
    /// Aliases this call made usable (macOS adds them to `lo0`; Linux never needs to).
    pub added: Vec<Ipv4Addr>,
}

/// What keeping a pool usable across reboots takes on this host: what
/// [`NetScoper::persist`] would do, shown to the user before it is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PersistPlan {
    /// Nothing to do: this OS keeps the pool usable across reboots by itself.
    NotNeeded {
        /// Why, in one line.
        reason: String,
    },
    /// Run `command` once: it writes `files` and puts them to use.
    Install {
        /// What the installed files do, in one line.
        summary: String,
        /// Every file `command` writes, with its whole contents.
        files: Vec<PlannedFile>,
        command: PlannedCommand,
    },
}

/// A file a [`PersistPlan`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// The one command a [`PersistPlan`] runs, as a user would run it by hand; the plugin may
/// add flags that only change how it asks (sudo's `-p` or `-n`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedCommand {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The same, as a line for a POSIX shell.
    pub line: String,
    /// The planned file whose contents the command reads on its standard input, if any.
    pub stdin: Option<PathBuf>,
}

/// How one alias of the pool is used on the host, as the net plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasUse {
    pub alias: Ipv4Addr,
    /// Whether the alias exists on the loopback interface.
    pub present: bool,
    /// TCP ports something listens on at this alias (wildcard listeners excluded).
    pub listening_ports: Vec<u16>,
}

/// The local endpoint of a listening TCP socket, as a net plugin reads it from its OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// `None` for a wildcard written as `*`; `0.0.0.0` and `::` are wildcards too.
    pub addr: Option<IpAddr>,
    pub port: u16,
}

impl Listener {
    /// The one IPv4 address the listener is bound to, if it is bound to exactly one.
    ///
    /// An IPv6 socket bound to `::ffff:127.0.0.x` receives the IPv4 traffic of 127.0.0.x, so
    /// it counts. A wildcard listens on every address alike: counting it would mark every
    /// alias busy, and a host with an sshd on `0.0.0.0` would have no free alias.
    fn bound_ipv4(&self) -> Option<Ipv4Addr> {
        let v4 = match self.addr? {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
        };
        (!v4.is_unspecified()).then_some(v4)
    }
}

/// Every alias of `pool`, whether `present` says it exists, and the ports `listeners` listen
/// on at it: what [`NetScoper::pool_status`] reports, from what each OS lists.
pub fn pool_usage(
    pool: &AliasPool,
    present: impl Fn(Ipv4Addr) -> bool,
    listeners: &[Listener],
) -> Vec<AliasUse> {
    pool.aliases()
        .map(|alias| {
            let mut ports: Vec<u16> = listeners
                .iter()
                .filter(|l| l.bound_ipv4() == Some(alias))
                .map(|l| l.port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            AliasUse {
                alias,
                present: present(alias),
                listening_ports: ports,
            }
        })
        .collect()
}

/// The aliases of a [`NetScoper::pool_status`] that something listens on.
pub fn listened_on(usage: &[AliasUse]) -> Vec<Ipv4Addr> {
    usage
        .iter()
        .filter(|u| !u.listening_ports.is_empty())
        .map(|u| u.alias)
        .collect()
}

/// Makes the alias pool usable on this OS and reports foreign listeners.
pub trait NetScoper: Send + Sync {
    /// A short name for `bottle plugins` and logs, e.g. `net-linux`.
    fn name(&self) -> String;

    /// Lines for `bottle doctor`: what this scoper does on this host, and anything wrong.
    fn describe(&self) -> Result<Vec<String>, BackendError>;

    /// Makes every alias of `pool` usable, adding the missing ones where the OS needs it.
    fn ensure_pool(&self, pool: &AliasPool) -> Result<PoolReport, BackendError>;

    /// Every alias of `pool` with whether it exists and what listens on it.
    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError>;

    /// What [`persist`](NetScoper::persist) would write and run for the pool; changes
    /// nothing. A scoper that does not implement it says so.
    fn persist_plan(&self, _pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        Err(BackendError::not_supported(&self.name(), "persist_plan"))
    }

    /// Makes every alias of the pool usable after each reboot without bottle's help, and
    /// returns the plan it carried out.
    fn persist(&self, _pool: &AliasPool) -> Result<PersistPlan, BackendError> {
        Err(BackendError::not_supported(&self.name(), "persist"))
    }

    /// The aliases of `pool` that something already listens on.
    fn listeners_on(&self, pool: &AliasPool) -> Result<Vec<Ipv4Addr>, BackendError> {
        Ok(listened_on(&self.pool_status(pool)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str, port: u16) -> Listener {
        Listener {
            addr: Some(addr.parse().unwrap()),
            port,
        }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, last)
    }

    #[test]
    fn listeners_count_for_their_alias_only_and_wildcards_for_none() {
        let pool: AliasPool = "127.0.0.16/30".parse().unwrap();
        let listeners = [
            at("127.0.0.17", 8080),
            at("::ffff:127.0.0.18", 3000),
            at("127.0.0.17", 22),
            at("0.0.0.0", 9000),
            at("::", 9001),
            at("::ffff:0.0.0.0", 9002),
            Listener {
                addr: None,
                port: 9003,
            },
            at("127.0.0.1", 5432),
            at("::1", 5433),
            at("127.0.0.20", 80),
        ];
        let usage = pool_usage(&pool, |a| a != ip(19), &listeners);
        let ports: Vec<(Ipv4Addr, bool, Vec<u16>)> = usage
            .into_iter()
            .map(|u| (u.alias, u.present, u.listening_ports))
            .collect();
        assert_eq!(
            ports,
            [
                (ip(16), true, vec![]),
                (ip(17), true, vec![22, 8080]),
                (ip(18), true, vec![3000]),
                (ip(19), false, vec![]),
            ]
        );
    }

    #[test]
    fn a_plan_says_in_its_json_which_action_it_is() {
        let not_needed = PersistPlan::NotNeeded {
            reason: "lo routes 127.0.0.0/8".into(),
        };
        assert_eq!(
            serde_json::to_value(&not_needed).unwrap(),
            serde_json::json!({"action": "not_needed", "reason": "lo routes 127.0.0.0/8"})
        );
        let install = PersistPlan::Install {
            summary: "a job".into(),
            files: vec![PlannedFile {
                path: "/etc/job".into(),
                contents: "run\n".into(),
            }],
            command: PlannedCommand {
                argv: vec!["sudo".into(), "tee".into(), "/etc/job".into()],
                line: "sudo tee /etc/job".into(),
                stdin: Some("/etc/job".into()),
            },
        };
        let json = serde_json::to_value(&install).unwrap();
        assert_eq!(json["action"], "install");
        assert_eq!(json["command"]["stdin"], "/etc/job");
        assert_eq!(
            serde_json::from_value::<PersistPlan>(json).unwrap(),
            install
        );
    }

    #[test]
    fn the_same_port_seen_twice_is_listed_once() {
        let pool: AliasPool = "127.0.0.16/32".parse().unwrap();
        let listeners = [at("127.0.0.16", 80), at("::ffff:127.0.0.16", 80)];
        assert_eq!(
            pool_usage(&pool, |_| true, &listeners)[0].listening_ports,
            [80]
        );
    }
}

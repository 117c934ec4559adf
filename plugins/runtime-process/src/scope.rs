//! The check that a started service listens on its bottle's alias only.
//!
//! A process can bind any address it likes; a service that ignores `BOTTLE_ALIAS` and binds
//! the wildcard is reachable through every other bottle's alias, which breaks bottle's
//! promise. After a service accepts connections, this module looks at every listening TCP
//! socket on the host: any socket of the service's process group on another address, and
//! anything on the service's port at a wildcard or host-loopback address, fails the start.

#[cfg(target_os = "linux")]
use std::collections::HashSet;
use std::net::Ipv4Addr;
#[cfg(target_os = "linux")]
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bottle_plugin_api::bottle_core::{BackendError, ErrorKind, ServiceName};

#[cfg(target_os = "linux")]
use crate::procfs::{self, Listener};

/// Whether `addr` is `alias`, in IPv4 or IPv4-mapped IPv6 form.
#[cfg(target_os = "linux")]
fn is_alias(addr: IpAddr, alias: Ipv4Addr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4 == alias,
        IpAddr::V6(v6) => v6.to_ipv4_mapped() == Some(alias),
    }
}

/// The addresses a listener must never have: the wildcards and the host's own loopback.
#[cfg(target_os = "linux")]
fn is_wildcard_or_host_loopback(addr: IpAddr) -> bool {
    let v4 = match addr {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6 == Ipv6Addr::UNSPECIFIED || v6 == Ipv6Addr::LOCALHOST => return true,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => return false,
        },
    };
    v4 == Ipv4Addr::UNSPECIFIED || v4 == Ipv4Addr::LOCALHOST
}

/// The listening addresses that break the scope of a service on `alias:port` whose process
/// group holds the sockets `owned`.
#[cfg(target_os = "linux")]
fn stray_listeners(
    listeners: &[Listener],
    owned: &HashSet<u64>,
    alias: Ipv4Addr,
    port: u16,
) -> Vec<SocketAddr> {
    let mut stray: Vec<SocketAddr> = listeners
        .iter()
        .filter(|l| {
            (owned.contains(&l.inode) && !is_alias(l.addr, alias))
                || (l.port == port && is_wildcard_or_host_loopback(l.addr))
        })
        .map(|l| SocketAddr::new(l.addr, l.port))
        .collect();
    stray.sort();
    stray.dedup();
    stray
}

/// Fails when the service of process group `pgid`, given `alias:port`, listens anywhere
/// but on its alias.
#[cfg(target_os = "linux")]
pub fn check(
    service: &ServiceName,
    pgid: u32,
    alias: Ipv4Addr,
    port: u16,
) -> Result<(), BackendError> {
    let listeners = procfs::listeners().map_err(|e| {
        BackendError::new(
            ErrorKind::ScopeNotEnforceable,
            format!("cannot check where service `{service}` listens"),
        )
        .with_cause(&e)
    })?;
    let owned = procfs::socket_inodes(&procfs::group_members(pgid));
    let stray = stray_listeners(&listeners, &owned, alias, port);
    if stray.is_empty() {
        return Ok(());
    }
    let stray: Vec<String> = stray.iter().map(SocketAddr::to_string).collect();
    Err(BackendError::new(
        ErrorKind::ScopeNotEnforceable,
        format!(
            "service `{service}` listens on {} besides its bottle's alias {alias}: it must bind \
             only the address in $BOTTLE_ALIAS",
            stray.join(", ")
        ),
    ))
}

/// Without `/proc` the check cannot be made, and a start that cannot be checked fails.
#[cfg(not(target_os = "linux"))]
pub fn check(
    service: &ServiceName,
    _pgid: u32,
    _alias: Ipv4Addr,
    _port: u16,
) -> Result<(), BackendError> {
    Err(BackendError::new(
        ErrorKind::ScopeNotEnforceable,
        format!(
            "cannot check where service `{service}` listens on {}: runtime-process reads \
             listening sockets from Linux's /proc only",
            std::env::consts::OS
        ),
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn listener(addr: &str, port: u16, inode: u64) -> Listener {
        Listener {
            addr: addr.parse().unwrap(),
            port,
            inode,
        }
    }

    #[test]
    fn only_the_alias_is_allowed() {
        let alias = Ipv4Addr::new(127, 0, 0, 200);
        let owned: HashSet<u64> = [1, 2, 3].into();
        let listeners = [
            listener("127.0.0.200", 4000, 1),
            listener("::ffff:127.0.0.200", 4001, 2),
            // Another bottle's service on the same port number: fine.
            listener("127.0.0.201", 4000, 9),
            // A foreign listener on another port of the host loopback: not ours, fine.
            listener("127.0.0.1", 5432, 10),
        ];
        assert!(stray_listeners(&listeners, &owned, alias, 4000).is_empty());
    }

    #[test]
    fn wildcards_host_loopback_and_other_aliases_are_stray() {
        let alias = Ipv4Addr::new(127, 0, 0, 200);
        let owned: HashSet<u64> = [1, 2].into();
        let listeners = [
            listener("0.0.0.0", 4000, 1),
            listener("127.0.0.17", 6000, 2),
            listener("::", 4000, 30),
            listener("127.0.0.1", 4000, 31),
            listener("::ffff:0.0.0.0", 4000, 32),
        ];
        let stray: Vec<String> = stray_listeners(&listeners, &owned, alias, 4000)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            stray,
            [
                "0.0.0.0:4000",
                "127.0.0.1:4000",
                "127.0.0.17:6000",
                "[::]:4000",
                "[::ffff:0.0.0.0]:4000"
            ]
        );
    }
}

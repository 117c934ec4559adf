//! Attributing listening sockets to the pool's aliases.

use std::net::{IpAddr, Ipv4Addr};

use bottle_core::{AliasPool, AliasUse};

/// The local endpoint of a listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listener {
    pub addr: IpAddr,
    pub port: u16,
}

/// The IPv4 address a listener is bound to, if it is bound to exactly one.
///
/// An IPv6 socket bound to `::ffff:127.0.0.x` receives the IPv4 traffic of 127.0.0.x, so it
/// counts. A wildcard (`0.0.0.0`, `::`) listens on every address alike: counting it would
/// mark every alias busy, and any host with an sshd on `0.0.0.0` would have no free alias.
fn bound_ipv4(addr: IpAddr) -> Option<Ipv4Addr> {
    let v4 = match addr {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    (!v4.is_unspecified()).then_some(v4)
}

/// Every alias of `pool`, whether it is present, and the ports listened on at it.
pub(crate) fn pool_usage(
    pool: &AliasPool,
    mut present: impl FnMut(Ipv4Addr) -> bool,
    listeners: &[Listener],
) -> Vec<AliasUse> {
    pool.aliases()
        .map(|alias| {
            let mut ports: Vec<u16> = listeners
                .iter()
                .filter(|l| bound_ipv4(l.addr) == Some(alias))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: &str, port: u16) -> Listener {
        Listener {
            addr: addr.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn listeners_count_for_their_alias_only_and_wildcards_for_none() {
        let pool: AliasPool = "127.0.0.16/30".parse().unwrap();
        let listeners = [
            listener("127.0.0.17", 8080),
            listener("::ffff:127.0.0.18", 3000),
            listener("127.0.0.17", 22),
            listener("0.0.0.0", 9000),
            listener("::", 9001),
            listener("::ffff:0.0.0.0", 9002),
            listener("127.0.0.1", 5432),
            listener("::1", 5433),
            listener("127.0.0.20", 80),
        ];
        let usage = pool_usage(&pool, |a| a != Ipv4Addr::new(127, 0, 0, 19), &listeners);
        let ports: Vec<(Ipv4Addr, bool, Vec<u16>)> = usage
            .into_iter()
            .map(|u| (u.alias, u.present, u.listening_ports))
            .collect();
        assert_eq!(
            ports,
            [
                (Ipv4Addr::new(127, 0, 0, 16), true, vec![]),
                (Ipv4Addr::new(127, 0, 0, 17), true, vec![22, 8080]),
                (Ipv4Addr::new(127, 0, 0, 18), true, vec![3000]),
                (Ipv4Addr::new(127, 0, 0, 19), false, vec![]),
            ]
        );
    }

    #[test]
    fn the_same_port_seen_twice_is_listed_once() {
        let pool: AliasPool = "127.0.0.16/32".parse().unwrap();
        let listeners = [
            listener("127.0.0.16", 80),
            listener("::ffff:127.0.0.16", 80),
        ];
        assert_eq!(
            pool_usage(&pool, |_| true, &listeners)[0].listening_ports,
            [80]
        );
    }
}

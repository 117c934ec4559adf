//! Real listeners on real aliases, seen (or not) by `LinuxNetScoper`.
//!
//! Each test owns a slice of 127.0.0.200/29, so that tests running at once, here or in other
//! crates, do not see each other's listeners.

#![cfg(target_os = "linux")]

use std::net::{Ipv4Addr, TcpListener};

use bottle_core::{AliasPool, AliasUse, NetScoper};
use bottle_net_linux::LinuxNetScoper;

fn scoper() -> LinuxNetScoper {
    LinuxNetScoper::from_settings(&serde_json::json!({})).unwrap()
}

fn alias(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn usage_of(status: &[AliasUse], alias: Ipv4Addr) -> &AliasUse {
    status
        .iter()
        .find(|u| u.alias == alias)
        .expect("every alias of the pool is reported")
}

#[test]
fn listeners_on_ipv4_and_ipv4_mapped_ipv6_are_attributed_to_their_alias() {
    let pool: AliasPool = "127.0.0.200/30".parse().unwrap();
    let v4 = TcpListener::bind((alias(201), 0)).unwrap();
    let mapped = TcpListener::bind("[::ffff:127.0.0.203]:0").unwrap();
    let v4_port = v4.local_addr().unwrap().port();
    let mapped_port = mapped.local_addr().unwrap().port();

    let status = scoper().pool_status(&pool).unwrap();

    assert_eq!(
        status.iter().map(|u| u.alias).collect::<Vec<_>>(),
        pool.aliases().collect::<Vec<_>>()
    );
    assert!(status.iter().all(|u| u.present), "{status:?}");
    assert_eq!(usage_of(&status, alias(201)).listening_ports, [v4_port]);
    assert_eq!(usage_of(&status, alias(203)).listening_ports, [mapped_port]);
    assert_eq!(
        scoper().listeners_on(&pool).unwrap(),
        [alias(201), alias(203)]
    );
}

#[test]
fn a_closed_listener_no_longer_makes_its_alias_busy() {
    let pool: AliasPool = "127.0.0.204/32".parse().unwrap();
    let listener = TcpListener::bind((alias(204), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let busy = scoper().pool_status(&pool).unwrap();
    assert_eq!(usage_of(&busy, alias(204)).listening_ports, [port]);

    drop(listener);

    let free = scoper().pool_status(&pool).unwrap();
    assert!(
        !usage_of(&free, alias(204)).listening_ports.contains(&port),
        "{free:?}"
    );
}

#[test]
fn wildcard_listeners_are_attributed_to_no_alias() {
    let pool: AliasPool = "127.0.0.205/32".parse().unwrap();
    let any_v4 = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let any_v6 = TcpListener::bind("[::]:0").unwrap();
    let ports = [
        any_v4.local_addr().unwrap().port(),
        any_v6.local_addr().unwrap().port(),
    ];

    let status = scoper().pool_status(&pool).unwrap();

    for usage in &status {
        assert!(
            !usage.listening_ports.iter().any(|p| ports.contains(p)),
            "{status:?}"
        );
    }
}

#[test]
fn ensure_pool_verifies_every_alias_adds_none_and_leaves_nothing_listening() {
    let pool: AliasPool = "127.0.0.206/31".parse().unwrap();

    let report = scoper().ensure_pool(&pool).unwrap();

    assert_eq!(report.present, [alias(206), alias(207)]);
    assert!(report.added.is_empty());
    let status = scoper().pool_status(&pool).unwrap();
    assert!(
        status.iter().all(|u| u.listening_ports.is_empty()),
        "{status:?}"
    );
}

//! What `create` accepts, turned into the exact addresses the relay forwards to.

use std::collections::BTreeSet;
use std::net::SocketAddrV4;
use std::path::{Component, Path};

use bottle_core::{AgentSpec, EgressPolicy, Ipv4Cidr};

use crate::error::Error;

/// The directory of the sandbox's new root where the host's root stays attached while the
/// sandbox is built; it is detached and removed before the agent starts. No mount may use it.
pub const HOST_ROOT_DIR: &str = ".bottle-host";

/// Checks the agent and the policy, and returns the relay's addresses: every endpoint's
/// `ALIAS:HOSTPORT`, once each, in order.
///
/// The policy must be an allow-list within the agent's `ALIAS/32` (the alias itself, or
/// nothing), and every endpoint must lie inside it and on loopback, so that the relay can
/// never be made to forward anywhere else.
pub fn relay_targets(agent: &AgentSpec, policy: &EgressPolicy) -> Result<Vec<SocketAddrV4>, Error> {
    let EgressPolicy::AllowOnly(blocks) = policy else {
        return Err(Error::Unrestricted);
    };
    if !policy.is_within(&EgressPolicy::alias_only(agent.alias)) {
        return Err(Error::PolicyTooWide {
            policy: policy.clone(),
            alias: agent.alias.to_string(),
        });
    }
    let mut targets = BTreeSet::new();
    for endpoint in &agent.endpoints {
        let address = SocketAddrV4::new(endpoint.host_ip, endpoint.host_port);
        if !endpoint.host_ip.is_loopback() {
            return Err(Error::EndpointNotLoopback {
                endpoint: address,
                service: endpoint.service.to_string(),
            });
        }
        if !blocks.iter().any(|b| b.contains(endpoint.host_ip)) {
            return Err(Error::EndpointOutsidePolicy {
                endpoint: address,
                service: endpoint.service.to_string(),
                policy: policy.clone(),
            });
        }
        targets.insert(address);
    }
    Ok(targets.into_iter().collect())
}

/// The policy the relay enforces: the addresses it forwards to, each as a `/32`; empty when
/// the bundle has no endpoints.
pub fn effective_policy(relay: &[SocketAddrV4]) -> EgressPolicy {
    let hosts: BTreeSet<Ipv4Cidr> = relay.iter().map(|a| Ipv4Cidr::host(*a.ip())).collect();
    EgressPolicy::AllowOnly(hosts.into_iter().collect())
}

/// Refuses what the sandbox cannot run: a VMM artifact or an image (it runs the agent's
/// command on the host's own filesystem), and mounts it cannot place.
pub fn check_agent(agent: &AgentSpec) -> Result<(), Error> {
    if agent.from.is_some() {
        return Err(Error::Artifact { field: "from" });
    }
    if agent.image.is_some() {
        return Err(Error::Artifact { field: "image" });
    }
    for mount in &agent.mounts {
        check_guest_path(&mount.guest)?;
        if !mount.host.is_absolute() {
            return Err(Error::GuestPath {
                guest: mount.guest.display().to_string(),
                expected: format!("an absolute host path, got {}", mount.host.display()),
            });
        }
    }
    Ok(())
}

/// A mount's place in the agent: absolute, below `/`, without `.` or `..`, and not where
/// the sandbox keeps its own mounts (`/proc`, the host root's temporary place).
pub fn check_guest_path(guest: &Path) -> Result<(), Error> {
    let refuse = |expected: &str| Error::GuestPath {
        guest: guest.display().to_string(),
        expected: expected.to_owned(),
    };
    let mut components = guest.components();
    if components.next() != Some(Component::RootDir) {
        return Err(refuse("an absolute path"));
    }
    let rest: Vec<Component<'_>> = components.collect();
    if rest.is_empty() {
        return Err(refuse("a directory below /, not / itself"));
    }
    if !rest.iter().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse("a path without `.` or `..`"));
    }
    let first = rest[0].as_os_str();
    if first == "proc" || first == HOST_ROOT_DIR {
        return Err(refuse(&format!(
            "a path outside /proc and /{HOST_ROOT_DIR}, which the sandbox uses itself"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use bottle_core::{Mount, ServiceEndpoint};

    use super::*;
    use crate::machine::MachineRecord;

    const ALIAS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 17);

    fn endpoint(service: &str, ip: Ipv4Addr, port: u16) -> ServiceEndpoint {
        ServiceEndpoint {
            service: service.parse().unwrap(),
            container_port: 80,
            host_ip: ip,
            host_port: port,
        }
    }

    pub(crate) fn agent() -> AgentSpec {
        AgentSpec {
            slug: "a".parse().unwrap(),
            machine_name: "bottle-a".into(),
            from: None,
            image: None,
            command: vec![],
            env: BTreeMap::from([("BOTTLE_ALIAS".to_owned(), ALIAS.to_string())]),
            mounts: vec![],
            cpus: None,
            memory_mib: None,
            alias: ALIAS,
            endpoints: vec![
                endpoint("web", ALIAS, 49154),
                endpoint("db", ALIAS, 49153),
                endpoint("web", ALIAS, 49154),
            ],
        }
    }

    pub(crate) fn record() -> MachineRecord {
        let agent = agent();
        let policy = EgressPolicy::alias_only(ALIAS);
        let relay = relay_targets(&agent, &policy).unwrap();
        MachineRecord {
            agent,
            policy,
            relay,
        }
    }

    #[test]
    fn the_alias_policy_gives_each_endpoint_once() {
        let relay = relay_targets(&agent(), &EgressPolicy::alias_only(ALIAS)).unwrap();
        assert_eq!(
            relay,
            [
                SocketAddrV4::new(ALIAS, 49153),
                SocketAddrV4::new(ALIAS, 49154)
            ]
        );
        assert_eq!(effective_policy(&relay), EgressPolicy::alias_only(ALIAS));
        assert_eq!(effective_policy(&[]), EgressPolicy::AllowOnly(vec![]));
    }

    #[test]
    fn unrestricted_and_wider_policies_are_refused() {
        let agent = agent();
        assert!(matches!(
            relay_targets(&agent, &EgressPolicy::Unrestricted),
            Err(Error::Unrestricted)
        ));
        for wide in ["127.0.0.0/8", "127.0.0.16/28", "0.0.0.0/0", "127.0.0.18/32"] {
            let policy = EgressPolicy::AllowOnly(vec![wide.parse().unwrap()]);
            let err = relay_targets(&agent, &policy).unwrap_err();
            assert!(
                matches!(err, Error::PolicyTooWide { .. }),
                "{wide}: {err:?}"
            );
            assert_eq!(err.kind(), bottle_core::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn endpoints_outside_the_policy_or_off_loopback_are_refused() {
        let mut agent = agent();
        let err = relay_targets(&agent, &EgressPolicy::AllowOnly(vec![])).unwrap_err();
        assert!(
            matches!(err, Error::EndpointOutsidePolicy { .. }),
            "{err:?}"
        );
        agent.alias = Ipv4Addr::new(10, 0, 0, 1);
        agent.endpoints = vec![endpoint("web", agent.alias, 80)];
        let err = relay_targets(&agent, &EgressPolicy::alias_only(agent.alias)).unwrap_err();
        assert!(matches!(err, Error::EndpointNotLoopback { .. }), "{err:?}");
    }

    #[test]
    fn artifacts_and_images_are_refused_with_the_reason() {
        let mut with_image = agent();
        with_image.image = Some("alpine".into());
        let err = check_agent(&with_image).unwrap_err();
        assert!(
            err.to_string()
                .contains("read-only view of this host's own"),
            "{err}"
        );
        let mut with_from = agent();
        with_from.from = Some("/x/agent.smolmachine".into());
        assert!(matches!(
            check_agent(&with_from),
            Err(Error::Artifact { field: "from" })
        ));
    }

    #[test]
    fn guest_paths_must_be_plain_absolute_paths_of_the_agent() {
        for ok in ["/work", "/run/bottle", "/a/b/c", "/tmp/x/"] {
            assert!(check_guest_path(Path::new(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "work",
            "/",
            "/a/../b",
            "/proc/x",
            "/.bottle-host/etc",
            "/proc",
        ] {
            assert!(check_guest_path(Path::new(bad)).is_err(), "{bad}");
        }
        let mut agent = agent();
        agent.mounts.push(Mount {
            host: "relative".into(),
            guest: "/w".into(),
            read_only: true,
        });
        assert!(check_agent(&agent).is_err());
    }
}

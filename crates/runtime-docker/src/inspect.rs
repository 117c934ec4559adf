//! Reading Docker's JSON output into typed values: who owns an object, where it publishes,
//! whether it runs, which versions answer.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use bottle_core::{OwnedResource, Slug};
use serde::Deserialize;
use tracing::{debug, warn};

use crate::labels;

type Bindings = BTreeMap<String, Option<Vec<BindingJson>>>;

/// The part of `docker inspect CONTAINER` that bottle reads; everything may be missing or
/// null on some engine, so everything has a default.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerJson {
    name: String,
    state: StateJson,
    config: ConfigJson,
    host_config: HostConfigJson,
    network_settings: NetworkSettingsJson,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StateJson {
    running: bool,
    exit_code: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConfigJson {
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct HostConfigJson {
    /// What was asked for: holds even while the container is stopped.
    port_bindings: Option<Bindings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkSettingsJson {
    /// What the engine actually bound; empty while the container is stopped.
    ports: Option<Bindings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BindingJson {
    host_ip: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkJson {
    name: String,
    labels: Option<BTreeMap<String, String>>,
}

/// `docker version --format '{{json .}}'`: `Server` is null when the daemon does not answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct VersionJson {
    pub client: Option<VersionPart>,
    pub server: Option<VersionPart>,
}

/// One side of `docker version`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct VersionPart {
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
    /// The docker context in use (client side only).
    pub context: String,
}

/// Whether a container runs, and how it ended if it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContainerState {
    pub running: bool,
    pub exit_code: i64,
}

/// The state of the one container in `docker inspect CONTAINER` output.
pub(crate) fn container_state(json: &str) -> Result<Option<ContainerState>, serde_json::Error> {
    let containers: Vec<ContainerJson> = serde_json::from_str(json)?;
    Ok(containers.first().map(|c| ContainerState {
        running: c.state.running,
        exit_code: c.state.exit_code,
    }))
}

/// Containers in `docker inspect ID...` output that carry a bottle's slug.
pub(crate) fn owned_containers(json: &str) -> Result<Vec<OwnedResource>, serde_json::Error> {
    let containers: Vec<ContainerJson> = serde_json::from_str(json)?;
    Ok(containers
        .into_iter()
        .filter_map(|c| {
            let name = c.name.trim_start_matches('/').to_owned();
            let slug = owner(&name, c.config.labels.as_ref())?;
            let requested = c.host_config.port_bindings.iter();
            let bound = c.network_settings.ports.iter();
            let mut published_on: Vec<Ipv4Addr> = requested
                .chain(bound)
                .flat_map(|b| host_ips(&name, b))
                .collect();
            published_on.sort();
            published_on.dedup();
            Some(OwnedResource {
                slug,
                kind: "container".to_owned(),
                name,
                published_on,
                running: c.state.running,
                instance: instance(c.config.labels.as_ref()),
            })
        })
        .collect())
}

/// Networks in `docker network inspect ID...` output that carry a bottle's slug.
pub(crate) fn owned_networks(json: &str) -> Result<Vec<OwnedResource>, serde_json::Error> {
    let networks: Vec<NetworkJson> = serde_json::from_str(json)?;
    Ok(networks
        .into_iter()
        .filter_map(|n| {
            let slug = owner(&n.name, n.labels.as_ref())?;
            Some(OwnedResource {
                slug,
                kind: "network".to_owned(),
                name: n.name,
                published_on: Vec::new(),
                running: true,
                instance: instance(n.labels.as_ref()),
            })
        })
        .collect())
}

/// The bottle home named in an object's labels.
fn instance(labels: Option<&BTreeMap<String, String>>) -> Option<String> {
    labels?.get(labels::INSTANCE).cloned()
}

/// The bottle named in an object's labels; an object labelled by hand with a slug that is not
/// one cannot be a bottle's, so it is left out, with a warning.
fn owner(name: &str, labels: Option<&BTreeMap<String, String>>) -> Option<Slug> {
    let value = labels?.get(labels::SLUG)?;
    match value.parse::<Slug>() {
        Ok(slug) => Some(slug),
        Err(err) => {
            warn!(object = name, %err, "ignoring a docker object with an invalid bottle label");
            None
        }
    }
}

/// The host addresses in one set of port bindings. An empty host IP and `::` both mean every
/// address, reported as 0.0.0.0; other IPv6 addresses cannot hold an IPv4 alias and are left
/// out.
fn host_ips<'a>(container: &'a str, bindings: &'a Bindings) -> impl Iterator<Item = Ipv4Addr> + 'a {
    bindings.values().flatten().flatten().filter_map(move |b| {
        let ip = b.host_ip.trim();
        if ip.is_empty() {
            return Some(Ipv4Addr::UNSPECIFIED);
        }
        match ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(IpAddr::V4(v4)) => Some(v4),
            Ok(IpAddr::V6(v6)) if v6.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
            Ok(IpAddr::V6(_)) => None,
            Err(_) => {
                debug!(container, host_ip = ip, "ignoring an unreadable host IP");
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from docker 20.10 output: a running container published on an alias, and a
    /// created one that asked for the alias and for every address.
    const CONTAINERS: &str = r#"[
      {
        "Id": "3e858f18",
        "Name": "/bottle-sample-web",
        "State": {"Status": "running", "Running": true, "ExitCode": 0},
        "Config": {"Labels": {"io.bottle.managed": "1", "io.bottle.service": "web",
                              "io.bottle.slug": "sample"}},
        "HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.230", "HostPort": ""}]}},
        "NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.230",
                                                    "HostPort": "32768"}]}}
      },
      {
        "Id": "3497a459",
        "Name": "/bottle-sample-stopped",
        "State": {"Status": "created", "Running": false, "ExitCode": 0},
        "Config": {"Labels": {"io.bottle.managed": "1", "io.bottle.slug": "sample"}},
        "HostConfig": {"PortBindings": {
          "7070/tcp": [{"HostIp": "", "HostPort": ""}],
          "9090/tcp": [{"HostIp": "127.0.0.230", "HostPort": ""}],
          "9191/tcp": [{"HostIp": "::1", "HostPort": ""}]
        }},
        "NetworkSettings": {"Ports": {}}
      },
      {
        "Name": "/hand-made",
        "Config": {"Labels": {"io.bottle.managed": "1", "io.bottle.slug": "Not A Slug"}}
      },
      {"Name": "/no-labels", "Config": {"Labels": null}, "HostConfig": {"PortBindings": null},
       "NetworkSettings": {"Ports": {"80/tcp": null}}}
    ]"#;

    #[test]
    fn containers_report_owner_addresses_and_state() {
        let owned = owned_containers(CONTAINERS).unwrap();
        let sample: Slug = "sample".parse().unwrap();
        assert_eq!(
            owned,
            [
                OwnedResource {
                    slug: sample.clone(),
                    kind: "container".to_owned(),
                    name: "bottle-sample-web".to_owned(),
                    published_on: vec![Ipv4Addr::new(127, 0, 0, 230)],
                    running: true,
                    instance: None,
                },
                OwnedResource {
                    slug: sample,
                    kind: "container".to_owned(),
                    name: "bottle-sample-stopped".to_owned(),
                    published_on: vec![Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(127, 0, 0, 230)],
                    running: false,
                    instance: None,
                },
            ]
        );
    }

    #[test]
    fn networks_report_their_owner() {
        let json = r#"[{"Name": "bottle-sample", "Id": "cd6b", "Labels":
                        {"io.bottle.managed": "1", "io.bottle.slug": "sample"}},
                       {"Name": "other", "Labels": {}}]"#;
        let owned = owned_networks(json).unwrap();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].name, "bottle-sample");
        assert_eq!(owned[0].kind, "network");
        assert!(owned[0].running && owned[0].published_on.is_empty());
    }

    #[test]
    fn versions_with_and_without_a_server() {
        let json = r#"{"Client":{"Version":"28.2.2","ApiVersion":"1.50","Context":"default"},
                       "Server":{"Version":"20.10.24+dfsg1","ApiVersion":"1.41","Os":"linux",
                                 "Arch":"amd64","Components":[]}}"#;
        let v: VersionJson = serde_json::from_str(json).unwrap();
        assert_eq!(v.client.unwrap().context, "default");
        let server = v.server.unwrap();
        assert_eq!(
            (server.version.as_str(), server.os.as_str()),
            ("20.10.24+dfsg1", "linux")
        );
        let down: VersionJson =
            serde_json::from_str(r#"{"Client":{"Version":"28.2.2"},"Server":null}"#).unwrap();
        assert!(down.server.is_none());
    }

    #[test]
    fn state_of_an_exited_container() {
        let json = r#"[{"Name": "/x", "State": {"Running": false, "ExitCode": 3}}]"#;
        assert_eq!(
            container_state(json).unwrap(),
            Some(ContainerState {
                running: false,
                exit_code: 3
            })
        );
        assert_eq!(container_state("[]").unwrap(), None);
        assert!(container_state("Error: No such object").is_err());
    }
}

//! The labels and names that mark Docker objects as a bottle's, so that any process can find
//! them again, after a crash too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bottle_core::{ServiceName, Slug};

/// Present (`1`) on every container and network bottle creates; nothing else is touched.
pub const MANAGED: &str = "io.bottle.managed";
/// The slug of the bottle that owns the object.
pub const SLUG: &str = "io.bottle.slug";
/// The bottle home (its instance id) whose bottle owns the object.
pub const INSTANCE: &str = "io.bottle.instance";
/// The service a container runs.
pub const SERVICE: &str = "io.bottle.service";
/// The alias the bottle's ports are published on, so that a later `host_port` knows which
/// `docker port` line is the one.
pub const ALIAS: &str = "io.bottle.alias";
/// The `start_bundle` call that created the object: a failed start removes exactly what it
/// created, even a container that `docker run` created and then failed to start, and never
/// a same-named object of another launch.
pub const LAUNCH: &str = "io.bottle.launch";

/// The bottle's network: `bottle-<slug>`, followed by the start of the home's instance id
/// when the runtime has one, so that two homes' bottles of one name do not clash.
pub fn network_name(slug: &Slug, instance: Option<&str>) -> String {
    match instance {
        Some(id) => format!(
            "{}-{}",
            slug.resource_name(),
            id.chars().take(8).collect::<String>()
        ),
        None => slug.resource_name(),
    }
}

/// The container of one service: the network's name, a dot, and the service, for people
/// reading `docker ps`. The dot cannot occur in a slug or a service name, so two bottles'
/// containers never share a name; bottle still finds them by their labels.
pub fn container_name(slug: &Slug, service: &ServiceName, instance: Option<&str>) -> String {
    format!("{}.{service}", network_name(slug, instance))
}

/// A `--filter` value selecting objects that carry `key=value`.
pub(crate) fn filter(key: &str, value: &str) -> String {
    format!("label={key}={value}")
}

/// A value unique to one `start_bundle` call on this host.
pub(crate) fn new_launch_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}-{:x}-{n:x}", std::process::id(), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters() {
        let slug: Slug = "review-bot".parse().unwrap();
        let service: ServiceName = "mcp".parse().unwrap();
        assert_eq!(
            container_name(&slug, &service, None),
            "bottle-review-bot.mcp"
        );
        assert_eq!(
            container_name(&slug, &service, Some("0123456789abcdef")),
            "bottle-review-bot-01234567.mcp"
        );
        assert_eq!(
            filter(SLUG, "review-bot"),
            "label=io.bottle.slug=review-bot"
        );
    }

    #[test]
    fn launch_ids_differ_within_one_process() {
        assert_ne!(new_launch_id(), new_launch_id());
    }
}

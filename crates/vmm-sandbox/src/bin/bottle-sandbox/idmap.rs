//! The uid and gid maps of the sandbox's two nested user namespaces.

use bottle_vmm_sandbox::ROOT_AGENT_ID;

/// The outer namespace is the builder's: its uid 0 is the invoking user, so that building
/// the sandbox can reach whatever that user can (the spec's mounts, the state directory).
/// The inner one is the agent's, nested in the outer one, so that every mount the builder
/// made is locked against the agent. For a root invoker, the outer namespace also maps uid 1
/// to the host's `nobody`, and the inner namespace maps the agent's root to that, so that a
/// root-invoked agent holds no more power over host files than `nobody` does.
///
/// The maps for a sandbox started by a process with effective ids `(uid, gid)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    /// `/proc/PID/uid_map` of the outer namespace, written by the supervisor.
    pub outer_uid_map: String,
    pub outer_gid_map: String,
    /// Whether the outer namespace must deny setgroups: the kernel requires it when an
    /// unprivileged process writes the gid map.
    pub outer_deny_setgroups: bool,
    /// The outer-namespace ids the builder switches to before it creates the agent's
    /// namespace; the agent's root is these ids.
    pub agent_uid: u32,
    pub agent_gid: u32,
}

impl IdMaps {
    pub fn for_invoker(uid: u32, gid: u32) -> Self {
        if uid == 0 {
            IdMaps {
                outer_uid_map: format!("0 0 1\n1 {ROOT_AGENT_ID} 1\n"),
                outer_gid_map: format!("0 0 1\n1 {ROOT_AGENT_ID} 1\n"),
                outer_deny_setgroups: false,
                agent_uid: 1,
                agent_gid: 1,
            }
        } else {
            IdMaps {
                outer_uid_map: format!("0 {uid} 1\n"),
                outer_gid_map: format!("0 {gid} 1\n"),
                outer_deny_setgroups: true,
                agent_uid: 0,
                agent_gid: 0,
            }
        }
    }

    /// Whether the builder must switch ids (and drop its groups) before it creates the
    /// agent's namespace.
    pub fn switches_ids(&self) -> bool {
        self.agent_uid != 0
    }

    /// The inner namespace's uid map, which the builder writes for itself: the agent's root
    /// is the builder's own (switched) uid, the one mapping an unprivileged process may set.
    pub fn inner_uid_map(&self) -> String {
        format!("0 {} 1\n", self.agent_uid)
    }

    pub fn inner_gid_map(&self) -> String {
        format!("0 {} 1\n", self.agent_gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_maps_only_itself() {
        let maps = IdMaps::for_invoker(1000, 1001);
        assert_eq!(maps.outer_uid_map, "0 1000 1\n");
        assert_eq!(maps.outer_gid_map, "0 1001 1\n");
        assert!(maps.outer_deny_setgroups);
        assert!(!maps.switches_ids());
        assert_eq!(maps.inner_uid_map(), "0 0 1\n");
    }

    #[test]
    fn root_runs_the_agent_as_nobody() {
        let maps = IdMaps::for_invoker(0, 0);
        assert_eq!(maps.outer_uid_map, "0 0 1\n1 65534 1\n");
        assert!(!maps.outer_deny_setgroups);
        assert!(maps.switches_ids());
        assert_eq!(maps.inner_uid_map(), "0 1 1\n");
        assert_eq!(maps.inner_gid_map(), "0 1 1\n");
    }
}

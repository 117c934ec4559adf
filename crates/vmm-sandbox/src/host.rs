//! What this host allows: the kernel's user-namespace switches, and who the agent runs as.

use std::fs;
use std::path::Path;

/// The host uid a root-invoked agent runs as (`nobody` on most distributions), so that the
/// host's own root-owned files are as closed to the agent as to any unprivileged user.
pub const ROOT_AGENT_ID: u32 = 65534;

const MAX_USER_NAMESPACES: &str = "/proc/sys/user/max_user_namespaces";
const UNPRIVILEGED_USERNS_CLONE: &str = "/proc/sys/kernel/unprivileged_userns_clone";
const APPARMOR_RESTRICT: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";

/// The kernel settings about user namespaces, each `None` when this kernel does not have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsernsSettings {
    pub max_user_namespaces: Option<u64>,
    /// Debian's and older Ubuntu's switch for unprivileged user namespaces.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu 23.10 and later: unprivileged user namespaces get no capabilities unless an
    /// AppArmor profile allows them.
    pub apparmor_restrict: Option<u64>,
}

impl UsernsSettings {
    /// Reads this host's settings.
    pub fn read() -> Self {
        UsernsSettings {
            max_user_namespaces: read_number(Path::new(MAX_USER_NAMESPACES)),
            unprivileged_userns_clone: read_number(Path::new(UNPRIVILEGED_USERNS_CLONE)),
            apparmor_restrict: read_number(Path::new(APPARMOR_RESTRICT)),
        }
    }

    /// Why the sandbox cannot work for a user with effective uid `euid`, and what would fix
    /// it; `None` when the settings allow it (the helper's `check` has the last word).
    pub fn blocker(&self, euid: u32) -> Option<(String, String)> {
        if self.max_user_namespaces == Some(0) {
            return Some((
                "user namespaces are disabled (user.max_user_namespaces = 0)".to_owned(),
                "enable them with `sysctl -w user.max_user_namespaces=15000`, or use a VMM \
                 such as smolvm"
                    .to_owned(),
            ));
        }
        if euid != 0 && self.unprivileged_userns_clone == Some(0) {
            return Some((
                "unprivileged user namespaces are disabled \
                 (kernel.unprivileged_userns_clone = 0)"
                    .to_owned(),
                "enable them with `sysctl -w kernel.unprivileged_userns_clone=1`, or use a VMM \
                 such as smolvm"
                    .to_owned(),
            ));
        }
        None
    }

    /// Lines for `bottle doctor`.
    pub fn describe(&self) -> Vec<String> {
        let show = |name: &str, value: Option<u64>| match value {
            Some(v) => format!("{name} = {v}"),
            None => format!("{name}: not set by this kernel"),
        };
        let mut lines = vec![
            show("user.max_user_namespaces", self.max_user_namespaces),
            show(
                "kernel.unprivileged_userns_clone",
                self.unprivileged_userns_clone,
            ),
        ];
        if let Some(v) = self.apparmor_restrict {
            lines.push(format!(
                "kernel.apparmor_restrict_unprivileged_userns = {v}{}",
                if v == 0 {
                    ""
                } else {
                    " (unprivileged sandboxes need an AppArmor profile that allows userns)"
                }
            ));
        }
        lines
    }
}

/// Who the agent runs as on the host, in words, for `bottle doctor` and probe notes.
pub fn agent_identity(euid: u32) -> String {
    if euid == 0 {
        format!(
            "agents run as uid {ROOT_AGENT_ID} (nobody) on the host, because bottle runs as root"
        )
    } else {
        format!("agents run as uid {euid} (the user running bottle) on the host")
    }
}

/// This process's effective uid.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u64, clone: Option<u64>) -> UsernsSettings {
        UsernsSettings {
            max_user_namespaces: Some(max),
            unprivileged_userns_clone: clone,
            apparmor_restrict: None,
        }
    }

    #[test]
    fn disabled_user_namespaces_block_everyone() {
        let (reason, remedy) = settings(0, None).blocker(0).unwrap();
        assert!(reason.contains("max_user_namespaces = 0"), "{reason}");
        assert!(remedy.contains("sysctl"), "{remedy}");
    }

    #[test]
    fn the_debian_switch_blocks_unprivileged_users_only() {
        assert!(settings(100, Some(0)).blocker(1000).is_some());
        assert!(settings(100, Some(0)).blocker(0).is_none());
        assert!(settings(100, Some(1)).blocker(1000).is_none());
        assert!(settings(100, None).blocker(1000).is_none());
    }

    #[test]
    fn the_agent_identity_names_nobody_for_root() {
        assert!(agent_identity(0).contains("65534"));
        assert!(agent_identity(1000).contains("uid 1000"));
    }
}

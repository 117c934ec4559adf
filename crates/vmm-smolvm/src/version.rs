//! smolvm's version, and what it means for bottle: which command line it speaks and whether
//! it can hold an agent to exactly its alias.
//!
//! The egress behaviour changed several times upstream, and only one range of releases lets a
//! machine reach one address of host loopback and nothing else. Everything here is pure, so
//! that each boundary of that range is pinned by a test.

use std::fmt;

use bottle_core::ScopeSupport;

/// What a user can do when their smolvm cannot hold an agent to its alias.
pub const REMEDY: &str = "use smolvm 0.8.x to 1.0.3, the releases whose machines reach host \
                          loopback through an allow-list bottle can narrow to the alias, or \
                          another VMM backend (on Linux: vmm = \"sandbox\")";

/// A smolvm release, as `smolvm --version` prints it (`smolvm 1.9.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SmolvmVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl SmolvmVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        SmolvmVersion {
            major,
            minor,
            patch,
        }
    }

    /// Reads the output of `smolvm --version`. Anything but `smolvm X.Y.Z` (pre-releases and
    /// custom builds included) is `None`: their egress behaviour is unknown, so they are refused.
    pub fn from_version_output(output: &str) -> Option<Self> {
        let rest = output.trim().strip_prefix("smolvm ")?;
        let mut parts = rest.split('.');
        let version = SmolvmVersion {
            major: number(parts.next()?)?,
            minor: number(parts.next()?)?,
            patch: number(parts.next()?)?,
        };
        match parts.next() {
            Some(_) => None,
            None => Some(version),
        }
    }
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for SmolvmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// How a range of smolvm releases treats a machine's egress allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EgressBehaviour {
    /// 0.8.x – 1.0.3: a guest's connect to a loopback address becomes a host connect (TSI),
    /// filtered by the allow-list; but `--allow-cidr` is dropped for machines created `--from`
    /// an artifact, which bottle repairs in smolvm's database before the machine starts.
    TsiDropsAllowCidr,
    /// 1.0.4 – 1.1.2: TSI with a floor that denies host loopback whatever the list says.
    TsiLoopbackFloor,
    /// 1.1.3 – 1.7.x: any allow-list forces virtio-net, where the guest's loopback stays in the
    /// guest; `--allow-cidr` is still dropped for `--from`.
    VirtioNetDropsAllowCidr,
    /// 1.8.0 – 1.x: virtio-net, with `--allow-cidr` honoured.
    VirtioNet,
    /// Older than 0.8.0, newer than 1.x, or not a version at all: never verified.
    Unknown,
}

impl EgressBehaviour {
    /// The row of smolvm's version table that `version` falls in.
    pub fn of(version: Option<SmolvmVersion>) -> Self {
        let v = SmolvmVersion::new;
        let known = v(0, 8, 0)..v(2, 0, 0);
        let Some(version) = version.filter(|version| known.contains(version)) else {
            return EgressBehaviour::Unknown;
        };
        if version <= v(1, 0, 3) {
            EgressBehaviour::TsiDropsAllowCidr
        } else if version <= v(1, 1, 2) {
            EgressBehaviour::TsiLoopbackFloor
        } else if version < v(1, 8, 0) {
            EgressBehaviour::VirtioNetDropsAllowCidr
        } else {
            EgressBehaviour::VirtioNet
        }
    }

    /// Whether an agent on this smolvm reaches exactly its alias on host loopback; `reported`
    /// is what `smolvm --version` printed, for the message.
    pub fn scope_support(&self, reported: &str) -> ScopeSupport {
        let reason = match self {
            EgressBehaviour::TsiDropsAllowCidr => return ScopeSupport::Exact,
            EgressBehaviour::TsiLoopbackFloor => format!(
                "{reported} denies every host loopback address to its machines whatever the \
                 allow-list says (1.0.4 to 1.1.2), so the agent could not reach its bundle"
            ),
            EgressBehaviour::VirtioNetDropsAllowCidr | EgressBehaviour::VirtioNet => format!(
                "{reported} sends an allow-listed machine through virtio-net (1.1.3 and later): \
                 the guest's 127.x stays inside the guest and host loopback is reached only as \
                 127.0.0.1 through the gateway, so no allow-list can name the bottle's alias"
            ),
            EgressBehaviour::Unknown => match SmolvmVersion::from_version_output(reported) {
                Some(_) => format!(
                    "{reported} is not a release bottle knows (0.8.0 to 1.x), so how it filters \
                     egress is unverified"
                ),
                None => format!(
                    "`smolvm --version` printed \"{reported}\", which is not a version bottle \
                     can read (expected `smolvm X.Y.Z`)"
                ),
            },
        };
        ScopeSupport::Unenforceable {
            reason,
            remedy: REMEDY.to_owned(),
        }
    }
}

/// The two shapes of smolvm's `machine` command line that bottle uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliForm {
    /// Up to 1.0.1: `create` and `delete` take the machine's name as a positional argument;
    /// `ls` and `status` print text only; `create` has no `--label`.
    Positional,
    /// From 1.0.2: `--name N` everywhere, `ls --json`, `status --name N --json`, `--label`.
    Named,
}

impl CliForm {
    /// The form `version` speaks; a version bottle cannot read is assumed to be recent.
    pub fn of(version: Option<SmolvmVersion>) -> Self {
        match version {
            Some(v) if v < SmolvmVersion::new(1, 0, 2) => CliForm::Positional,
            _ => CliForm::Named,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use EgressBehaviour::*;

    #[test]
    fn every_boundary_of_the_version_table() {
        let table = [
            ("smolvm 0.7.9", Unknown, CliForm::Positional),
            ("smolvm 0.8.0", TsiDropsAllowCidr, CliForm::Positional),
            ("smolvm 0.8.14", TsiDropsAllowCidr, CliForm::Positional),
            ("smolvm 1.0.1", TsiDropsAllowCidr, CliForm::Positional),
            ("smolvm 1.0.2", TsiDropsAllowCidr, CliForm::Named),
            ("smolvm 1.0.3", TsiDropsAllowCidr, CliForm::Named),
            ("smolvm 1.0.4", TsiLoopbackFloor, CliForm::Named),
            ("smolvm 1.1.2", TsiLoopbackFloor, CliForm::Named),
            ("smolvm 1.1.3", VirtioNetDropsAllowCidr, CliForm::Named),
            ("smolvm 1.7.9", VirtioNetDropsAllowCidr, CliForm::Named),
            ("smolvm 1.8.0", VirtioNet, CliForm::Named),
            ("smolvm 1.9.2\n", VirtioNet, CliForm::Named),
            ("smolvm 2.0.0", Unknown, CliForm::Named),
            ("garbage", Unknown, CliForm::Named),
        ];
        for (output, behaviour, form) in table {
            let version = SmolvmVersion::from_version_output(output);
            assert_eq!(EgressBehaviour::of(version), behaviour, "{output:?}");
            assert_eq!(CliForm::of(version), form, "{output:?}");
            let exact = behaviour.scope_support(output.trim()) == ScopeSupport::Exact;
            assert_eq!(exact, behaviour == TsiDropsAllowCidr, "{output:?}");
        }
    }

    #[test]
    fn anything_but_a_plain_release_is_unreadable() {
        for output in [
            "",
            "smolvm",
            "smolvm 1.0",
            "smolvm 1.0.3-rc1",
            "smolvm 1.0.3.1",
            "smolvm v1.0.3",
            "smolvm 1.+0.3",
            "smolvm 1..3",
            "smol 1.0.3",
            "smolvm 99999999999.0.0",
        ] {
            assert_eq!(
                SmolvmVersion::from_version_output(output),
                None,
                "{output:?}"
            );
        }
        assert_eq!(
            SmolvmVersion::from_version_output("  smolvm 1.9.2\n"),
            Some(SmolvmVersion::new(1, 9, 2))
        );
    }

    #[test]
    fn a_refusal_names_the_version_and_what_would_work() {
        let ScopeSupport::Unenforceable { reason, remedy } =
            VirtioNet.scope_support("smolvm 1.9.2")
        else {
            panic!("1.9.2 must be refused");
        };
        assert!(reason.starts_with("smolvm 1.9.2 "), "{reason}");
        assert!(
            remedy.contains("0.8.x to 1.0.3") && remedy.contains("sandbox"),
            "{remedy}"
        );

        let ScopeSupport::Unenforceable { reason, .. } = Unknown.scope_support("garbage") else {
            panic!("garbage must be refused");
        };
        assert!(reason.contains("\"garbage\""), "{reason}");
        let ScopeSupport::Unenforceable { reason, .. } = Unknown.scope_support("smolvm 2.0.0")
        else {
            panic!("2.0.0 must be refused");
        };
        assert!(
            reason.contains("smolvm 2.0.0 is not a release bottle knows"),
            "{reason}"
        );
    }
}

//! The pool's aliases on `lo0`: which exist, read from `ifconfig lo0`, and adding the
//! missing ones with one sudo call.
//!
//! macOS answers only 127.0.0.1 on `lo0` until root adds an alias, and forgets aliases at
//! reboot. Adding them all in one `sudo` run means at most one password prompt per reboot,
//! and none while they last.

use std::net::Ipv4Addr;

use bottle_core::{AliasPool, BackendError, ErrorKind, PoolReport};

use crate::command::{self, Host, HostCommand};
use crate::sudo::{self, AsRoot, Sudo};

/// Absolute, so that sudo's `secure_path` and the user's `PATH` stay out of the question.
const IFCONFIG: &str = "/sbin/ifconfig";

/// What `ifconfig lo0` says about the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lo0 {
    /// Whether the `UP` flag is set.
    pub up: bool,
    /// Every IPv4 address on it, 127.0.0.1 included, in the order listed.
    pub inet: Vec<Ipv4Addr>,
}

impl Lo0 {
    pub(crate) fn carries(&self, alias: Ipv4Addr) -> bool {
        self.inet.contains(&alias)
    }
}

/// Why the output of `ifconfig lo0` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Lo0Error {
    #[error("no line starts with `lo0:`")]
    NoHeader,
    #[error("line {line}: expected `inet ADDRESS netmask 0x...`, found `{text}`")]
    Inet { line: usize, text: String },
}

/// `ifconfig lo0`.
pub(crate) fn ifconfig_lo0() -> HostCommand {
    HostCommand::new(IFCONFIG, &["lo0"])
}

/// Reads the interface's flags and IPv4 addresses from the output of `ifconfig lo0`:
///
/// ```text
/// lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 16384
///     inet 127.0.0.1 netmask 0xff000000
///     inet 127.0.0.17 netmask 0xff000000
/// ```
pub(crate) fn parse_ifconfig_lo0(text: &str) -> Result<Lo0, Lo0Error> {
    let mut lo0: Option<Lo0> = None;
    for (index, line) in text.lines().enumerate() {
        if !line.starts_with(char::is_whitespace) {
            if lo0.is_some() {
                break;
            }
            if let Some(rest) = line.strip_prefix("lo0:") {
                lo0 = Some(Lo0 {
                    up: has_up_flag(rest),
                    inet: Vec::new(),
                });
            }
            continue;
        }
        let Some(lo0) = lo0.as_mut() else { continue };
        let mut words = line.split_whitespace();
        if words.next() != Some("inet") {
            continue;
        }
        let addr = words
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| Lo0Error::Inet {
                line: index + 1,
                text: line.trim().to_owned(),
            })?;
        lo0.inet.push(addr);
    }
    lo0.ok_or(Lo0Error::NoHeader)
}

/// Whether `flags=8049<UP,LOOPBACK,...>` names `UP`.
fn has_up_flag(header: &str) -> bool {
    let Some((_, flags)) = header.split_once('<') else {
        return false;
    };
    let flags = flags.split_once('>').map_or(flags, |(inside, _)| inside);
    flags.split(',').any(|flag| flag == "UP")
}

/// Runs `ifconfig lo0` and reads it.
pub(crate) fn read_lo0(host: &dyn Host) -> Result<Lo0, BackendError> {
    let command = ifconfig_lo0();
    let output = command::run_checked(host, &command)?;
    parse_ifconfig_lo0(&output.stdout).map_err(|err| {
        BackendError::new(
            ErrorKind::Other,
            format!("cannot read the output of `{command}`"),
        )
        .with_cause(&err)
    })
}

/// The shell line that adds `aliases` to `lo0`.
///
/// Joined with `&&`, not `;`: the line stops at the first `ifconfig` that fails and sudo
/// reports that failure's status. With `;` the status would be the last command's alone, so
/// an earlier failure would pass unnoticed until the read-back.
pub(crate) fn add_aliases_script(aliases: &[Ipv4Addr]) -> String {
    aliases
        .iter()
        .map(|alias| format!("{IFCONFIG} lo0 alias {alias} up"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// The one privileged command that adds every alias in `missing`.
pub(crate) fn add_aliases(missing: &[Ipv4Addr], sudo: Sudo) -> HostCommand {
    let why = format!("add {} to lo0 (once per reboot)", count(missing.len()));
    sudo::sudo_sh(add_aliases_script(missing), sudo, &why)
}

/// "1 alias", "3 aliases".
pub(crate) fn count(n: usize) -> String {
    if n == 1 {
        "1 alias".to_owned()
    } else {
        format!("{n} aliases")
    }
}

/// Makes every alias of `pool` present on `lo0`, adding all the missing ones in one sudo
/// call; runs no sudo at all when none is missing.
pub(crate) fn ensure_aliases(
    host: &dyn Host,
    pool: &AliasPool,
) -> Result<PoolReport, BackendError> {
    let before = read_lo0(host)?;
    let (present, missing): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) =
        pool.aliases().partition(|alias| before.carries(*alias));
    if missing.is_empty() {
        tracing::debug!(%pool, "every alias of the pool is on lo0");
        return Ok(PoolReport {
            present,
            added: Vec::new(),
        });
    }

    if let AsRoot::NeedsPassword { sudo_said } =
        sudo::run_as_root(host, |sudo| add_aliases(&missing, sudo))?
    {
        return Err(no_terminal(&missing, &sudo_said));
    }

    let after = read_lo0(host)?;
    let still_missing: Vec<String> = missing
        .iter()
        .filter(|a| !after.carries(**a))
        .map(Ipv4Addr::to_string)
        .collect();
    if !still_missing.is_empty() {
        return Err(BackendError::new(
            ErrorKind::Other,
            format!(
                "sudo succeeded, but lo0 still lacks {}",
                still_missing.join(", ")
            ),
        ));
    }
    tracing::info!(%pool, added = missing.len(), "added the missing pool aliases to lo0");
    Ok(PoolReport {
        present,
        added: missing,
    })
}

/// The error when aliases are missing and sudo may not ask: it carries the exact command,
/// so that the user can run it once and retry.
fn no_terminal(missing: &[Ipv4Addr], sudo_said: &str) -> BackendError {
    let command = add_aliases(missing, Sudo::ForUser);
    BackendError::new(
        ErrorKind::Unavailable,
        format!(
            "adding {} to lo0 needs root, and sudo cannot ask for a password without a \
             terminal: run `{command}` once (aliases last until reboot; `bottle net persist` \
             re-adds them at every boot), then retry",
            count(missing.len())
        ),
    )
    .with_cause_text(sudo_said)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::{failure, success, FakeHost};

    const FRESH: &str = include_str!("../tests/fixtures/ifconfig-lo0.txt");
    const ALIASED: &str = include_str!("../tests/fixtures/ifconfig-lo0-aliases.txt");

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, last)
    }

    fn pool(block: &str) -> AliasPool {
        block.parse().unwrap()
    }

    /// `ifconfig lo0` on a Mac whose lo0 carries 127.0.0.1 and `aliases`.
    fn lo0_with(aliases: &[Ipv4Addr]) -> String {
        let mut text = FRESH.replace("\tnd6", "\tNDSIX");
        for alias in aliases {
            text = text.replace(
                "\tNDSIX",
                &format!("\tinet {alias} netmask 0xff000000\n\tNDSIX"),
            );
        }
        text.replace("\tNDSIX", "\tnd6")
    }

    #[test]
    fn a_fresh_lo0_carries_only_localhost() {
        let lo0 = parse_ifconfig_lo0(FRESH).unwrap();
        assert_eq!(
            lo0,
            Lo0 {
                up: true,
                inet: vec![Ipv4Addr::LOCALHOST]
            }
        );
    }

    #[test]
    fn aliases_are_read_whatever_their_netmask() {
        let lo0 = parse_ifconfig_lo0(ALIASED).unwrap();
        assert_eq!(
            lo0.inet,
            [Ipv4Addr::LOCALHOST, ip(16), ip(17), ip(18), ip(20)]
        );
    }

    #[test]
    fn a_down_interface_is_seen() {
        let down = FRESH.replace("<UP,LOOPBACK,RUNNING,MULTICAST>", "<LOOPBACK,MULTICAST>");
        assert!(!parse_ifconfig_lo0(&down).unwrap().up);
    }

    #[test]
    fn output_that_is_not_lo0_is_refused() {
        assert_eq!(parse_ifconfig_lo0(""), Err(Lo0Error::NoHeader));
        let en0 =
            "en0: flags=8863<UP,BROADCAST> mtu 1500\n\tinet 192.168.1.23 netmask 0xffffff00\n";
        assert_eq!(parse_ifconfig_lo0(en0), Err(Lo0Error::NoHeader));
        let bad = FRESH.replace("inet 127.0.0.1 ", "inet 127.0.0 ");
        assert_eq!(
            parse_ifconfig_lo0(&bad),
            Err(Lo0Error::Inet {
                line: 3,
                text: "inet 127.0.0 netmask 0xff000000".into()
            })
        );
    }

    #[test]
    fn another_interface_after_lo0_is_not_read_as_lo0() {
        let two = format!("{FRESH}gif0: flags=8010<POINTOPOINT> mtu 1280\n\tinet 127.0.0.99 x\n");
        assert_eq!(
            parse_ifconfig_lo0(&two).unwrap().inet,
            [Ipv4Addr::LOCALHOST]
        );
    }

    #[test]
    fn the_batched_command_adds_every_missing_alias_in_one_shell_line() {
        let missing = [ip(17), ip(19)];
        let line =
            "/sbin/ifconfig lo0 alias 127.0.0.17 up && /sbin/ifconfig lo0 alias 127.0.0.19 up";
        let never_ask = add_aliases(&missing, Sudo::NeverAsk);
        assert_eq!(never_ask.program, "sudo");
        assert_eq!(never_ask.args, ["-n", "/bin/sh", "-c", line]);
        let ask = add_aliases(&missing, Sudo::Ask);
        assert_eq!(
            ask.args,
            [
                "-p",
                "bottle: password for %u, to add 2 aliases to lo0 (once per reboot): ",
                "/bin/sh",
                "-c",
                line
            ]
        );
        assert_eq!(
            add_aliases(&missing, Sudo::ForUser).to_string(),
            format!("sudo /bin/sh -c '{line}'")
        );
    }

    #[test]
    fn nothing_missing_runs_no_sudo() {
        let host = FakeHost::new(true, [success(ALIASED)]);
        let report = ensure_aliases(&host, &pool("127.0.0.16/31")).unwrap();
        assert_eq!(report.present, [ip(16), ip(17)]);
        assert!(report.added.is_empty());
        assert_eq!(host.ran(), [ifconfig_lo0()]);
    }

    #[test]
    fn with_a_terminal_all_missing_aliases_are_added_by_one_sudo_that_may_ask() {
        let host = FakeHost::new(
            true,
            [
                success(ALIASED),
                success(""),
                success(&lo0_with(&[ip(16), ip(17), ip(18), ip(19)])),
            ],
        );
        let report = ensure_aliases(&host, &pool("127.0.0.16/30")).unwrap();
        assert_eq!(report.present, [ip(16), ip(17), ip(18)]);
        assert_eq!(report.added, [ip(19)]);
        assert_eq!(
            host.ran(),
            [
                ifconfig_lo0(),
                add_aliases(&[ip(19)], Sudo::Ask),
                ifconfig_lo0()
            ]
        );
    }

    #[test]
    fn without_a_terminal_sudo_is_told_never_to_ask() {
        let all = [ip(16), ip(17), ip(18), ip(19)];
        let host = FakeHost::new(
            false,
            [success(FRESH), success(""), success(&lo0_with(&all))],
        );
        let report = ensure_aliases(&host, &pool("127.0.0.16/30")).unwrap();
        assert!(report.present.is_empty());
        assert_eq!(report.added, all);
        let sudo = add_aliases(&all, Sudo::NeverAsk);
        assert_eq!(host.ran(), [ifconfig_lo0(), sudo, ifconfig_lo0()]);
    }

    #[test]
    fn without_a_terminal_a_password_prompt_becomes_the_exact_command_to_run() {
        let host = FakeHost::new(
            false,
            [success(FRESH), failure(1, "sudo: a password is required\n")],
        );
        let err = ensure_aliases(&host, &pool("127.0.0.16/31")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "adding 2 aliases to lo0 needs root, and sudo cannot ask for a password without a \
             terminal: run `sudo /bin/sh -c '/sbin/ifconfig lo0 alias 127.0.0.16 up && \
             /sbin/ifconfig lo0 alias 127.0.0.17 up'` once (aliases last until reboot; `bottle \
             net persist` re-adds them at every boot), then retry"
        );
        assert_eq!(err.causes, ["sudo: a password is required"]);
        assert_eq!(host.ran().len(), 2, "no second attempt that could hang");
    }

    #[test]
    fn a_sudo_that_fails_otherwise_reports_command_status_and_stderr() {
        let stderr = "alice is not in the sudoers file.\n";
        let host = FakeHost::new(true, [success(FRESH), failure(1, stderr)]);
        let err = ensure_aliases(&host, &pool("127.0.0.17/32")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CommandFailed);
        assert!(err.message.starts_with("`sudo -p "), "{}", err.message);
        assert!(
            err.message
                .ends_with("127.0.0.17 up'` failed with exit status 1"),
            "{}",
            err.message
        );
        assert_eq!(err.causes, ["alice is not in the sudoers file."]);
    }

    #[test]
    fn an_alias_still_missing_after_sudo_is_an_error() {
        let host = FakeHost::new(
            true,
            [success(FRESH), success(""), success(&lo0_with(&[ip(16)]))],
        );
        let err = ensure_aliases(&host, &pool("127.0.0.16/31")).unwrap_err();
        assert_eq!(
            err.message,
            "sudo succeeded, but lo0 still lacks 127.0.0.17"
        );
    }

    #[test]
    fn an_unreadable_lo0_stops_before_any_sudo() {
        let host = FakeHost::new(true, [success("garbage\n")]);
        let err = ensure_aliases(&host, &pool("127.0.0.16/31")).unwrap_err();
        assert_eq!(
            err.message,
            "cannot read the output of `/sbin/ifconfig lo0`"
        );
        assert_eq!(err.causes, ["no line starts with `lo0:`"]);
        assert_eq!(host.ran().len(), 1);
    }
}

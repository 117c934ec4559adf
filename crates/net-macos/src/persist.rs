//! A launchd job that re-adds the pool's aliases to `lo0` at every boot, installed by
//! `bottle net persist` in one sudo call: with it, a reboot brings no sudo prompt.
//!
//! The job holds the pool it was installed for: after the pool changes, `bottle net persist`
//! installs it again, replacing the old one.

use bottle_core::{AliasPool, BackendError, ErrorKind, PersistPlan, PlannedCommand, PlannedFile};

use crate::command::{Host, HostCommand};
use crate::lo0::{add_aliases_script, count};
use crate::sudo::{self, AsRoot, Sudo};

/// The job's label, which is also the plist's file name.
pub(crate) const LAUNCHD_LABEL: &str = "bottle.lo0-aliases";

/// Where the job is installed: a system daemon, because adding an alias needs root, and
/// daemons run at boot without anyone logging in.
pub(crate) const LAUNCHD_PLIST_PATH: &str = "/Library/LaunchDaemons/bottle.lo0-aliases.plist";

const LAUNCHCTL: &str = "/bin/launchctl";

/// The property list of a launchd job that adds every alias of `pool` to `lo0` at load, with
/// the same shell line that `ensure_pool` runs under sudo.
///
/// Re-adding an alias that exists is harmless, so the job adds the whole pool.
pub(crate) fn launchd_plist(pool: &AliasPool) -> String {
    let aliases: Vec<_> = pool.aliases().collect();
    let mut plist = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" ",
        "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
        "<plist version=\"1.0\">\n",
        "<dict>\n",
    ));
    let mut key = |name: &str, value: &str| {
        plist.push_str(&format!("\t<key>{name}</key>\n\t{value}\n"));
    };
    key(
        "Label",
        &format!("<string>{}</string>", xml_escape(LAUNCHD_LABEL)),
    );
    let arguments = [sudo::SH, "-c", &add_aliases_script(&aliases)]
        .iter()
        .map(|arg| format!("\t\t<string>{}</string>\n", xml_escape(arg)))
        .collect::<String>();
    key(
        "ProgramArguments",
        &format!("<array>\n{arguments}\t</array>"),
    );
    key("RunAtLoad", "<true/>");
    plist.push_str("</dict>\n</plist>\n");
    plist
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The shell line, run as root, that installs the plist it reads on standard input and
/// loads the job, which then adds the aliases at once.
///
/// The plist is checked and given launchd's required owner and mode under a temporary name,
/// removed if any of that fails, and only then moved into place, so that a failure never
/// leaves a broken job for the next boot. `bootstrap` refuses a job that is already loaded
/// (by an earlier `bottle net persist`, or at boot), so the old one is booted out first;
/// booting out a job that is not loaded fails, harmlessly. launchd may still be unloading the
/// old job for a moment, and `bootstrap` then fails with an I/O error: it is tried once more
/// after a second.
fn install_script() -> String {
    let new = format!("{LAUNCHD_PLIST_PATH}.new");
    let bootstrap = format!("{LAUNCHCTL} bootstrap system {LAUNCHD_PLIST_PATH}");
    let prepare = [
        format!("/bin/cat > {new}"),
        format!("/usr/bin/plutil -lint {new}"),
        format!("/usr/sbin/chown root:wheel {new}"),
        format!("/bin/chmod 644 {new}"),
    ]
    .join(" && ");
    [
        format!("{{ {prepare} || {{ /bin/rm -f {new}; exit 1; }}; }}"),
        format!("/bin/mv -f {new} {LAUNCHD_PLIST_PATH}"),
        format!("{{ {LAUNCHCTL} bootout system/{LAUNCHD_LABEL} 2>/dev/null || true; }}"),
        format!("{{ {bootstrap} || {{ /bin/sleep 1 && {bootstrap}; }}; }}"),
    ]
    .join(" && ")
}

/// The one privileged command that installs and loads the job for `pool`, the plist on its
/// standard input.
fn install_job(pool: &AliasPool, sudo: Sudo) -> HostCommand {
    let why = format!(
        "install a launchd job that adds {} to lo0 at every boot",
        count(pool.len())
    );
    sudo::sudo_sh(install_script(), sudo, &why).with_stdin(launchd_plist(pool))
}

/// What [`install`] writes and runs for `pool`, with the command as a user would run it.
pub(crate) fn plan(pool: &AliasPool) -> PersistPlan {
    let command = install_job(pool, Sudo::ForUser);
    let argv = std::iter::once(command.program.clone())
        .chain(command.args.iter().cloned())
        .collect();
    PersistPlan::Install {
        summary: format!(
            "a launchd daemon that adds the {} of {pool} to lo0 at every boot; loading it now \
             adds them at once",
            count(pool.len())
        ),
        files: vec![PlannedFile {
            path: LAUNCHD_PLIST_PATH.into(),
            contents: launchd_plist(pool),
        }],
        command: PlannedCommand {
            argv,
            line: command.to_string(),
            stdin: Some(LAUNCHD_PLIST_PATH.into()),
        },
    }
}

/// Installs and loads the job for `pool` in one sudo call, which asks for a password on a
/// terminal and never without one.
pub(crate) fn install(host: &dyn Host, pool: &AliasPool) -> Result<PersistPlan, BackendError> {
    match sudo::run_as_root(host, |sudo| install_job(pool, sudo))? {
        AsRoot::Done => {
            tracing::info!(%pool, path = LAUNCHD_PLIST_PATH, "installed the launchd job");
            Ok(plan(pool))
        }
        AsRoot::NeedsPassword { sudo_said } => Err(no_terminal(pool, &sudo_said)),
    }
}

/// The error when sudo may not ask: it carries the exact command to paste into a terminal.
///
/// The command is a here-document, so it must be the last thing printed: sudo's words go
/// before it, not after it as a cause, which the binary would print on the closing line.
fn no_terminal(pool: &AliasPool, sudo_said: &str) -> BackendError {
    let command = install_job(pool, Sudo::ForUser).pasteable();
    BackendError::new(
        ErrorKind::Unavailable,
        format!(
            "installing {LAUNCHD_PLIST_PATH} needs root, and sudo cannot ask for a password \
             without a terminal ({}): run `bottle net persist` in a terminal, or paste this \
             into one:\n{command}",
            sudo_said.trim()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::{failure, success, FakeHost};

    const PLIST: &str = include_str!("../tests/fixtures/launchd-lo0-aliases.plist");

    const SCRIPT: &str = "{ /bin/cat > /Library/LaunchDaemons/bottle.lo0-aliases.plist.new \
        && /usr/bin/plutil -lint /Library/LaunchDaemons/bottle.lo0-aliases.plist.new \
        && /usr/sbin/chown root:wheel /Library/LaunchDaemons/bottle.lo0-aliases.plist.new \
        && /bin/chmod 644 /Library/LaunchDaemons/bottle.lo0-aliases.plist.new \
        || { /bin/rm -f /Library/LaunchDaemons/bottle.lo0-aliases.plist.new; exit 1; }; } \
        && /bin/mv -f /Library/LaunchDaemons/bottle.lo0-aliases.plist.new \
        /Library/LaunchDaemons/bottle.lo0-aliases.plist \
        && { /bin/launchctl bootout system/bottle.lo0-aliases 2>/dev/null || true; } \
        && { /bin/launchctl bootstrap system /Library/LaunchDaemons/bottle.lo0-aliases.plist \
        || { /bin/sleep 1 \
        && /bin/launchctl bootstrap system /Library/LaunchDaemons/bottle.lo0-aliases.plist; }; }";

    fn pool() -> AliasPool {
        "127.0.0.16/31".parse().unwrap()
    }

    #[test]
    fn the_job_adds_the_whole_pool_at_load() {
        assert_eq!(launchd_plist(&pool()), PLIST);
    }

    #[test]
    fn the_path_is_named_after_the_label() {
        assert!(LAUNCHD_PLIST_PATH.ends_with(&format!("/{LAUNCHD_LABEL}.plist")));
    }

    #[test]
    fn the_plan_shows_the_plist_and_the_one_sudo_that_installs_it() {
        let PersistPlan::Install {
            summary,
            files,
            command,
        } = plan(&pool())
        else {
            panic!("macOS always has something to persist");
        };
        assert_eq!(
            summary,
            "a launchd daemon that adds the 2 aliases of 127.0.0.16/31 to lo0 at every boot; \
             loading it now adds them at once"
        );
        assert_eq!(
            files,
            [PlannedFile {
                path: LAUNCHD_PLIST_PATH.into(),
                contents: PLIST.to_owned(),
            }]
        );
        assert_eq!(command.argv, ["sudo", "/bin/sh", "-c", SCRIPT]);
        assert_eq!(command.line, format!("sudo /bin/sh -c '{SCRIPT}'"));
        assert_eq!(command.stdin, Some(LAUNCHD_PLIST_PATH.into()));
    }

    #[test]
    fn with_a_terminal_one_sudo_that_may_ask_installs_the_job() {
        let host = FakeHost::new(true, [success("")]);
        assert_eq!(install(&host, &pool()).unwrap(), plan(&pool()));
        let ran = host.ran();
        assert_eq!(ran.len(), 1);
        assert_eq!(ran[0].program, "sudo");
        assert_eq!(
            ran[0].args,
            [
                "-p",
                "bottle: password for %u, to install a launchd job that adds 2 aliases to lo0 \
                 at every boot: ",
                "/bin/sh",
                "-c",
                SCRIPT
            ]
        );
        assert_eq!(ran[0].stdin.as_deref(), Some(PLIST));
    }

    #[test]
    fn without_a_terminal_sudo_is_told_never_to_ask() {
        let host = FakeHost::new(false, [success("")]);
        install(&host, &pool()).unwrap();
        let ran = host.ran();
        assert_eq!(ran[0].args, ["-n", "/bin/sh", "-c", SCRIPT]);
        assert_eq!(ran[0].stdin.as_deref(), Some(PLIST));
    }

    #[test]
    fn without_a_terminal_a_password_prompt_becomes_the_exact_command_to_paste() {
        let host = FakeHost::new(false, [failure(1, "sudo: a password is required\n")]);
        let err = install(&host, &pool()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            format!(
                "installing /Library/LaunchDaemons/bottle.lo0-aliases.plist needs root, and sudo \
                 cannot ask for a password without a terminal (sudo: a password is required): \
                 run `bottle net persist` in a terminal, or paste this into one:\n\
                 sudo /bin/sh -c '{SCRIPT}' <<'BOTTLE_INPUT'\n{PLIST}BOTTLE_INPUT"
            )
        );
        assert!(
            err.causes.is_empty(),
            "nothing may follow the here-document when the chain is printed: {:?}",
            err.causes
        );
        assert_eq!(host.ran().len(), 1, "no second attempt that could hang");
    }

    #[test]
    fn a_failed_install_names_the_command_its_status_and_its_stderr() {
        let said = "Bootstrap failed: 5: Input/output error\n";
        let host = FakeHost::new(true, [failure(5, said)]);
        let err = install(&host, &pool()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CommandFailed);
        assert!(err.message.starts_with("`sudo -p "), "{}", err.message);
        assert!(
            err.message.ends_with(
                "bootstrap system /Library/LaunchDaemons/bottle.lo0-aliases.plist; }; }'` \
                 failed with exit status 5"
            ),
            "{}",
            err.message
        );
        assert_eq!(err.causes, ["Bootstrap failed: 5: Input/output error"]);
    }
}

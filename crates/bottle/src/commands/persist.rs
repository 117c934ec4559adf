//! `bottle net persist`: keeping the alias pool across reboots, where the OS forgets it.
//!
//! The net plugin says what that takes (on macOS, a launchd job that re-adds the `lo0`
//! aliases at boot; on Linux, nothing); this command shows the plan whole before anything is
//! written, and has the plugin carry it out only once the user agreed.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use bottle_core::PersistPlan;

use crate::cli::PersistArgs;
use crate::context::Context;
use crate::output;

/// `bottle net persist`: prints what keeping the pool across reboots takes on this host, then
/// has the net plugin do it once confirmed, on a terminal or by `--yes`.
pub fn persist(ctx: &Context, args: &PersistArgs) -> anyhow::Result<ExitCode> {
    let net = ctx.net()?;
    let pool = ctx.config.pool;
    let plan = net.persist_plan(&pool)?;
    if args.json {
        output::json(&serde_json::json!({
            "pool": pool.to_string(),
            "net_plugin": net.name(),
            "plan": plan,
        }))?;
    } else {
        println!("pool {pool} ({})", net.name());
        for line in persist_plan_lines(&plan) {
            println!("{line}");
        }
    }
    if let PersistPlan::NotNeeded { .. } = plan {
        return Ok(ExitCode::SUCCESS);
    }

    if !args.yes {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "bottle: stdin is not a terminal, so nothing was done: run `bottle net persist` \
                 in a terminal to confirm, or add `--yes` to do it without asking"
            );
            return Ok(ExitCode::SUCCESS);
        }
        if !confirm("Write and run this?")? {
            eprintln!("bottle: nothing was done");
            return Ok(ExitCode::SUCCESS);
        }
    }
    net.persist(&pool)?;
    if !args.json {
        println!(
            "persisted pool {pool}: its aliases come back at every boot; after changing the \
             pool, run `bottle net persist` again"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A persist plan as text: what it achieves, each file it writes, the command it runs.
fn persist_plan_lines(plan: &PersistPlan) -> Vec<String> {
    let (summary, files, command) = match plan {
        PersistPlan::NotNeeded { reason } => return vec![format!("nothing to persist: {reason}")],
        PersistPlan::Install {
            summary,
            files,
            command,
        } => (summary, files, command),
    };
    let mut lines = vec![format!("to survive reboots: {summary}")];
    for file in files {
        lines.push(String::new());
        lines.push(format!("writes {}:", file.path.display()));
        lines.extend(file.contents.lines().map(|line| format!("    {line}")));
    }
    lines.push(String::new());
    lines.push(match &command.stdin {
        Some(path) => format!(
            "runs, with the contents of {} on its standard input:",
            path.display()
        ),
        None => "runs:".to_owned(),
    });
    lines.push(format!("    {}", command.line));
    lines
}

/// Asks `question` on stderr and reads the answer from stdin; only `y` or `yes` is a yes.
fn confirm(question: &str) -> std::io::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use bottle_core::{PlannedCommand, PlannedFile};

    use super::*;

    #[test]
    fn a_plan_shows_each_file_whole_and_the_command_after_it() {
        let plan = PersistPlan::Install {
            summary: "a job that adds 2 aliases at boot".into(),
            files: vec![PlannedFile {
                path: "/Library/LaunchDaemons/job.plist".into(),
                contents: "<plist>\n</plist>\n".into(),
            }],
            command: PlannedCommand {
                argv: vec![
                    "sudo".into(),
                    "/bin/sh".into(),
                    "-c".into(),
                    "cat > x".into(),
                ],
                line: "sudo /bin/sh -c 'cat > x'".into(),
                stdin: Some("/Library/LaunchDaemons/job.plist".into()),
            },
        };
        assert_eq!(
            persist_plan_lines(&plan),
            [
                "to survive reboots: a job that adds 2 aliases at boot",
                "",
                "writes /Library/LaunchDaemons/job.plist:",
                "    <plist>",
                "    </plist>",
                "",
                "runs, with the contents of /Library/LaunchDaemons/job.plist on its standard \
                 input:",
                "    sudo /bin/sh -c 'cat > x'",
            ]
        );
    }

    #[test]
    fn nothing_needed_is_one_line_with_the_reason() {
        let plan = PersistPlan::NotNeeded {
            reason: "lo carries 127.0.0.0/8".into(),
        };
        assert_eq!(
            persist_plan_lines(&plan),
            ["nothing to persist: lo carries 127.0.0.0/8"]
        );
    }
}

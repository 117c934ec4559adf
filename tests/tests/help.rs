//! `bottle --help` and every command's `--help`: what a newcomer reads first.

use bottle_e2e::Home;

/// The command names listed under `Commands:` in a help text, `help` itself left out.
fn commands_in(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_top_level_help_lists_the_commands_exit_statuses_and_environment() {
    let home = Home::new("127.0.50.0/28", "0.8.0", "process");
    let help = home.run(&["--help"]).ok();
    let commands = commands_in(&help);
    for expected in [
        "up", "run", "down", "ls", "inspect", "probe", "gc", "doctor", "net", "plugins",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} missing: {help}"
        );
    }
    assert!(help.contains("Exit status:"), "{help}");
    for code in ["0", "1", "2", "3", "4", "5", "6", "7", "130"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "exit status {code} is not documented: {help}"
        );
    }
    assert!(
        help.contains("125"),
        "bottle run's own failure status: {help}"
    );
    for variable in ["BOTTLE_HOME", "BOTTLE_PLUGIN_PATH", "RUST_LOG"] {
        assert!(
            help.contains(variable),
            "{variable} is not documented: {help}"
        );
    }
}

#[test]
fn every_command_explains_itself() {
    let home = Home::new("127.0.50.16/28", "0.8.0", "process");
    let top = home.run(&["--help"]).ok();
    let mut paths: Vec<Vec<String>> = Vec::new();
    for command in commands_in(&top) {
        let help = home.run(&[&command, "--help"]).ok();
        let subcommands = commands_in(&help);
        if subcommands.is_empty() {
            paths.push(vec![command]);
        } else {
            paths.extend(
                subcommands
                    .into_iter()
                    .map(|sub| vec![command.clone(), sub]),
            );
        }
    }
    assert!(paths.len() >= 10, "{paths:?}");
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = home.run(&args).ok();
        let usage = format!("Usage: bottle {}", path.join(" "));
        assert!(help.contains(&usage), "`bottle {path:?} --help`: {help}");
        let summary = help.lines().next().unwrap_or_default();
        assert!(
            summary.len() > 10 && summary.chars().next().is_some_and(char::is_uppercase),
            "`bottle {path:?} --help` opens without a summary: {help}"
        );
    }
}

#[test]
fn every_listing_takes_json() {
    let home = Home::new("127.0.50.32/28", "0.8.0", "process");
    for listing in [
        &["ls"][..],
        &["inspect", "x"],
        &["probe", "x"],
        &["gc"],
        &["doctor"],
        &["net", "status"],
        &["plugins"],
        &["up", "spec"],
    ] {
        let mut args = listing.to_vec();
        args.push("--help");
        let help = home.run(&args).ok();
        assert!(
            help.contains("--json"),
            "`bottle {listing:?}` has no --json: {help}"
        );
    }
}

#[test]
fn a_misspelt_command_is_a_usage_error() {
    let home = Home::new("127.0.50.48/28", "0.8.0", "process");
    let err = home.run(&["lss"]).fails_with(2);
    assert!(err.contains("unrecognized subcommand 'lss'"), "{err}");
    assert!(err.contains("similar subcommand exists: 'ls'"), "{err}");
}

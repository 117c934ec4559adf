//! `bottle`: launch, list, audit and remove bottles on this host.

mod cli;
mod commands;
mod context;
mod exit;
mod output;
mod signal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    signal::restore_default_sigpipe();
    let cli = cli::Cli::parse();
    init_logging(cli.global.verbose);
    let is_run = matches!(cli.command, cli::Command::Run(_));
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = if is_run {
                exit::RUN_FAILED
            } else {
                exit::classify(&err)
            };
            eprintln!("bottle: {}", exit::render_chain(&err));
            ExitCode::from(code)
        }
    }
}

/// Logs go to stderr; `-v` raises bottle's level, `RUST_LOG` overrides everything.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose > 1)
        .without_time()
        .init();
}

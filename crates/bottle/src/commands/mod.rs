//! One module per command; `run` dispatches to them.

mod doctor;
mod down;
mod gc;
mod launch;
mod ls;
mod net;
mod persist;
mod plugins;
mod probe;

use std::process::ExitCode;

use crate::cli::{Cli, Command, NetCommand};
use crate::context::Context;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::new(&cli.global)?;
    match cli.command {
        Command::Up(args) => launch::up(&ctx, &args),
        Command::Run(args) => launch::run(&ctx, &args),
        Command::Down(args) => down::down(&ctx, &args),
        Command::Ls(args) => ls::ls(&ctx, args.json),
        Command::Inspect(args) => ls::inspect(&ctx, &args.slug, args.json.json),
        Command::Probe(args) => probe::probe(&ctx, &args.slug, args.json.json),
        Command::Gc(args) => gc::gc(&ctx, args.json),
        Command::Doctor(args) => doctor::doctor(&ctx, args.json),
        Command::Net(NetCommand::Status(args)) => net::status(&ctx, args.json),
        Command::Net(NetCommand::Persist(args)) => persist::persist(&ctx, &args),
        Command::Plugins(args) => plugins::plugins(&ctx, args.json),
    }
}

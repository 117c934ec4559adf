//! `bottle up` and `bottle run`: the launch sequence, and for `run`, the agent attached.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bottle_core::launch::{self, is_half_done, Backends, LaunchRequest, Launched};
use bottle_core::{BottleSpec, BundleRuntime, ExecStdio, NetScoper, VmmBackend};

use crate::cli::{LaunchArgs, RunArgs, UpArgs};
use crate::context::{is_alive, Context};
use crate::exit::RUN_FAILED;
use crate::output::{self, Progress};
use crate::signal;

/// The three plugins of one bottle, loaded.
pub struct Loaded {
    pub net: Box<dyn NetScoper>,
    pub vmm: Box<dyn VmmBackend>,
    pub runtime: Box<dyn BundleRuntime>,
}

impl Loaded {
    pub fn backends(&self) -> Backends<'_> {
        Backends {
            net: &*self.net,
            vmm: &*self.vmm,
            runtime: &*self.runtime,
        }
    }
}

pub fn up(ctx: &Context, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let spec = BottleSpec::load(&args.launch.spec)?;
    let (launched, _) = launch_spec(ctx, &args.launch, &spec, None)?;
    if args.json.json {
        output::json(&launched)?;
    } else {
        print_launched(&launched);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let spec = BottleSpec::load(&args.launch.spec)?;
    let command = if args.command.is_empty() {
        spec.agent.command.clone()
    } else {
        args.command.clone()
    };
    anyhow::ensure!(
        !command.is_empty(),
        "nothing to run: give a command after `--` or set `agent.command` in {}",
        spec.path.display()
    );
    let (launched, loaded) = launch_spec(ctx, &args.launch, &spec, Some(Vec::new()))?;
    tracing::info!(slug = %launched.slug, alias = %launched.alias, "agent attached");

    let result = loaded
        .vmm
        .exec(&launched.machine, &command, ExecStdio::Inherit);

    let mut db = ctx.db()?;
    let down = launch::teardown(
        &mut db,
        loaded.backends(),
        &launched.slug,
        &Progress::on_terminal(),
    );
    if down.is_ok() {
        ctx.remove_bottle_dir(&launched.slug);
    }
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            if let Err(down) = down {
                eprintln!("bottle: {down}");
            }
            return Err(anyhow::Error::new(err).context("cannot run the agent's command"));
        }
    };
    if let Err(down) = down {
        eprintln!("bottle: {down}");
        return Ok(ExitCode::from(RUN_FAILED));
    }
    let code = output
        .exit_code
        .map_or(RUN_FAILED, |c| u8::try_from(c & 0xff).unwrap_or(1));
    Ok(ExitCode::from(code))
}

/// Loads the plugins a spec asks for and runs the launch sequence, with Ctrl-C rolling back.
pub fn launch_spec(
    ctx: &Context,
    args: &LaunchArgs,
    spec: &BottleSpec,
    agent_command: Option<Vec<String>>,
) -> anyhow::Result<(Launched, Loaded)> {
    let vmm = ctx.vmm_name(args.vmm.as_deref(), spec.vmm.as_deref());
    let runtime = ctx.runtime_name(args.runtime.as_deref(), spec.runtime.as_deref());
    let loaded = Loaded {
        net: ctx.net()?,
        vmm: ctx
            .vmm(&vmm)
            .with_context(|| format!("cannot load the VMM plugin `{vmm}`"))?,
        runtime: ctx
            .runtime(&runtime)
            .with_context(|| format!("cannot load the runtime plugin `{runtime}`"))?,
    };
    let mut db = ctx.db()?;
    warn_about_half_done(&db)?;

    signal::install();
    let request = LaunchRequest {
        spec,
        vmm: &vmm,
        runtime: &runtime,
        pool: ctx.config.pool,
        bottle_dir: ctx.bottle_dir(&spec.slug),
        launcher_pid: std::process::id(),
        attached: agent_command.is_some(),
        agent_command,
        ready_timeout: Duration::from_secs(args.ready_timeout),
        cancel: &signal::INTERRUPTED,
    };
    let launched = launch::launch(
        &mut db,
        loaded.backends(),
        &request,
        &Progress::on_terminal(),
    )?;
    Ok((launched, loaded))
}

fn warn_about_half_done(db: &bottle_core::StateDb) -> anyhow::Result<()> {
    for record in db.bottles()? {
        if is_half_done(&record, is_alive) {
            eprintln!(
                "bottle: warning: bottle `{}` was left half-done ({}, at step {}); `bottle gc` \
                 removes it",
                record.slug, record.state, record.step
            );
        }
    }
    Ok(())
}

fn print_launched(launched: &Launched) {
    println!("bottle {} is running on {}", launched.slug, launched.alias);
    for e in &launched.endpoints {
        println!(
            "  {:<16} {:<21} (port {})",
            e.service.as_str(),
            e.address(),
            e.container_port
        );
    }
}

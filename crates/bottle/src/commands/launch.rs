//! `bottle up` and `bottle run`: the launch sequence, and for `run`, the agent attached.

use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use anyhow::Context as _;
use bottle_core::launch::{self, is_half_done, Backends, LaunchRequest, Launched};
use bottle_core::{
    BackendError, BottleSpec, BundleRuntime, ExecOutput, ExecStdio, Machine, NetScoper, VmmBackend,
};
use bottle_plugin_api::PluginKind;

use crate::cli::{LaunchArgs, RunArgs, UpArgs};
use crate::context::{full_name, is_alive, Context};
use crate::output::{self, Progress};
use crate::{exit, signal};

/// How often an attached `bottle run` looks for a Ctrl-C while the agent's command runs.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);
/// How long an attached `bottle run` waits before it tries again to stop a machine that would
/// not stop.
const STOP_RETRY: Duration = Duration::from_secs(1);

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
    let (launched, loaded) = match launch_spec(ctx, &args.launch, &spec, Some(Vec::new())) {
        // Stopped and rolled back before the agent ran: the user's doing, not bottle failing.
        Err(err) if exit::classify(&err) == exit::INTERRUPTED => {
            eprintln!("bottle: {}", exit::render_chain(&err));
            return Ok(ExitCode::from(exit::INTERRUPTED));
        }
        launched => launched?,
    };
    tracing::info!(slug = %launched.slug, alias = %launched.alias, "agent attached");

    let ended = attach(&*loaded.vmm, &launched.machine, &command);
    let interrupted = signal::interrupted();

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
    let status = match ended {
        // However the command ended, the user asked for the bottle to go: the agent's own
        // status (or smolvm's, for a machine stopped under it) is not the answer.
        _ if interrupted => None,
        Ok(output) => output.exit_code,
        Err(err) => {
            if let Err(down) = down {
                eprintln!("bottle: {down}");
            }
            return Err(anyhow::Error::new(err).context("cannot run the agent's command"));
        }
    };
    if let Err(down) = down {
        eprintln!("bottle: {down}");
        return Ok(ExitCode::from(exit::RUN_FAILED));
    }
    let code = match status {
        Some(code) => u8::try_from(code & 0xff).unwrap_or(exit::FAILURE),
        None if interrupted => {
            eprintln!(
                "bottle: bottle `{}`: interrupted while its agent ran: the agent was stopped and \
                 the bottle removed",
                launched.slug
            );
            exit::INTERRUPTED
        }
        None => exit::RUN_FAILED,
    };
    Ok(ExitCode::from(code))
}

/// Runs the agent's command on bottle's terminal. A Ctrl-C or SIGTERM that reaches bottle
/// meanwhile stops the agent's machine, which ends the command: the signal may have been sent
/// to bottle alone (`kill`, a supervisor), or the agent may ignore it, and bottle must not go
/// on waiting while the bottle it was asked to remove keeps running.
fn attach(
    vmm: &dyn VmmBackend,
    machine: &Machine,
    command: &[String],
) -> Result<ExecOutput, BackendError> {
    let (ended, watch) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || stop_when_interrupted(vmm, machine, &watch));
        let output = vmm.exec(machine, command, ExecStdio::Inherit);
        drop(ended);
        output
    })
}

/// Waits until `ended` closes (the command is over), and stops `machine` once an
/// interruption came. A stop that fails is tried again every [`STOP_RETRY`], so that bottle
/// never waits without end on an agent it was asked to remove.
fn stop_when_interrupted(vmm: &dyn VmmBackend, machine: &Machine, ended: &Receiver<()>) {
    let mut wait = INTERRUPT_POLL;
    while let Err(RecvTimeoutError::Timeout) = ended.recv_timeout(wait) {
        if !signal::interrupted() {
            continue;
        }
        tracing::info!(machine = %machine.name, "interrupted: stopping the agent's machine");
        match vmm.stop(machine) {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(
                    machine = %machine.name,
                    error = %e.one_line(),
                    "cannot stop the agent's machine; trying again in {STOP_RETRY:?}"
                );
                wait = STOP_RETRY;
            }
        }
    }
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
    let bystanders = other_runtimes(ctx, &runtime);
    let bystanders: Vec<&dyn BundleRuntime> = bystanders.iter().map(|r| &**r).collect();
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
        bystanders: &bystanders,
    };
    let launched = launch::launch(
        &mut db,
        loaded.backends(),
        &request,
        &Progress::on_terminal(),
    )?;
    Ok((launched, loaded))
}

/// The loaded runtimes other than `own`, whose resources keep aliases busy too. One that
/// cannot be built from its settings is left out and said so: it cannot be running anything
/// of bottle's through this home's settings either.
fn other_runtimes(ctx: &Context, own: &str) -> Vec<Box<dyn BundleRuntime>> {
    let own = full_name("runtime", own);
    ctx.plugin_names(PluginKind::Runtime)
        .into_iter()
        .filter(|name| *name != own)
        .filter_map(|name| match ctx.runtime(&name) {
            Ok(runtime) => Some(runtime),
            Err(e) => {
                tracing::warn!(
                    runtime = %name,
                    error = %exit::render_chain(&e),
                    "cannot load this runtime to see what it runs; leasing goes on without it"
                );
                None
            }
        })
        .collect()
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

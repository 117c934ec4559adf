//! The command line: every command, flag and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit status:
  0    success
  1    an unexpected failure (see the message)
  2    bad command-line usage
  3    a spec or config file is invalid
  4    no room: the alias pool is exhausted, the bottle name is taken, or another bottle
       process is working on that bottle
  5    refused for safety: the agent could not be held to its alias (or, for `bottle probe`,
       it reaches something it must not)
  6    a plugin, VMM or container engine failed
  7    no such bottle
  130  interrupted (Ctrl-C or SIGTERM): the launch was rolled back, or the agent that
       `bottle run` attached to was stopped and its bottle removed
  `bottle run` exits with the agent's status, or 125 when bottle itself failed (before,
  around or after the agent) or the agent was killed by a signal

Environment:
  BOTTLE_HOME          where state lives (default: $XDG_STATE_HOME/bottle or ~/.local/state/bottle;
                       ~/Library/Application Support/bottle on macOS)
  BOTTLE_PLUGIN_PATH   extra plugin directories, separated by ':'
  RUST_LOG             log filter, e.g. RUST_LOG=bottle=debug (overrides -v)";

/// Run untrusted AI agents next to the services they may use, and nothing else.
///
/// A bottle is one agent in its own VM or sandbox plus the bundle of services it may use.
/// Each bottle gets a loopback alias of its own (127.0.0.16/28 by default); its services are
/// published on that alias only, and the agent's egress is limited to it.
#[derive(Debug, Parser)]
#[command(name = "bottle", version, after_help = EXIT_CODES, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output: -v for info, -vv for debug, -vvv for trace
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Also look for plugins in DIR (searched first; may be repeated)
    #[arg(long, value_name = "DIR", global = true)]
    pub plugin_dir: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch a bottle from a spec and leave it running
    Up(UpArgs),
    /// Launch a bottle, attach to its agent, and remove the bottle when the agent exits
    Run(RunArgs),
    /// Stop a bottle's agent and remove its machine, services and lease
    ///
    /// The agent stops first, then its machine and its services go, and only then is its alias
    /// released. A name that is not here is reported and is not an error, so `down` can be
    /// repeated.
    Down(DownArgs),
    /// List bottles
    #[command(visible_alias = "ps")]
    Ls(JsonArgs),
    /// Show everything known about one bottle
    Inspect(SlugArgs),
    /// Check from inside a running agent what it can reach
    Probe(SlugArgs),
    /// Finish the removal of half-done bottles and remove unowned resources
    Gc(JsonArgs),
    /// Check this host: plugins, alias pool, VMM and container engine
    Doctor(JsonArgs),
    /// The loopback alias pool
    #[command(subcommand)]
    Net(NetCommand),
    /// List the plugins found, loaded or rejected, and why
    Plugins(JsonArgs),
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of a table, for scripts
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SlugArgs {
    /// The bottle's name
    pub slug: String,
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// The spec: a bottle.toml file, or a directory holding one
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,

    /// The VMM plugin, overriding the spec and config (e.g. smolvm)
    #[arg(long, value_name = "NAME")]
    pub vmm: Option<String>,

    /// The bundle runtime plugin, overriding the spec and config (e.g. process, docker)
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,

    /// Seconds each service port may take to accept connections
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub ready_timeout: u64,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub launch: LaunchArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub launch: LaunchArgs,

    /// The agent's command, instead of the spec's `agent.command`
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true))]
pub struct DownArgs {
    /// The bottles to remove
    #[arg(group = "which")]
    pub slugs: Vec<String>,

    /// Remove every bottle
    #[arg(long, group = "which")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Show the pool: which aliases exist, which are leased, which are busy
    ///
    /// Each alias is `free` (the next launch may lease it), `leased` (by a bottle of this
    /// home), `busy` (something outside bottle listens on it), `published` (a service of another
    /// bottle publishes on it), `claimed` (another home holds it) or `missing` (not
    /// on the loopback interface yet; `bottle up` adds it).
    Status(JsonArgs),
    /// Make the pool survive reboots (macOS: a launchd job that re-adds the aliases at boot)
    ///
    /// Prints what it will write and run first, then asks. Without a terminal and without
    /// `--yes`, it only prints the plan. On Linux there is nothing to persist. Run it again
    /// after changing the pool.
    Persist(PersistArgs),
}

#[derive(Debug, Args)]
pub struct PersistArgs {
    /// Write and run the plan without asking (sudo may still ask for a password)
    #[arg(short, long)]
    pub yes: bool,

    /// Print the plan as JSON instead of text, for scripts
    #[arg(long)]
    pub json: bool,
}

//! The fake's command line: the `machine` subcommands bottle uses, in the form of the version
//! it plays, so that the wrong form is a usage error (exit 2) as it is for the real clap CLI.

use std::ffi::OsString;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};

/// One parsed invocation.
#[derive(Debug)]
pub enum Request {
    Create(Create),
    Start { name: String },
    Stop { name: String },
    Delete { name: String, force: bool },
    List { json: bool },
    Status { name: String, json: bool },
    Exec { name: String, command: Vec<String> },
}

/// `machine create`'s arguments.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub from: Option<String>,
    pub image: Option<String>,
    pub net: bool,
    pub allow_cidr: Vec<String>,
    pub ports: Vec<String>,
    pub env: Vec<String>,
    pub volumes: Vec<String>,
    pub cpus: Option<u32>,
    pub mem: Option<u32>,
    pub command: Vec<String>,
}

/// The machine's name: positional for `create` and `delete` up to 1.0.1, `--name` from 1.0.2.
fn required_name(positional: bool) -> Arg {
    let name = Arg::new("name").value_name("NAME").required(true);
    if positional {
        name
    } else {
        name.short('n').long("name")
    }
}

/// `--name` where smolvm falls back to its default machine.
fn optional_name() -> Arg {
    Arg::new("name")
        .short('n')
        .long("name")
        .value_name("NAME")
        .default_value("default")
}

fn many(id: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::Append)
}

fn trailing_command(required: bool) -> Arg {
    Arg::new("command")
        .value_name("CMD")
        .num_args(1..)
        .last(true)
        .required(required)
}

fn json_flag() -> Arg {
    Arg::new("json").long("json").action(ArgAction::SetTrue)
}

fn command(positional: bool) -> Command {
    let mut create = Command::new("create")
        .arg(required_name(positional))
        .arg(Arg::new("from").long("from").value_name("ART.smolmachine"))
        .arg(
            Arg::new("image")
                .short('I')
                .long("image")
                .conflicts_with("from"),
        )
        .arg(Arg::new("net").long("net").action(ArgAction::SetTrue))
        .arg(many("allow-cidr"))
        .arg(many("port").short('p'))
        .arg(many("env").short('e'))
        .arg(many("volume").short('v'))
        .arg(
            Arg::new("cpus")
                .long("cpus")
                .value_parser(value_parser!(u32)),
        )
        .arg(Arg::new("mem").long("mem").value_parser(value_parser!(u32)))
        .arg(trailing_command(false));
    let mut ls = Command::new("ls").visible_alias("list").arg(
        Arg::new("verbose")
            .short('v')
            .long("verbose")
            .action(ArgAction::SetTrue),
    );
    let mut status = Command::new("status").arg(optional_name());
    if !positional {
        create = create.arg(many("label"));
        ls = ls.arg(json_flag());
        status = status.arg(json_flag());
    }
    let delete = Command::new("delete")
        .visible_alias("rm")
        .arg(required_name(positional))
        .arg(
            Arg::new("force")
                .short('f')
                .long("force")
                .action(ArgAction::SetTrue),
        );
    let machine = Command::new("machine")
        .subcommand_required(true)
        .subcommands([
            create,
            Command::new("start").arg(optional_name()),
            Command::new("stop").arg(optional_name()),
            delete,
            ls,
            status,
            Command::new("exec")
                .arg(optional_name())
                .arg(trailing_command(true)),
        ]);
    Command::new("smolvm")
        .subcommand_required(true)
        .subcommand(machine)
}

fn one(matches: &ArgMatches, id: &str) -> Option<String> {
    matches.get_one::<String>(id).cloned()
}

fn all(matches: &ArgMatches, id: &str) -> Vec<String> {
    matches
        .get_many::<String>(id)
        .map(|v| v.cloned().collect())
        .unwrap_or_default()
}

fn flag(matches: &ArgMatches, id: &str) -> bool {
    matches
        .try_get_one::<bool>(id)
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false)
}

fn name(matches: &ArgMatches) -> String {
    one(matches, "name").unwrap_or_else(|| "default".to_owned())
}

/// Parses `args` (program name first) in the form of the version played.
pub fn parse(positional: bool, args: Vec<OsString>) -> Result<Request, clap::Error> {
    let matches = command(positional).try_get_matches_from(args)?;
    let Some(("machine", machine)) = matches.subcommand() else {
        unreachable!("clap requires the machine subcommand")
    };
    Ok(match machine.subcommand() {
        Some(("create", m)) => Request::Create(Create {
            name: name(m),
            from: one(m, "from"),
            image: one(m, "image"),
            net: flag(m, "net"),
            allow_cidr: all(m, "allow-cidr"),
            ports: all(m, "port"),
            env: all(m, "env"),
            volumes: all(m, "volume"),
            cpus: m.get_one::<u32>("cpus").copied(),
            mem: m.get_one::<u32>("mem").copied(),
            command: all(m, "command"),
        }),
        Some(("start", m)) => Request::Start { name: name(m) },
        Some(("stop", m)) => Request::Stop { name: name(m) },
        Some(("delete", m)) => Request::Delete {
            name: name(m),
            force: flag(m, "force"),
        },
        Some(("ls", m)) => Request::List {
            json: flag(m, "json"),
        },
        Some(("status", m)) => Request::Status {
            name: name(m),
            json: flag(m, "json"),
        },
        Some(("exec", m)) => Request::Exec {
            name: name(m),
            command: all(m, "command"),
        },
        _ => unreachable!("clap requires one of the subcommands defined above"),
    })
}

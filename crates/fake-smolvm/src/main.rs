//! A TEST DOUBLE for the smolvm CLI, so that bottle's tests can drive "smolvm" on any machine:
//! it boots nothing and isolates nothing.
//!
//! It speaks the part of smolvm's command line that bottle uses, in the form of the version it
//! plays, and keeps its machines in smolvm's real database, so that bottle's reading and
//! patching of that database are tested against the real schema and settings.
//!
//! # Commands
//!
//! - `smolvm --version` prints `smolvm VERSION`.
//! - `smolvm machine create|start|stop|delete|ls|status|exec`. Up to 1.0.1 `create` and
//!   `delete` take the name as a positional argument, `ls` and `status` have no `--json` and
//!   `create` has no `--label`; from 1.0.2 the name is `--name N`. The wrong form is a usage
//!   error with exit status 2, as with the real clap command line.
//! - `create` checks that `--from` exists but does not read it. Up to 1.7.x, `--allow-cidr`
//!   given with `--from` is dropped (`allowed_cidrs` stored as null) and does not turn
//!   `network` on; otherwise the list is stored, a bare address as `/32`, and implies `--net`.
//!   Versions before 1.0.0 write the 0.8.0 record, without `published_sockets`, `rosetta`,
//!   `remote_volumes`, `cuda`, `docker_socket` and `runtime_managed`. `--label` is accepted
//!   and not stored.
//! - `start` reads the record afresh, as smolvm does, writes down the egress it would enforce
//!   and marks the machine running. `stop` of a machine that is not running says so and exits 0.
//!   `delete` without `-f` asks on stdin and does nothing unless answered `y`.
//! - `exec` runs the command ON THE HOST, with the machine's environment added, in a process
//!   group of its own, and exits with its status. `stop` and `delete` kill the groups of the
//!   machine's commands, as stopping a VM ends what runs in it; `exec` then fails, exit 1.
//! - An unknown machine is `Error: vm not found: N`, exit 1. A row stored as TEXT makes `ls`
//!   fail for every machine, and `start`, `status`, `stop` and `delete` fail for that one, with
//!   `Invalid column type Text at index: 1, name: data`, as in smolvm.
//!
//! # Environment
//!
//! - `FAKE_SMOLVM_VERSION`: the version played, e.g. `0.8.0`, `1.0.3`, `1.0.4`, `1.9.2` (the
//!   default). A value that is not `X.Y.Z` is printed as is and behaves as the newest.
//! - `FAKE_SMOLVM_FAIL`: comma-separated faults. `create`, `start`, `stop`, `delete`, `ls`,
//!   `status`, `exec`: that command fails with exit 1 and changes nothing. `store-text`:
//!   `create` stores the record as TEXT instead of a BLOB. `patch-revert`: `create` also
//!   installs a trigger (`fake_patch_revert`) that undoes every later change of any record's
//!   `allowed_cidrs`, so that a patch of the database does not stick.
//! - `HOME`, `XDG_DATA_HOME`: where the data directory is, as for smolvm.
//!
//! # Files
//!
//! Under smolvm's data directory (`$XDG_DATA_HOME/smolvm`, else `~/.local/share/smolvm`; on
//! macOS `~/Library/Application Support/smolvm`):
//! - `server/smolvm.db`: the database, as smolvm's;
//! - `fake/calls.log`: every command line the fake was run with, one JSON array a line;
//! - `fake/<name>.enforced.json`: written by each `start`: `name`, `network` and
//!   `allowed_cidrs` as read from the record at that moment; removed by `delete`;
//! - `fake/<name>.commands/<group>`: one file per command `exec` runs, named by its process
//!   group.

mod cli;
mod record;
mod store;

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Value};

use crate::cli::{Create, Request};
use crate::record::NewMachine;
use crate::store::Store;

/// A failure reported as `Error: MESSAGE` with exit status 1, as smolvm reports its own.
#[derive(Debug)]
pub struct Failure(pub String);

impl Failure {
    pub fn not_found(name: &str) -> Self {
        Failure(format!("vm not found: {name}"))
    }
}

/// The smolvm release the fake plays.
struct Release {
    reported: String,
    version: Option<(u32, u32, u32)>,
}

impl Release {
    fn from_env() -> Self {
        let reported = std::env::var("FAKE_SMOLVM_VERSION")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "1.9.2".to_owned());
        let mut parts = reported.split('.').map(|p| p.parse::<u32>().ok());
        let version = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
            _ => None,
        };
        Release { reported, version }
    }

    /// Whether `version` is older than `than`; a version that is not `X.Y.Z` is the newest.
    fn before(&self, than: (u32, u32, u32)) -> bool {
        self.version.is_some_and(|v| v < than)
    }
}

/// Everything the fake takes from its environment.
struct Fake {
    release: Release,
    faults: Vec<String>,
    data_dir: Option<PathBuf>,
}

impl Fake {
    fn from_env() -> Self {
        let faults = std::env::var("FAKE_SMOLVM_FAIL").unwrap_or_default();
        let faults = faults
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from);
        Fake {
            release: Release::from_env(),
            faults: faults.collect(),
            data_dir: data_dir(),
        }
    }

    fn has_fault(&self, fault: &str) -> bool {
        self.faults.iter().any(|f| f == fault)
    }

    /// Fails as the command `fault` names would, when that fault was asked for.
    fn fails(&self, fault: &str) -> Result<(), Failure> {
        if self.has_fault(fault) {
            return Err(Failure(format!(
                "injected failure (FAKE_SMOLVM_FAIL={fault})"
            )));
        }
        Ok(())
    }

    fn data_dir(&self) -> Result<&Path, Failure> {
        self.data_dir
            .as_deref()
            .ok_or_else(|| Failure("no home directory".to_owned()))
    }

    fn store(&self) -> Result<Store, Failure> {
        Store::open(&self.data_dir()?.join("server/smolvm.db"))
    }

    fn fake_file(&self, name: &str) -> Result<PathBuf, Failure> {
        let dir = self.data_dir()?.join("fake");
        fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
        Ok(dir.join(name))
    }

    fn log_call(&self, args: &[OsString]) {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let logged = self.fake_file("calls.log").and_then(|path| {
            let mut log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| Failure(e.to_string()))?;
            writeln!(log, "{}", json!(args)).map_err(|e| Failure(e.to_string()))
        });
        if let Err(Failure(err)) = logged {
            eprintln!("fake smolvm: cannot log this call: {err}");
        }
    }
}

/// smolvm's data directory, as `dirs::data_local_dir()` finds it, plus `smolvm`.
fn data_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute());
    let base = if cfg!(target_os = "macos") {
        home?.join("Library/Application Support")
    } else {
        match std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|x| x.is_absolute())
        {
            Some(xdg) => xdg,
            None => home?.join(".local/share"),
        }
    };
    Some(base.join("smolvm"))
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let fake = Fake::from_env();
    fake.log_call(args.get(1..).unwrap_or_default());

    if args.len() == 2 && (args[1] == "--version" || args[1] == "-V") {
        println!("smolvm {}", fake.release.reported);
        return ExitCode::SUCCESS;
    }
    let request = match cli::parse(fake.release.before((1, 0, 2)), args) {
        Ok(request) => request,
        Err(usage) => usage.exit(),
    };
    match run(&fake, request) {
        Ok(code) => code,
        Err(Failure(message)) => {
            eprintln!("Error: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(fake: &Fake, request: Request) -> Result<ExitCode, Failure> {
    match request {
        Request::Create(create) => {
            fake.fails("create")?;
            machine_create(fake, create)?;
        }
        Request::Start { name } => {
            fake.fails("start")?;
            machine_start(fake, &name)?;
        }
        Request::Stop { name } => {
            fake.fails("stop")?;
            machine_stop(fake, &name)?;
        }
        Request::Delete { name, force } => {
            fake.fails("delete")?;
            machine_delete(fake, &name, force)?;
        }
        Request::List { json } => {
            fake.fails("ls")?;
            machine_list(fake, json)?;
        }
        Request::Status { name, json } => {
            fake.fails("status")?;
            machine_status(fake, &name, json)?;
        }
        Request::Exec { name, command } => {
            fake.fails("exec")?;
            return machine_exec(fake, &name, &command);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A CIDR block as smolvm stores it: a bare address becomes a single-host block.
fn normalised_cidr(text: &str) -> Result<String, Failure> {
    let invalid = || Failure(format!("invalid CIDR '{text}'"));
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let widest = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => widest,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= widest)
            .ok_or_else(invalid)?,
    };
    Ok(format!("{addr}/{prefix}"))
}

fn machine_create(fake: &Fake, create: Create) -> Result<(), Failure> {
    let store = fake.store()?;
    if store.get(&create.name)?.is_some() {
        return Err(Failure(format!("machine '{}' already exists", create.name)));
    }
    if let Some(from) = &create.from {
        if !Path::new(from).is_file() {
            return Err(Failure(format!("artifact not found: {from}")));
        }
    }
    let cidrs = create
        .allow_cidr
        .iter()
        .map(|c| normalised_cidr(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drops_allow_cidr = create.from.is_some() && fake.release.before((1, 8, 0));
    let (allowed_cidrs, network) = if drops_allow_cidr || cidrs.is_empty() {
        (None, create.net)
    } else {
        (Some(cidrs), true)
    };
    let env = create
        .env
        .iter()
        .map(|spec| match spec.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(Failure(format!(
                "invalid env format '{spec}': expected KEY=VALUE"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let mounts = create
        .volumes
        .iter()
        .map(
            |spec| match spec.split(':').collect::<Vec<_>>().as_slice() {
                [host, guest] => Ok((host.to_string(), guest.to_string(), false)),
                [host, guest, "ro"] => Ok((host.to_string(), guest.to_string(), true)),
                _ => Err(Failure(format!(
                    "invalid volume '{spec}': expected HOST:GUEST[:ro]"
                ))),
            },
        )
        .collect::<Result<_, _>>()?;
    let ports = create
        .ports
        .iter()
        .map(|spec| {
            let parsed = spec
                .split_once(':')
                .and_then(|(h, g)| Some((h.parse().ok()?, g.parse().ok()?)));
            parsed.ok_or_else(|| Failure(format!("invalid port mapping '{spec}'")))
        })
        .collect::<Result<_, _>>()?;
    let machine = NewMachine {
        name: create.name.clone(),
        cpus: create.cpus.unwrap_or(1),
        mem: create.mem.unwrap_or(256),
        mounts,
        ports,
        network,
        env,
        allowed_cidrs,
        image: create.image,
        cmd: create.command,
        source_smolmachine: create.from,
    };
    let fields = record::new_record(machine, fake.release.before((1, 0, 0)));
    store.insert(&create.name, &fields, fake.has_fault("store-text"))?;
    if fake.has_fault("patch-revert") {
        store.revert_allow_list_changes()?;
    }
    println!("Created machine: {}", create.name);
    Ok(())
}

fn machine_start(fake: &Fake, name: &str) -> Result<(), Failure> {
    let mut store = fake.store()?;
    let fields = store.get(name)?.ok_or_else(|| Failure::not_found(name))?;
    if fields.get("state").and_then(Value::as_str) == Some("running") {
        println!("Machine '{name}' is already running");
        return Ok(());
    }
    let enforced = json!({
        "name": name,
        "network": fields.get("network").cloned().unwrap_or(Value::Bool(false)),
        "allowed_cidrs": fields.get("allowed_cidrs").cloned().unwrap_or(Value::Null),
    });
    let path = fake.fake_file(&format!("{name}.enforced.json"))?;
    fs::write(&path, format!("{enforced:#}\n"))
        .map_err(|e| Failure(format!("{}: {e}", path.display())))?;
    store.update(name, |r| {
        r.insert("state".into(), json!("running"));
    })?;
    println!("Started machine: {name}");
    Ok(())
}

fn machine_stop(fake: &Fake, name: &str) -> Result<(), Failure> {
    let mut store = fake.store()?;
    let fields = store.get(name)?.ok_or_else(|| Failure::not_found(name))?;
    let state = fields
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("created")
        .to_owned();
    if state != "running" {
        println!("Machine '{name}' is not running (state: {state})");
        return Ok(());
    }
    end_commands(fake, name)?;
    store.update(name, |r| {
        r.insert("state".into(), json!("stopped"));
    })?;
    println!("Stopped machine: {name}");
    Ok(())
}

fn machine_delete(fake: &Fake, name: &str, force: bool) -> Result<(), Failure> {
    let store = fake.store()?;
    store.get(name)?.ok_or_else(|| Failure::not_found(name))?;
    if !force {
        eprint!("Delete machine '{name}'? [y/N] ");
        let mut answer = String::new();
        let read = std::io::stdin().lock().read_line(&mut answer);
        if read.is_err() || !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Cancelled");
            return Ok(());
        }
    }
    end_commands(fake, name)?;
    store.delete(name)?;
    if let Ok(path) = fake.fake_file(&format!("{name}.enforced.json")) {
        // Absent when the machine never started.
        let _ = fs::remove_file(path);
    }
    println!("Deleted machine: {name}");
    Ok(())
}

fn machine_list(fake: &Fake, json: bool) -> Result<(), Failure> {
    let records = fake.store()?.all()?;
    if json {
        let listed: Vec<Value> = records
            .iter()
            .map(|(n, r)| record::status_json(n, r))
            .collect();
        println!("{}", Value::Array(listed));
        return Ok(());
    }
    if records.is_empty() {
        println!("No machines found");
        return Ok(());
    }
    println!(
        "{:<20} {:<12} {:>5} {:>10}",
        "NAME", "STATE", "CPUS", "MEMORY"
    );
    println!("{}", "-".repeat(50));
    for (name, fields) in &records {
        let state = fields
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("created");
        let cpus = fields.get("cpus").and_then(Value::as_u64).unwrap_or(1);
        let mem = fields.get("mem").and_then(Value::as_u64).unwrap_or(256);
        println!(
            "{name:<20} {state:<12} {cpus:>5} {:>10}",
            format!("{mem} MiB")
        );
    }
    Ok(())
}

fn machine_status(fake: &Fake, name: &str, json: bool) -> Result<(), Failure> {
    let fields = fake
        .store()?
        .get(name)?
        .ok_or_else(|| Failure::not_found(name))?;
    if json {
        println!("{:#}", record::status_json(name, &fields));
    } else {
        let state = fields
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("created");
        println!("Machine '{name}': {state}");
    }
    Ok(())
}

fn machine_exec(fake: &Fake, name: &str, command: &[String]) -> Result<ExitCode, Failure> {
    let fields = fake
        .store()?
        .get(name)?
        .ok_or_else(|| Failure::not_found(name))?;
    if fields.get("state").and_then(Value::as_str) != Some("running") {
        return Err(Failure(format!("machine '{name}' is not running")));
    }
    let env = fields
        .get("env")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let env = env
        .iter()
        .filter_map(|pair| Some((pair.get(0)?.as_str()?, pair.get(1)?.as_str()?)));
    let Some((program, args)) = command.split_first() else {
        return Err(Failure("exec needs a command".to_owned()));
    };
    // In a process group of its own, written down under the machine, so that stopping the
    // machine ends all of it, as stopping a VM ends everything inside, even after this `exec`
    // is gone. A Ctrl-C on the terminal is passed on to it.
    forward_interrupts();
    let mut child = std::process::Command::new(program)
        .args(args)
        .envs(env)
        .process_group(0)
        .spawn()
        .map_err(|e| Failure(format!("cannot run {program}: {e}")))?;
    let group = libc::pid_t::try_from(child.id()).map_err(|e| Failure(e.to_string()))?;
    let written = commands_dir(fake, name).and_then(|dir| {
        let file = dir.join(group.to_string());
        fs::write(&file, "").map_err(|e| Failure(format!("{}: {e}", file.display())))?;
        Ok(file)
    });
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Failure(e.to_string()))? {
            break status;
        }
        if INTERRUPTS.swap(false, Ordering::SeqCst) {
            signal_group(group, libc::SIGINT);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    if let Ok(file) = &written {
        // Already gone when `stop` ended the command.
        let _ = fs::remove_file(file);
    }
    let still_running = fake
        .store()?
        .get(name)?
        .is_some_and(|f| f.get("state").and_then(Value::as_str) == Some("running"));
    if !still_running {
        return Err(Failure(format!(
            "machine '{name}' stopped while the command ran"
        )));
    }
    let code = status.code().unwrap_or(128);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Where `exec` writes down the process group of each command it runs in `name`.
fn commands_dir(fake: &Fake, name: &str) -> Result<PathBuf, Failure> {
    let dir = fake.fake_file(&format!("{name}.commands"))?;
    fs::create_dir_all(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// Ends every command running in `name`, as stopping its VM would.
fn end_commands(fake: &Fake, name: &str) -> Result<(), Failure> {
    let dir = commands_dir(fake, name)?;
    let entries = fs::read_dir(&dir).map_err(|e| Failure(format!("{}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        if let Ok(group) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() {
            signal_group(group, libc::SIGKILL);
        }
        let _ = fs::remove_file(entry.path());
    }
    let _ = fs::remove_dir(&dir);
    Ok(())
}

fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a negative pid signals that process group and touches no memory.
    unsafe { libc::kill(-group, signal) };
}

/// Set when `exec` receives SIGINT or SIGTERM, for passing on to the command.
static INTERRUPTS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTS.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM reach `exec`'s command instead of ending `exec` alone.
fn forward_interrupts() {
    let handler = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

//! `bottle-sandbox`: the helper of bottle's `vmm-sandbox` plugin. It builds an agent's
//! sandbox and supervises it (`start`), runs commands inside it (`exec`), and tells whether
//! this host can build one at all (`check`). See the `bottle_vmm_sandbox` crate for why the
//! sandbox keeps the agent in.
//!
//! Exit codes: 0 on success; for `exec`, the command's own; 125 when the helper itself
//! failed, with a message on stderr that starts with `bottle-sandbox: `.

mod check;
mod control;
mod enter;
mod failure;
mod idmap;
mod init;
mod log;
mod program;
mod relay;
mod rootfs;
mod sandbox;
mod start;
mod supervisor;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;

use bottle_vmm_sandbox::{MachineDir, HELPER_FAILURE, HELPER_MESSAGE_PREFIX, VERSION};

use crate::failure::Failure;

const USAGE: &str = "usage:
  bottle-sandbox start MACHINE_DIR          start the machine's sandbox, detached
  bottle-sandbox exec MACHINE_DIR -- CMD... run CMD inside the running sandbox
  bottle-sandbox check                      build and take down a sandbox, to test this host
  bottle-sandbox --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["start", dir] => start::start(&machine_dir(dir)).map(|()| 0),
        ["exec", dir, "--", command @ ..] if !command.is_empty() => {
            enter::exec(&machine_dir(dir), &args[3..])
        }
        ["check"] => check::check().map(|()| {
            println!("bottle-sandbox {VERSION}");
            0
        }),
        ["--version" | "version"] => {
            println!("bottle-sandbox {VERSION}");
            Ok(0)
        }
        _ => Err(Failure::new(format!(
            "unexpected arguments {args:?}\n{USAGE}"
        ))),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Err(failure) => {
            eprintln!("{HELPER_MESSAGE_PREFIX}{}", failure.report());
            ExitCode::from(HELPER_FAILURE as u8)
        }
    }
}

fn machine_dir(path: &str) -> MachineDir {
    MachineDir::at(PathBuf::from(path))
}

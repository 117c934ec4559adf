//! `bottle-sandbox`: builds, supervises and enters the sandboxes of bottle's `vmm-sandbox`.

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

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use bottle_vmm_sandbox::{MachineDir, HELPER_FAILURE, HELPER_MESSAGE_PREFIX, VERSION};

use crate::failure::Failure;

/// What `bottle-sandbox` accepts; exit codes: 0 on success, the command's own for `exec`, and
/// 125 when the helper itself failed, with a message on stderr starting `bottle-sandbox: `.
const USAGE: &str = "usage:
  bottle-sandbox start MACHINE_DIR          start the machine's sandbox, detached
  bottle-sandbox exec MACHINE_DIR -- CMD... run CMD inside the running sandbox
  bottle-sandbox check                      build and take down a sandbox, to test this host
  bottle-sandbox --version
exit codes: 0 on success; for exec, the command's own; 125 when bottle-sandbox failed";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Err(failure) => {
            eprintln!("{HELPER_MESSAGE_PREFIX}{}", failure.report());
            ExitCode::from(HELPER_FAILURE as u8)
        }
    }
}

/// Runs the subcommand `args` name; returns the exit code.
fn run(args: &[OsString]) -> Result<i32, Failure> {
    let word = |i: usize| args.get(i).and_then(|a| a.to_str());
    let machine_dir = || MachineDir::at(PathBuf::from(&args[1]));
    match (word(0), args.len()) {
        (Some("start"), 2) => start::start(&machine_dir()).map(|()| 0),
        (Some("exec"), n) if n > 3 && word(2) == Some("--") => {
            let command = args[3..]
                .iter()
                .map(|a| {
                    a.to_str().map(str::to_owned).ok_or_else(|| {
                        Failure::new(format!("the command argument {a:?} is not UTF-8"))
                    })
                })
                .collect::<Result<Vec<String>, Failure>>()?;
            enter::exec(&machine_dir(), &command)
        }
        (Some("check"), 1) => check::check().map(|()| {
            println!("bottle-sandbox {VERSION}");
            0
        }),
        (Some("--version" | "version"), 1) => {
            println!("bottle-sandbox {VERSION}");
            Ok(0)
        }
        _ => Err(Failure::new(format!(
            "unexpected arguments {args:?}\n{USAGE}"
        ))),
    }
}

//! `docker` invocations as values: built, printed, logged, then run with a bounded wait.

use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::error::{CommandFailure, DockerError};

/// How often a running command is checked for completion.
const POLL: Duration = Duration::from_millis(10);

/// One argument; environment values are kept out of logs and error messages, since specs put
/// tokens there.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arg {
    Plain(String),
    Env { key: String, value: String },
}

/// A `docker` command line, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DockerCommand {
    program: PathBuf,
    args: Vec<Arg>,
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl DockerCommand {
    pub fn new(program: &Path) -> Self {
        DockerCommand {
            program: program.to_path_buf(),
            args: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(Arg::Plain(arg.into()));
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args
            .extend(args.into_iter().map(|a| Arg::Plain(a.into())));
        self
    }

    /// Adds `-e KEY=VALUE`, shown as `-e KEY=…`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.args.push(Arg::Plain("-e".to_owned()));
        self.args.push(Arg::Env {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    fn argv(&self) -> impl Iterator<Item = String> + '_ {
        self.args.iter().map(|arg| match arg {
            Arg::Plain(s) => s.clone(),
            Arg::Env { key, value } => format!("{key}={value}"),
        })
    }

    /// Runs the command and returns what it printed, whatever its exit status. Errors only
    /// when it cannot be started or does not finish within `timeout`.
    pub fn output(&self, timeout: Duration) -> Result<Output, DockerError> {
        debug!(command = %self, "running docker");
        // In a process group of its own, so that a Ctrl-C meant for bottle (which then rolls
        // back) does not also kill the command bottle is waiting for, or an undo under way.
        let mut child = Command::new(&self.program)
            .args(self.argv())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.spawn_error(source))?;

        // Both pipes are drained while the command runs, so that a chatty command never
        // blocks on a full pipe.
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
                Ok(None) => {
                    // Best effort: the command is abandoned either way.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(DockerError::Hung {
                        command: self.to_string(),
                        secs: timeout.as_secs(),
                    });
                }
                Err(source) => {
                    return Err(DockerError::Spawn {
                        command: self.to_string(),
                        source,
                    })
                }
            }
        };
        let output = Output {
            status,
            stdout: collect(stdout),
            stderr: collect(stderr),
        };
        debug!(command = %self, status = %output.status, "docker finished");
        Ok(output)
    }

    /// Runs the command and returns its stdout; a non-zero exit is an error classified by
    /// what Docker printed on stderr.
    pub fn run(&self, timeout: Duration) -> Result<String, DockerError> {
        let output = self.output(timeout)?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(DockerError::from_failure(self.failure(&output)))
        }
    }

    /// The record of a failed run, for error messages.
    pub fn failure(&self, output: &Output) -> CommandFailure {
        CommandFailure {
            command: self.to_string(),
            status: output.status.to_string(),
            stderr: tidy(&output.stderr),
        }
    }

    fn spawn_error(&self, source: io::Error) -> DockerError {
        if source.kind() == io::ErrorKind::NotFound {
            DockerError::NotInstalled {
                program: self.program.display().to_string(),
                source,
            }
        } else {
            DockerError::Spawn {
                command: self.to_string(),
                source,
            }
        }
    }
}

/// Docker's stderr without blank lines and without the CLI's "Run 'docker run --help'" hint,
/// which is no help to a bottle user.
fn tidy(stderr: &str) -> String {
    let hint = |l: &str| l.starts_with("Run 'docker ") || l.starts_with("See 'docker ");
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !hint(l))
        .collect();
    lines.join("\n")
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error leaves what was read so far, which is all there is to show.
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

fn collect(reader: Option<thread::JoinHandle<Vec<u8>>>) -> String {
    let bytes = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Quotes `word` for a POSIX shell when it needs it, so that a logged command can be pasted.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl fmt::Display for DockerCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(&self.program.display().to_string()))?;
        for arg in &self.args {
            let shown = match arg {
                Arg::Plain(s) => shell_quote(s),
                Arg::Env { key, .. } => format!("{}=…", shell_quote(key)),
            };
            write!(f, " {shown}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker() -> DockerCommand {
        DockerCommand::new(Path::new("docker"))
    }

    #[test]
    fn display_quotes_only_what_a_shell_would_split() {
        let cmd = docker().args(["version", "--format", "{{json .}}", "it's"]);
        assert_eq!(
            cmd.to_string(),
            r#"docker version --format '{{json .}}' 'it'\''s'"#
        );
    }

    #[test]
    fn environment_values_never_show() {
        let cmd = docker().arg("run").env("API_TOKEN", "s3cret").arg("img:1");
        assert_eq!(cmd.to_string(), "docker run -e API_TOKEN=… img:1");
        assert_eq!(
            cmd.argv().collect::<Vec<_>>(),
            ["run", "-e", "API_TOKEN=s3cret", "img:1"]
        );
    }

    #[test]
    fn usage_hints_and_blank_lines_leave_stderr() {
        let stderr = "docker: Error response from daemon: No such image: a:1.\n\nRun 'docker run \
                      --help' for more information\n";
        assert_eq!(
            tidy(stderr),
            "docker: Error response from daemon: No such image: a:1."
        );
        let old = "docker: Error response from daemon: x.\nSee 'docker run --help'.\n";
        assert_eq!(tidy(old), "docker: Error response from daemon: x.");
        assert_eq!(tidy("one\n\n  two  \n"), "one\ntwo");
    }

    #[test]
    fn a_missing_program_means_docker_is_not_installed() {
        let cmd = DockerCommand::new(Path::new("/nonexistent/bottle-test/docker")).arg("info");
        let err = cmd.output(Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, DockerError::NotInstalled { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/bottle-test/docker"),
            "{err}"
        );
    }

    #[test]
    fn a_command_that_does_not_finish_is_killed() {
        let cmd = DockerCommand::new(Path::new("sleep")).arg("30");
        let started = Instant::now();
        let err = cmd.output(Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, DockerError::Hung { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn stdout_and_stderr_are_captured() {
        let cmd =
            DockerCommand::new(Path::new("sh")).args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = cmd.output(Duration::from_secs(5)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let err = cmd.run(Duration::from_secs(5)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`sh -c 'echo out; echo err >&2; exit 3'`"),
            "{text}"
        );
        assert!(
            text.contains("exit status: 3") && text.contains("err"),
            "{text}"
        );
    }
}

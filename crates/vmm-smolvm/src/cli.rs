//! The smolvm commands bottle runs, in the form each version speaks, and readers for what they
//! print.

use std::path::Path;

use bottle_core::{AgentSpec, Ipv4Cidr, MachineState};
use serde_json::Value;

use crate::command::SmolvmCommand;
use crate::error::Error;
use crate::version::CliForm;

/// The label that marks a machine as bottle's, with the bottle's slug as its value.
pub const SLUG_LABEL: &str = "bottle.slug";

/// The prefix of every machine bottle creates (`bottle-<slug>`).
pub const MACHINE_PREFIX: &str = "bottle-";

/// Builds smolvm commands for one executable and one command-line form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cli<'a> {
    pub program: &'a str,
    pub form: CliForm,
}

fn invalid(field: &str, problem: impl Into<String>) -> Error {
    Error::InvalidAgent {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn utf8_path<'p>(field: &str, path: &'p Path) -> Result<&'p str, Error> {
    path.to_str()
        .ok_or_else(|| invalid(field, format!("{} is not UTF-8", path.display())))
}

/// Refuses names that smolvm would read as an option or that are empty.
fn machine_name(name: &str) -> Result<&str, Error> {
    if name.is_empty() || name.starts_with('-') || name.chars().any(char::is_whitespace) {
        return Err(invalid(
            "machine name",
            format!("\"{name}\" is not a usable machine name"),
        ));
    }
    Ok(name)
}

impl Cli<'_> {
    fn machine(&self) -> SmolvmCommand {
        SmolvmCommand::new(self.program).arg("machine")
    }

    /// `smolvm --version`.
    pub fn version(program: &str) -> SmolvmCommand {
        SmolvmCommand::new(program).arg("--version")
    }

    /// `machine create`: the agent's artifact or image, its network limited to `allowed`, its
    /// resources, environment and mounts, bottle's label, and its command.
    pub fn create(&self, agent: &AgentSpec, allowed: &[Ipv4Cidr]) -> Result<SmolvmCommand, Error> {
        let name = machine_name(&agent.machine_name)?;
        let mut command = self.machine().arg("create");
        command = match self.form {
            CliForm::Positional => command.arg(name),
            CliForm::Named => command.args(["--name", name]),
        };
        command = match (&agent.from, &agent.image) {
            (Some(from), None) => command.args(["--from", utf8_path("artifact", from)?]),
            (None, Some(image)) => command.args(["-I", image.as_str()]),
            (Some(_), Some(_)) => return Err(invalid("image", "give `from` or `image`, not both")),
            (None, None) => {
                return Err(invalid(
                    "image",
                    "smolvm needs a `from` artifact or an `image`",
                ))
            }
        };
        command = command.arg("--net");
        for block in allowed {
            command = command.args(["--allow-cidr".to_owned(), block.to_string()]);
        }
        if let Some(cpus) = agent.cpus {
            command = command.args(["--cpus".to_owned(), cpus.to_string()]);
        }
        if let Some(mib) = agent.memory_mib {
            command = command.args(["--mem".to_owned(), mib.to_string()]);
        }
        for (key, value) in &agent.env {
            if key.is_empty() || key.contains('=') {
                return Err(invalid(
                    "environment",
                    format!("\"{key}\" is not a variable name"),
                ));
            }
            command = command.args(["-e".to_owned(), format!("{key}={value}")]);
        }
        for mount in &agent.mounts {
            let host = utf8_path("mount", &mount.host)?;
            let guest = utf8_path("mount", &mount.guest)?;
            if host.contains(':') || guest.contains(':') {
                let problem =
                    format!("{host}:{guest}: smolvm's HOST:GUEST form has no room for ':'");
                return Err(invalid("mount", problem));
            }
            let suffix = if mount.read_only { ":ro" } else { "" };
            command = command.args(["-v".to_owned(), format!("{host}:{guest}{suffix}")]);
        }
        if self.form == CliForm::Named {
            command = command.args(["--label".to_owned(), format!("{SLUG_LABEL}={}", agent.slug)]);
        }
        if !agent.command.is_empty() {
            command = command.arg("--").args(agent.command.iter().cloned());
        }
        Ok(command)
    }

    pub fn start(&self, name: &str) -> Result<SmolvmCommand, Error> {
        Ok(self
            .machine()
            .args(["start", "--name", machine_name(name)?]))
    }

    pub fn stop(&self, name: &str) -> Result<SmolvmCommand, Error> {
        Ok(self.machine().args(["stop", "--name", machine_name(name)?]))
    }

    /// `machine delete`, with `-f`: without it smolvm asks on the terminal.
    pub fn delete(&self, name: &str) -> Result<SmolvmCommand, Error> {
        let name = machine_name(name)?;
        Ok(match self.form {
            CliForm::Positional => self.machine().args(["delete", name, "-f"]),
            CliForm::Named => self.machine().args(["delete", "--name", name, "-f"]),
        })
    }

    pub fn list(&self) -> SmolvmCommand {
        match self.form {
            CliForm::Positional => self.machine().arg("ls"),
            CliForm::Named => self.machine().args(["ls", "--json"]),
        }
    }

    pub fn status(&self, name: &str) -> Result<SmolvmCommand, Error> {
        let name = machine_name(name)?;
        Ok(match self.form {
            CliForm::Positional => self.machine().args(["status", "-n", name]),
            CliForm::Named => self.machine().args(["status", "--name", name, "--json"]),
        })
    }

    /// `machine exec --name N -- CMD...`. Assumed to read the same in every release bottle
    /// drives: the `--name` form is the one smolvm documents, and no positional form is known.
    pub fn exec(&self, name: &str, command: &[String]) -> Result<SmolvmCommand, Error> {
        if command.first().is_none_or(|program| program.is_empty()) {
            return Err(invalid("command", "exec needs a program to run"));
        }
        let exec = self
            .machine()
            .args(["exec", "--name", machine_name(name)?, "--"]);
        Ok(exec.args(command.iter().cloned()))
    }
}

fn state_named(word: &str) -> Option<MachineState> {
    Some(match word {
        "created" => MachineState::Created,
        "running" => MachineState::Running,
        "stopped" => MachineState::Stopped,
        "failed" => MachineState::Failed,
        "unreachable" => MachineState::Unreachable,
        _ => return None,
    })
}

/// Reads a machine's state from `status`: a JSON object with `state` (named form), or
/// `Machine 'N': STATE` (positional form, where a running machine adds its pid).
pub(crate) fn parse_status(
    form: CliForm,
    name: &str,
    stdout: &str,
) -> Result<MachineState, String> {
    let word = match form {
        CliForm::Named => {
            let json: Value =
                serde_json::from_str(stdout).map_err(|e| format!("not a JSON object: {e}"))?;
            match json.get("state").and_then(Value::as_str) {
                Some(word) => word.to_owned(),
                None => return Err("no `state` string in the JSON object".to_owned()),
            }
        }
        CliForm::Positional => {
            let prefix = format!("Machine '{name}': ");
            let line = stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(prefix.as_str()));
            match line.and_then(|rest| rest.split_whitespace().next()) {
                Some(word) => word.to_owned(),
                None => return Err(format!("no line starting with \"{prefix}\"")),
            }
        }
    };
    state_named(&word).ok_or_else(|| format!("unknown machine state \"{word}\""))
}

/// One machine name from `ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listed {
    Name(String),
    /// The text table cut the name short and ended it with `...`: this is what is left.
    Truncated(String),
}

/// Reads the machine names from `ls`: a JSON array of objects with `name` (named form), or a
/// table whose first column is the name, under a header and a rule (positional form).
pub(crate) fn parse_list(form: CliForm, stdout: &str) -> Result<Vec<Listed>, String> {
    match form {
        CliForm::Named => {
            let json: Value =
                serde_json::from_str(stdout).map_err(|e| format!("not a JSON array: {e}"))?;
            let Value::Array(items) = json else {
                return Err("expected a JSON array".to_owned());
            };
            items
                .iter()
                .map(|item| match item.get("name").and_then(Value::as_str) {
                    Some(name) => Ok(Listed::Name(name.to_owned())),
                    None => Err(format!("an entry without a `name` string: {item}")),
                })
                .collect()
        }
        CliForm::Positional => {
            let mut names = Vec::new();
            for line in stdout.lines() {
                let line = line.trim();
                let is_rule = !line.is_empty() && line.bytes().all(|b| b == b'-');
                if line.is_empty()
                    || is_rule
                    || line.starts_with("NAME ")
                    || line.starts_with("No ")
                {
                    continue;
                }
                let Some(first) = line.split_whitespace().next() else {
                    continue;
                };
                names.push(match first.strip_suffix("...") {
                    Some(prefix) => Listed::Truncated(prefix.to_owned()),
                    None => Listed::Name(first.to_owned()),
                });
            }
            Ok(names)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use bottle_core::Mount;

    use super::*;

    fn agent() -> AgentSpec {
        AgentSpec {
            slug: "demo".parse().unwrap(),
            machine_name: "bottle-demo".to_owned(),
            from: Some(PathBuf::from("/specs/agent.smolmachine")),
            image: None,
            command: vec!["python3".to_owned(), "/agent.py".to_owned()],
            env: BTreeMap::from([
                ("BOTTLE_ALIAS".to_owned(), "127.0.0.17".to_owned()),
                (
                    "BOTTLE_SERVICE_WEB".to_owned(),
                    "127.0.0.17:8000".to_owned(),
                ),
            ]),
            mounts: vec![Mount {
                host: PathBuf::from("/work/src"),
                guest: PathBuf::from("/src"),
                read_only: true,
            }],
            cpus: Some(2),
            memory_mib: Some(512),
            alias: Ipv4Addr::new(127, 0, 0, 17),
            endpoints: vec![],
        }
    }

    fn alias() -> Vec<Ipv4Cidr> {
        vec![Ipv4Cidr::host(Ipv4Addr::new(127, 0, 0, 17))]
    }

    const NAMED: Cli<'static> = Cli {
        program: "smolvm",
        form: CliForm::Named,
    };
    const POSITIONAL: Cli<'static> = Cli {
        program: "smolvm",
        form: CliForm::Positional,
    };

    #[test]
    fn create_in_the_named_form_carries_everything_and_the_label() {
        let command = NAMED.create(&agent(), &alias()).unwrap();
        assert_eq!(
            command.to_string(),
            "smolvm machine create --name bottle-demo --from /specs/agent.smolmachine --net \
             --allow-cidr 127.0.0.17/32 --cpus 2 --mem 512 -e BOTTLE_ALIAS=127.0.0.17 \
             -e BOTTLE_SERVICE_WEB=127.0.0.17:8000 -v /work/src:/src:ro --label bottle.slug=demo \
             -- python3 /agent.py"
        );
    }

    #[test]
    fn create_in_the_positional_form_has_no_label() {
        let mut agent = agent();
        agent.from = None;
        agent.image = Some("alpine:3".to_owned());
        agent.command.clear();
        agent.env.clear();
        agent.mounts.clear();
        agent.cpus = None;
        agent.memory_mib = None;
        let command = POSITIONAL.create(&agent, &alias()).unwrap();
        assert_eq!(
            command.to_string(),
            "smolvm machine create bottle-demo -I alpine:3 --net --allow-cidr 127.0.0.17/32"
        );
    }

    #[test]
    fn create_refuses_what_smolvm_cannot_express() {
        let mut both = agent();
        both.image = Some("alpine".to_owned());
        assert!(NAMED.create(&both, &alias()).is_err());
        let mut neither = agent();
        neither.from = None;
        assert!(NAMED.create(&neither, &alias()).is_err());
        let mut colon = agent();
        colon.mounts[0].host = PathBuf::from("/work/a:b");
        assert!(NAMED.create(&colon, &alias()).is_err());
        let mut option_like = agent();
        option_like.machine_name = "--help".to_owned();
        assert!(POSITIONAL.create(&option_like, &alias()).is_err());
    }

    #[test]
    fn each_command_in_each_form() {
        let cases = [
            (NAMED.start("m").unwrap(), "smolvm machine start --name m"),
            (
                POSITIONAL.start("m").unwrap(),
                "smolvm machine start --name m",
            ),
            (NAMED.stop("m").unwrap(), "smolvm machine stop --name m"),
            (
                NAMED.delete("m").unwrap(),
                "smolvm machine delete --name m -f",
            ),
            (
                POSITIONAL.delete("m").unwrap(),
                "smolvm machine delete m -f",
            ),
            (NAMED.list(), "smolvm machine ls --json"),
            (POSITIONAL.list(), "smolvm machine ls"),
            (
                NAMED.status("m").unwrap(),
                "smolvm machine status --name m --json",
            ),
            (
                POSITIONAL.status("m").unwrap(),
                "smolvm machine status -n m",
            ),
            (
                NAMED
                    .exec("m", &["sh".to_owned(), "-c".to_owned(), "id".to_owned()])
                    .unwrap(),
                "smolvm machine exec --name m -- sh -c id",
            ),
        ];
        for (command, expected) in cases {
            assert_eq!(command.to_string(), expected);
        }
        assert!(NAMED.exec("m", &[]).is_err());
    }

    #[test]
    fn status_in_both_forms() {
        let json = r#"{"name":"m","state":"running","cpus":1,"network":true}"#;
        assert_eq!(
            parse_status(CliForm::Named, "m", json),
            Ok(MachineState::Running)
        );
        let text = "Machine 'm': running (pid: 4242)\n";
        assert_eq!(
            parse_status(CliForm::Positional, "m", text),
            Ok(MachineState::Running)
        );
        let text = "Machine 'm': created\n";
        assert_eq!(
            parse_status(CliForm::Positional, "m", text),
            Ok(MachineState::Created)
        );
        assert!(parse_status(CliForm::Named, "m", r#"{"state":"dancing"}"#).is_err());
        assert!(parse_status(CliForm::Named, "m", "Machine 'm': running").is_err());
        assert!(parse_status(CliForm::Positional, "m", "Machine 'x': running").is_err());
    }

    #[test]
    fn list_in_both_forms() {
        let json = r#"[{"name":"bottle-a","state":"created"},{"name":"other","state":"running"}]"#;
        assert_eq!(
            parse_list(CliForm::Named, json),
            Ok(vec![
                Listed::Name("bottle-a".into()),
                Listed::Name("other".into())
            ])
        );
        assert_eq!(parse_list(CliForm::Named, "[]\n"), Ok(vec![]));
        assert!(parse_list(CliForm::Named, r#"[{"state":"created"}]"#).is_err());

        let table = "NAME                 STATE         CPUS     MEMORY\n\
                     ----------------------------------------------\n\
                     bottle-a             created          1    256 MiB\n\
                     bottle-review-b...   running          1    256 MiB\n";
        assert_eq!(
            parse_list(CliForm::Positional, table),
            Ok(vec![
                Listed::Name("bottle-a".into()),
                Listed::Truncated("bottle-review-b".into())
            ])
        );
        assert_eq!(
            parse_list(CliForm::Positional, "No machines found\n"),
            Ok(vec![])
        );
    }
}

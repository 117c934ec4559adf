//! The bottle spec: the `bottle.toml` file that names a bottle, its agent and its services.
//!
//! The file is parsed into raw values first and then validated into typed ones; every error
//! names the file, the field and what was expected. Unknown keys are errors, so that a typo
//! never silently drops a setting.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::name::{ServiceName, Slug};

/// The file name `bottle up DIR` looks for inside a directory.
pub const SPEC_FILE_NAME: &str = "bottle.toml";

/// Environment variables the agent receives from bottle itself; a spec may not set them.
pub const RESERVED_ENV_PREFIX: &str = "BOTTLE_";

/// Why a spec file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{}: `{field}`: expected {expected}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        expected: String,
    },
}

/// A validated bottle spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BottleSpec {
    /// The spec file, absolute.
    pub path: PathBuf,
    pub slug: Slug,
    /// The VMM plugin the spec asks for (`sandbox`, `smolvm`, ...), if any.
    pub vmm: Option<String>,
    /// The bundle runtime plugin the spec asks for (`process`, `docker`, ...), if any.
    pub runtime: Option<String>,
    pub agent: Agent,
    pub services: BTreeMap<ServiceName, Service>,
}

/// The `[agent]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Agent {
    /// A VMM-specific artifact (smolvm: a `.smolmachine` file), made absolute.
    pub from: Option<PathBuf>,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
}

/// One `[services.NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub command: Vec<String>,
    pub ports: Vec<u16>,
    pub env: BTreeMap<String, String>,
}

/// A host directory shared with the agent: `HOST:GUEST[:ro]` in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute; a relative path in the spec is taken from the spec's directory.
    pub host: PathBuf,
    /// Absolute, inside the agent.
    pub guest: PathBuf,
    pub read_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: String,
    vmm: Option<String>,
    runtime: Option<String>,
    #[serde(default)]
    agent: RawAgent,
    #[serde(default)]
    services: BTreeMap<String, RawService>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    from: Option<String>,
    image: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    mounts: Vec<String>,
    cpus: Option<i64>,
    memory_mib: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    ports: Vec<i64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

impl BottleSpec {
    /// Reads and validates a spec. `path` may name the file or a directory holding
    /// `bottle.toml`.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let file = if path.is_dir() {
            path.join(SPEC_FILE_NAME)
        } else {
            path.to_path_buf()
        };
        let file = std::path::absolute(&file).map_err(|source| SpecError::Read {
            path: file.clone(),
            source,
        })?;
        let text = fs::read_to_string(&file).map_err(|source| SpecError::Read {
            path: file.clone(),
            source,
        })?;
        Self::parse(&text, &file)
    }

    /// Validates the text of a spec; `path` is the file it came from (absolute), which
    /// errors name and relative paths are resolved against.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let raw: RawSpec = toml::from_str(text).map_err(|e| SpecError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let v = Validator {
            path,
            dir: path.parent().unwrap_or(Path::new("/")),
        };

        let slug = raw
            .name
            .parse::<Slug>()
            .map_err(|e| v.invalid("name", e.rule))?;
        let vmm = v.plugin_choice("vmm", raw.vmm)?;
        let runtime = v.plugin_choice("runtime", raw.runtime)?;
        let agent = v.agent(raw.agent)?;
        let mut services = BTreeMap::new();
        for (name, raw_service) in raw.services {
            let field = format!("services.{name}");
            let service_name = name
                .parse::<ServiceName>()
                .map_err(|e| v.invalid(&field, e.rule))?;
            services.insert(service_name, v.service(&field, raw_service)?);
        }
        Ok(BottleSpec {
            path: path.to_path_buf(),
            slug,
            vmm,
            runtime,
            agent,
            services,
        })
    }

    /// The directory relative paths in the spec are taken from.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }
}

struct Validator<'a> {
    path: &'a Path,
    dir: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, field: &str, expected: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            path: self.path.to_path_buf(),
            field: field.to_owned(),
            expected: expected.into(),
        }
    }

    fn plugin_choice(
        &self,
        field: &str,
        value: Option<String>,
    ) -> Result<Option<String>, SpecError> {
        match value {
            Some(v) if v.parse::<Slug>().is_err() => Err(self.invalid(
                field,
                format!(
                    "a plugin name such as \"sandbox\", \"smolvm\", \"process\" or \
                     \"docker\", got \"{v}\""
                ),
            )),
            other => Ok(other),
        }
    }

    fn agent(&self, raw: RawAgent) -> Result<Agent, SpecError> {
        if raw.from.is_some() && raw.image.is_some() {
            return Err(self.invalid("agent.image", "either `from` or `image`, not both"));
        }
        let from = match raw.from {
            Some(from) => Some(self.existing_path("agent.from", &from)?),
            None => None,
        };
        if let Some(image) = &raw.image {
            self.non_empty("agent.image", image)?;
        }
        self.command("agent.command", &raw.command)?;
        self.env("agent.env", &raw.env)?;
        let mounts = raw
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| self.mount(&format!("agent.mounts[{i}]"), m))
            .collect::<Result<_, _>>()?;
        let cpus = self.bounded("agent.cpus", raw.cpus, 1, 64)?;
        let memory_mib = self.bounded("agent.memory_mib", raw.memory_mib, 64, 1 << 20)?;
        Ok(Agent {
            from,
            image: raw.image,
            command: raw.command,
            env: raw.env,
            mounts,
            cpus,
            memory_mib,
        })
    }

    fn service(&self, field: &str, raw: RawService) -> Result<Service, SpecError> {
        if raw.image.is_none() && raw.command.is_empty() {
            return Err(self.invalid(
                field,
                "an `image` (docker runtime) or a `command` (process runtime)",
            ));
        }
        if let Some(image) = &raw.image {
            self.non_empty(&format!("{field}.image"), image)?;
        }
        self.command(&format!("{field}.command"), &raw.command)?;
        self.env(&format!("{field}.env"), &raw.env)?;
        if raw.ports.is_empty() {
            return Err(self.invalid(
                &format!("{field}.ports"),
                "at least one port, e.g. ports = [8080]",
            ));
        }
        let mut ports = Vec::with_capacity(raw.ports.len());
        for (i, port) in raw.ports.iter().enumerate() {
            let field = format!("{field}.ports[{i}]");
            let port = match u16::try_from(*port) {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(self.invalid(&field, format!("a port from 1 to 65535, got {port}")))
                }
            };
            if ports.contains(&port) {
                return Err(self.invalid(
                    &field,
                    format!("each port once, but {port} is listed twice"),
                ));
            }
            ports.push(port);
        }
        Ok(Service {
            image: raw.image,
            command: raw.command,
            ports,
            env: raw.env,
        })
    }

    fn non_empty(&self, field: &str, value: &str) -> Result<(), SpecError> {
        if value.trim().is_empty() {
            return Err(self.invalid(field, "a non-empty string"));
        }
        Ok(())
    }

    fn command(&self, field: &str, command: &[String]) -> Result<(), SpecError> {
        if command.first().is_some_and(|c| c.is_empty()) {
            return Err(self.invalid(field, "a program name as the first element, got \"\""));
        }
        Ok(())
    }

    fn env(&self, field: &str, env: &BTreeMap<String, String>) -> Result<(), SpecError> {
        for key in env.keys() {
            let valid = key
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(self.invalid(
                    &format!("{field}.{key}"),
                    "a variable name of letters, digits and '_', not starting with a digit",
                ));
            }
            if key.starts_with(RESERVED_ENV_PREFIX) {
                return Err(self.invalid(
                    &format!("{field}.{key}"),
                    format!(
                        "a name not starting with {RESERVED_ENV_PREFIX}, which bottle sets itself"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn existing_path(&self, field: &str, value: &str) -> Result<PathBuf, SpecError> {
        self.non_empty(field, value)?;
        let path = self.dir.join(value);
        if !path.exists() {
            return Err(self.invalid(
                field,
                format!(
                    "an existing path (relative to the spec's directory), but {} does not exist",
                    path.display()
                ),
            ));
        }
        Ok(path)
    }

    fn mount(&self, field: &str, value: &str) -> Result<Mount, SpecError> {
        let expected = "HOST:GUEST or HOST:GUEST:ro, with GUEST an absolute path";
        let parts: Vec<&str> = value.split(':').collect();
        let (host, guest, read_only) = match parts.as_slice() {
            [host, guest] => (*host, *guest, false),
            [host, guest, "ro"] => (*host, *guest, true),
            [host, guest, "rw"] => (*host, *guest, false),
            _ => return Err(self.invalid(field, format!("{expected}, got \"{value}\""))),
        };
        if host.is_empty() || !guest.starts_with('/') {
            return Err(self.invalid(field, format!("{expected}, got \"{value}\"")));
        }
        let host = self.existing_path(field, host)?;
        Ok(Mount {
            host,
            guest: PathBuf::from(guest),
            read_only,
        })
    }

    fn bounded(
        &self,
        field: &str,
        value: Option<i64>,
        min: u32,
        max: u32,
    ) -> Result<Option<u32>, SpecError> {
        match value {
            None => Ok(None),
            Some(v) if v >= i64::from(min) && v <= i64::from(max) => Ok(Some(v as u32)),
            Some(v) => Err(self.invalid(field, format!("a number from {min} to {max}, got {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "review-bot"
vmm = "smolvm"
runtime = "process"

[agent]
from = "agent.smolmachine"
command = ["sh", "-c", "echo hello"]
env = { LOG_LEVEL = "info" }
mounts = ["./work:/workspace", "work:/ro:ro"]
cpus = 2
memory_mib = 1024

[services.tools]
command = ["httpd", "-f", "-p", "8080"]
ports = [8080]

[services.web-ui]
image = "bottle-test/busybox:1"
ports = [80, 443]
env = { MODE = "test" }
"#;

    struct Dir(tempfile::TempDir);

    impl Dir {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("agent.smolmachine"), b"").unwrap();
            std::fs::create_dir(dir.path().join("work")).unwrap();
            Dir(dir)
        }

        fn spec_path(&self) -> PathBuf {
            self.0.path().join(SPEC_FILE_NAME)
        }

        fn parse(&self, text: &str) -> Result<BottleSpec, SpecError> {
            std::fs::write(self.spec_path(), text).unwrap();
            BottleSpec::load(self.0.path())
        }

        /// Parses `GOOD` with `from` replaced by `to`, and returns the error text.
        fn error_with(&self, from: &str, to: &str) -> String {
            assert!(GOOD.contains(from), "the fixture has no `{from}`");
            let text = GOOD.replacen(from, to, 1);
            let err = self.parse(&text).expect_err("the spec should be refused");
            let text = err.to_string();
            let file = self.spec_path().display().to_string();
            assert!(
                text.starts_with(&file),
                "the error should name the file: {text}"
            );
            text[file.len()..].to_owned()
        }
    }

    #[test]
    fn a_full_spec_parses_into_typed_values() {
        let dir = Dir::new();
        let spec = dir.parse(GOOD).unwrap();
        assert_eq!(spec.slug.as_str(), "review-bot");
        assert_eq!(spec.vmm.as_deref(), Some("smolvm"));
        assert_eq!(spec.runtime.as_deref(), Some("process"));
        assert_eq!(
            spec.agent.from,
            Some(dir.0.path().join("agent.smolmachine"))
        );
        assert_eq!(spec.agent.cpus, Some(2));
        assert_eq!(spec.agent.memory_mib, Some(1024));
        assert_eq!(
            spec.agent.mounts,
            vec![
                Mount {
                    host: dir.0.path().join("./work"),
                    guest: "/workspace".into(),
                    read_only: false
                },
                Mount {
                    host: dir.0.path().join("work"),
                    guest: "/ro".into(),
                    read_only: true
                },
            ]
        );
        let names: Vec<&str> = spec.services.keys().map(ServiceName::as_str).collect();
        assert_eq!(names, ["tools", "web-ui"]);
        let web = &spec.services[&"web-ui".parse().unwrap()];
        assert_eq!(web.ports, [80, 443]);
        assert_eq!(web.image.as_deref(), Some("bottle-test/busybox:1"));
        assert_eq!(spec.dir(), dir.0.path());
    }

    #[test]
    fn the_minimal_spec_is_a_name() {
        let spec = Dir::new().parse("name = \"solo\"\n").unwrap();
        assert!(spec.services.is_empty());
        assert_eq!(spec.agent, Agent::default());
        assert_eq!(spec.vmm, None);
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = BottleSpec::load(dir.path()).unwrap_err();
        assert!(matches!(err, SpecError::Read { .. }));
        assert!(err.to_string().ends_with("bottle.toml"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let dir = Dir::new();
        let top = dir.error_with("runtime = \"process\"", "runtime = \"process\"\nruntim = 1");
        assert!(top.contains("unknown field `runtim`"), "{top}");
        let agent = dir.error_with("cpus = 2", "cpu = 2");
        assert!(agent.contains("unknown field `cpu`"), "{agent}");
        let service = dir.error_with("ports = [8080]", "port = [8080]");
        assert!(service.contains("unknown field `port`"), "{service}");
    }

    #[test]
    fn syntax_and_type_errors_say_where() {
        let dir = Dir::new();
        let err = dir.error_with("cpus = 2", "cpus = \"two\"");
        assert!(err.contains("line 11"), "{err}");
        let err = dir.error_with("name = \"review-bot\"", "name = ");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn each_invalid_field_gets_its_precise_error() {
        let dir = Dir::new();
        let cases = [
            (
                "name = \"review-bot\"",
                "name = \"Review_Bot\"",
                ": `name`: expected 1 to 48",
            ),
            (
                "vmm = \"smolvm\"",
                "vmm = \"Smol VM\"",
                ": `vmm`: expected a plugin name",
            ),
            (
                "[services.tools]",
                "[services.Tools]",
                ": `services.Tools`: expected 1 to 48 characters",
            ),
            (
                "ports = [8080]",
                "ports = [70000]",
                ": `services.tools.ports[0]`: expected a port from 1 to 65535, got 70000",
            ),
            (
                "ports = [8080]",
                "ports = [0]",
                ": `services.tools.ports[0]`: expected a port from 1 to 65535, got 0",
            ),
            (
                "ports = [80, 443]",
                "ports = [80, 80]",
                ": `services.web-ui.ports[1]`: expected each port once, but 80 is listed twice",
            ),
            (
                "ports = [8080]",
                "ports = []",
                ": `services.tools.ports`: expected at least one port",
            ),
            (
                "command = [\"httpd\", \"-f\", \"-p\", \"8080\"]",
                "",
                ": `services.tools`: expected an `image` (docker runtime) or a `command`",
            ),
            (
                "cpus = 2",
                "cpus = 0",
                ": `agent.cpus`: expected a number from 1 to 64, got 0",
            ),
            (
                "memory_mib = 1024",
                "memory_mib = 16",
                ": `agent.memory_mib`: expected a number from 64 to 1048576, got 16",
            ),
            (
                "from = \"agent.smolmachine\"",
                "from = \"missing.smolmachine\"",
                ": `agent.from`: expected an existing path",
            ),
            (
                "from = \"agent.smolmachine\"",
                "from = \"agent.smolmachine\"\nimage = \"alpine\"",
                ": `agent.image`: expected either `from` or `image`, not both",
            ),
            (
                "\"./work:/workspace\"",
                "\"./work:workspace\"",
                ": `agent.mounts[0]`: expected HOST:GUEST or HOST:GUEST:ro",
            ),
            (
                "\"work:/ro:ro\"",
                "\"work:/ro:rx\"",
                ": `agent.mounts[1]`: expected HOST:GUEST or HOST:GUEST:ro",
            ),
            (
                "\"./work:/workspace\"",
                "\"./nowhere:/workspace\"",
                ": `agent.mounts[0]`: expected an existing path",
            ),
            (
                "LOG_LEVEL = \"info\"",
                "BOTTLE_ALIAS = \"127.0.0.1\"",
                ": `agent.env.BOTTLE_ALIAS`: expected a name not starting with BOTTLE_",
            ),
            (
                "MODE = \"test\"",
                "\"1MODE\" = \"test\"",
                ": `services.web-ui.env.1MODE`: expected a variable name",
            ),
            (
                "command = [\"sh\", \"-c\", \"echo hello\"]",
                "command = [\"\", \"-c\"]",
                ": `agent.command`: expected a program name",
            ),
        ];
        for (from, to, expected) in cases {
            let err = dir.error_with(from, to);
            assert!(
                err.starts_with(expected),
                "replacing `{from}` by `{to}`:\n  got {err}"
            );
        }
    }
}

//! What can go wrong with Docker, each with its own message, and the error kind the host
//! acts on.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;

use bottle_core::{BackendError, ErrorKind, ServiceName, Slug};

use crate::port::PortError;

/// A `docker` command that exited with a failure: what ran, how it ended, what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandFailure {
    pub command: String,
    pub status: String,
    pub stderr: String,
}

impl fmt::Display for CommandFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stderr = if self.stderr.is_empty() {
            "(nothing on stderr)"
        } else {
            &self.stderr
        };
        write!(f, "`{}` failed ({}): {}", self.command, self.status, stderr)
    }
}

/// Why a Docker operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DockerError {
    #[error(
        "docker is not installed: cannot run `{program}` (install Docker, or set `docker` in the \
         runtime's settings to the path of the docker binary)"
    )]
    NotInstalled {
        program: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    #[error("`{command}` did not finish within {secs}s; the docker daemon may be hung")]
    Hung { command: String, secs: u64 },

    #[error(
        "the docker daemon is not reachable (is dockerd running, and do DOCKER_HOST and the \
         docker context point at it?): {0}"
    )]
    DaemonUnreachable(CommandFailure),

    #[error(
        "the image is not present locally, and bottle never pulls images (build it, or pull it \
         yourself, then retry): {0}"
    )]
    ImageMissing(CommandFailure),

    #[error("the host port is already taken: {0}")]
    PortTaken(CommandFailure),

    #[error(
        "a docker object of that name already exists (a bottle of the same name, or one left \
         over: `bottle gc` removes leftovers): {0}"
    )]
    NameTaken(CommandFailure),

    #[error("no such docker object: {0}")]
    NoSuchObject(CommandFailure),

    #[error("docker failed: {0}")]
    Failed(CommandFailure),

    #[error("cannot read what `{command}` printed")]
    UnreadableJson {
        command: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot read what `{command}` printed: expected {expected}, got {output:?}")]
    Unexpected {
        command: String,
        expected: &'static str,
        output: String,
    },

    #[error(
        "service `{service}` has no image; the docker runtime runs each service from an image"
    )]
    NoImage { service: ServiceName },

    #[error("service `{service}`: `{image}` is not an image name")]
    BadImage { service: ServiceName, image: String },

    #[error("cannot publish on {0}: a bottle's ports are published on its alias only")]
    NotAnAlias(Ipv4Addr),

    #[error("service `{service}` port {container_port}: {error}; `{command}` printed {output:?}")]
    PortReadBack {
        service: ServiceName,
        container_port: u16,
        command: String,
        output: String,
        error: PortError,
    },

    #[error("bottle `{slug}` has no container for service `{service}`")]
    NoContainer { slug: Slug, service: ServiceName },

    #[error("bottle `{slug}` has {count} containers for service `{service}`, expected one")]
    ManyContainers {
        slug: Slug,
        service: ServiceName,
        count: usize,
    },

    #[error(
        "container {container} carries the label `{label}={value}`, which is not an IPv4 address"
    )]
    BadAliasLabel {
        container: String,
        label: &'static str,
        value: String,
    },

    #[error(
        "service `{service}` port {container_port} (published on {address}) did not accept \
         connections within {secs}s"
    )]
    NotReady {
        service: ServiceName,
        container_port: u16,
        address: String,
        secs: u64,
        #[source]
        source: io::Error,
    },

    #[error(
        "service `{service}` exited with code {code} before its ports answered; its last \
         output:\n{logs}"
    )]
    Exited {
        service: ServiceName,
        code: i64,
        logs: String,
    },

    #[error("service `{service}`: {inner}")]
    InService {
        service: ServiceName,
        inner: Box<DockerError>,
    },
}

/// What Docker's stderr says went wrong, as far as the host needs to know.
fn classify(stderr: &str) -> fn(CommandFailure) -> DockerError {
    let text = stderr.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "cannot connect to the docker daemon",
        "is the docker daemon running",
        "error during connect",
        "permission denied while trying to connect to the docker daemon",
        "docker daemon is not running",
    ]) {
        DockerError::DaemonUnreachable
    } else if has(&["no such image", "unable to find image"]) {
        DockerError::ImageMissing
    } else if has(&["port is already allocated", "address already in use"]) {
        DockerError::PortTaken
    } else if has(&["is already in use by container", "already exists"]) {
        DockerError::NameTaken
    } else if has(&["no such container", "no such network", "no such object"])
        || (text.contains("network") && text.contains("not found"))
    {
        DockerError::NoSuchObject
    } else {
        DockerError::Failed
    }
}

impl DockerError {
    /// The error for a command that exited with a failure, by what it printed on stderr.
    pub fn from_failure(failure: CommandFailure) -> Self {
        classify(&failure.stderr)(failure)
    }

    /// Names the service an error is about, for errors whose message does not already.
    pub fn in_service(self, service: &ServiceName) -> Self {
        DockerError::InService {
            service: service.clone(),
            inner: Box::new(self),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        use DockerError::*;
        match self {
            NotInstalled { .. } | Spawn { .. } | DaemonUnreachable(_) => ErrorKind::Unavailable,
            Hung { .. } | NotReady { .. } => ErrorKind::Timeout,
            ImageMissing(_) | NoSuchObject(_) | NoContainer { .. } => ErrorKind::NotFound,
            PortTaken(_) | NameTaken(_) | ManyContainers { .. } => ErrorKind::Conflict,
            Failed(_) => ErrorKind::CommandFailed,
            NoImage { .. } | BadImage { .. } | NotAnAlias(_) => ErrorKind::InvalidInput,
            PortReadBack { error, .. } => error.kind(),
            UnreadableJson { .. } | Unexpected { .. } | BadAliasLabel { .. } | Exited { .. } => {
                ErrorKind::Other
            }
            InService { inner, .. } => inner.kind(),
        }
    }

    /// The first cause below this error's own message; a wrapper's message already includes
    /// its inner error's, so the causes start below that.
    fn first_cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DockerError::InService { inner, .. } => inner.first_cause(),
            other => other.source(),
        }
    }
}

impl From<DockerError> for BackendError {
    fn from(err: DockerError) -> Self {
        let out = BackendError::new(err.kind(), err.to_string());
        match err.first_cause() {
            Some(cause) => out.with_cause(cause),
            None => out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(stderr: &str) -> CommandFailure {
        CommandFailure {
            command: "docker run x".to_owned(),
            status: "exit status: 125".to_owned(),
            stderr: stderr.to_owned(),
        }
    }

    fn kind_of(stderr: &str) -> ErrorKind {
        DockerError::from_failure(failure(stderr)).kind()
    }

    #[test]
    fn stderr_of_real_docker_versions_is_classified() {
        let cases = [
            (
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the \
                 docker daemon running?",
                ErrorKind::Unavailable,
            ),
            (
                "permission denied while trying to connect to the Docker daemon socket at \
                 unix:///var/run/docker.sock",
                ErrorKind::Unavailable,
            ),
            (
                "error during connect: Get \"http://%2F%2F.%2Fpipe\": open",
                ErrorKind::Unavailable,
            ),
            (
                "docker: Error response from daemon: No such image: a/b:1.",
                ErrorKind::NotFound,
            ),
            (
                "docker: Error response from daemon: driver failed programming external \
                 connectivity on endpoint x (abc): Bind for 127.0.0.17:32768 failed: port is \
                 already allocated",
                ErrorKind::Conflict,
            ),
            (
                "listen tcp4 127.0.0.17:8080: bind: address already in use",
                ErrorKind::Conflict,
            ),
            (
                "docker: Error response from daemon: Conflict. The container name \
                 \"/bottle-a-web\" is already in use by container \"e9f\".",
                ErrorKind::Conflict,
            ),
            (
                "Error response from daemon: network with name bottle-a already exists",
                ErrorKind::Conflict,
            ),
            ("Error: No such network: bottle-a", ErrorKind::NotFound),
            (
                "Error response from daemon: network bottle-a not found",
                ErrorKind::NotFound,
            ),
            ("Error: No such object: abc", ErrorKind::NotFound),
            ("unknown flag: --pull", ErrorKind::CommandFailed),
        ];
        for (stderr, kind) in cases {
            assert_eq!(kind_of(stderr), kind, "{stderr}");
        }
    }

    #[test]
    fn the_message_shows_command_status_and_stderr() {
        let err = DockerError::from_failure(failure("docker: No such image: a/b:1"));
        let text = err.to_string();
        assert!(
            text.starts_with("the image is not present locally"),
            "{text}"
        );
        assert!(text
            .ends_with("`docker run x` failed (exit status: 125): docker: No such image: a/b:1"));
    }

    #[test]
    fn a_service_wrapper_keeps_the_kind_and_the_causes() {
        let io = io::Error::new(io::ErrorKind::NotFound, "no such file or directory");
        let inner = DockerError::NotInstalled {
            program: "docker".to_owned(),
            source: io,
        };
        let err: BackendError = inner.in_service(&"web".parse().unwrap()).into();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert!(
            err.message
                .starts_with("service `web`: docker is not installed"),
            "{err}"
        );
        assert_eq!(err.causes, ["no such file or directory"]);
    }
}

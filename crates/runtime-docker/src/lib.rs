//! bottle's [`BundleRuntime`](bottle_core::BundleRuntime) on Docker: each bottle's services
//! run as containers on a network of the bottle's own, with every port published on the
//! bottle's alias and nowhere else, and everything labelled so that any process can find it.
//!
//! It drives the `docker` CLI rather than the Engine API, so that the user's contexts,
//! `DOCKER_HOST` and TLS settings apply exactly as they do for `docker` itself.
//!
//! Limitations: images are never pulled (`--pull never`); services publish TCP ports only;
//! isolation between bottles' networks relies on dockerd's own iptables rules, so a daemon
//! started with `--iptables=false` lets bundles reach each other (see
//! `scripts/start-docker.sh`).

mod command;
mod error;
mod inspect;
pub mod labels;
mod port;
mod ready;
mod runtime;
mod settings;

pub use runtime::DockerRuntime;
pub use settings::Settings;

//! bottle's [`BundleRuntime`](bottle_core::BundleRuntime) on Docker: each bottle's services
//! run as containers on a network of the bottle's own, with every port published on the
//! bottle's alias and nowhere else, and everything labelled so that any process can find it.
//!
//! It drives the `docker` CLI rather than the Engine API, so that the user's contexts,
//! `DOCKER_HOST` and TLS settings apply exactly as they do for `docker` itself.
//!
//! Limitations: images are never pulled (`--pull never`); services publish TCP ports only.
//! Isolation between bottles' networks is dockerd's own iptables rules, which bottle cannot
//! check without root: a daemon started with `--iptables=false` lets bundles reach each other,
//! and Docker before 28 lifts the isolation for a moment whenever a network is created
//! (moby/moby#43585), unless the host rule in `scripts/start-docker.sh` closes that gap.
//! `describe` warns on such engines.

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

//! bottle's VMM backend for smolvm: each agent in a microVM whose egress allow-list is its
//! bottle's alias as a `/32`, on the smolvm releases where that holds, and a refusal elsewhere.
//!
//! smolvm is driven through its command line, in the form the installed version speaks (see
//! [`CliForm`]). Its egress allow-list is read from smolvm's own SQLite database, because no
//! command shows it; on the releases that drop `--allow-cidr` for `--from` machines, the one
//! workaround module writes it there between `machine create` and `machine start`.
//!
//! Fail closed: [`SmolvmBackend`] creates no machine on a smolvm whose scope it cannot enforce
//! (see [`EgressBehaviour`]), and any record it cannot read, repair or confirm stops the
//! launch with the half-made machine removed.

mod backend;
mod cli;
mod command;
mod error;
mod from_drops_allow_cidr;
mod record;
mod settings;
mod version;

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod support;

pub use backend::SmolvmBackend;
pub use cli::{MACHINE_PREFIX, SLUG_LABEL};
pub use command::SmolvmCommand;
pub use settings::{default_database_path, HostOs, DEFAULT_PROGRAM};
pub use version::{CliForm, EgressBehaviour, SmolvmVersion, REMEDY};

//! The `NetScoper` trait: making a pool's aliases usable on this host and finding which of
//! them something else already listens on.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::addr::AliasPool;
use crate::backend::BackendError;

/// What `ensure_pool` found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PoolReport {
    /// Aliases that were already usable.
    pub present: Vec<Ipv4Addr>,
    /// Aliases this call made usable (macOS adds them to `lo0`; Linux never needs to).
    pub added: Vec<Ipv4Addr>,
}

/// How one alias of the pool is used on the host, as the net plugin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasUse {
    pub alias: Ipv4Addr,
    /// Whether the alias exists on the loopback interface.
    pub present: bool,
    /// TCP ports something listens on at this alias (wildcard listeners excluded).
    pub listening_ports: Vec<u16>,
}

/// Makes the alias pool usable on this OS and reports foreign listeners.
pub trait NetScoper: Send + Sync {
    /// A short name for `bottle plugins` and logs, e.g. `net-linux`.
    fn name(&self) -> String;

    /// Lines for `bottle doctor`: what this scoper does on this host, and anything wrong.
    fn describe(&self) -> Result<Vec<String>, BackendError>;

    /// Makes every alias of `pool` usable, adding the missing ones where the OS needs it.
    fn ensure_pool(&self, pool: &AliasPool) -> Result<PoolReport, BackendError>;

    /// Every alias of `pool` with whether it exists and what listens on it.
    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError>;

    /// The aliases of `pool` that something already listens on.
    fn listeners_on(&self, pool: &AliasPool) -> Result<Vec<Ipv4Addr>, BackendError> {
        Ok(self
            .pool_status(pool)?
            .into_iter()
            .filter(|u| !u.listening_ports.is_empty())
            .map(|u| u.alias)
            .collect())
    }
}

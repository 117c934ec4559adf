//! bottle's domain: what a bottle is, where its alias comes from, and the traits that the
//! platform, VMM and container-engine plugins implement.
//!
//! Nothing here touches a platform, a VMM or a container engine; the only I/O is the state
//! database in [`state`]. Everything that does touch them lives in a plugin behind one of
//! the three traits: [`NetScoper`], [`VmmBackend`] and [`BundleRuntime`].

pub mod addr;
pub mod backend;
#[cfg(feature = "state")]
pub mod claims;
pub mod config;
#[cfg(feature = "state")]
pub mod launch;
pub mod name;
pub mod net;
pub mod runtime;
pub mod spec;
#[cfg(feature = "state")]
pub mod state;
pub mod vmm;

pub use addr::{AliasPool, Ipv4Cidr, PoolError};
pub use backend::{BackendError, ErrorKind};
pub use config::{Config, ConfigError};
pub use name::{NameError, ServiceName, Slug};
pub use net::{
    pool_usage, AliasUse, Listener, NetScoper, PersistPlan, PlannedCommand, PlannedFile, PoolReport,
};
pub use runtime::{BundleLaunchSpec, BundleRuntime, OwnedResource, ServiceEndpoint, ServiceLaunch};
pub use spec::{Agent, BottleSpec, Mount, Service, SpecError};
#[cfg(feature = "state")]
pub use state::{BottleRecord, BottleState, Lease, NewBottle, StateDb, StateError, Step};
pub use vmm::{
    AgentSpec, EgressPolicy, ExecOutput, ExecStdio, Machine, MachineState, ScopeSupport,
    VmmBackend, VmmProbe,
};

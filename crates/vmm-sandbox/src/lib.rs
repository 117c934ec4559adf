//! bottle's VMM backend for Linux hosts without a usable microVM: placeholder docs.

mod backend;
mod command;
mod error;
mod host;
mod machine;
mod process;
mod settings;
mod validate;

pub use backend::{SandboxBackend, VERSION};
pub use command::{HelperCommand, HELPER_FAILURE, HELPER_MESSAGE_PREFIX};
pub use error::Error;
pub use host::{UsernsSettings, ROOT_AGENT_ID};
pub use machine::{
    check_name, MachineDir, MachineRecord, SupervisorRecord, DEFAULT_HOME, DEFAULT_PATH,
    MACHINE_PREFIX,
};
pub use process::ProcessId;
pub use settings::HELPER_NAME;
pub use validate::{check_agent, check_guest_path, effective_policy, relay_targets, HOST_ROOT_DIR};

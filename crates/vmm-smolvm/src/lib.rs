//! Placeholder: SmolvmBackend is being written; every operation reports that it is not supported yet.

use bottle_core::BackendError;

/// The `vmm-smolvm` plugin's VmmBackend.
pub struct SmolvmBackend;

impl SmolvmBackend {
    /// Builds it from its settings (the plugin's table of `config.toml`, as JSON).
    pub fn from_settings(_settings: &serde_json::Value) -> Result<Self, BackendError> {
        Err(BackendError::not_supported("vmm-smolvm", "from_settings"))
    }
}

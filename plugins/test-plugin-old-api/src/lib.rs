//! A plugin for the loader's tests that claims the next plugin API version, as a plugin
//! built against another release of bottle-plugin-api would.

use bottle_plugin_api::bottle_core::{AliasPool, AliasUse, BackendError, NetScoper, PoolReport};

/// Never built: the loader refuses the library before.
pub struct OldApi;

impl OldApi {
    pub fn from_settings(_settings: &serde_json::Value) -> Result<Self, BackendError> {
        Ok(OldApi)
    }
}

impl NetScoper for OldApi {
    fn name(&self) -> String {
        "net-old-api".to_owned()
    }

    fn describe(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }

    fn ensure_pool(&self, _pool: &AliasPool) -> Result<PoolReport, BackendError> {
        Ok(PoolReport::default())
    }

    fn pool_status(&self, _pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError> {
        Ok(Vec::new())
    }
}

bottle_plugin_api::export_plugin!(
    @api_version = bottle_plugin_api::PLUGIN_API_VERSION + 1,
    net: name = "net-old-api", os = ["linux", "macos"], new = OldApi::from_settings
);

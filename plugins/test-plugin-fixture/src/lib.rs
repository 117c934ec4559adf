//! A net plugin for the loader's tests, written against the public plugin API only: each
//! operation has one fixed behaviour (log, answer, fail with causes, panic) for a test to
//! check from the host side.

use bottle_plugin_api::bottle_core::{
    AliasPool, AliasUse, BackendError, ErrorKind, NetScoper, PoolReport,
};

/// Answers with what it was built from, so that tests can see the settings arrive.
pub struct Fixture {
    settings: serde_json::Value,
}

impl Fixture {
    /// Fails when the settings say `"fail": true`, panics when they say `"panic": true`.
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, BackendError> {
        if settings["panic"] == true {
            panic!("the fixture was told to panic in new");
        }
        if settings["fail"] == true {
            return Err(
                BackendError::new(ErrorKind::Unavailable, "the fixture was told to fail")
                    .with_cause_text("settings say fail"),
            );
        }
        Ok(Fixture {
            settings: settings.clone(),
        })
    }
}

impl NetScoper for Fixture {
    fn name(&self) -> String {
        "net-fixture".to_owned()
    }

    /// Logs at four levels and returns its settings.
    fn describe(&self) -> Result<Vec<String>, BackendError> {
        tracing::error!("fixture error event");
        tracing::warn!(code = 7, "fixture warn event");
        tracing::info!("fixture info event");
        tracing::debug!("fixture debug event");
        Ok(vec![self.settings.to_string()])
    }

    /// Reports every alias of the pool as present.
    fn ensure_pool(&self, pool: &AliasPool) -> Result<PoolReport, BackendError> {
        Ok(PoolReport {
            present: pool.aliases().collect(),
            added: Vec::new(),
        })
    }

    /// Fails with a chain of causes.
    fn pool_status(&self, pool: &AliasPool) -> Result<Vec<AliasUse>, BackendError> {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        Err(BackendError::new(
            ErrorKind::CommandFailed,
            format!("cannot read the status of {pool}"),
        )
        .with_cause(&io)
        .with_cause_text("ran `fixture-status`"))
    }

    /// Panics.
    fn listeners_on(&self, _pool: &AliasPool) -> Result<Vec<std::net::Ipv4Addr>, BackendError> {
        panic!("the fixture panics in listeners_on");
    }
}

bottle_plugin_api::export_plugin!(
    net: name = "net-fixture", os = ["linux", "macos"], new = Fixture::from_settings
);

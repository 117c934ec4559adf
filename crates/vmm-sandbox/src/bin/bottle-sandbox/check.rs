//! `bottle-sandbox check`: a real sandbox, built and taken down, so that `probe` need not guess.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;

use bottle_core::{AgentSpec, EgressPolicy};
use bottle_vmm_sandbox::{MachineDir, MachineRecord};

use crate::failure::{Context, Failure};
use crate::idmap::IdMaps;
use crate::sandbox::Plan;
use crate::supervisor::{self, Readiness};
use crate::sys;

/// Builds and takes down a throw-away sandbox in a temporary directory.
pub fn check() -> Result<(), Failure> {
    let scratch = std::env::temp_dir().join(format!("bottle-sandbox-check-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&scratch)
        .context(|| format!("cannot create {}", scratch.display()))?;
    let result = check_in(&MachineDir::at(scratch.clone()));
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn check_in(dir: &MachineDir) -> Result<(), Failure> {
    let staging = dir.staging();
    fs::create_dir(&staging).context(|| format!("cannot create {}", staging.display()))?;
    let alias = Ipv4Addr::new(127, 0, 0, 1);
    let agent = AgentSpec {
        slug: "check"
            .parse()
            .map_err(|e: bottle_core::NameError| Failure::new(e.to_string()))?,
        machine_name: "bottle-check".to_owned(),
        from: None,
        image: None,
        command: Vec::new(),
        env: BTreeMap::new(),
        mounts: Vec::new(),
        cpus: None,
        memory_mib: None,
        alias,
        endpoints: Vec::new(),
    };
    let (euid, egid) = sys::effective_ids();
    let plan = Plan {
        record: MachineRecord {
            agent,
            policy: EgressPolicy::AllowOnly(Vec::new()),
            relay: Vec::new(),
        },
        staging,
        agent_log: None,
        maps: IdMaps::for_invoker(euid, egid),
        check_only: true,
    };
    supervisor::run(dir, &plan, &mut Readiness::new(None)).map(drop)
}

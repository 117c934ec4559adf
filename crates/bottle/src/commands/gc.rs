//! `bottle gc`: finish the removal of bottles whose launcher died, and remove resources that
//! carry this home's labels (bundles) or name (machines) but belong to no bottle in its state
//! database.

use std::collections::BTreeSet;
use std::process::ExitCode;

use bottle_core::launch::is_half_done;
use bottle_core::{ErrorKind, Slug};
use bottle_plugin_api::PluginKind;
use serde::Serialize;

use super::down::remove;
use crate::context::{is_alive, Context};
use crate::output;

#[derive(Default, Serialize)]
struct Report {
    /// Half-done bottles whose removal was finished.
    finished: Vec<String>,
    /// Resources that no bottle owned, removed.
    orphans_removed: Vec<String>,
    /// What could not be done, and why.
    failures: Vec<String>,
}

pub fn gc(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let mut db = ctx.db()?;
    let mut report = Report::default();

    for record in db.bottles()? {
        if !is_half_done(&record, is_alive) {
            continue;
        }
        match remove(ctx, &mut db, &record) {
            Ok(()) => report.finished.push(record.slug.to_string()),
            Err(e) => report.failures.push(format!(
                "{}: {}",
                record.slug,
                crate::exit::render_chain(&e)
            )),
        }
    }

    // Only this home's resources: other homes' bottles run on the same engine.
    let instance = db.instance_id()?;
    let known: BTreeSet<Slug> = db.bottles()?.into_iter().map(|b| b.slug).collect();
    for name in ctx.plugin_names(PluginKind::Runtime) {
        let runtime = match ctx.runtime(&name) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(plugin = %name, error = %e, "runtime skipped by gc");
                continue;
            }
        };
        let owned = match runtime.list_owned() {
            Ok(owned) => owned,
            Err(e) if e.kind == ErrorKind::Unavailable || e.kind == ErrorKind::NotSupported => {
                tracing::debug!(plugin = %name, error = %e, "runtime skipped by gc");
                continue;
            }
            Err(e) => {
                report.failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let orphans: BTreeSet<Slug> = owned
            .into_iter()
            .filter(|r| r.instance.as_deref() == Some(instance.as_str()))
            .map(|r| r.slug)
            .filter(|s| !known.contains(s))
            .collect();
        for slug in orphans {
            // A launch may have recorded it since the list was taken.
            if db.bottle(&slug)?.is_some() {
                continue;
            }
            match runtime.stop_bundle(&slug) {
                Ok(()) => report
                    .orphans_removed
                    .push(format!("{name}: bundle of {slug}")),
                Err(e) => report
                    .failures
                    .push(format!("{name}: bundle of {slug}: {e}")),
            }
        }
    }
    // Machines of this home (their names end in its instance id) that no bottle records.
    for name in ctx.plugin_names(PluginKind::Vmm) {
        let Ok(vmm) = ctx.vmm(&name) else { continue };
        let machines = match vmm.list_machines() {
            Ok(machines) => machines,
            Err(e) => {
                tracing::debug!(plugin = %name, error = %e, "VMM skipped by gc");
                continue;
            }
        };
        for machine in machines {
            let Some(slug) = Slug::from_machine_name(&machine.name, &instance) else {
                continue;
            };
            if db.bottle(&slug)?.is_some() {
                continue;
            }
            match vmm.stop(&machine).and_then(|()| vmm.remove(&machine)) {
                Ok(()) => report
                    .orphans_removed
                    .push(format!("{name}: machine {}", machine.name)),
                Err(e) => report
                    .failures
                    .push(format!("{name}: machine {}: {e}", machine.name)),
            }
        }
    }

    if json {
        output::json(&report)?;
    } else {
        for slug in &report.finished {
            println!("finished removing half-done bottle {slug}");
        }
        for orphan in &report.orphans_removed {
            println!("removed unowned {orphan}");
        }
        for failure in &report.failures {
            eprintln!("bottle: gc: {failure}");
        }
        if report.finished.is_empty()
            && report.orphans_removed.is_empty()
            && report.failures.is_empty()
        {
            println!("nothing to collect");
        }
    }
    if report.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(crate::exit::BACKEND))
    }
}

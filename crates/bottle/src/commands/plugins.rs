//! `bottle plugins`: every plugin file found, loaded or rejected, and why.

use std::process::ExitCode;

use bottle_plugin_api::Outcome;

use crate::context::Context;
use crate::output::{self, Table};

pub fn plugins(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let discovery = ctx.plugins();
    if json {
        output::json(&discovery.entries())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["NAME", "KIND", "VERSION", "STATUS", "PATH"]);
    let mut reasons = Vec::new();
    for entry in discovery.entries() {
        let (name, kind, version, status) = match &entry.outcome {
            Outcome::Loaded { manifest } => (
                manifest.name.clone(),
                manifest.kind.to_string(),
                manifest.version.clone(),
                "loaded".to_owned(),
            ),
            Outcome::Shadowed { manifest, by } => {
                reasons.push(format!(
                    "{}: shadowed by {}",
                    entry.path.display(),
                    by.display()
                ));
                (
                    manifest.name.clone(),
                    manifest.kind.to_string(),
                    manifest.version.clone(),
                    "shadowed".into(),
                )
            }
            Outcome::Rejected { reason } => {
                reasons.push(format!("{}: {reason}", entry.path.display()));
                ("-".into(), "-".into(), "-".into(), "rejected".into())
            }
        };
        table.row(vec![
            name,
            kind,
            version,
            status,
            entry.path.display().to_string(),
        ]);
    }
    if discovery.entries().is_empty() {
        println!("no plugins found; searched: {}", join_dirs(discovery));
    } else {
        table.print();
    }
    for reason in reasons {
        println!("{reason}");
    }
    Ok(ExitCode::SUCCESS)
}

fn join_dirs(discovery: &bottle_plugin_api::Discovery) -> String {
    let dirs: Vec<String> = discovery
        .searched()
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    dirs.join(", ")
}

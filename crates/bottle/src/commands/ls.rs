//! `bottle ls` and `bottle inspect`: what the state database knows, checked against what the
//! VMM and the runtime report now.

use std::process::ExitCode;

use bottle_core::launch::is_half_done;
use bottle_core::state::{BottleRecord, BottleState};
use bottle_core::MachineState;
use serde::Serialize;

use super::down::load_for;
use crate::context::{is_alive, parse_slug, Context};
use crate::exit::NoSuchBottle;
use crate::output::{self, age, Table};

/// A bottle as `ls` and `inspect` show it.
#[derive(Serialize)]
struct Shown {
    #[serde(flatten)]
    record: BottleRecord,
    /// `running`, `degraded`, `launching`, `stopping`, `half-done` or `unknown`.
    status: String,
    /// Why the status is not plainly the recorded state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<String>,
}

pub fn ls(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let db = ctx.db()?;
    let shown: Vec<Shown> = db.bottles()?.into_iter().map(|r| show(ctx, r)).collect();
    if json {
        output::json(&shown)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "SLUG", "STATUS", "ALIAS", "SERVICES", "VMM", "RUNTIME", "AGE",
    ]);
    for s in &shown {
        let r = &s.record;
        let services: Vec<String> = r
            .endpoints
            .iter()
            .map(|e| format!("{}={}", e.service, e.address()))
            .collect();
        table.row(vec![
            r.slug.to_string(),
            s.status.clone(),
            r.alias.map_or_else(|| "-".into(), |a| a.to_string()),
            if services.is_empty() {
                "-".into()
            } else {
                services.join(",")
            },
            r.vmm.clone(),
            r.runtime.clone(),
            age(r.created_at),
        ]);
    }
    table.print();
    for s in shown.iter().filter(|s| !s.problems.is_empty()) {
        eprintln!("{}: {}", s.record.slug, s.problems.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(ctx: &Context, slug: &str, json: bool) -> anyhow::Result<ExitCode> {
    let slug = parse_slug(slug)?;
    let db = ctx.db()?;
    let record = db
        .bottle(&slug)?
        .ok_or_else(|| NoSuchBottle(slug.to_string()))?;
    let shown = show(ctx, record);
    if json {
        output::json(&shown)?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = &shown.record;
    println!("bottle:    {}", r.slug);
    println!("status:    {}", shown.status);
    println!("spec:      {}", r.spec_path.display());
    println!(
        "alias:     {}",
        r.alias.map_or_else(|| "-".into(), |a| a.to_string())
    );
    println!("vmm:       {}", r.vmm);
    println!("runtime:   {}", r.runtime);
    println!(
        "machine:   {}",
        r.machine.as_ref().map_or("-", |m| m.name.as_str())
    );
    println!("step:      {}", r.step);
    println!("age:       {}", age(r.created_at));
    if let Some(err) = &r.last_error {
        println!("error:     {err}");
    }
    println!("services:");
    for e in &r.endpoints {
        println!(
            "  {:<16} {:<21} (port {})",
            e.service.as_str(),
            e.address(),
            e.container_port
        );
    }
    for p in &shown.problems {
        println!("problem:   {p}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The bottle's status: the recorded state, unless its launcher died or what it runs is
/// no longer running.
fn show(ctx: &Context, record: BottleRecord) -> Shown {
    let mut problems = Vec::new();
    let status = if is_half_done(&record, is_alive) {
        problems.push(format!(
            "its launcher died while {} (step {}); run `bottle gc`",
            record.state, record.step
        ));
        "half-done".to_owned()
    } else if record.state != BottleState::Running {
        record.state.to_string()
    } else {
        match check_running(ctx, &record) {
            Ok(found) if found.is_empty() => "running".to_owned(),
            Ok(found) => {
                problems.extend(found);
                "degraded".to_owned()
            }
            Err(e) => {
                problems.push(crate::exit::render_chain(&e));
                "unknown".to_owned()
            }
        }
    };
    Shown {
        record,
        status,
        problems,
    }
}

/// What is wrong with a bottle recorded as running: an agent that is not running, services
/// that are gone or stopped.
fn check_running(ctx: &Context, record: &BottleRecord) -> anyhow::Result<Vec<String>> {
    let loaded = load_for(ctx, record)?;
    let mut problems = Vec::new();
    match &record.machine {
        None => problems.push("it has no machine".to_owned()),
        Some(machine) => match loaded.vmm.status(machine) {
            Ok(MachineState::Running) => {}
            Ok(state) => problems.push(format!("machine {} is {}", machine.name, state.as_str())),
            Err(e) => problems.push(format!("machine {}: {e}", machine.name)),
        },
    }
    let owned: Vec<_> = loaded
        .runtime
        .list_owned()?
        .into_iter()
        .filter(|r| r.slug == record.slug)
        .collect();
    if owned.is_empty() && !record.endpoints.is_empty() {
        problems.push("its services are gone".to_owned());
    }
    for r in owned.iter().filter(|r| !r.running) {
        problems.push(format!("{} {} is not running", r.kind, r.name));
    }
    Ok(problems)
}

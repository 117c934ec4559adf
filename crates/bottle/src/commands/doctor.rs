//! `bottle doctor`: can this host keep the promise? Plugins, the alias pool, each VMM's
//! scope support and each runtime's readiness.

use std::process::ExitCode;

use bottle_core::ScopeSupport;
use bottle_plugin_api::PluginKind;
use serde::Serialize;

use super::net::{pool_lines, pool_status, PoolStatus};
use crate::context::Context;
use crate::output;

#[derive(Serialize)]
struct Check {
    plugin: String,
    ok: bool,
    lines: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    version: &'static str,
    os: &'static str,
    home: String,
    pool: String,
    default_vmm: String,
    default_runtime: String,
    plugins_loaded: usize,
    plugins_rejected: usize,
    /// Whether a bottle can be launched with the defaults: the net plugin, the pool's status
    /// (what leasing reads), the default VMM and the default runtime are all usable. `bottle
    /// doctor` exits 6 when they are not.
    ready: bool,
    net: Check,
    pool_status: Option<PoolStatus>,
    /// Why the pool's status could not be read, when the net plugin could be.
    pool_error: Option<String>,
    vmms: Vec<Check>,
    runtimes: Vec<Check>,
}

pub fn doctor(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let plugins = ctx.plugins();
    let net = match ctx.net() {
        Ok(net) => match net.describe() {
            Ok(lines) => Check {
                plugin: net.name(),
                ok: true,
                lines,
            },
            Err(e) => Check {
                plugin: net.name(),
                ok: false,
                lines: vec![e.to_string()],
            },
        },
        Err(e) => Check {
            plugin: "net".into(),
            ok: false,
            lines: vec![crate::exit::render_chain(&e)],
        },
    };
    let (pool_status, pool_error) = match net.ok.then(|| pool_status(ctx)) {
        Some(Ok(status)) => (Some(status), None),
        Some(Err(e)) => (None, Some(crate::exit::render_chain(&e))),
        None => (None, None),
    };

    let mut vmms = Vec::new();
    for name in ctx.plugin_names(PluginKind::Vmm) {
        vmms.push(match ctx.vmm(&name).and_then(|v| Ok(v.probe()?)) {
            Ok(probe) => {
                let version = probe.version.unwrap_or_else(|| "unknown version".into());
                let (ok, scope) = match probe.scope {
                    ScopeSupport::Exact => (true, "holds an agent to exactly its alias".to_owned()),
                    ScopeSupport::Unenforceable { reason, remedy } => (
                        false,
                        format!("cannot hold an agent to its alias: {reason}; {remedy}"),
                    ),
                };
                let mut lines = vec![format!("{version}: {scope}")];
                lines.extend(probe.notes);
                Check {
                    plugin: name,
                    ok,
                    lines,
                }
            }
            Err(e) => Check {
                plugin: name,
                ok: false,
                lines: vec![crate::exit::render_chain(&e)],
            },
        });
    }
    let mut runtimes = Vec::new();
    for name in ctx.plugin_names(PluginKind::Runtime) {
        runtimes.push(match ctx.runtime(&name).and_then(|r| Ok(r.describe()?)) {
            Ok(lines) => Check {
                plugin: name,
                ok: true,
                lines,
            },
            Err(e) => Check {
                plugin: name,
                ok: false,
                lines: vec![crate::exit::render_chain(&e)],
            },
        });
    }

    let loaded = ctx.plugin_names(PluginKind::Net).len()
        + ctx.plugin_names(PluginKind::Vmm).len()
        + ctx.plugin_names(PluginKind::Runtime).len();
    let default_vmm = ctx.vmm_name(None, None);
    let default_runtime = ctx.runtime_name(None, None);
    let report = Report {
        ready: net.ok
            && pool_error.is_none()
            && ready(&vmms, &default_vmm)
            && ready(&runtimes, &default_runtime),
        version: env!("CARGO_PKG_VERSION"),
        os: std::env::consts::OS,
        home: ctx.home.display().to_string(),
        pool: ctx.config.pool.to_string(),
        default_vmm,
        default_runtime,
        plugins_loaded: loaded,
        plugins_rejected: plugins
            .entries()
            .iter()
            .filter(|e| matches!(e.outcome, bottle_plugin_api::Outcome::Rejected { .. }))
            .count(),
        net,
        pool_status,
        pool_error,
        vmms,
        runtimes,
    };
    if json {
        output::json(&report)?;
    } else {
        print(&report);
    }
    if report.ready {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(crate::exit::BACKEND))
    }
}

/// Whether `plugin` was checked and found usable.
fn ready(checks: &[Check], plugin: &str) -> bool {
    checks.iter().any(|c| c.plugin == plugin && c.ok)
}

fn print(r: &Report) {
    println!("bottle {} on {}; state in {}", r.version, r.os, r.home);
    println!(
        "plugins: {} loaded, {} rejected (see `bottle plugins`)",
        r.plugins_loaded, r.plugins_rejected
    );
    println!(
        "defaults: vmm {}, runtime {}",
        r.default_vmm, r.default_runtime
    );
    if r.ready {
        println!("ready: bottles can be launched with the defaults");
    } else {
        println!(
            "NOT READY: the net plugin, the alias pool, the default VMM or the default runtime \
             is unusable"
        );
    }
    println!();
    print_check("net", &r.net);
    if let Some(status) = &r.pool_status {
        println!("  pool {}:", r.pool);
        for line in pool_lines(status) {
            println!("    {line}");
        }
    }
    if let Some(error) = &r.pool_error {
        println!("  pool {}: cannot be read: {error}", r.pool);
    }
    for check in &r.vmms {
        print_check("vmm", check);
    }
    for check in &r.runtimes {
        print_check("runtime", check);
    }
}

fn print_check(kind: &str, check: &Check) {
    let mark = if check.ok { "ok" } else { "NOT READY" };
    println!("{kind} {}: {mark}", check.plugin);
    for line in &check.lines {
        println!("  {line}");
    }
}

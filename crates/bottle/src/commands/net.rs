//! `bottle net status`: the alias pool, alias by alias.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use serde::Serialize;

use crate::context::Context;
use crate::output::{self, Table};

/// One alias of the pool and who uses it.
#[derive(Serialize)]
pub struct AliasRow {
    pub alias: Ipv4Addr,
    /// Whether the alias exists on the loopback interface.
    pub present: bool,
    /// The bottle holding the lease.
    pub leased_by: Option<String>,
    /// TCP ports something listens on at this alias.
    pub listening_ports: Vec<u16>,
    /// `free`, `leased`, `busy` (a listener that no lease explains) or `missing`.
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct PoolStatus {
    pub pool: String,
    pub net_plugin: String,
    pub aliases: Vec<AliasRow>,
}

pub fn pool_status(ctx: &Context) -> anyhow::Result<PoolStatus> {
    let net = ctx.net()?;
    let pool = ctx.config.pool;
    let leases: BTreeMap<Ipv4Addr, String> = ctx
        .db()?
        .leases()?
        .into_iter()
        .map(|l| (l.alias, l.slug.to_string()))
        .collect();
    let aliases = net
        .pool_status(&pool)?
        .into_iter()
        .map(|u| {
            let leased_by = leases.get(&u.alias).cloned();
            let status = match (&leased_by, u.present, u.listening_ports.is_empty()) {
                (Some(_), _, _) => "leased",
                (None, false, _) => "missing",
                (None, true, false) => "busy",
                (None, true, true) => "free",
            };
            AliasRow {
                alias: u.alias,
                present: u.present,
                leased_by,
                listening_ports: u.listening_ports,
                status,
            }
        })
        .collect();
    Ok(PoolStatus {
        pool: pool.to_string(),
        net_plugin: net.name(),
        aliases,
    })
}

pub fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let status = pool_status(ctx)?;
    if json {
        output::json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("pool {} ({})", status.pool, status.net_plugin);
    print_aliases(&status);
    Ok(ExitCode::SUCCESS)
}

pub fn print_aliases(status: &PoolStatus) {
    let mut table = Table::new(&["ALIAS", "STATUS", "LEASED BY", "LISTENING"]);
    for row in &status.aliases {
        let ports: Vec<String> = row.listening_ports.iter().map(u16::to_string).collect();
        table.row(vec![
            row.alias.to_string(),
            row.status.to_owned(),
            row.leased_by.clone().unwrap_or_else(|| "-".into()),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(",")
            },
        ]);
    }
    table.print();
}

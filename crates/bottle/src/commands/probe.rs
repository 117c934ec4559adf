//! `bottle probe`: from inside a running agent, try what it can reach (its own services,
//! other bottles' services, a host loopback service, an unleased alias) and show the matrix
//! next to what the promise says.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;

use anyhow::Context as _;
use bottle_core::state::BottleState;
use bottle_core::ExecStdio;
use serde::Serialize;

use super::down::load_for;
use crate::context::{parse_slug, Context};
use crate::exit::{NoSuchBottle, PromiseBroken};
use crate::output::{self, Table};

/// Connects from inside the agent with whatever it has: `python3`, else `nc -z`. Exits 0
/// when the connection opens, 3 when it does not, 127 when the agent has neither tool; any
/// other status means the check itself failed. `$0` is the address, `$1` the port.
const CHECK_SCRIPT: &str = "\
if command -v python3 >/dev/null 2>&1; then
  python3 -c 'import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)
except OSError:
    sys.exit(3)' \"$0\" \"$1\"
  exit $?
fi
if command -v nc >/dev/null 2>&1; then nc -z -w 2 \"$0\" \"$1\" && exit 0 || exit 3; fi
exit 127";

/// The status `CHECK_SCRIPT` exits with when the connection does not open.
const UNREACHABLE: i32 = 3;

#[derive(Serialize)]
struct Probe {
    target: String,
    address: SocketAddr,
    /// Whether the promise says the agent reaches it.
    expected: bool,
    /// `reachable`, `unreachable` or `unknown` (nothing in the agent could check).
    observed: &'static str,
    holds: bool,
}

pub fn probe(ctx: &Context, slug: &str, json: bool) -> anyhow::Result<ExitCode> {
    let slug = parse_slug(slug)?;
    let db = ctx.db()?;
    let record = db
        .bottle(&slug)?
        .ok_or_else(|| NoSuchBottle(slug.to_string()))?;
    anyhow::ensure!(
        record.state == BottleState::Running,
        "bottle `{slug}` is {}, not running",
        record.state
    );
    let loaded = load_for(ctx, &record)?;
    let Some(machine) = record.machine.clone() else {
        anyhow::bail!("bottle `{slug}` has no machine");
    };

    // Stand-ins for what must stay out of reach, open for the probe's duration.
    let host_service = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot open a host loopback listener to probe")?;
    let wildcard_service = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
        .context("cannot open a host listener on every address to probe")?;
    let leased: Vec<Ipv4Addr> = db.leases()?.into_iter().map(|l| l.alias).collect();
    let spare = ctx.config.pool.aliases().find(|a| !leased.contains(a));
    let spare_service = spare.and_then(|a| TcpListener::bind((a, 0)).ok());

    let mut targets: Vec<(String, SocketAddr, bool)> = Vec::new();
    for e in &record.endpoints {
        targets.push((
            format!("own service {}", e.service),
            (e.host_ip, e.host_port).into(),
            true,
        ));
    }
    for other in db.bottles()?.into_iter().filter(|b| b.slug != slug) {
        for e in &other.endpoints {
            let target = format!("bottle {} service {}", other.slug, e.service);
            targets.push((target, (e.host_ip, e.host_port).into(), false));
        }
    }
    targets.push((
        "host loopback service".into(),
        host_service.local_addr()?,
        false,
    ));
    // A host service listening on every address also answers on the alias: the agent must
    // not reach it there either.
    if let Some(alias) = record.alias {
        let port = wildcard_service.local_addr()?.port();
        targets.push((
            "host service on every address".into(),
            (alias, port).into(),
            false,
        ));
    }
    if let Some(listener) = &spare_service {
        targets.push(("unleased pool alias".into(), listener.local_addr()?, false));
    }

    let mut probes = Vec::new();
    for (target, address, expected) in targets {
        let command = vec![
            "sh".to_owned(),
            "-c".to_owned(),
            CHECK_SCRIPT.to_owned(),
            address.ip().to_string(),
            address.port().to_string(),
        ];
        let out = loaded.vmm.exec(&machine, &command, ExecStdio::Capture)?;
        let observed = match out.exit_code {
            Some(0) => "reachable",
            Some(UNREACHABLE) => "unreachable",
            _ => "unknown",
        };
        let holds = observed == if expected { "reachable" } else { "unreachable" };
        probes.push(Probe {
            target,
            address,
            expected,
            observed,
            holds,
        });
    }

    if json {
        output::json(&probes)?;
    } else {
        let mut table = Table::new(&["TARGET", "ADDRESS", "EXPECTED", "OBSERVED", ""]);
        for p in &probes {
            table.row(vec![
                p.target.clone(),
                p.address.to_string(),
                if p.expected {
                    "reachable"
                } else {
                    "unreachable"
                }
                .to_owned(),
                p.observed.to_owned(),
                if p.holds { "ok" } else { "VIOLATION" }.to_owned(),
            ]);
        }
        table.print();
    }
    if probes.iter().any(|p| p.observed == "unknown") {
        anyhow::bail!("some checks could not run inside bottle `{slug}`: see the table");
    }
    if probes.iter().all(|p| p.holds) {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(PromiseBroken(slug.to_string()).into())
    }
}

//! `bottle net status`: the alias pool, alias by alias, judged as leasing judges it.
//!
//! Leasing skips an alias that this home has leased, that something listens on, that a
//! resource of another bottle publishes on, or that another home claims. The status reads the
//! same facts through the same function ([`alias_users`]) and the same claim judgement
//! ([`ClaimDir::peek`]), so that `free` means a lease would get the alias.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;

use bottle_core::claims::{ClaimDir, ClaimOutcome};
use bottle_core::launch::{alias_users, AliasUser};
use bottle_core::net::listened_on;
use bottle_core::state::Step;
use bottle_core::{AliasUse, BottleRecord, ErrorKind, OwnedResource, Slug};
use bottle_plugin_api::PluginKind;
use serde::Serialize;

use crate::context::Context;
use crate::exit::render_chain;
use crate::output::{self, Table};

/// What an alias of the pool is to a lease made now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AliasStatus {
    /// A lease would get it.
    Free,
    /// A bottle of this home holds it, and nothing else uses it.
    Leased,
    /// Something listens on it that no lease explains.
    Busy,
    /// A resource of another bottle, of this home or of another, publishes on it.
    Published,
    /// Another home's claim keeps this one off it.
    Claimed,
    /// Not on the loopback interface yet (`bottle up` adds it where the OS needs that).
    Missing,
}

impl AliasStatus {
    fn as_str(self) -> &'static str {
        match self {
            AliasStatus::Free => "free",
            AliasStatus::Leased => "leased",
            AliasStatus::Busy => "busy",
            AliasStatus::Published => "published",
            AliasStatus::Claimed => "claimed",
            AliasStatus::Missing => "missing",
        }
    }
}

/// One alias of the pool and who uses it.
#[derive(Serialize)]
pub struct AliasRow {
    pub alias: Ipv4Addr,
    /// Whether the alias exists on the loopback interface.
    pub present: bool,
    /// The bottle of this home holding the lease.
    pub leased_by: Option<String>,
    /// TCP ports something listens on at this alias.
    pub listening_ports: Vec<u16>,
    /// The listening ports no lease explains: all of them on an alias this home has not
    /// leased; on a leased one, those that are not its bottle's endpoints.
    pub foreign_ports: Vec<u16>,
    /// Resources of other bottles, of this home or of another, that publish on the alias.
    pub published_by: Vec<String>,
    /// The other home's claim on the alias.
    pub claimed_by: Option<String>,
    pub status: AliasStatus,
}

#[derive(Serialize)]
pub struct PoolStatus {
    pub pool: String,
    pub net_plugin: String,
    /// The runtimes whose resources were checked.
    pub runtimes: Vec<String>,
    /// Where the homes of this host claim their aliases.
    pub claim_dir: String,
    /// What could not be checked, and why: an alias shown `free` may still be used by it.
    pub unchecked: Vec<String>,
    pub aliases: Vec<AliasRow>,
}

pub fn pool_status(ctx: &Context) -> anyhow::Result<PoolStatus> {
    let net = ctx.net()?;
    let pool = ctx.config.pool;
    let db = ctx.db()?;
    let instance = ctx.instance()?;
    let leases: BTreeMap<Ipv4Addr, Slug> = db
        .leases()?
        .into_iter()
        .map(|l| (l.alias, l.slug))
        .collect();
    let bottles: BTreeMap<Slug, BottleRecord> = db
        .bottles()?
        .into_iter()
        .map(|b| (b.slug.clone(), b))
        .collect();
    let usage = net.pool_status(&pool)?;
    let listening = listened_on(&usage);

    let mut unchecked = Vec::new();
    let (runtimes, owned) = owned_resources(ctx, &mut unchecked);
    let mut users = alias_users(&pool, &listening, &owned, None);
    let mut claims = Claims::new(ctx.claim_dir(), db.path());

    let aliases = usage
        .into_iter()
        .map(|u| {
            let holder = leases.get(&u.alias);
            let users = users.remove(&u.alias).unwrap_or_default();
            let judge = Judge {
                holder,
                bottle: holder.and_then(|slug| bottles.get(slug)),
                instance,
            };
            let claimed_by = claims.holder(u.alias, holder);
            judge.row(u, &users, claimed_by)
        })
        .collect();
    unchecked.extend(claims.error);
    Ok(PoolStatus {
        pool: pool.to_string(),
        net_plugin: net.name(),
        runtimes,
        claim_dir: claims.dir.path().display().to_string(),
        unchecked,
        aliases,
    })
}

/// What every loaded runtime runs for bottles of any home, with the names of the runtimes
/// that said. One that cannot say is noted in `unchecked`: whose engine is absent or not
/// answering runs nothing, as leasing also assumes; any other failure makes leasing fail.
fn owned_resources(
    ctx: &Context,
    unchecked: &mut Vec<String>,
) -> (Vec<String>, Vec<OwnedResource>) {
    let mut checked = Vec::new();
    let mut owned = Vec::new();
    for name in ctx.plugin_names(PluginKind::Runtime) {
        let runtime = match ctx.runtime(&name) {
            Ok(runtime) => runtime,
            Err(e) => {
                unchecked.push(format!("what {name} runs: {}", render_chain(&e)));
                continue;
            }
        };
        match runtime.list_owned() {
            Ok(found) => {
                owned.extend(found);
                checked.push(name);
            }
            Err(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::NotSupported) => {
                let e = e.one_line();
                unchecked.push(format!("what {name} runs: it runs nothing here: {e}"));
            }
            Err(e) => unchecked.push(format!(
                "what {name} runs: {}; every launch fails until it answers",
                e.one_line()
            )),
        }
    }
    (checked, owned)
}

/// The claims of other homes, read without claiming anything.
struct Claims<'a> {
    dir: ClaimDir,
    /// This home's database, which its own claims name.
    db: &'a Path,
    /// Why the directory could not be read; once set, no further claim is read.
    error: Option<String>,
}

impl<'a> Claims<'a> {
    fn new(dir: ClaimDir, db: &'a Path) -> Self {
        Claims {
            dir,
            db,
            error: None,
        }
    }

    /// Who, other than `lease_holder` of this home, holds the claim on `alias`.
    fn holder(&mut self, alias: Ipv4Addr, lease_holder: Option<&Slug>) -> Option<String> {
        if self.error.is_some() {
            return None;
        }
        match self.dir.peek(alias) {
            Ok(ClaimOutcome::Claimed) => None,
            Ok(ClaimOutcome::HeldBy(claim)) => {
                let mine = claim.db == self.db && Some(&claim.slug) == lease_holder;
                (!mine).then(|| {
                    format!(
                        "bottle {} of the home at {}",
                        claim.slug,
                        claim.db.display()
                    )
                })
            }
            Ok(ClaimOutcome::Unreadable(file)) => Some(format!("the claim {}", file.display())),
            Err(e) => {
                let dir = self.dir.path().display();
                self.error = Some(format!("alias claims in {dir}: {e}"));
                None
            }
        }
    }
}

/// Judges one alias for this home, whose `instance` labels what its bottles run.
struct Judge<'a> {
    /// The bottle of this home that leases the alias, and its record.
    holder: Option<&'a Slug>,
    bottle: Option<&'a BottleRecord>,
    instance: &'a str,
}

impl Judge<'_> {
    fn row(&self, usage: AliasUse, users: &[AliasUser], claimed_by: Option<String>) -> AliasRow {
        let listener = users.iter().any(|u| matches!(u, AliasUser::Listener));
        let foreign_ports = match self.holder {
            None if listener => usage.listening_ports.clone(),
            None => Vec::new(),
            Some(_) => self.unexplained(&usage.listening_ports),
        };
        let published_by: Vec<String> = users
            .iter()
            .filter_map(|u| match u {
                AliasUser::Resource(r) if !self.explains(r) => Some(self.describe(u, r)),
                _ => None,
            })
            .collect();
        let status = if !foreign_ports.is_empty() || (self.holder.is_none() && listener) {
            AliasStatus::Busy
        } else if !published_by.is_empty() {
            AliasStatus::Published
        } else if claimed_by.is_some() {
            AliasStatus::Claimed
        } else if self.holder.is_some() {
            AliasStatus::Leased
        } else if !usage.present {
            AliasStatus::Missing
        } else {
            AliasStatus::Free
        };
        AliasRow {
            alias: usage.alias,
            present: usage.present,
            leased_by: self.holder.map(Slug::to_string),
            listening_ports: usage.listening_ports,
            foreign_ports,
            published_by,
            claimed_by,
            status,
        }
    }

    /// Whether `resource` is the lease holder's own, run by this home.
    fn explains(&self, resource: &OwnedResource) -> bool {
        self.holder == Some(&resource.slug) && resource.instance.as_deref() == Some(self.instance)
    }

    /// The ports of a leased alias that are not its bottle's endpoints. Until the bottle has
    /// recorded its endpoints (while its bundle starts), its ports cannot be told apart.
    fn unexplained(&self, ports: &[u16]) -> Vec<u16> {
        let Some(bottle) = self.bottle.filter(|b| b.step > Step::StartingBundle) else {
            return Vec::new();
        };
        ports
            .iter()
            .filter(|p| !bottle.endpoints.iter().any(|e| e.host_port == **p))
            .copied()
            .collect()
    }

    fn describe(&self, user: &AliasUser, resource: &OwnedResource) -> String {
        let home = if resource.instance.as_deref() == Some(self.instance) {
            "this home"
        } else {
            "another home"
        };
        format!("{user} ({home})")
    }
}

pub fn status(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    let status = pool_status(ctx)?;
    if json {
        output::json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("pool {} ({})", status.pool, status.net_plugin);
    for line in pool_lines(&status) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The pool's table, alias by alias, then what could not be checked.
pub fn pool_lines(status: &PoolStatus) -> Vec<String> {
    let mut table = Table::new(&["ALIAS", "STATUS", "LEASED BY", "LISTENING", "USED BY"]);
    for row in &status.aliases {
        table.row(vec![
            row.alias.to_string(),
            row.status.as_str().to_owned(),
            row.leased_by.clone().unwrap_or_else(|| "-".into()),
            or_dash(&ports(&row.listening_ports), ","),
            or_dash(&used_by(row), "; "),
        ]);
    }
    let mut lines: Vec<String> = table.render().lines().map(str::to_owned).collect();
    lines.extend(status.unchecked.iter().map(|u| format!("not checked: {u}")));
    lines
}

/// Who, other than the lease holder, uses the alias.
fn used_by(row: &AliasRow) -> Vec<String> {
    let mut users = Vec::new();
    if !row.foreign_ports.is_empty() {
        let ports = ports(&row.foreign_ports).join(",");
        users.push(format!("a listener outside bottle on {ports}"));
    }
    users.extend(row.published_by.iter().cloned());
    users.extend(row.claimed_by.iter().map(|c| format!("claimed by {c}")));
    users
}

fn ports(ports: &[u16]) -> Vec<String> {
    ports.iter().map(u16::to_string).collect()
}

fn or_dash(items: &[String], separator: &str) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(separator)
    }
}

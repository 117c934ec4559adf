//! `bottle down`: take bottles apart: agent, machine, bundle, and only then the lease.

use std::process::ExitCode;

use anyhow::Context as _;
use bottle_core::launch;
use bottle_core::state::BottleRecord;
use bottle_core::Slug;

use super::launch::Loaded;
use crate::cli::DownArgs;
use crate::context::{is_alive, Context};
use crate::output::Progress;

/// Removing is idempotent: a bottle that is not recorded (removed already, or never there)
/// is reported on stderr and is not a failure, so `down` can be repeated safely.
pub fn down(ctx: &Context, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let mut db = ctx.db()?;
    let records = if args.all {
        let records = db.bottles()?;
        if records.is_empty() {
            eprintln!("bottle: no bottles here: nothing to remove");
        }
        records
    } else {
        let mut records = Vec::new();
        for name in &args.slugs {
            // A name that is no valid slug names no bottle either.
            let record = match name.parse::<Slug>() {
                Ok(slug) => db.bottle(&slug)?,
                Err(_) => None,
            };
            match record {
                Some(record) => records.push(record),
                None => eprintln!("bottle: no bottle named `{name}`: nothing to remove"),
            }
        }
        records
    };
    let mut failed = Vec::new();
    for record in records {
        match remove(ctx, &mut db, &record) {
            Ok(()) => println!("removed {}", record.slug),
            Err(err) => {
                eprintln!("bottle: {}", crate::exit::render_chain(&err));
                failed.push(err);
            }
        }
    }
    match failed.into_iter().next() {
        None => Ok(ExitCode::SUCCESS),
        Some(first) => Err(first.context("not every bottle was removed")),
    }
}

/// Removes one recorded bottle with the plugins it was launched with.
pub fn remove(
    ctx: &Context,
    db: &mut bottle_core::StateDb,
    record: &BottleRecord,
) -> anyhow::Result<()> {
    let record = db.take_over(&record.slug, std::process::id(), is_alive)?;
    let loaded = load_for(ctx, &record)?;
    let observer = Progress::on_terminal();
    launch::teardown(db, loaded.backends(), &record.slug, &observer)?;
    ctx.remove_bottle_dir(&record.slug);
    Ok(())
}

/// The plugins a bottle was launched with.
pub fn load_for(ctx: &Context, record: &BottleRecord) -> anyhow::Result<Loaded> {
    let context = |kind: &str, name: &str| {
        format!(
            "bottle `{}` was launched with the {kind} plugin `{name}`, which cannot be loaded",
            record.slug
        )
    };
    Ok(Loaded {
        net: ctx.net()?,
        vmm: ctx
            .vmm(&record.vmm)
            .with_context(|| context("VMM", &record.vmm))?,
        runtime: ctx
            .runtime(&record.runtime)
            .with_context(|| context("runtime", &record.runtime))?,
    })
}

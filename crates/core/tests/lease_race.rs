//! Sixteen separate processes lease from a pool of sixteen at once: each gets its own alias,
//! and a seventeenth gets the exhausted error naming every holder.
//!
//! The test runs its own executable again as each racer (`LEASE_RACE_DB` set), because the
//! guarantee is about processes, not threads: SQLite's write lock is what keeps them apart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bottle_core::{AliasPool, Slug, StateDb};

const RACERS: usize = 17;

fn main() {
    if let Ok(db) = std::env::var("LEASE_RACE_DB") {
        let slug = std::env::var("LEASE_RACE_SLUG").expect("LEASE_RACE_SLUG is set");
        let go = std::env::var("LEASE_RACE_GO").expect("LEASE_RACE_GO is set");
        racer(Path::new(&db), &slug, Path::new(&go));
        return;
    }
    let started = Instant::now();
    sixteen_processes_get_sixteen_distinct_aliases_and_the_seventeenth_is_refused();
    println!("lease_race: 1 passed, 0 failed ({:.1?})", started.elapsed());
}

/// One racer: open the database, wait for the start signal, lease, report on stdout.
fn racer(db: &Path, slug: &str, go: &Path) {
    let mut state = StateDb::open(db).expect("open the state database");
    let slug: Slug = slug.parse().expect("a valid slug");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !go.exists() {
        assert!(Instant::now() < deadline, "never told to go");
        std::thread::sleep(Duration::from_millis(1));
    }
    match state.lease_alias(&slug, &AliasPool::default(), &BTreeMap::new()) {
        Ok(lease) => println!("leased {}", lease.alias),
        Err(err) => println!("refused {err}"),
    }
}

fn sixteen_processes_get_sixteen_distinct_aliases_and_the_seventeenth_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let go = dir.path().join("go");
    // Create the schema first, so that the racers race for leases, not for the migration.
    drop(StateDb::open(&db).unwrap());

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..RACERS)
        .map(|i| {
            Command::new(&exe)
                .env("LEASE_RACE_DB", &db)
                .env("LEASE_RACE_SLUG", format!("racer-{i}"))
                .env("LEASE_RACE_GO", &go)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::fs::write(&go, b"").unwrap();

    let mut leased = Vec::new();
    let mut refused = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a racer failed: {out:?}");
        let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        if let Some(alias) = line.strip_prefix("leased ") {
            leased.push(alias.to_owned());
        } else if let Some(message) = line.strip_prefix("refused ") {
            refused.push(message.to_owned());
        } else {
            panic!("unexpected racer output {line:?}");
        }
    }

    let distinct: BTreeSet<_> = leased.iter().cloned().collect();
    assert_eq!(leased.len(), 16, "leased: {leased:?}, refused: {refused:?}");
    assert_eq!(
        distinct.len(),
        16,
        "an alias was handed out twice: {leased:?}"
    );
    let pool: BTreeSet<String> = AliasPool::default()
        .aliases()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(distinct, pool);

    assert_eq!(refused.len(), 1);
    let message = &refused[0];
    assert!(
        message.starts_with("every alias of pool 127.0.0.16/28 is taken: "),
        "{message}"
    );
    assert_eq!(
        message.matches(" leased by racer-").count(),
        16,
        "{message}"
    );

    let state = StateDb::open(&db).unwrap();
    let leases = state.leases().unwrap();
    assert_eq!(leases.len(), 16);
}

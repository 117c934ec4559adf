//! The state database: leases, bottles, endpoints and migrations, on a real SQLite file.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use bottle_core::state::{BottleState, NewBottle, StateError, Step, STATE_FILE_NAME};
use bottle_core::{AliasPool, Machine, ServiceEndpoint, Slug, StateDb};

fn slug(s: &str) -> Slug {
    s.parse().unwrap()
}

fn alias(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn none_busy() -> BTreeMap<Ipv4Addr, String> {
    BTreeMap::new()
}

#[test]
fn leasing_is_idempotent_per_slug() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StateDb::open_in(dir.path()).unwrap();
    let pool = AliasPool::default();
    let first = db.lease_alias(&slug("a"), &pool, &none_busy()).unwrap();
    let again = db.lease_alias(&slug("a"), &pool, &none_busy()).unwrap();
    assert_eq!(first, again);
    assert_eq!(first.alias, alias(16));
    let other = db.lease_alias(&slug("b"), &pool, &none_busy()).unwrap();
    assert_eq!(other.alias, alias(17));
    assert_eq!(db.leases().unwrap().len(), 2);
}

#[test]
fn leases_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let pool = AliasPool::default();
    let lease = {
        let mut db = StateDb::open_in(dir.path()).unwrap();
        db.lease_alias(&slug("keeper"), &pool, &none_busy())
            .unwrap()
    };
    assert!(dir.path().join(STATE_FILE_NAME).exists());
    let mut db = StateDb::open_in(dir.path()).unwrap();
    assert_eq!(db.lease_of(&slug("keeper")).unwrap(), Some(lease.clone()));
    assert_eq!(
        db.lease_alias(&slug("keeper"), &pool, &none_busy())
            .unwrap(),
        lease
    );
    let next = db
        .lease_alias(&slug("newcomer"), &pool, &none_busy())
        .unwrap();
    assert_ne!(next.alias, lease.alias);
}

#[test]
fn busy_aliases_are_skipped_and_named_when_the_pool_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StateDb::open_in(dir.path()).unwrap();
    let pool: AliasPool = "127.0.0.16/30".parse().unwrap();
    let busy: BTreeMap<_, _> = [
        (alias(16), "a foreign listener on port 5432".to_owned()),
        (alias(18), "container bottle-x-web".to_owned()),
    ]
    .into();
    assert_eq!(
        db.lease_alias(&slug("a"), &pool, &busy).unwrap().alias,
        alias(17)
    );
    assert_eq!(
        db.lease_alias(&slug("b"), &pool, &busy).unwrap().alias,
        alias(19)
    );
    let err = db.lease_alias(&slug("c"), &pool, &busy).unwrap_err();
    assert!(matches!(err, StateError::PoolExhausted { .. }));
    assert_eq!(
        err.to_string(),
        "every alias of pool 127.0.0.16/30 is taken: 127.0.0.16 in use by a foreign listener on \
         port 5432, 127.0.0.17 leased by a, 127.0.0.18 in use by container bottle-x-web, \
         127.0.0.19 leased by b"
    );
}

#[test]
fn a_released_alias_is_leased_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StateDb::open_in(dir.path()).unwrap();
    let pool: AliasPool = "127.0.0.16/32".parse().unwrap();
    db.lease_alias(&slug("a"), &pool, &none_busy()).unwrap();
    assert!(db.lease_alias(&slug("b"), &pool, &none_busy()).is_err());
    assert!(db.release_lease(&slug("a")).unwrap());
    assert!(!db.release_lease(&slug("a")).unwrap());
    assert_eq!(
        db.lease_alias(&slug("b"), &pool, &none_busy())
            .unwrap()
            .alias,
        alias(16)
    );
}

fn new_bottle<'a>(slug: &'a Slug, spec: &'a Path) -> NewBottle<'a> {
    NewBottle {
        slug,
        spec_path: spec,
        vmm: "smolvm",
        runtime: "process",
        launcher_pid: 42,
        attached: false,
    }
}

#[test]
fn a_slug_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StateDb::open_in(dir.path()).unwrap();
    let s = slug("twin");
    db.insert_bottle(&new_bottle(&s, Path::new("/specs/twin.toml")))
        .unwrap();
    let err = db
        .insert_bottle(&new_bottle(&s, Path::new("/specs/twin.toml")))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "a bottle named `twin` already exists (launching); remove it with `bottle down twin`"
    );
}

#[test]
fn a_bottle_record_carries_step_machine_lease_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = StateDb::open_in(dir.path()).unwrap();
    let s = slug("full");
    db.insert_bottle(&new_bottle(&s, Path::new("/specs/full.toml")))
        .unwrap();
    let lease = db
        .lease_alias(&s, &AliasPool::default(), &none_busy())
        .unwrap();
    db.set_step(&s, Step::CreatingMachine).unwrap();
    db.set_machine(
        &s,
        &Machine {
            name: "bottle-full".into(),
        },
    )
    .unwrap();
    let endpoint = ServiceEndpoint {
        service: "tools".parse().unwrap(),
        container_port: 8080,
        host_ip: lease.alias,
        host_port: 49154,
    };
    db.set_endpoints(&s, std::slice::from_ref(&endpoint))
        .unwrap();
    db.set_state(&s, BottleState::Running).unwrap();
    drop(db);

    let mut db = StateDb::open_in(dir.path()).unwrap();
    let record = db.bottle(&s).unwrap().unwrap();
    assert_eq!(record.state, BottleState::Running);
    assert_eq!(record.step, Step::CreatingMachine);
    assert_eq!(record.alias, Some(lease.alias));
    assert_eq!(
        record.machine,
        Some(Machine {
            name: "bottle-full".into()
        })
    );
    assert_eq!(record.endpoints, vec![endpoint]);
    assert_eq!(record.launcher_pid, Some(42));
    assert_eq!(record.vmm, "smolvm");

    db.remove_bottle(&s).unwrap();
    assert_eq!(db.bottle(&s).unwrap(), None);
    assert_eq!(db.lease_of(&s).unwrap(), None);
}

#[test]
fn updating_an_unknown_bottle_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open_in(dir.path()).unwrap();
    let err = db.set_step(&slug("ghost"), Step::Running).unwrap_err();
    assert_eq!(err.to_string(), "no bottle named `ghost`");
}

#[test]
fn a_database_from_a_newer_bottle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open_in(dir.path()).unwrap();
    let current = db.schema_version().unwrap();
    assert!(current >= 1);
    drop(db);
    let conn = rusqlite::Connection::open(dir.path().join(STATE_FILE_NAME)).unwrap();
    conn.pragma_update(None, "user_version", current + 1)
        .unwrap();
    drop(conn);
    let err = StateDb::open_in(dir.path())
        .err()
        .expect("a newer schema is refused");
    assert!(
        err.to_string().contains("newer than this bottle knows"),
        "{err}"
    );
}

/// The schema of the first release, written by hand as that release wrote it, so that the
/// test keeps proving the upgrade path however the current schema grows.
const SCHEMA_1: &str = r#"
    CREATE TABLE bottles (
        slug TEXT PRIMARY KEY NOT NULL, spec_path TEXT NOT NULL, vmm TEXT NOT NULL,
        runtime TEXT NOT NULL, state TEXT NOT NULL, step TEXT NOT NULL,
        launcher_pid INTEGER, machine TEXT, last_error TEXT,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
    );
    CREATE TABLE leases (
        alias TEXT PRIMARY KEY NOT NULL, slug TEXT NOT NULL UNIQUE, leased_at INTEGER NOT NULL
    );
    CREATE TABLE endpoints (
        slug TEXT NOT NULL REFERENCES bottles(slug) ON DELETE CASCADE,
        service TEXT NOT NULL, container_port INTEGER NOT NULL,
        host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
        PRIMARY KEY (slug, service, container_port)
    );
    INSERT INTO bottles VALUES ('old', '/specs/old.toml', 'vmm-smolvm', 'runtime-docker',
        'running', 'running', 42, '{"name":"bottle-old"}', NULL, 1796000000, 1796000001);
    INSERT INTO leases VALUES ('127.0.0.17', 'old', 1796000000);
    INSERT INTO endpoints VALUES ('old', 'tools', 8080, '127.0.0.17', 49154);
    PRAGMA user_version = 1;
"#;

#[test]
fn a_database_of_the_first_schema_is_migrated_with_its_bottles() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join(STATE_FILE_NAME)).unwrap();
    conn.execute_batch(SCHEMA_1).unwrap();
    drop(conn);

    let mut db = StateDb::open_in(dir.path()).unwrap();
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = StateDb::open_in(fresh_dir.path()).unwrap();
    assert_eq!(
        db.schema_version().unwrap(),
        fresh.schema_version().unwrap()
    );
    assert!(db.schema_version().unwrap() > 1);

    let old = slug("old");
    let record = db
        .bottle(&old)
        .unwrap()
        .expect("the bottle survives the migration");
    assert_eq!(record.state, BottleState::Running);
    assert_eq!(record.step, Step::Running);
    assert_eq!(record.vmm, "vmm-smolvm");
    assert_eq!(record.launcher_pid, Some(42));
    assert!(
        !record.attached,
        "bottles of the first schema were never attached"
    );
    assert_eq!(record.alias, Some(alias(17)));
    assert_eq!(record.endpoints.len(), 1);
    assert_eq!(record.endpoints[0].host_port, 49154);
    assert_eq!(
        record.machine.map(|m| m.name),
        Some("bottle-old".to_owned())
    );
    assert_eq!(
        db.instance_id().unwrap().len(),
        16,
        "migration 2 gives the home an id"
    );

    let err = db
        .lease_alias(
            &slug("new"),
            &"127.0.0.17/32".parse().unwrap(),
            &none_busy(),
        )
        .expect_err("the migrated lease still holds its alias");
    assert!(matches!(err, StateError::PoolExhausted { .. }), "{err}");
}

#[test]
fn the_instance_id_is_made_once_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = StateDb::open_in(dir.path()).unwrap().instance_id().unwrap();
    assert_eq!(first.len(), 16);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    let again = StateDb::open_in(dir.path()).unwrap().instance_id().unwrap();
    assert_eq!(first, again);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        StateDb::open_in(other.path())
            .unwrap()
            .instance_id()
            .unwrap(),
        first
    );
}

#[test]
fn two_homes_sharing_a_claim_directory_never_lease_the_same_alias() {
    use bottle_core::claims::ClaimDir;
    let dir = tempfile::tempdir().unwrap();
    let claims = ClaimDir::new(dir.path().join("claims"));
    let open = |name: &str| {
        StateDb::open_in(&dir.path().join(name))
            .unwrap()
            .with_claims(claims.clone())
    };
    let (mut a, mut b) = (open("a"), open("b"));
    let pool: AliasPool = "127.0.0.16/31".parse().unwrap();
    let first = a.lease_alias(&slug("same"), &pool, &none_busy()).unwrap();
    let second = b.lease_alias(&slug("same"), &pool, &none_busy()).unwrap();
    assert_ne!(first.alias, second.alias);
    let err = open("c")
        .lease_alias(&slug("late"), &pool, &none_busy())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("127.0.0.16 claimed by bottle same of the home at"),
        "{err}"
    );
    a.remove_bottle(&slug("same")).unwrap();
    let third = open("c")
        .lease_alias(&slug("late"), &pool, &none_busy())
        .unwrap();
    assert_eq!(
        third.alias, first.alias,
        "a released alias is claimable again"
    );
    let _ = b.release_lease(&slug("same")).unwrap();
}

/// Regression: processes opening a new state database at once raced for the switch to WAL,
/// and the losers failed at once with "database is locked" instead of waiting.
#[test]
fn many_opening_a_new_database_at_once_all_get_it() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(12);
        std::thread::scope(|scope| {
            let openers: Vec<_> = (0..12)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        StateDb::open_in(dir.path()).map(|db| db.schema_version().unwrap())
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().unwrap();
                assert!(opened.is_ok(), "{:?}", opened.err());
            }
        });
    }
}

//! bottle's state database: bottles, their alias leases, their endpoints and machines, and
//! the launch step each one reached.
//!
//! One SQLite file in WAL mode with a busy timeout, shared by every `bottle` process on the
//! host. Every change that must not race (taking a slug, leasing an alias) runs inside one
//! `BEGIN IMMEDIATE` transaction, which takes the write lock before it reads.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::addr::AliasPool;
use crate::claims::{Claim, ClaimDir, ClaimOutcome};
use crate::name::{ServiceName, Slug};
use crate::runtime::ServiceEndpoint;
use crate::vmm::Machine;

/// The database's file name inside bottle's home.
pub const STATE_FILE_NAME: &str = "state.db";

/// How long a connection waits for another one's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// The schema, one migration per entry; `PRAGMA user_version` counts those applied.
/// Append only: a released migration is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: bottles, leases, endpoints.
    "CREATE TABLE bottles (
        slug TEXT PRIMARY KEY NOT NULL,
        spec_path TEXT NOT NULL,
        vmm TEXT NOT NULL,
        runtime TEXT NOT NULL,
        state TEXT NOT NULL,
        step TEXT NOT NULL,
        launcher_pid INTEGER,
        machine TEXT,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE leases (
        alias TEXT PRIMARY KEY NOT NULL,
        slug TEXT NOT NULL UNIQUE,
        leased_at INTEGER NOT NULL
    );
    CREATE TABLE endpoints (
        slug TEXT NOT NULL REFERENCES bottles(slug) ON DELETE CASCADE,
        service TEXT NOT NULL,
        container_port INTEGER NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        PRIMARY KEY (slug, service, container_port)
    );",
    // 2: this home's instance id, which labels what its bottles run.
    "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);",
    // 3: bottles whose launcher stays attached to the agent (`bottle run`).
    "ALTER TABLE bottles ADD COLUMN attached INTEGER NOT NULL DEFAULT 0;",
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the state directory {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "state database {} has schema version {found}, newer than this bottle knows ({known}): \
         upgrade bottle",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database {}: corrupt value in {what}: `{value}`", path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
    },
    #[error(
        "a bottle named `{slug}` already exists ({state}); remove it with `bottle down {slug}`"
    )]
    SlugInUse { slug: Slug, state: BottleState },
    #[error("no bottle named `{slug}`")]
    UnknownBottle { slug: Slug },
    #[error(
        "bottle `{slug}` is {state} by process {pid}: wait for it, or stop that process first"
    )]
    Busy {
        slug: Slug,
        state: BottleState,
        pid: u32,
    },
    #[error("cannot claim alias {alias} in {}", dir.display())]
    Claim {
        alias: Ipv4Addr,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("every alias of pool {pool} is taken: {}", holders.join(", "))]
    PoolExhausted {
        pool: AliasPool,
        holders: Vec<String>,
    },
}

/// A bottle's hold on one alias of the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub alias: Ipv4Addr,
    pub slug: Slug,
    /// Seconds since the Unix epoch.
    pub leased_at: i64,
}

/// Where a bottle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleState {
    /// `bottle up` is working on it (or died while it was: see [`BottleRecord::launcher_pid`]).
    Launching,
    Running,
    /// `bottle down` or a rollback is taking it apart.
    Stopping,
}

/// How far a launch got. Each step is recorded before it acts, so after a crash the step
/// says which undos may be needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Validated,
    ProbingVmm,
    EnsuringPool,
    LeasingAlias,
    StartingBundle,
    CreatingMachine,
    VerifyingPolicy,
    StartingMachine,
    Running,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(&self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }

        impl FromStr for $ty {
            type Err = ();

            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok($ty::$variant),)* _ => Err(()) }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(BottleState {
    Launching => "launching",
    Running => "running",
    Stopping => "stopping",
});

impl Step {
    /// Every step, in launch order.
    pub const ALL: [Step; 9] = [
        Step::Validated,
        Step::ProbingVmm,
        Step::EnsuringPool,
        Step::LeasingAlias,
        Step::StartingBundle,
        Step::CreatingMachine,
        Step::VerifyingPolicy,
        Step::StartingMachine,
        Step::Running,
    ];

    /// Where the step stands in the launch, from 1.
    pub fn number(&self) -> usize {
        Step::ALL
            .iter()
            .position(|s| s == self)
            .map_or(0, |i| i + 1)
    }

    /// What the step does, for messages: "starting the bundle".
    pub fn describe(&self) -> &'static str {
        match self {
            Step::Validated => "recording the bottle",
            Step::ProbingVmm => "probing the VMM",
            Step::EnsuringPool => "preparing the alias pool",
            Step::LeasingAlias => "leasing an alias",
            Step::StartingBundle => "starting the bundle",
            Step::CreatingMachine => "creating the machine",
            Step::VerifyingPolicy => "verifying the egress policy",
            Step::StartingMachine => "starting the machine",
            Step::Running => "marking the bottle running",
        }
    }
}

text_enum!(Step {
    Validated => "validated",
    ProbingVmm => "probing_vmm",
    EnsuringPool => "ensuring_pool",
    LeasingAlias => "leasing_alias",
    StartingBundle => "starting_bundle",
    CreatingMachine => "creating_machine",
    VerifyingPolicy => "verifying_policy",
    StartingMachine => "starting_machine",
    Running => "running",
});

/// A bottle as the state database knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BottleRecord {
    pub slug: Slug,
    pub spec_path: PathBuf,
    pub vmm: String,
    pub runtime: String,
    pub state: BottleState,
    pub step: Step,
    /// The process that launched it (or last acted on it).
    pub launcher_pid: Option<u32>,
    /// Whether the launcher stays attached and removes the bottle when its agent exits
    /// (`bottle run`): such a bottle is half-done once that process is gone.
    pub attached: bool,
    pub machine: Option<Machine>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub alias: Option<Ipv4Addr>,
    pub endpoints: Vec<ServiceEndpoint>,
}

/// A `bottles` row as SQLite returns it, before its values are checked.
struct RawBottle {
    slug: String,
    spec_path: String,
    vmm: String,
    runtime: String,
    state: String,
    step: String,
    launcher_pid: Option<u32>,
    attached: bool,
    machine: Option<String>,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// What a new bottle row starts with.
#[derive(Debug, Clone)]
pub struct NewBottle<'a> {
    pub slug: &'a Slug,
    pub spec_path: &'a Path,
    pub vmm: &'a str,
    pub runtime: &'a str,
    pub launcher_pid: u32,
    pub attached: bool,
}

/// An open state database.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    /// Host-wide claims that keep other homes off the aliases this one leases.
    claims: Option<ClaimDir>,
}

/// Sixteen hex digits from the OS's random source (or, failing that, the clock and pid).
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = ((nanos as u64) ^ (u64::from(std::process::id()) << 32)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Switches the database to WAL mode, waiting out other processes doing the same.
///
/// On a new file, processes opening it at once all read it in rollback mode and then ask for
/// the exclusive lock the switch needs. SQLite answers all but one of them `SQLITE_BUSY` at
/// once, without its busy handler, since waiting while holding a read lock could deadlock;
/// so the switch is retried here, within the same [`BUSY_TIMEOUT`].
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

/// Starts a transaction that takes the write lock before it reads, so that what it reads
/// cannot change before it writes.
fn immediate<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>, StateError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite_error(path))
}

/// Maps a SQLite error to one that names the database.
fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + Copy + '_ {
    move |source| StateError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl StateDb {
    /// Opens (creating if needed) the database in bottle's home directory.
    pub fn open_in(home: &Path) -> Result<Self, StateError> {
        std::fs::create_dir_all(home).map_err(|source| StateError::CreateDir {
            path: home.to_path_buf(),
            source,
        })?;
        Self::open(&home.join(STATE_FILE_NAME))
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let sqlite = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        use_wal(&conn).map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite)?;
        let mut db = StateDb {
            conn,
            path: path.to_path_buf(),
            claims: None,
        };
        db.migrate()?;
        Ok(db)
    }

    /// Makes every lease also claim its alias host-wide in `dir` (see [`crate::claims`]), so
    /// that other bottle homes on this host skip it.
    pub fn with_claims(mut self, dir: ClaimDir) -> Self {
        self.claims = Some(dir);
        self
    }

    fn claim_of(&self, slug: &Slug) -> Claim {
        Claim {
            db: self.path.clone(),
            slug: slug.clone(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StateError + Copy + '_ {
        sqlite_error(&self.path)
    }

    fn corrupt(&self, what: &'static str, value: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what,
            value: value.into(),
        }
    }

    fn migrate(&mut self) -> Result<(), StateError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sqlite)?;
        let known = MIGRATIONS.len() as i64;
        if found > known {
            return Err(StateError::TooNew {
                path: path.clone(),
                found,
                known,
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(migration).map_err(sqlite)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(sqlite)?;
            tracing::info!(path = %path.display(), version = i + 1, "migrated state database");
        }
        tx.commit().map_err(sqlite)
    }

    /// This home's instance id: random, made on first use, and kept. Runtimes label what
    /// they run with it, so that `bottle gc` in one home never removes another home's
    /// resources.
    pub fn instance_id(&mut self) -> Result<String, StateError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        let found: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sqlite)?;
        let id = match found {
            Some(id) => id,
            None => {
                let id = random_id();
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('instance', ?1)",
                    [&id],
                )
                .map_err(sqlite)?;
                id
            }
        };
        tx.commit().map_err(sqlite)?;
        Ok(id)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StateError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sqlite())
    }

    /// Leases an alias of `pool` to `slug`, or returns the one it already holds.
    ///
    /// `busy` names aliases that something outside bottle's leases uses (a foreign listener,
    /// a labelled container), with a description of the user; they are skipped. The whole
    /// choice runs in one `BEGIN IMMEDIATE` transaction, so concurrent callers in other
    /// processes never get the same alias.
    pub fn lease_alias(
        &mut self,
        slug: &Slug,
        pool: &AliasPool,
        busy: &BTreeMap<Ipv4Addr, String>,
    ) -> Result<Lease, StateError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        let held: Vec<(String, String, i64)> = {
            let mut stmt = tx
                .prepare("SELECT alias, slug, leased_at FROM leases ORDER BY alias")
                .map_err(sqlite)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
            rows.and_then(|rows| rows.collect()).map_err(sqlite)?
        };
        let mut leased = BTreeMap::new();
        for (alias, holder, leased_at) in held {
            let corrupt = |what, value: &str| StateError::Corrupt {
                path: path.clone(),
                what,
                value: value.into(),
            };
            let alias: Ipv4Addr = alias.parse().map_err(|_| corrupt("leases.alias", &alias))?;
            let holder: Slug = holder
                .parse()
                .map_err(|_| corrupt("leases.slug", &holder))?;
            if &holder == slug {
                // Claims can vanish under a lease (a reboot or a cleaner emptying /tmp):
                // take it again, so that other homes keep skipping this alias.
                if let Some(claims) = &self.claims {
                    let mine = Claim {
                        db: path.clone(),
                        slug: slug.clone(),
                    };
                    match claims.claim(alias, &mine) {
                        Ok(ClaimOutcome::Claimed) => {}
                        other => {
                            tracing::warn!(%alias, ?other, "cannot claim a leased alias again")
                        }
                    }
                }
                return Ok(Lease {
                    alias,
                    slug: holder,
                    leased_at,
                });
            }
            leased.insert(alias, holder);
        }
        let mine = Claim {
            db: path.clone(),
            slug: slug.clone(),
        };
        let mut claimed_elsewhere = BTreeMap::new();
        let mut chosen = None;
        for alias in pool
            .aliases()
            .filter(|a| !leased.contains_key(a) && !busy.contains_key(a))
        {
            let Some(claims) = &self.claims else {
                chosen = Some(alias);
                break;
            };
            let claim_error = |source| StateError::Claim {
                alias,
                dir: claims.path().to_path_buf(),
                source,
            };
            match claims.claim(alias, &mine).map_err(claim_error)? {
                ClaimOutcome::Claimed => {
                    chosen = Some(alias);
                    break;
                }
                ClaimOutcome::HeldBy(other) => {
                    let holder = format!(
                        "bottle {} of the home at {}",
                        other.slug,
                        other.db.display()
                    );
                    claimed_elsewhere.insert(alias, holder);
                }
                ClaimOutcome::Unreadable(file) => {
                    claimed_elsewhere.insert(alias, format!("the claim {}", file.display()));
                }
            }
        }
        let Some(alias) = chosen else {
            let holders = pool
                .aliases()
                .map(
                    |a| match (leased.get(&a), busy.get(&a), claimed_elsewhere.get(&a)) {
                        (Some(holder), _, _) => format!("{a} leased by {holder}"),
                        (None, Some(user), _) => format!("{a} in use by {user}"),
                        (None, None, Some(other)) => format!("{a} claimed by {other}"),
                        (None, None, None) => format!("{a} free"),
                    },
                )
                .collect();
            return Err(StateError::PoolExhausted {
                pool: *pool,
                holders,
            });
        };
        let leased_at = now();
        let recorded = tx
            .execute(
                "INSERT INTO leases (alias, slug, leased_at) VALUES (?1, ?2, ?3)",
                params![alias.to_string(), slug.as_str(), leased_at],
            )
            .and_then(|_| tx.commit());
        if let Err(e) = recorded {
            if let Some(claims) = &self.claims {
                claims.release(alias, &mine);
            }
            return Err(sqlite(e));
        }
        tracing::debug!(%slug, %alias, "leased alias");
        Ok(Lease {
            alias,
            slug: slug.clone(),
            leased_at,
        })
    }

    /// Every lease, lowest alias first.
    pub fn leases(&self) -> Result<Vec<Lease>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT alias, slug, leased_at FROM leases")
            .map_err(self.sqlite())?;
        let rows: Vec<(String, String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sqlite())?;
        let mut leases = rows
            .into_iter()
            .map(|(alias, slug, leased_at)| {
                Ok(Lease {
                    alias: alias
                        .parse()
                        .map_err(|_| self.corrupt("leases.alias", &alias))?,
                    slug: slug
                        .parse()
                        .map_err(|_| self.corrupt("leases.slug", &slug))?,
                    leased_at,
                })
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        leases.sort_by_key(|l| l.alias);
        Ok(leases)
    }

    /// The lease `slug` holds, if any.
    pub fn lease_of(&self, slug: &Slug) -> Result<Option<Lease>, StateError> {
        Ok(self.leases()?.into_iter().find(|l| &l.slug == slug))
    }

    /// Gives back the alias `slug` holds. Returns whether there was one.
    pub fn release_lease(&self, slug: &Slug) -> Result<bool, StateError> {
        let lease = self.lease_of(slug)?;
        let n = self
            .conn
            .execute("DELETE FROM leases WHERE slug = ?1", [slug.as_str()])
            .map_err(self.sqlite())?;
        self.release_claim(lease);
        Ok(n > 0)
    }

    fn release_claim(&self, lease: Option<Lease>) {
        if let (Some(claims), Some(lease)) = (&self.claims, lease) {
            claims.release(lease.alias, &self.claim_of(&lease.slug));
        }
    }

    /// Records a new bottle, refusing a slug that is already in use.
    pub fn insert_bottle(&mut self, new: &NewBottle<'_>) -> Result<(), StateError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT state FROM bottles WHERE slug = ?1",
                [new.slug.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(sqlite)?;
        if let Some(state) = existing {
            let state = state.parse().map_err(|()| StateError::Corrupt {
                path: path.clone(),
                what: "bottles.state",
                value: state.clone(),
            })?;
            return Err(StateError::SlugInUse {
                slug: new.slug.clone(),
                state,
            });
        }
        let t = now();
        tx.execute(
            "INSERT INTO bottles (slug, spec_path, vmm, runtime, state, step, launcher_pid,
                                  attached, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
            params![
                new.slug.as_str(),
                new.spec_path.to_string_lossy(),
                new.vmm,
                new.runtime,
                BottleState::Launching.as_str(),
                Step::Validated.as_str(),
                new.launcher_pid,
                new.attached,
                t,
            ],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)
    }

    fn update(
        &self,
        slug: &Slug,
        sql: &str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<(), StateError> {
        let n = self
            .conn
            .execute(sql, params![value, now(), slug.as_str()])
            .map_err(self.sqlite())?;
        if n == 0 {
            return Err(StateError::UnknownBottle { slug: slug.clone() });
        }
        Ok(())
    }

    /// Makes process `me` the one acting on `slug` (for `bottle down` and `bottle gc`), unless
    /// another live process is launching or removing it. Returns the record as it was.
    pub fn take_over(
        &mut self,
        slug: &Slug,
        me: u32,
        is_alive: impl Fn(u32) -> bool,
    ) -> Result<BottleRecord, StateError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        let row: Option<(String, Option<u32>)> = tx
            .query_row(
                "SELECT state, launcher_pid FROM bottles WHERE slug = ?1",
                [slug.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sqlite)?;
        let Some((state, pid)) = row else {
            return Err(StateError::UnknownBottle { slug: slug.clone() });
        };
        let state: BottleState = state.parse().map_err(|()| StateError::Corrupt {
            path: path.clone(),
            what: "bottles.state",
            value: state.clone(),
        })?;
        if let Some(pid) = pid.filter(|p| *p != me && state != BottleState::Running) {
            if is_alive(pid) {
                return Err(StateError::Busy {
                    slug: slug.clone(),
                    state,
                    pid,
                });
            }
        }
        tx.execute(
            "UPDATE bottles SET launcher_pid = ?1, updated_at = ?2 WHERE slug = ?3",
            params![me, now(), slug.as_str()],
        )
        .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        self.bottle(slug)?
            .ok_or_else(|| StateError::UnknownBottle { slug: slug.clone() })
    }

    /// Records the step a launch is about to take.
    pub fn set_step(&self, slug: &Slug, step: Step) -> Result<(), StateError> {
        tracing::debug!(%slug, step = step.as_str(), "launch step");
        self.update(
            slug,
            "UPDATE bottles SET step = ?1, updated_at = ?2 WHERE slug = ?3",
            &step.as_str(),
        )
    }

    pub fn set_state(&self, slug: &Slug, state: BottleState) -> Result<(), StateError> {
        self.update(
            slug,
            "UPDATE bottles SET state = ?1, updated_at = ?2 WHERE slug = ?3",
            &state.as_str(),
        )
    }

    pub fn set_machine(&self, slug: &Slug, machine: &Machine) -> Result<(), StateError> {
        let json = serde_json::to_string(machine).expect("a machine serialises");
        self.update(
            slug,
            "UPDATE bottles SET machine = ?1, updated_at = ?2 WHERE slug = ?3",
            &json,
        )
    }

    pub fn set_last_error(&self, slug: &Slug, error: &str) -> Result<(), StateError> {
        self.update(
            slug,
            "UPDATE bottles SET last_error = ?1, updated_at = ?2 WHERE slug = ?3",
            &error,
        )
    }

    /// Replaces the bottle's recorded endpoints.
    pub fn set_endpoints(
        &mut self,
        slug: &Slug,
        endpoints: &[ServiceEndpoint],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        tx.execute("DELETE FROM endpoints WHERE slug = ?1", [slug.as_str()])
            .map_err(sqlite)?;
        for e in endpoints {
            tx.execute(
                "INSERT INTO endpoints (slug, service, container_port, host_ip, host_port)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    slug.as_str(),
                    e.service.as_str(),
                    e.container_port,
                    e.host_ip.to_string(),
                    e.host_port
                ],
            )
            .map_err(sqlite)?;
        }
        tx.commit().map_err(sqlite)
    }

    /// Forgets a bottle entirely: its row, its endpoints and its lease.
    pub fn remove_bottle(&mut self, slug: &Slug) -> Result<(), StateError> {
        let lease = self.lease_of(slug)?;
        let path = self.path.clone();
        let sqlite = sqlite_error(&path);
        let tx = immediate(&mut self.conn, &path)?;
        tx.execute("DELETE FROM endpoints WHERE slug = ?1", [slug.as_str()])
            .map_err(sqlite)?;
        tx.execute("DELETE FROM bottles WHERE slug = ?1", [slug.as_str()])
            .map_err(sqlite)?;
        tx.execute("DELETE FROM leases WHERE slug = ?1", [slug.as_str()])
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        self.release_claim(lease);
        Ok(())
    }

    /// One bottle, if it exists.
    pub fn bottle(&self, slug: &Slug) -> Result<Option<BottleRecord>, StateError> {
        Ok(self.bottles()?.into_iter().find(|b| &b.slug == slug))
    }

    /// Every bottle, by slug.
    pub fn bottles(&self) -> Result<Vec<BottleRecord>, StateError> {
        // One read transaction, so that bottles, leases and endpoints are one snapshot.
        let snapshot = self.conn.unchecked_transaction().map_err(self.sqlite())?;
        let bottles = self.bottles_in_snapshot();
        snapshot.finish().map_err(self.sqlite())?;
        bottles
    }

    fn bottles_in_snapshot(&self) -> Result<Vec<BottleRecord>, StateError> {
        let leases: BTreeMap<Slug, Ipv4Addr> = self
            .leases()?
            .into_iter()
            .map(|l| (l.slug, l.alias))
            .collect();
        let mut endpoints = self.all_endpoints()?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT slug, spec_path, vmm, runtime, state, step, launcher_pid, attached,
                        machine, last_error, created_at, updated_at
                 FROM bottles ORDER BY slug",
            )
            .map_err(self.sqlite())?;
        let rows = stmt.query_map([], |r| {
            Ok(RawBottle {
                slug: r.get(0)?,
                spec_path: r.get(1)?,
                vmm: r.get(2)?,
                runtime: r.get(3)?,
                state: r.get(4)?,
                step: r.get(5)?,
                launcher_pid: r.get(6)?,
                attached: r.get(7)?,
                machine: r.get(8)?,
                last_error: r.get(9)?,
                created_at: r.get(10)?,
                updated_at: r.get(11)?,
            })
        });
        let rows: Vec<RawBottle> = rows
            .and_then(|rows| rows.collect())
            .map_err(self.sqlite())?;
        rows.into_iter()
            .map(|raw| {
                let slug: Slug = raw
                    .slug
                    .parse()
                    .map_err(|_| self.corrupt("bottles.slug", &raw.slug))?;
                let machine = match raw.machine {
                    Some(m) => Some(
                        serde_json::from_str(&m)
                            .map_err(|_| self.corrupt("bottles.machine", &m))?,
                    ),
                    None => None,
                };
                Ok(BottleRecord {
                    alias: leases.get(&slug).copied(),
                    endpoints: endpoints.remove(&slug).unwrap_or_default(),
                    spec_path: PathBuf::from(raw.spec_path),
                    vmm: raw.vmm,
                    runtime: raw.runtime,
                    state: raw
                        .state
                        .parse()
                        .map_err(|()| self.corrupt("bottles.state", &raw.state))?,
                    step: raw
                        .step
                        .parse()
                        .map_err(|()| self.corrupt("bottles.step", &raw.step))?,
                    launcher_pid: raw.launcher_pid,
                    attached: raw.attached,
                    machine,
                    last_error: raw.last_error,
                    created_at: raw.created_at,
                    updated_at: raw.updated_at,
                    slug,
                })
            })
            .collect()
    }

    fn all_endpoints(&self) -> Result<BTreeMap<Slug, Vec<ServiceEndpoint>>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT slug, service, container_port, host_ip, host_port FROM endpoints
                 ORDER BY slug, service, container_port",
            )
            .map_err(self.sqlite())?;
        let rows: Vec<(String, String, u16, String, u16)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.sqlite())?;
        let mut by_slug: BTreeMap<Slug, Vec<ServiceEndpoint>> = BTreeMap::new();
        for (slug, service, container_port, host_ip, host_port) in rows {
            let slug: Slug = slug
                .parse()
                .map_err(|_| self.corrupt("endpoints.slug", &slug))?;
            let service: ServiceName = service
                .parse()
                .map_err(|_| self.corrupt("endpoints.service", &service))?;
            let host_ip = host_ip
                .parse()
                .map_err(|_| self.corrupt("endpoints.host_ip", &host_ip))?;
            by_slug.entry(slug).or_default().push(ServiceEndpoint {
                service,
                container_port,
                host_ip,
                host_port,
            });
        }
        Ok(by_slug)
    }
}

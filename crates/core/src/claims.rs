//! Host-wide alias claims: one file per alias in a directory every user of the host shares,
//! so that two bottle homes (two users, or one user's two homes) never lease the same alias.
//!
//! A home's leases are atomic within its own state database; the claim file extends that to
//! the host. It is created with `O_EXCL`, so only one home can hold it, in a sticky
//! world-writable directory, so that no user can remove another user's claim. A claim whose
//! home no longer holds that lease (the home was deleted, or crashed between its lease and
//! its claim's removal) is stale and may be taken over; one that cannot be checked (another
//! user's database we may not read) is respected.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::name::Slug;

/// Where claims live unless `BOTTLE_CLAIM_DIR` says otherwise: under `/tmp`, which every
/// user shares and which, like macOS's `lo0` aliases, starts empty after a reboot.
pub const DEFAULT_CLAIM_DIR: &str = "/tmp/bottle-aliases";

/// A claim younger than this is never judged stale: its home may still be inside the
/// transaction that records the lease the claim stands for.
const GRACE: Duration = Duration::from_secs(30);

/// What a claim file says: which home's database holds the lease, and for which bottle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub db: PathBuf,
    pub slug: Slug,
}

/// The outcome of trying to claim an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Claimed,
    /// Another home holds it.
    HeldBy(Claim),
    /// A claim file that cannot be read or understood; respected, to fail safe.
    Unreadable(PathBuf),
}

/// The directory of claim files.
#[derive(Debug, Clone)]
pub struct ClaimDir {
    dir: PathBuf,
}

impl ClaimDir {
    pub fn new(dir: PathBuf) -> Self {
        ClaimDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file(&self, alias: Ipv4Addr) -> PathBuf {
        self.dir.join(alias.to_string())
    }

    /// Creates the directory, sticky and writable by everyone, if it is missing.
    fn ensure_dir(&self) -> std::io::Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o1777))
    }

    /// Claims `alias` for `mine`, taking over a stale claim.
    pub fn claim(&self, alias: Ipv4Addr, mine: &Claim) -> std::io::Result<ClaimOutcome> {
        self.ensure_dir()?;
        let path = self.file(alias);
        let text = serde_json::to_string(mine).expect("a claim serialises");
        // Two rounds: the second follows the removal of a stale claim.
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0644()
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(text.as_bytes())?;
                    return Ok(ClaimOutcome::Claimed);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let theirs = match read_claim(&path) {
                Ok(Some(claim)) => claim,
                Ok(None) => continue,
                Err(()) => return Ok(ClaimOutcome::Unreadable(path)),
            };
            if &theirs == mine {
                return Ok(ClaimOutcome::Claimed);
            }
            if !is_stale(&path, &theirs, alias) {
                return Ok(ClaimOutcome::HeldBy(theirs));
            }
            // Move the stale claim aside first: a rename succeeds for one home only, so two
            // homes taking over the same stale claim cannot remove each other's new one.
            let aside = self
                .dir
                .join(format!(".{alias}.stale.{}", std::process::id()));
            if fs::rename(&path, &aside).is_ok() {
                let holder = theirs.db.display();
                tracing::info!(%alias, %holder, "took over a stale alias claim");
                let _ = fs::remove_file(&aside);
            }
        }
        Ok(ClaimOutcome::Unreadable(path))
    }

    /// Removes the claim on `alias` if it is `mine`.
    pub fn release(&self, alias: Ipv4Addr, mine: &Claim) {
        let path = self.file(alias);
        if let Ok(Some(claim)) = read_claim(&path) {
            if &claim == mine {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// `create_new` with the mode claim files get: readable by all, so that other homes can
/// check whether a claim is stale.
trait Mode0644 {
    fn mode_0644(&mut self) -> &mut Self;
}

impl Mode0644 for OpenOptions {
    fn mode_0644(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, 0o644)
    }
}

/// The claim at `path`: `Ok(None)` when it vanished, `Err` when it cannot be understood.
fn read_claim(path: &Path) -> Result<Option<Claim>, ()> {
    match fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|_| ()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(_) => Err(()),
    }
}

/// Whether `claim` no longer stands for a lease: its database is gone, or holds no lease of
/// `alias` for its slug. Young claims and databases we cannot read are not stale.
fn is_stale(path: &Path, claim: &Claim, alias: Ipv4Addr) -> bool {
    let age = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok());
    if age.is_none_or(|age| age < GRACE) {
        return false;
    }
    if !claim.db.exists() {
        return true;
    }
    let Ok(conn) = Connection::open_with_flags(&claim.db, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return false;
    };
    let held: Result<Option<i64>, _> = conn
        .query_row(
            "SELECT 1 FROM leases WHERE alias = ?1 AND slug = ?2",
            [alias.to_string(), claim.slug.to_string()],
            |r| r.get(0),
        )
        .optional();
    matches!(held, Ok(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(db: &Path, slug: &str) -> Claim {
        Claim {
            db: db.to_path_buf(),
            slug: slug.parse().unwrap(),
        }
    }

    fn age(path: &Path, by: Duration) {
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    const ALIAS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 20);

    #[test]
    fn an_alias_is_claimed_once_and_released_by_its_holder_only() {
        let dir = tempfile::tempdir().unwrap();
        let claims = ClaimDir::new(dir.path().join("claims"));
        let a = claim(&dir.path().join("a.db"), "one");
        let b = claim(&dir.path().join("b.db"), "two");
        assert_eq!(claims.claim(ALIAS, &a).unwrap(), ClaimOutcome::Claimed);
        assert_eq!(
            claims.claim(ALIAS, &a).unwrap(),
            ClaimOutcome::Claimed,
            "idempotent"
        );
        assert_eq!(
            claims.claim(ALIAS, &b).unwrap(),
            ClaimOutcome::HeldBy(a.clone())
        );
        let mode = fs::metadata(claims.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777, "the directory is shared and sticky");
        claims.release(ALIAS, &b);
        assert_eq!(
            claims.claim(ALIAS, &b).unwrap(),
            ClaimOutcome::HeldBy(a.clone())
        );
        claims.release(ALIAS, &a);
        assert_eq!(claims.claim(ALIAS, &b).unwrap(), ClaimOutcome::Claimed);
    }

    #[test]
    fn an_old_claim_whose_home_is_gone_is_taken_over_and_a_young_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let claims = ClaimDir::new(dir.path().to_path_buf());
        let gone = claim(&dir.path().join("deleted/state.db"), "ghost");
        let me = claim(&dir.path().join("me.db"), "me");
        assert_eq!(claims.claim(ALIAS, &gone).unwrap(), ClaimOutcome::Claimed);
        assert_eq!(
            claims.claim(ALIAS, &me).unwrap(),
            ClaimOutcome::HeldBy(gone.clone())
        );
        age(&claims.file(ALIAS), Duration::from_secs(120));
        assert_eq!(claims.claim(ALIAS, &me).unwrap(), ClaimOutcome::Claimed);
    }

    #[test]
    fn a_claim_backed_by_a_live_lease_is_respected_however_old() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let mut db = crate::StateDb::open_in(&home).unwrap();
        let slug: Slug = "holder".parse().unwrap();
        let pool: crate::AliasPool = "127.0.0.20/32".parse().unwrap();
        db.lease_alias(&slug, &pool, &Default::default()).unwrap();
        let claims = ClaimDir::new(dir.path().join("claims"));
        let theirs = Claim {
            db: db.path().to_path_buf(),
            slug,
        };
        assert_eq!(claims.claim(ALIAS, &theirs).unwrap(), ClaimOutcome::Claimed);
        age(&claims.file(ALIAS), Duration::from_secs(3600));
        let me = claim(&dir.path().join("me.db"), "me");
        assert_eq!(
            claims.claim(ALIAS, &me).unwrap(),
            ClaimOutcome::HeldBy(theirs)
        );
    }

    #[test]
    fn a_garbled_claim_is_respected() {
        let dir = tempfile::tempdir().unwrap();
        let claims = ClaimDir::new(dir.path().to_path_buf());
        fs::write(claims.file(ALIAS), "not json").unwrap();
        let me = claim(&dir.path().join("me.db"), "me");
        assert!(matches!(
            claims.claim(ALIAS, &me).unwrap(),
            ClaimOutcome::Unreadable(_)
        ));
    }
}

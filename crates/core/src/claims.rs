//! Host-wide alias claims: one file per alias in a directory every user of the host shares,
//! so that two bottle homes (two users, or one user's two homes) never lease the same alias.
//!
//! A home's leases are atomic within its own state database; the claim file extends that to
//! the host. It is created with `O_EXCL`, so only one home can hold it, in a sticky
//! world-writable directory, so that no user can remove another user's claim. A claim whose
//! home no longer holds that lease (the home was deleted, or crashed between its lease and
//! its claim's removal) is stale and may be taken over; one that cannot be checked (another
//! user's database we may not read) is respected.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::name::Slug;

/// Where claims live unless `BOTTLE_CLAIM_DIR` says otherwise: under `/tmp`, which every
/// user shares and which, like macOS's `lo0` aliases, starts empty after a reboot.
pub const DEFAULT_CLAIM_DIR: &str = "/tmp/bottle-aliases";

/// A claim younger than this is never judged stale: its home may still be inside the
/// transaction that records the lease the claim stands for.
const GRACE: Duration = Duration::from_secs(30);

/// How long to wait for another process's turn at the directory before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// A claim file is a line of JSON; anything larger was not written by bottle.
const MAX_CLAIM_BYTES: u64 = 64 * 1024;

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
    /// A claim file that cannot be read or understood, or another user's that this one may
    /// not remove; respected, to fail safe.
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

    /// Opens the directory, creating it if missing, checks that no other user controls it,
    /// and takes its lock: claims, takeovers and releases happen one at a time host-wide.
    fn lock(&self) -> std::io::Result<File> {
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            // Ours and new, inside a sticky parent that no one else can rename it in: safe
            // to widen by path.
            Ok(()) => fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o1777))?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.dir)?;
        check_trusted(&self.dir, &dir.metadata()?)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            // SAFETY: `dir` is an open descriptor for the whole call; flock only reads it.
            let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(dir);
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != ErrorKind::WouldBlock || Instant::now() >= deadline {
                return Err(err);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Claims `alias` for `mine`, taking over a stale claim.
    pub fn claim(&self, alias: Ipv4Addr, mine: &Claim) -> std::io::Result<ClaimOutcome> {
        let _lock = self.lock()?;
        let path = self.file(alias);
        let text = serde_json::to_string(mine).expect("a claim serialises");
        // Two rounds: the second follows the removal of a stale claim.
        for _ in 0..2 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(text.as_bytes())?;
                    return Ok(ClaimOutcome::Claimed);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let (theirs, age) = match read_claim(&path) {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(()) => return Ok(ClaimOutcome::Unreadable(path)),
            };
            if theirs == *mine {
                return Ok(ClaimOutcome::Claimed);
            }
            if !is_stale(&theirs, age, alias) {
                return Ok(ClaimOutcome::HeldBy(theirs));
            }
            // The directory lock keeps every other home out while the stale claim goes.
            match fs::remove_file(&path) {
                Ok(()) => {
                    let holder = theirs.db.display();
                    tracing::info!(%alias, %holder, "took over a stale alias claim");
                }
                // The sticky bit: another user's claim, which only that user may remove.
                Err(_) => return Ok(ClaimOutcome::Unreadable(path)),
            }
        }
        Ok(ClaimOutcome::Unreadable(path))
    }

    /// What [`ClaimDir::claim`] would find on `alias` for a home that holds no claim on it,
    /// judged as it judges, but without creating the directory, taking its lock or removing
    /// a stale claim: `Claimed` means that a lease would get the alias.
    pub fn peek(&self, alias: Ipv4Addr) -> std::io::Result<ClaimOutcome> {
        let dir = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.dir)
        {
            Ok(dir) => dir.metadata()?,
            // `claim` would create it, empty.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ClaimOutcome::Claimed),
            Err(e) => return Err(e),
        };
        check_trusted(&self.dir, &dir)?;
        let path = self.file(alias);
        let (theirs, age) = match read_claim(&path) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(ClaimOutcome::Claimed),
            Err(()) => return Ok(ClaimOutcome::Unreadable(path)),
        };
        if !is_stale(&theirs, age, alias) {
            return Ok(ClaimOutcome::HeldBy(theirs));
        }
        if may_remove(&dir, &path) {
            Ok(ClaimOutcome::Claimed)
        } else {
            Ok(ClaimOutcome::Unreadable(path))
        }
    }

    /// Removes the claim on `alias` if it is `mine`.
    pub fn release(&self, alias: Ipv4Addr, mine: &Claim) {
        let Ok(_lock) = self.lock() else { return };
        let path = self.file(alias);
        if let Ok(Some((claim, _))) = read_claim(&path) {
            if claim == *mine {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// Refuses a claim directory that another user could tamper with: it must be a directory
/// owned by root or by this user, and, if others may write in it, sticky, so that no one
/// removes another's claims.
fn check_trusted(path: &Path, meta: &fs::Metadata) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mode = meta.mode();
    let shared_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    if (meta.uid() == 0 || meta.uid() == me) && (!shared_write || sticky) {
        return Ok(());
    }
    Err(std::io::Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "{} is owned by uid {} with mode {:o}: another user could remove or forge claims \
             there; have root create it (`install -d -m 1777 -o root {}`) or set \
             BOTTLE_CLAIM_DIR",
            path.display(),
            meta.uid(),
            mode & 0o7777,
            path.display()
        ),
    ))
}

/// Whether this user may remove the file at `path` from the directory described by `dir`:
/// in a sticky directory, only the owner of the file or of the directory (or root) may.
fn may_remove(dir: &fs::Metadata, path: &Path) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let sticky = dir.mode() & 0o1000 != 0;
    let owner = fs::symlink_metadata(path).map_or(me, |m| m.uid());
    !sticky || me == 0 || owner == me || dir.uid() == me
}

/// The claim at `path` and its age: `Ok(None)` when it vanished, `Err` when it is not a
/// small regular file holding a claim. Never follows a link and never blocks on a FIFO.
fn read_claim(path: &Path) -> Result<Option<(Claim, Duration)>, ()> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
    };
    let meta = file.metadata().map_err(|_| ())?;
    if !meta.is_file() || meta.len() > MAX_CLAIM_BYTES {
        return Err(());
    }
    let age = meta
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|_| ())?;
    let claim = serde_json::from_str(&text).map_err(|_| ())?;
    Ok(Some((claim, age)))
}

/// Whether `claim` no longer stands for a lease: its database is gone, or holds no lease of
/// `alias` for its slug. Young claims, and databases that cannot be checked (not a plain
/// file, not readable by this user, locked), are not stale.
fn is_stale(claim: &Claim, age: Duration, alias: Ipv4Addr) -> bool {
    if age < GRACE {
        return false;
    }
    match fs::symlink_metadata(&claim.db) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Gone only if the nearest directory still there can be read: a home this user
            // may not enter hides its database without it being gone.
            for ancestor in claim.db.ancestors().skip(1) {
                match fs::symlink_metadata(ancestor) {
                    Ok(_) => return fs::read_dir(ancestor).is_ok(),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(_) => return false,
                }
            }
            return false;
        }
        Err(_) => return false,
        Ok(meta) if !meta.is_file() => return false,
        Ok(_) => {}
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let Ok(conn) = Connection::open_with_flags(&claim.db, flags) else {
        return false;
    };
    let _ = conn.busy_timeout(Duration::from_secs(1));
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
    fn peeking_judges_as_claiming_does_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let claims = ClaimDir::new(dir.path().join("claims"));
        assert_eq!(claims.peek(ALIAS).unwrap(), ClaimOutcome::Claimed);
        assert!(!claims.path().exists(), "peeking created the directory");

        let gone = claim(&dir.path().join("deleted/state.db"), "ghost");
        claims.claim(ALIAS, &gone).unwrap();
        assert_eq!(claims.peek(ALIAS).unwrap(), ClaimOutcome::HeldBy(gone));
        age(&claims.file(ALIAS), Duration::from_secs(120));
        assert_eq!(claims.peek(ALIAS).unwrap(), ClaimOutcome::Claimed, "stale");
        assert!(claims.file(ALIAS).exists(), "peeking took over the claim");

        fs::write(claims.file(ALIAS), "not json").unwrap();
        assert!(matches!(
            claims.peek(ALIAS).unwrap(),
            ClaimOutcome::Unreadable(_)
        ));
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

    #[test]
    fn a_directory_others_could_tamper_with_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let me = claim(&dir.path().join("me.db"), "me");
        let err = ClaimDir::new(open).claim(ALIAS, &me).unwrap_err();
        assert!(
            err.to_string()
                .contains("another user could remove or forge claims"),
            "{err}"
        );

        let real = dir.path().join("real");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        fs::create_dir(&real).unwrap();
        assert!(
            ClaimDir::new(link).claim(ALIAS, &me).is_err(),
            "a symlink is not followed"
        );
    }

    #[test]
    fn fifos_planted_as_claims_or_databases_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let claims = ClaimDir::new(dir.path().join("claims"));
        let me = claim(&dir.path().join("me.db"), "me");
        claims.claim(Ipv4Addr::new(127, 0, 0, 21), &me).unwrap();
        let fifo = |path: &Path| {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        };
        fifo(&claims.file(ALIAS));
        assert!(matches!(
            claims.claim(ALIAS, &me).unwrap(),
            ClaimOutcome::Unreadable(_)
        ));

        let other = Ipv4Addr::new(127, 0, 0, 22);
        let trap = dir.path().join("trap.db");
        fifo(&trap);
        let theirs = claim(&trap, "trap");
        fs::write(claims.file(other), serde_json::to_string(&theirs).unwrap()).unwrap();
        age(&claims.file(other), Duration::from_secs(600));
        assert_eq!(
            claims.claim(other, &me).unwrap(),
            ClaimOutcome::HeldBy(theirs)
        );
    }

    #[test]
    fn many_takeovers_of_one_stale_claim_leave_one_holder() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let claims = ClaimDir::new(dir.path().join("claims"));
            let gone = claim(&dir.path().join("deleted/state.db"), "ghost");
            claims.claim(ALIAS, &gone).unwrap();
            age(&claims.file(ALIAS), Duration::from_secs(120));
            let winners: usize = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..8)
                    .map(|i| {
                        let claims = claims.clone();
                        let me = claim(&dir.path().join(format!("{i}.db")), "racer");
                        scope.spawn(move || claims.claim(ALIAS, &me).unwrap())
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|r| r.join().unwrap())
                    .filter(|outcome| *outcome == ClaimOutcome::Claimed)
                    .count()
            });
            assert_eq!(winners, 1);
        }
    }
}

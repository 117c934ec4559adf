//! The sandbox's root filesystem: the host's system directories read-only, and no other host file.

use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use bottle_core::Mount;
use bottle_vmm_sandbox::HOST_ROOT_DIR;
use libc::c_ulong;

use crate::failure::{Context, Failure};
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// The host's system directories the agent sees, read-only, when the host has them. A
/// directory that is a symbolic link on the host (`/bin` -> `usr/bin`) becomes the same link.
const SYSTEM_DIRS: &[&str] = &[
    "usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc",
];

/// The device nodes the agent gets, bound from the host's.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Links in `/dev` that programs expect.
const DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
];

/// Everything the new root is made from, opened while the host's root is still the root.
pub struct Sources {
    system: Vec<System>,
    devices: Vec<(&'static str, OwnedFd)>,
    mounts: Vec<(Mount, OwnedFd, bool)>,
}

enum System {
    Dir(&'static str, OwnedFd),
    Link(&'static str, CString),
}

/// Who owns the writable tmpfs mounts (`/tmp`, `/run`): the agent's ids, as the builder's
/// user namespace numbers them.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Opens every source: the system directories, the device nodes, and each mount's host path.
pub fn open_sources(mounts: &[Mount]) -> Result<Sources, Failure> {
    let mut system = Vec::new();
    for name in SYSTEM_DIRS {
        let path = Path::new("/").join(name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target =
                fs::read_link(&path).context(|| format!("cannot read link {}", path.display()))?;
            let target =
                sys::c_path(&target).context(|| format!("cannot use link {}", path.display()))?;
            system.push(System::Link(name, target));
        } else if meta.is_dir() {
            let fd = open_path(&path, libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
            system.push(System::Dir(name, fd));
        }
    }
    let mut devices = Vec::new();
    for name in DEVICES {
        let path = Path::new("/dev").join(name);
        let Ok(fd) = open_path(&path, libc::O_NOFOLLOW) else {
            continue;
        };
        if sys::file_type(fd.as_fd()).ok() == Some(libc::S_IFCHR) {
            devices.push((*name, fd));
        }
    }
    let mut opened = Vec::new();
    for mount in mounts {
        let fd = open_path(&mount.host, 0)?;
        let is_dir = sys::file_type(fd.as_fd())
            .context(|| format!("cannot stat {}", mount.host.display()))?
            == libc::S_IFDIR;
        opened.push((mount.clone(), fd, is_dir));
    }
    Ok(Sources {
        system,
        devices,
        mounts: opened,
    })
}

/// Builds the new root on a tmpfs mounted at `staging` and makes it the root of the current
/// mount namespace (which must be private to the sandbox); the host's root is detached
/// before this returns.
///
/// The new root holds read-only views of the host's system directories, a minimal `/dev`, a
/// `/proc` of its own, empty `/tmp` and `/run`, and the spec's mounts; nothing else of the
/// host, so that no host Unix socket can be reached. Sources were opened (as `O_PATH`
/// descriptors) before the root changes and are bound from `/proc/self/fd/N`, so that a
/// host path is never looked up again once the new root is in place; mount points are
/// created one component at a time, refusing symbolic links, so that a link can never lead
/// a mount, or a `mkdir`, outside the new root.
pub fn build(staging: &Path, sources: Sources, owner: Owner) -> Result<(), Failure> {
    let staging_c = sys::c_path(staging).context(|| "cannot use the staging path".to_owned())?;
    sys::mount(
        Some(c"tmpfs"),
        &staging_c,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(c"mode=0755,size=1m"),
    )
    .context(|| {
        format!(
            "cannot mount the sandbox's root tmpfs on {}",
            staging.display()
        )
    })?;
    sys::chdir(&staging_c).context(|| format!("cannot enter {}", staging.display()))?;
    let host_root = CString::new(HOST_ROOT_DIR).expect("no NUL in a constant");
    fs::create_dir(HOST_ROOT_DIR).context(|| format!("cannot create /{HOST_ROOT_DIR}"))?;
    sys::pivot_root(c".", &host_root)
        .context(|| "cannot pivot to the sandbox's root".to_owned())?;
    sys::chdir(c"/").context(|| "cannot enter the new root".to_owned())?;

    // Before the host's root is detached: the kernel lets a user namespace mount a fresh proc
    // only while a full proc is visible in its mount namespace. Mounted by name, since
    // /proc/self/fd does not exist before it: /proc was just made in the new, empty root.
    make_mount_point(Path::new("/proc"), true)?;
    sys::mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
    .context(|| "cannot mount a fresh proc on /proc".to_owned())?;

    for entry in &sources.system {
        match entry {
            System::Link(name, target) => {
                let name = CString::new(*name).expect("no NUL in a constant");
                sys::symlink_at(target, root()?.as_fd(), &name)
                    .context(|| format!("cannot create the link /{}", name.to_string_lossy()))?;
            }
            System::Dir(name, fd) => {
                let guest = Path::new("/").join(name);
                bind(
                    fd.as_fd(),
                    &guest,
                    true,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )?;
            }
        }
    }

    build_dev(&sources.devices)?;
    let tmp_options = format!("mode=1777,uid={},gid={}", owner.uid, owner.gid);
    mount_fresh(
        Path::new("/tmp"),
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&tmp_options),
    )?;
    let run_options = format!("mode=0755,uid={},gid={}", owner.uid, owner.gid);
    mount_fresh(
        Path::new("/run"),
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&run_options),
    )?;

    for (mount, fd, is_dir) in &sources.mounts {
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if mount.read_only {
            attrs |= MOUNT_ATTR_RDONLY;
        }
        bind(fd.as_fd(), &mount.guest, *is_dir, attrs).map_err(|e| {
            Failure::new(format!(
                "mount {} at {}: {}",
                mount.host.display(),
                mount.guest.display(),
                e.report()
            ))
        })?;
    }

    let host_root_abs = CString::new(format!("/{HOST_ROOT_DIR}")).expect("no NUL in a constant");
    sys::umount(&host_root_abs, libc::MNT_DETACH)
        .context(|| "cannot detach the host's root".to_owned())?;
    fs::remove_dir(format!("/{HOST_ROOT_DIR}"))
        .context(|| format!("cannot remove /{HOST_ROOT_DIR}"))?;
    set_attrs(root()?.as_fd(), Path::new("/"), MOUNT_ATTR_RDONLY, false)
}

/// `/dev`: a tmpfs, read-only once filled, with the host's harmless character devices bound
/// in, the usual links, and a writable `/dev/shm`.
fn build_dev(devices: &[(&'static str, OwnedFd)]) -> Result<(), Failure> {
    let dev = Path::new("/dev");
    mount_fresh(
        dev,
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )?;
    for (name, fd) in devices {
        bind(fd.as_fd(), &dev.join(name), false, MOUNT_ATTR_NOSUID)?;
    }
    let dev_fd = open_beneath(dev)?;
    for (name, target) in DEV_LINKS {
        let name_c = CString::new(*name).expect("no NUL in a constant");
        let target_c = CString::new(*target).expect("no NUL in a constant");
        sys::symlink_at(&target_c, dev_fd.as_fd(), &name_c)
            .context(|| format!("cannot create the link /dev/{name}"))?;
    }
    mount_fresh(
        &dev.join("shm"),
        c"tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=1777"),
    )?;
    set_attrs(open_beneath(dev)?.as_fd(), dev, MOUNT_ATTR_RDONLY, false)
}

/// Mounts a new filesystem of type `fstype` (proc or tmpfs) at `guest`.
fn mount_fresh(
    guest: &Path,
    fstype: &CStr,
    flags: c_ulong,
    options: Option<&str>,
) -> Result<(), Failure> {
    let point = make_mount_point(guest, true)?;
    let options = options.map(|o| CString::new(o).expect("no NUL in the options"));
    sys::mount(
        Some(fstype),
        &sys::fd_path(point.as_fd()),
        Some(fstype),
        flags,
        options.as_deref(),
    )
    .context(|| {
        format!(
            "cannot mount {} on {}",
            fstype.to_string_lossy(),
            guest.display()
        )
    })
}

/// Binds `source` (a directory when `is_dir`, else a file) at `guest`, recursively, and
/// sets `attrs` on the new mount and every mount below it.
fn bind(source: BorrowedFd<'_>, guest: &Path, is_dir: bool, attrs: u64) -> Result<(), Failure> {
    let point = make_mount_point(guest, is_dir)?;
    sys::mount(
        Some(&sys::fd_path(source)),
        &sys::fd_path(point.as_fd()),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .context(|| format!("cannot bind {}", guest.display()))?;
    drop(point);
    set_attrs(open_beneath(guest)?.as_fd(), guest, attrs, true)
}

/// Sets `attrs` on the mount at `mount` (a descriptor of its root, at `guest`), and below it
/// when `recursive`. Kernels without mount_setattr (before 5.12) get a remount of the top
/// mount, and a refusal when there are mounts below it that would stay as they are.
fn set_attrs(
    mount: BorrowedFd<'_>,
    guest: &Path,
    attrs: u64,
    recursive: bool,
) -> Result<(), Failure> {
    match sys::mount_setattr(mount, attrs, recursive) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            if recursive && has_submounts(guest)? {
                return Err(Failure::new(format!(
                    "cannot make the mounts below {} read-only: this kernel lacks \
                     mount_setattr (Linux 5.12 or later)",
                    guest.display()
                )));
            }
            remount(mount, guest, attrs)
        }
        Err(e) => Err(e).context(|| format!("cannot set the flags of {}", guest.display())),
    }
}

/// The pre-5.12 way to set flags on one mount: a bind remount, keeping the flags it has
/// (the kernel refuses to clear locked ones).
fn remount(mount: BorrowedFd<'_>, guest: &Path, attrs: u64) -> Result<(), Failure> {
    let mut flags = libc::MS_REMOUNT
        | libc::MS_BIND
        | sys::mount_flags(mount)
            .context(|| format!("cannot read the flags of {}", guest.display()))?;
    for (attr, ms) in [
        (MOUNT_ATTR_RDONLY, libc::MS_RDONLY),
        (MOUNT_ATTR_NOSUID, libc::MS_NOSUID),
        (MOUNT_ATTR_NODEV, libc::MS_NODEV),
    ] {
        if attrs & attr != 0 {
            flags |= ms;
        }
    }
    sys::mount(None, &sys::fd_path(mount), None, flags, None)
        .context(|| format!("cannot remount {}", guest.display()))
}

/// Whether some mount lies strictly below `guest` (from `/proc/self/mountinfo`).
fn has_submounts(guest: &Path) -> Result<bool, Failure> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .context(|| "cannot read /proc/self/mountinfo".to_owned())?;
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| {
            let point = PathBuf::from(unescape_mountinfo(point));
            point != guest && point.starts_with(guest)
        }))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn root() -> Result<OwnedFd, Failure> {
    sys::open_at(None, c"/", libc::O_PATH | libc::O_DIRECTORY, 0)
        .context(|| "cannot open /".to_owned())
}

fn open_path(path: &Path, flags: libc::c_int) -> Result<OwnedFd, Failure> {
    let c = sys::c_path(path).context(|| format!("cannot use {}", path.display()))?;
    sys::open_at(None, &c, libc::O_PATH | flags, 0)
        .context(|| format!("cannot open {}", path.display()))
}

/// The components of an absolute path below `/`.
fn components(guest: &Path) -> Result<Vec<CString>, Failure> {
    let mut names = Vec::new();
    for component in guest.components() {
        match component {
            Component::RootDir => {}
            Component::Normal(name) => names.push(
                CString::new(name.as_bytes())
                    .map_err(|_| Failure::new(format!("{} holds a NUL byte", guest.display())))?,
            ),
            _ => {
                return Err(Failure::new(format!(
                    "{} is not a plain absolute path",
                    guest.display()
                )))
            }
        }
    }
    Ok(names)
}

/// Creates `guest` (a directory when `is_dir`, else an empty file) and its missing parents,
/// one component at a time and never through a symbolic link; returns a descriptor of it.
fn make_mount_point(guest: &Path, is_dir: bool) -> Result<OwnedFd, Failure> {
    let names = components(guest)?;
    let mut dir = root()?;
    let last = names.len().saturating_sub(1);
    for (i, name) in names.iter().enumerate() {
        let here = || format!("cannot create {} in the sandbox", guest.display());
        if i == last && !is_dir {
            return sys::open_at(
                Some(dir.as_fd()),
                name,
                libc::O_RDONLY | libc::O_CREAT | libc::O_NOFOLLOW,
                0o644,
            )
            .context(here);
        }
        match sys::mkdir_at(dir.as_fd(), name, 0o755) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).context(here),
        }
        dir = sys::open_at(
            Some(dir.as_fd()),
            name,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .context(|| {
            format!(
                "{}: {} is not a directory (symbolic links are not followed)",
                here(),
                name.to_string_lossy()
            )
        })?;
    }
    Ok(dir)
}

/// Opens what is at `guest` now (the root of a mount just made there), never through a
/// symbolic link.
fn open_beneath(guest: &Path) -> Result<OwnedFd, Failure> {
    let names = components(guest)?;
    let mut at = root()?;
    for name in &names {
        at = sys::open_at(Some(at.as_fd()), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
            .context(|| format!("cannot open {} in the sandbox", guest.display()))?;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo(r"/tab\011x\134"), "/tab\tx\\");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/short\04"), r"/short\04");
    }

    #[test]
    fn components_refuse_dots() {
        assert_eq!(components(Path::new("/run/bottle")).unwrap().len(), 2);
        assert!(components(Path::new("/run/../etc")).is_err());
    }
}

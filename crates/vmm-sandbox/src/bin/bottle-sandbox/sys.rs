//! Thin wrappers around the system calls the helper makes, so that `unsafe` stays here.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use libc::{c_int, c_long, c_ulong};

fn cvt(rc: c_int) -> io::Result<c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_long(rc: c_long) -> io::Result<c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Retries a call that a signal interrupted.
fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A path as the C library wants it.
pub fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} holds a NUL byte", path.display()),
        )
    })
}

/// `/proc/self/fd/N`: the path of an open file descriptor, which the kernel resolves to
/// exactly the file the descriptor holds, whatever has happened to its path since.
pub fn fd_path(fd: BorrowedFd<'_>) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// Which side of a fork this is.
pub enum Fork {
    Child,
    Parent(libc::pid_t),
}

/// Forks the process.
///
/// # Safety
///
/// The process must be single-threaded: the child gets only the calling thread, and a lock
/// held by another thread (in the allocator, say) would stay locked in it forever.
pub unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: the caller guarantees that this is the only thread; fork itself has no other
    // preconditions.
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

/// Moves the process into new namespaces of the kinds in `flags` (`CLONE_NEW*`).
pub fn unshare(flags: c_int) -> io::Result<()> {
    // SAFETY: unshare takes flags only and touches no memory of ours.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// Opens a pid file descriptor for `pid`, which names the process itself and not its
/// (reusable) number.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; on success it returns a new descriptor that
    // nothing else owns.
    let fd = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: `fd` was just returned by the kernel, is open, and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Joins the namespaces of kinds `flags` of the process (pid fd) or namespace (ns fd) `fd`.
pub fn setns(fd: BorrowedFd<'_>, flags: c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor we borrow for the call and flags.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), flags) }).map(drop)
}

/// mount(2).
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr_or_null = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null where
    // mount(2) allows it (source, fstype and data).
    cvt(unsafe {
        libc::mount(
            ptr_or_null(source),
            target.as_ptr(),
            ptr_or_null(fstype),
            flags,
            ptr_or_null(data).cast(),
        )
    })
    .map(drop)
}

/// umount2(2).
pub fn umount(target: &CStr, flags: c_int) -> io::Result<()> {
    // SAFETY: target is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// pivot_root(2): makes `new_root` the root mount and puts the old one at `put_old`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both are NUL-terminated strings that outlive the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

/// `struct mount_attr` of mount_setattr(2); not in the libc crate.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Sets `attrs` (`MOUNT_ATTR_*`) on the mount `fd` refers to, and on every mount below it
/// when `recursive`. Linux 5.12 and later.
pub fn mount_setattr(fd: BorrowedFd<'_>, attrs: u64, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the path is an empty NUL-terminated string (AT_EMPTY_PATH: the descriptor
    // itself), and `attr` is a live `struct mount_attr` whose size is passed along.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            mem::size_of::<MountAttr>(),
        )
    })
    .map(drop)
}

/// The `MS_*` flags that the mount `fd` is on has now (read-only, nosuid, ...), as a remount
/// must repeat them.
pub fn mount_flags(fd: BorrowedFd<'_>) -> io::Result<c_ulong> {
    // SAFETY: statvfs is plain data for which all-zero bytes are a valid value.
    let mut stat: libc::statvfs = unsafe { mem::zeroed() };
    // SAFETY: `stat` is a live statvfs for fstatvfs to fill; the descriptor is borrowed.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut stat) })?;
    let pairs = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st, _)| stat.f_flag & st != 0)
        .fold(0, |flags, (_, ms)| flags | ms))
}

/// Whether the process may be ptraced and its `/proc` files read by others of its uid. The
/// kernel resets it on credential changes and on exec.
pub fn set_dumpable(dumpable: bool) -> io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument only.
    cvt(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, c_ulong::from(dumpable), 0, 0, 0) }).map(drop)
}

/// Has the kernel send `signal` to this process when its parent dies.
pub fn set_parent_death_signal(signal: c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes an integer argument only.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as c_ulong, 0, 0, 0) }).map(drop)
}

/// Sets the real, effective and saved uids and gids (group first, while the uid still may).
pub fn set_ids(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: setresgid and setresuid take integers only.
    cvt(unsafe { libc::setresgid(gid, gid, gid) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::setresuid(uid, uid, uid) }).map(drop)
}

/// Drops every supplementary group.
pub fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length list with a null pointer is how setgroups(2) clears the list.
    cvt(unsafe { libc::setgroups(0, ptr::null()) }).map(drop)
}

pub fn effective_ids() -> (libc::uid_t, libc::gid_t) {
    // SAFETY: geteuid and getegid have no preconditions and cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

pub fn sethostname(name: &str) -> io::Result<()> {
    let bytes = &name.as_bytes()[..name.len().min(64)];
    // SAFETY: the pointer and length describe `bytes`, which outlives the call.
    cvt(unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) }).map(drop)
}

/// Gives the process a new, empty session keyring, so that it does not share the keyring of
/// the session it was started from.
pub fn join_new_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: c_long = 1;
    // SAFETY: a null name asks for a new anonymous keyring; no memory of ours is touched.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            ptr::null::<libc::c_char>(),
        )
    })
    .map(drop)
}

/// Closes every descriptor except those in `keep`, so that nothing the process inherited
/// (from bottle, or from the supervisor) reaches the sandbox.
///
/// Rust handles to the closed descriptors must not be used afterwards; callers use this
/// right after a fork, before they open anything else.
pub fn close_other_fds(keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<libc::c_uint> = keep.iter().filter_map(|fd| (*fd).try_into().ok()).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: libc::c_uint = 0;
    for kept in keep.into_iter().chain([libc::c_uint::MAX]) {
        if kept > first {
            close_range(first, kept - 1)?;
        }
        first = kept.saturating_add(1);
    }
    Ok(())
}

fn close_range(first: libc::c_uint, last: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range takes integers only; see `close_other_fds` for why no Rust handle
    // is left dangling in a way that matters.
    match cvt_long(unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            for fd in first..=last.min(65535) {
                // SAFETY: as above; closing a descriptor that is not open is harmless.
                unsafe { libc::close(fd as c_int) };
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Makes `fd` refer to what `from` refers to.
pub fn dup2(from: BorrowedFd<'_>, fd: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes two descriptor numbers; `from` is borrowed and open.
    cvt(unsafe { libc::dup2(from.as_raw_fd(), fd) }).map(drop)
}

pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid takes no arguments.
    cvt(unsafe { libc::setsid() }).map(drop)
}

pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: path is a NUL-terminated string that outlives the call.
    cvt(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// Replaces the process image; returns only on failure.
pub fn execve(program: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(ptr::null());
    // SAFETY: program is NUL-terminated; both arrays are null-terminated arrays of pointers
    // to NUL-terminated strings, all of which outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Ends the process at once, without running destructors or flushing Rust's buffers: what a
/// forked child that failed before exec must do, so as not to run its parent's cleanup.
pub fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Sends `signal` to `pid` (to every process the caller may signal for -1).
pub fn kill(pid: libc::pid_t, signal: c_int) -> io::Result<()> {
    // SAFETY: kill takes integers only.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(c_int),
    Killed(c_int),
}

impl Ended {
    /// The exit code a shell would report for it.
    pub fn code(self) -> c_int {
        match self {
            Ended::Exited(code) => code,
            Ended::Killed(signal) => 128 + signal,
        }
    }
}

/// Reaps one child (`pid`, or any for -1): `None` when `nohang` and none has ended.
pub fn wait_child(pid: libc::pid_t, nohang: bool) -> io::Result<Option<(libc::pid_t, Ended)>> {
    let mut status: c_int = 0;
    let options = if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: `status` is a live integer for waitpid to write.
    let reaped = retry(|| cvt(unsafe { libc::waitpid(pid, &mut status, options) }))?;
    if reaped == 0 {
        return Ok(None);
    }
    let ended = if libc::WIFSIGNALED(status) {
        Ended::Killed(libc::WTERMSIG(status))
    } else {
        Ended::Exited(libc::WEXITSTATUS(status))
    };
    Ok(Some((reaped, ended)))
}

/// A set of signals.
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    pub fn of(signals: &[c_int]) -> Self {
        // SAFETY: sigset_t is plain data, and sigemptyset initialises it before it is read.
        let mut set: libc::sigset_t = unsafe { mem::zeroed() };
        // SAFETY: `set` is a live sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        for signal in signals {
            // SAFETY: `set` is a live, initialised sigset_t.
            unsafe { libc::sigaddset(&mut set, *signal) };
        }
        SignalSet(set)
    }

    /// Blocks these signals for the calling thread (and the threads it starts later), so that
    /// they wait to be read from a signal fd instead of running handlers.
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: the set is initialised; the old mask is not asked for.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }

    /// A descriptor that becomes readable when one of these (blocked) signals is pending.
    pub fn signal_fd(&self) -> io::Result<OwnedFd> {
        // SAFETY: -1 asks for a new descriptor; the set is initialised.
        let fd = cvt(unsafe { libc::signalfd(-1, &self.0, libc::SFD_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Reads one pending signal from a signal fd.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<c_int> {
    // SAFETY: signalfd_siginfo is plain data; read fills it whole or fails.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the pointer and size describe `info`, which outlives the call.
    let read = retry(|| {
        cvt_long(unsafe {
            libc::read(
                fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                size,
            )
        } as c_long)
    })?;
    if read as usize != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "short read from a signal fd",
        ));
    }
    Ok(info.ssi_signo as c_int)
}

/// Restores what a freshly started program expects: no blocked signals, and every signal's
/// default action (Rust's runtime ignores SIGPIPE, and an ignored signal stays ignored
/// across exec).
pub fn reset_signals() {
    for signal in 1..libc::SIGRTMAX() {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: SIG_DFL is always a valid disposition; failures (for signals the C
            // library reserves) are harmless and ignored.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
    }
    let empty = SignalSet::of(&[]);
    // SAFETY: the set is initialised; the old mask is not asked for.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty.0, ptr::null_mut()) };
}

/// Waits until one of `fds` is ready, or `timeout_ms` (-1: no limit) passes; returns the
/// `revents` of each.
pub fn poll(
    fds: &[(BorrowedFd<'_>, libc::c_short)],
    timeout_ms: c_int,
) -> io::Result<Vec<libc::c_short>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, events)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *events,
            revents: 0,
        })
        .collect();
    // SAFETY: the pointer and length describe `polled`, which outlives the call.
    retry(|| {
        cvt(unsafe {
            libc::poll(
                polled.as_mut_ptr(),
                polled.len() as libc::nfds_t,
                timeout_ms,
            )
        })
    })?;
    Ok(polled.iter().map(|p| p.revents).collect())
}

/// A pipe whose ends close on exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both were just returned by the kernel and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of sequenced-packet Unix sockets, closing on exec: messages keep their
/// boundaries and can carry descriptors.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both were just returned by the kernel and are owned by no one else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The most descriptors one message carries.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

/// Sends one message carrying `fds` (SCM_RIGHTS).
pub fn send_message(socket: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    assert!(
        fds.len() <= MAX_FDS_PER_MESSAGE,
        "too many descriptors for one message"
    );
    let raw: Vec<c_int> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = mem::size_of_val(raw.as_slice()) as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u8; if fds.is_empty() { 0 } else { space }];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; the fields used are set below.
    let mut header: libc::msghdr = unsafe { mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if !fds.is_empty() {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = control.len() as _;
        // SAFETY: the control buffer is CMSG_SPACE(payload) bytes, so CMSG_FIRSTHDR is
        // non-null and CMSG_DATA has room for `payload` bytes.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                payload as usize,
            );
        }
    }
    // SAFETY: the header points at `iov`, `data` and `control`, all alive for the call.
    let sent = retry(|| {
        cvt_long(
            unsafe { libc::sendmsg(socket.as_raw_fd(), &header, libc::MSG_NOSIGNAL) } as c_long,
        )
    })?;
    if sent as usize != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short send of a control message",
        ));
    }
    Ok(())
}

/// Receives one message into `buf`, with the descriptors it carries (closing on exec).
/// Returns `(0, [])` at end of stream.
pub fn recv_message(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let payload = (MAX_FDS_PER_MESSAGE * mem::size_of::<c_int>()) as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a size.
    let mut control = vec![0u8; unsafe { libc::CMSG_SPACE(payload) } as usize];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; the fields used are set below.
    let mut header: libc::msghdr = unsafe { mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = control.len() as _;
    // SAFETY: the header points at `iov`, `buf` and `control`, all alive for the call.
    let received = retry(|| {
        cvt_long(
            unsafe { libc::recvmsg(socket.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) }
                as c_long,
        )
    })? as usize;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `control` and set msg_controllen; the CMSG_* macros walk
    // exactly that, and each SCM_RIGHTS payload holds whole descriptors it passed to us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / mem::size_of::<c_int>() {
                    let fd = ptr::read_unaligned(data.cast::<c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    if header.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a control message carried too many descriptors",
        ));
    }
    Ok((received, fds))
}

/// Brings the loopback interface of the current network namespace up, as `ip link set lo up`
/// would, without needing that command in the sandbox.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes integers only; the result is checked.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is a valid value for every field.
    let mut request: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `request`, which is
    // a live ifreq.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) })?;
    // SAFETY: SIOCGIFFLAGS just set the flags member of the union.
    unsafe { request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `request`, a live ifreq.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) }).map(drop)
}

/// Opens `path` relative to `dir` (`None`: the current directory) with `flags`, closing on
/// exec.
pub fn open_at(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: path is NUL-terminated and outlives the call; the result is checked.
    let fd = retry(|| {
        cvt(unsafe {
            libc::openat(
                dirfd,
                path.as_ptr(),
                flags | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })
    })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates directory `name` in `dir`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: name is NUL-terminated and outlives the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// Creates symbolic link `name` in `dir`, pointing at `target`.
pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// What kind of file `fd` refers to (`S_IFMT` bits).
pub fn file_type(fd: BorrowedFd<'_>) -> io::Result<libc::mode_t> {
    // SAFETY: stat is plain data that fstat fills whole or fails.
    let mut stat: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `stat` is a live struct for fstat to write.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(stat.st_mode & libc::S_IFMT)
}

/// Writes `data` to `path` in one write call, as `/proc/PID/uid_map` and the like require.
pub fn write_once(path: &Path, data: &str) -> io::Result<()> {
    let fd = open_at(None, &c_path(path)?, libc::O_WRONLY, 0)?;
    // SAFETY: the pointer and length describe `data`, which outlives the call.
    let written = cvt_long(
        unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) } as c_long,
    )?;
    if written as usize != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
    }
    Ok(())
}

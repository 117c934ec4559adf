//! Whether an alias is usable: a TCP socket can be bound to it, and why not when it cannot.

use std::io;
use std::net::Ipv4Addr;

use bottle_core::{AliasPool, BackendError, ErrorKind};

/// How many failing aliases an error names before it only counts the rest.
const NAMED_FAILURES: usize = 8;

/// Binds a TCP socket to `alias` on an ephemeral port, then closes it.
///
/// The socket never listens: a concurrent in-use scan by another bottle process must not see
/// the probe as a service on the alias. That is why this goes through `libc` and not
/// `std::net::TcpListener`, whose `bind` also calls `listen`.
#[cfg(target_os = "linux")]
pub(crate) fn bind_probe(alias: Ipv4Addr) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    // SAFETY: socket(2) takes no pointers; the descriptor is checked before any use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it; dropping the
    // OwnedFd closes it on every path below.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(alias.octets()),
        },
        sin_zero: [0; 8],
    };
    let length = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `address` is a valid sockaddr_in that lives across the call, and `length` is
    // its size, so bind(2) reads only memory it owns.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_in).cast::<libc::sockaddr>(),
            length,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Elsewhere the probe cannot tell anything about `lo`: the crate builds, and says so.
#[cfg(not(target_os = "linux"))]
pub(crate) fn bind_probe(_alias: Ipv4Addr) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "net-linux runs only on Linux",
    ))
}

/// What to check when binding failed with `err`, if the errno points somewhere.
fn hint(err: &io::Error) -> Option<&'static str> {
    match err.raw_os_error()? {
        libc::EADDRNOTAVAIL => Some("is lo up / is the route to 127.0.0.0/8 missing?"),
        libc::EACCES | libc::EPERM => {
            Some("a security policy (seccomp, SELinux, AppArmor) forbids binding it")
        }
        libc::EADDRINUSE => Some("no ephemeral port is left on it"),
        libc::EAFNOSUPPORT => Some("this network namespace has no IPv4"),
        _ => None,
    }
}

/// The error for aliases of `pool` that could not be bound; `None` when all could.
pub(crate) fn unbindable(
    pool: &AliasPool,
    failures: &[(Ipv4Addr, io::Error)],
) -> Option<BackendError> {
    let ((first, first_err), rest) = failures.split_first()?;
    if first_err.kind() == io::ErrorKind::Unsupported {
        return Some(BackendError::new(
            ErrorKind::NotSupported,
            first_err.to_string(),
        ));
    }
    let others = match rest.len() {
        0 => String::new(),
        n => format!(" (nor can {n} more aliases of pool {pool})"),
    };
    let message = match hint(first_err) {
        Some(hint) => format!("{first} cannot be bound on lo{others}: {hint}"),
        None => format!("{first} cannot be bound on lo{others}"),
    };
    let mut err = BackendError::new(ErrorKind::Unavailable, message).with_cause(first_err);
    if !rest.is_empty() {
        let mut named: Vec<String> = rest
            .iter()
            .take(NAMED_FAILURES)
            .map(|(a, e)| format!("{a}: {e}"))
            .collect();
        if rest.len() > NAMED_FAILURES {
            named.push(format!("and {} more", rest.len() - NAMED_FAILURES));
        }
        err = err.with_cause_text(format!("also failing: {}", named.join("; ")));
    }
    Some(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_available() -> io::Error {
        io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)
    }

    #[test]
    fn nothing_failed_means_no_error() {
        assert!(unbindable(&AliasPool::default(), &[]).is_none());
    }

    #[test]
    fn a_missing_route_names_the_alias_and_what_to_check() {
        let alias = Ipv4Addr::new(127, 0, 0, 17);
        let err = unbindable(&AliasPool::default(), &[(alias, not_available())]).unwrap();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "127.0.0.17 cannot be bound on lo: is lo up / is the route to 127.0.0.0/8 missing?"
        );
        assert_eq!(err.causes, [not_available().to_string()]);
    }

    #[test]
    fn many_failures_are_counted_and_the_first_few_named() {
        let failures: Vec<_> = AliasPool::default()
            .aliases()
            .map(|a| (a, not_available()))
            .collect();
        let err = unbindable(&AliasPool::default(), &failures).unwrap();
        assert!(
            err.message
                .starts_with("127.0.0.16 cannot be bound on lo (nor can 15 more aliases"),
            "{}",
            err.message
        );
        let also = &err.causes[1];
        assert!(also.starts_with("also failing: 127.0.0.17: "), "{also}");
        assert!(
            also.contains("127.0.0.24: ") && !also.contains("127.0.0.25: "),
            "{also}"
        );
        assert!(also.ends_with("and 7 more"), "{also}");
    }

    #[test]
    fn an_unexplained_errno_gives_no_hint() {
        let alias = Ipv4Addr::new(127, 0, 0, 17);
        let err = io::Error::from_raw_os_error(libc::ENOMEM);
        let err = unbindable(&AliasPool::default(), &[(alias, err)]).unwrap();
        assert_eq!(err.message, "127.0.0.17 cannot be bound on lo");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_pool_alias_binds_and_an_address_not_on_this_host_does_not() {
        assert!(bind_probe(Ipv4Addr::new(127, 0, 0, 210)).is_ok());
        // 192.0.2.0/24 is reserved for documentation (RFC 5737), so no host carries it;
        // binding sends no packet.
        let err = bind_probe(Ipv4Addr::new(192, 0, 2, 1)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EADDRNOTAVAIL));
    }
}

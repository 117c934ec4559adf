//! The relay, the agent's only way out: each endpoint's connections forwarded to that endpoint.

use std::io;
use std::net::{Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::failure::{Context, Failure};
use crate::log;

/// The most connections the relay forwards at once, over all its addresses; one more is
/// closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 256;

/// How long connecting to a service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Copying needs little stack; a small one keeps a full relay's memory modest.
const THREAD_STACK: usize = 128 * 1024;

/// Each listening socket was bound inside the sandbox to one endpoint's `ALIAS:HOSTPORT`;
/// every connection accepted on it is forwarded to that same address in the host's network
/// namespace, and nowhere else. The relay reads nothing of what it forwards: it copies
/// bytes both ways, passing a half-close on, so that whatever the agent sends cannot steer
/// it.
///
/// Starts one accepting thread per listener.
pub fn start(listeners: Vec<(SocketAddrV4, TcpListener)>) -> Result<(), Failure> {
    let open = Arc::new(AtomicUsize::new(0));
    for (target, listener) in listeners {
        let open = Arc::clone(&open);
        thread::Builder::new()
            .name(format!("relay {target}"))
            .stack_size(THREAD_STACK)
            .spawn(move || accept_loop(&listener, target, &open))
            .context(|| format!("cannot start the relay for {target}"))?;
    }
    Ok(())
}

/// A place among the relay's open connections, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_CONNECTIONS).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddrV4, open: &Arc<AtomicUsize>) {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) => {
                log::line(&format!("relay {target}: accept failed: {e}"));
                if is_resource_shortage(&e) {
                    thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
        };
        let Some(slot) = Slot::take(open) else {
            log::line(&format!(
                "relay {target}: {MAX_CONNECTIONS} connections open; closing a new one"
            ));
            continue;
        };
        let spawned = thread::Builder::new()
            .name(format!("relay {target}"))
            .stack_size(THREAD_STACK)
            .spawn(move || forward(client, target, slot));
        if let Err(e) = spawned {
            log::line(&format!("relay {target}: cannot start a thread: {e}"));
        }
    }
}

fn is_resource_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Connects to `target` on the host and copies both ways until both sides are done.
fn forward(client: TcpStream, target: SocketAddrV4, _slot: Slot) {
    let upstream = match TcpStream::connect_timeout(&target.into(), CONNECT_TIMEOUT) {
        Ok(upstream) => upstream,
        Err(e) => {
            log::line(&format!("relay {target}: cannot connect: {e}"));
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_in, upstream_in) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            log::line(&format!("relay {target}: cannot duplicate a socket: {e}"));
            return;
        }
    };
    let back = thread::Builder::new()
        .name(format!("relay {target}"))
        .stack_size(THREAD_STACK)
        .spawn(move || pump(upstream_in, client_in));
    pump(client, upstream);
    if let Ok(back) = back {
        let _ = back.join();
    }
}

/// Copies `from` to `to` until `from` ends, then passes the end on as a half-close; on an
/// error, closes both ways so that the other direction ends too.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    match io::copy(&mut from, &mut to) {
        Ok(_) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => {
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::Ipv4Addr;

    use super::*;

    fn local_listener() -> (SocketAddrV4, TcpListener) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let std::net::SocketAddr::V4(address) = listener.local_addr().unwrap() else {
            panic!("bound to IPv4")
        };
        (address, listener)
    }

    #[test]
    fn forwards_both_ways_and_passes_a_half_close_on() {
        let (service_address, service) = local_listener();
        let (relay_address, relay_listener) = local_listener();
        // A relay listener normally forwards to its own address; here the two differ so that
        // the test needs no second network namespace.
        thread::spawn(move || accept_loop(&relay_listener, service_address, &Arc::default()));
        let echo = thread::spawn(move || {
            let (mut conn, _) = service.accept().unwrap();
            let mut request = Vec::new();
            conn.read_to_end(&mut request).unwrap();
            conn.write_all(b"got ").unwrap();
            conn.write_all(&request).unwrap();
        });
        let mut agent = TcpStream::connect(relay_address).unwrap();
        agent.write_all(b"hello").unwrap();
        agent.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        agent.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "got hello");
        echo.join().unwrap();
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let open = Arc::new(AtomicUsize::new(MAX_CONNECTIONS - 1));
        let last = Slot::take(&open).unwrap();
        assert!(Slot::take(&open).is_none());
        drop(last);
        assert!(Slot::take(&open).is_some());
    }
}

//! Whether a published port really answers.
//!
//! With Docker's userland proxy, a connection to a published port is accepted by
//! `docker-proxy` whether or not the service inside listens yet; when it does not, the proxy
//! closes the connection at once. So a port counts as ready only when a connection is
//! accepted and then stays open (or the service speaks first). A service that closes every
//! connection without a word looks unready here; none of the services bottle runs does that.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Long enough for docker-proxy to learn that nothing listens inside, which takes it well
/// under a millisecond on a local bridge.
const HOLD: Duration = Duration::from_millis(200);

/// `Ok` when `address` accepted a connection and kept it open; otherwise why not.
pub(crate) fn answers(address: SocketAddr) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(HOLD))?;
    let mut byte = [0u8; 1];
    let read = loop {
        // A signal arriving during the wait is no answer either way: wait again.
        match stream.read(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match read {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the connection was closed at once (docker-proxy does that while nothing listens \
             inside the container)",
        )),
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn a_listener_that_keeps_the_connection_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            thread::sleep(HOLD * 2);
            drop(conn);
        });
        answers(address).unwrap();
        server.join().unwrap();
    }

    #[test]
    fn a_connection_closed_at_once_does_not_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = thread::spawn(move || drop(listener.accept().unwrap()));
        let err = answers(address).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted, "{err}");
        server.join().unwrap();
    }

    #[test]
    fn a_closed_port_does_not_answer() {
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(answers(address).is_err());
    }
}

//! The messages between the supervisor and the sandbox side, over one socket pair.

use std::fmt;
use std::io;
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// The longest message; a longer failure text is cut.
const MAX_MESSAGE: usize = 4096;

/// One message. The sandbox side sends all but `Mapped`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The sandbox has its new namespaces; the supervisor may write its id maps.
    Unshared,
    /// The id maps are written; the sandbox may go on.
    Mapped,
    /// The sandbox's init has this pid on the host.
    Init(u32),
    /// Carries the listening socket for this relay address, bound inside the sandbox.
    Listener(SocketAddrV4),
    /// The sandbox is built and the agent (or the idle init) runs.
    Ready,
    /// Setting up failed, for this reason.
    Failed(String),
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Unshared => f.write_str("unshared"),
            Message::Mapped => f.write_str("mapped"),
            Message::Init(pid) => write!(f, "init {pid}"),
            Message::Listener(address) => write!(f, "listener {address}"),
            Message::Ready => f.write_str("ready"),
            Message::Failed(reason) => write!(f, "failed {reason}"),
        }
    }
}

impl Message {
    fn parse(text: &str) -> Option<Message> {
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        Some(match (word, rest) {
            ("unshared", "") => Message::Unshared,
            ("mapped", "") => Message::Mapped,
            ("init", pid) => Message::Init(pid.parse().ok()?),
            ("listener", address) => Message::Listener(address.parse().ok()?),
            ("ready", "") => Message::Ready,
            ("failed", reason) => Message::Failed(reason.to_owned()),
            _ => return None,
        })
    }
}

/// One end of the socket pair.
pub struct Channel {
    socket: OwnedFd,
}

impl Channel {
    pub fn new(socket: OwnedFd) -> Self {
        Channel { socket }
    }

    pub fn send(&self, message: &Message) -> io::Result<()> {
        self.send_with(message, &[])
    }

    /// Sends `message` carrying `fds`.
    pub fn send_with(&self, message: &Message, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut text = message.to_string();
        if text.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        sys::send_message(self.socket.as_fd(), text.as_bytes(), fds)
    }

    /// The next message and the descriptors it carried; `None` once the other side has
    /// closed its end.
    pub fn recv(&self) -> io::Result<Option<(Message, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let (len, fds) = sys::recv_message(self.socket.as_fd(), &mut buf)?;
        if len == 0 && fds.is_empty() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&buf[..len]);
        match Message::parse(&text) {
            Some(message) => Ok(Some((message, fds))),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected control message `{text}`"),
            )),
        }
    }

    /// Waits for exactly `expected`; anything else is an error that says what came instead.
    pub fn expect(&self, expected: &Message) -> io::Result<()> {
        match self.recv()? {
            Some((message, _)) if &message == expected => Ok(()),
            Some((Message::Failed(reason), _)) => Err(io::Error::other(reason)),
            Some((other, _)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected `{expected}`, got `{other}`"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the other side closed the channel before `{expected}`"),
            )),
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};

    use super::*;

    #[test]
    fn every_message_reads_back_as_itself() {
        let address = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 17), 49154);
        for message in [
            Message::Unshared,
            Message::Mapped,
            Message::Init(4242),
            Message::Listener(address),
            Message::Ready,
            Message::Failed("cannot mount proc: Operation not permitted".into()),
            Message::Failed(String::new()),
        ] {
            assert_eq!(Message::parse(&message.to_string()), Some(message));
        }
        for junk in ["", "ready now", "init x", "listener 127.0.0.1", "hello"] {
            assert_eq!(Message::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_listener_crosses_the_pair_and_still_listens() {
        let (a, b) = sys::seqpacket_pair().unwrap();
        let (a, b) = (Channel::new(a), Channel::new(b));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(address) = listener.local_addr().unwrap() else {
            panic!("bound to IPv4")
        };
        a.send_with(&Message::Listener(address), &[listener.as_fd()])
            .unwrap();
        drop(listener);
        let (message, mut fds) = b.recv().unwrap().unwrap();
        assert_eq!(message, Message::Listener(address));
        let received = TcpListener::from(fds.pop().unwrap());
        assert_eq!(received.local_addr().unwrap(), SocketAddr::V4(address));
        let _client = std::net::TcpStream::connect(address).unwrap();
        received.accept().unwrap();
        drop(a);
        assert!(b.recv().unwrap().is_none());
    }
}

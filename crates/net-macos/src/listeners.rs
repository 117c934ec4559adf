//! Listening TCP sockets, from `netstat` or `lsof`, and which pool alias each one busies.
//!
//! `netstat` is the default because it lists every process's sockets without root; `lsof`
//! names the process, but run as a user it sees that user's own processes only.

use bottle_core::{BackendError, ErrorKind, Listener};

use crate::command::{self, Host, HostCommand};

/// Why a listing of sockets could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ListenerError {
    #[error("line {line}: expected `PROTO RECV-Q SEND-Q LOCAL FOREIGN STATE`, found `{text}`")]
    NetstatColumns { line: usize, text: String },
    #[error("line {line}: `{field}` is not ADDRESS.PORT")]
    NetstatEndpoint { line: usize, field: String },
    #[error("line {line}: expected `... TCP ADDRESS:PORT (LISTEN)`, found `{text}`")]
    LsofColumns { line: usize, text: String },
    #[error("line {line}: `{field}` is not ADDRESS:PORT")]
    LsofEndpoint { line: usize, field: String },
}

/// Which command lists the listening sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ListenerSource {
    #[default]
    Netstat,
    Lsof,
}

impl ListenerSource {
    /// The value of the `listeners` setting that selects it.
    pub(crate) fn from_setting(value: &str) -> Option<Self> {
        match value {
            "netstat" => Some(ListenerSource::Netstat),
            "lsof" => Some(ListenerSource::Lsof),
            _ => None,
        }
    }

    /// `-W` keeps netstat from cutting long addresses (`::ffff:127.0.0.200.49152`) to fit
    /// its columns; `-n` and `-P` keep both from resolving names and ports.
    pub(crate) fn command(self) -> HostCommand {
        match self {
            ListenerSource::Netstat => {
                HostCommand::new("/usr/sbin/netstat", &["-anW", "-p", "tcp"])
            }
            ListenerSource::Lsof => {
                HostCommand::new("/usr/sbin/lsof", &["-nP", "-iTCP", "-sTCP:LISTEN"])
            }
        }
    }

    pub(crate) fn parse(self, text: &str) -> Result<Vec<Listener>, ListenerError> {
        match self {
            ListenerSource::Netstat => parse_netstat(text),
            ListenerSource::Lsof => parse_lsof(text),
        }
    }

    /// Runs the command and reads every listener from it.
    pub(crate) fn read(self, host: &dyn Host) -> Result<Vec<Listener>, BackendError> {
        let command = self.command();
        let output = command::run(host, &command)?;
        // lsof exits 1, silently, when nothing matched: no socket listens at all.
        let nothing_listens = self == ListenerSource::Lsof
            && output.status == Some(1)
            && output.stdout.trim().is_empty()
            && output.stderr.trim().is_empty();
        if nothing_listens {
            return Ok(Vec::new());
        }
        if !output.success() {
            return Err(command::failed(&command, &output));
        }
        self.parse(&output.stdout).map_err(|err| {
            BackendError::new(
                ErrorKind::Other,
                format!("cannot read the output of `{command}`"),
            )
            .with_cause(&err)
        })
    }
}

/// The listeners in the output of `netstat -anW -p tcp`, where the port follows the address
/// after a dot:
///
/// ```text
/// Proto Recv-Q Send-Q  Local Address          Foreign Address        (state)
/// tcp4       0      0  127.0.0.17.8080        *.*                    LISTEN
/// tcp46      0      0  *.7000                 *.*                    LISTEN
/// ```
///
/// A `tcp` line that does not parse fails the whole listing: detection that skipped it
/// could call a busy alias free.
pub(crate) fn parse_netstat(text: &str) -> Result<Vec<Listener>, ListenerError> {
    let mut listeners = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !fields.first().is_some_and(|proto| proto.starts_with("tcp")) {
            continue;
        }
        let line = index + 1;
        let [_, _, _, local, _, state, ..] = fields[..] else {
            return Err(ListenerError::NetstatColumns {
                line,
                text: fields.join(" "),
            });
        };
        if state != "LISTEN" {
            continue;
        }
        let listener = endpoint(local, '.').ok_or_else(|| ListenerError::NetstatEndpoint {
            line,
            field: local.to_owned(),
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The listeners in the output of `lsof -nP -iTCP -sTCP:LISTEN`, where the last two columns
/// are the endpoint and the state:
///
/// ```text
/// COMMAND   PID  USER   FD   TYPE             DEVICE SIZE/OFF NODE NAME
/// node     5120 alice   23u  IPv6 0x5c1a1e3e5c9a2841      0t0  TCP [::1]:3000 (LISTEN)
/// ```
pub(crate) fn parse_lsof(text: &str) -> Result<Vec<Listener>, ListenerError> {
    let mut listeners = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.last() != Some(&"(LISTEN)") {
            continue;
        }
        let line = index + 1;
        let [.., "TCP", name, _] = fields[..] else {
            return Err(ListenerError::LsofColumns {
                line,
                text: fields.join(" "),
            });
        };
        let listener = endpoint(name, ':').ok_or_else(|| ListenerError::LsofEndpoint {
            line,
            field: name.to_owned(),
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// `ADDRESS<separator>PORT`, the address bare, `[bracketed]`, scoped (`%lo0`) or `*`.
fn endpoint(field: &str, separator: char) -> Option<Listener> {
    let (host, port) = field.rsplit_once(separator)?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse().ok()?;
    if host == "*" {
        return Some(Listener { addr: None, port });
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host = host.split_once('%').map_or(host, |(addr, _scope)| addr);
    Some(Listener {
        addr: Some(host.parse().ok()?),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_host::{failure, success, FakeHost};
    use bottle_core::{pool_usage, AliasPool, AliasUse};
    use std::net::Ipv4Addr;

    const NETSTAT: &str = include_str!("../tests/fixtures/netstat-an-tcp.txt");
    const LSOF: &str = include_str!("../tests/fixtures/lsof-listen.txt");

    fn at(addr: &str, port: u16) -> Listener {
        Listener {
            addr: Some(addr.parse().unwrap()),
            port,
        }
    }

    fn any(port: u16) -> Listener {
        Listener { addr: None, port }
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, last)
    }

    #[test]
    fn netstat_yields_listening_sockets_only_with_the_port_after_the_last_dot() {
        assert_eq!(
            parse_netstat(NETSTAT).unwrap(),
            [
                at("127.0.0.17", 49154),
                at("127.0.0.17", 49155),
                at("::ffff:127.0.0.18", 3000),
                at("127.0.0.1", 8021),
                at("::1", 5432),
                at("127.0.0.1", 5432),
                any(7000),
                any(5000),
                any(22),
                any(22),
                at("fe80::1", 631),
            ]
        );
    }

    #[test]
    fn lsof_yields_the_name_column_of_each_listener() {
        assert_eq!(
            parse_lsof(LSOF).unwrap(),
            [
                any(49152),
                any(49152),
                any(7000),
                any(7000),
                at("::1", 5432),
                at("127.0.0.1", 5432),
                at("127.0.0.17", 8080),
                at("127.0.0.17", 49154),
                at("::ffff:127.0.0.18", 3000),
            ]
        );
    }

    #[test]
    fn both_listings_busy_the_same_aliases() {
        let pool: AliasPool = "127.0.0.16/29".parse().unwrap();
        let busy = |listeners: &[Listener]| -> Vec<(Ipv4Addr, Vec<u16>)> {
            pool_usage(&pool, |_| true, listeners)
                .into_iter()
                .filter(|u| !u.listening_ports.is_empty())
                .map(|u| (u.alias, u.listening_ports))
                .collect()
        };
        let from_netstat = busy(&parse_netstat(NETSTAT).unwrap());
        assert_eq!(
            from_netstat,
            [(ip(17), vec![49154, 49155]), (ip(18), vec![3000])]
        );
        let from_lsof = busy(&parse_lsof(LSOF).unwrap());
        assert_eq!(
            from_lsof,
            [(ip(17), vec![8080, 49154]), (ip(18), vec![3000])]
        );
    }

    #[test]
    fn presence_comes_from_lo0_and_wildcards_busy_nothing() {
        let pool: AliasPool = "127.0.0.16/31".parse().unwrap();
        let listeners = [
            any(22),
            at("::", 80),
            at("0.0.0.0", 81),
            at("::ffff:0.0.0.0", 82),
        ];
        let usage = pool_usage(&pool, |a| a == ip(16), &listeners);
        assert_eq!(
            usage,
            [
                AliasUse {
                    alias: ip(16),
                    present: true,
                    listening_ports: vec![]
                },
                AliasUse {
                    alias: ip(17),
                    present: false,
                    listening_ports: vec![]
                },
            ]
        );
    }

    #[test]
    fn malformed_lines_fail_the_listing_and_name_the_line() {
        let cut = "Proto Recv-Q\ntcp4  0  0  127.0.0.17.8080\n";
        assert!(matches!(
            parse_netstat(cut),
            Err(ListenerError::NetstatColumns { line: 2, .. })
        ));
        let no_port = "tcp4  0  0  127.0.0.17  *.*  LISTEN\n";
        let err = parse_netstat(no_port).unwrap_err();
        assert_eq!(err.to_string(), "line 1: `127.0.0.17` is not ADDRESS.PORT");
        let cut_v6 = "tcp6  0  0  ::ffff:127.0.0.2  *.*  LISTEN\n";
        assert!(matches!(
            parse_netstat(cut_v6),
            Err(ListenerError::NetstatEndpoint { .. })
        ));
        let lsof = "node 5120 alice 23u IPv6 0x1 0t0 TCP localhost:http (LISTEN)\n";
        assert!(matches!(
            parse_lsof(lsof),
            Err(ListenerError::LsofEndpoint { line: 1, .. })
        ));
        let udp = "node 5120 alice 23u IPv4 0x1 0t0 UDP *:5353 (LISTEN)\n";
        assert!(matches!(
            parse_lsof(udp),
            Err(ListenerError::LsofColumns { line: 1, .. })
        ));
    }

    #[test]
    fn the_listing_commands_are_fixed() {
        assert_eq!(
            ListenerSource::Netstat.command().to_string(),
            "/usr/sbin/netstat -anW -p tcp"
        );
        assert_eq!(
            ListenerSource::Lsof.command().to_string(),
            "/usr/sbin/lsof -nP -iTCP -sTCP:LISTEN"
        );
    }

    #[test]
    fn lsof_finding_nothing_is_no_listener_but_netstat_failing_is_an_error() {
        let quiet = FakeHost::new(false, [failure(1, "")]);
        assert_eq!(ListenerSource::Lsof.read(&quiet).unwrap(), []);
        let broken = FakeHost::new(
            false,
            [failure(1, "netstat: sysctl: Operation not permitted")],
        );
        let err = ListenerSource::Netstat.read(&broken).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CommandFailed);
        assert_eq!(err.causes, ["netstat: sysctl: Operation not permitted"]);
    }

    #[test]
    fn a_listing_is_read_through_the_host() {
        let host = FakeHost::new(false, [success(NETSTAT)]);
        assert_eq!(ListenerSource::Netstat.read(&host).unwrap().len(), 11);
        assert_eq!(host.ran(), [ListenerSource::Netstat.command()]);
    }
}

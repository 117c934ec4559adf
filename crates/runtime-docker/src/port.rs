//! Reading `docker port` output, and choosing the binding on the bottle's alias.
//!
//! Docker versions print it differently: one `0.0.0.0:49154` line (old engines), one line
//! per binding, `:::49154` or `[::]:49154` for IPv6, and with `docker port CONTAINER` (no
//! port given) a `8080/tcp -> ` prefix. Every form becomes a [`PortBinding`], and the choice
//! is made on typed addresses, never on text.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use bottle_core::ErrorKind;

/// One host address and port a container port is published on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PortBinding {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for PortBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Why no single binding on the alias could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PortError {
    #[error("cannot read `{line}` as HOST_IP:PORT")]
    Unreadable { line: String },

    #[error("docker reports no binding for it")]
    NotPublished,

    #[error(
        "docker published it on {} besides the alias {alias}; a bottle's ports must answer on \
         its alias only, so the bundle is refused",
        list(others)
    )]
    Breach {
        alias: Ipv4Addr,
        others: Vec<PortBinding>,
    },

    #[error(
        "docker published it on the alias {alias} more than once ({}); cannot tell which",
        list(bindings)
    )]
    Ambiguous {
        alias: Ipv4Addr,
        bindings: Vec<PortBinding>,
    },
}

impl PortError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PortError::Unreadable { .. } | PortError::Ambiguous { .. } => ErrorKind::Other,
            PortError::NotPublished => ErrorKind::NotFound,
            PortError::Breach { .. } => ErrorKind::ScopeNotEnforceable,
        }
    }
}

fn list(bindings: &[PortBinding]) -> String {
    bindings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses every line of `docker port` output; blank lines are skipped.
pub(crate) fn parse_bindings(output: &str) -> Result<Vec<PortBinding>, PortError> {
    output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Result<PortBinding, PortError> {
    let unreadable = || PortError::Unreadable {
        line: line.to_owned(),
    };
    // `docker port CONTAINER` prefixes each line with the container port.
    let address = line.rsplit_once(" -> ").map_or(line, |(_, a)| a).trim();
    let (ip, port) = match address.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or_else(unreadable)?,
        // The port follows the last colon, which also covers the unbracketed `:::49154`.
        None => address.rsplit_once(':').ok_or_else(unreadable)?,
    };
    let ip: IpAddr = ip.parse().map_err(|_| unreadable())?;
    let port: u16 = port.parse().map_err(|_| unreadable())?;
    // An IPv4 address in IPv6 form (`::ffff:127.0.0.17`) is the IPv4 address.
    Ok(PortBinding {
        ip: ip.to_canonical(),
        port,
    })
}

/// The host port on `alias`, provided Docker published the container port there and nowhere
/// else.
pub(crate) fn port_on_alias(alias: Ipv4Addr, bindings: &[PortBinding]) -> Result<u16, PortError> {
    let (mut on_alias, mut others): (Vec<PortBinding>, Vec<PortBinding>) =
        bindings.iter().partition(|b| b.ip == IpAddr::V4(alias));
    if !others.is_empty() {
        others.sort();
        others.dedup();
        return Err(PortError::Breach { alias, others });
    }
    on_alias.sort();
    on_alias.dedup();
    match on_alias.as_slice() {
        [] => Err(PortError::NotPublished),
        [one] => Ok(one.port),
        _ => Err(PortError::Ambiguous {
            alias,
            bindings: on_alias,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIAS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 17);

    fn binding(ip: &str, port: u16) -> PortBinding {
        PortBinding {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn choose(output: &str) -> Result<u16, PortError> {
        port_on_alias(ALIAS, &parse_bindings(output)?)
    }

    #[test]
    fn every_line_form_is_read() {
        let cases = [
            ("127.0.0.17:49154", binding("127.0.0.17", 49154)),
            ("0.0.0.0:49154", binding("0.0.0.0", 49154)),
            ("[::]:49154", binding("::", 49154)),
            (":::49154", binding("::", 49154)),
            ("[::1]:49155", binding("::1", 49155)),
            ("8080/tcp -> 127.0.0.17:49154", binding("127.0.0.17", 49154)),
            ("8080/tcp -> [::]:49154", binding("::", 49154)),
            ("  127.0.0.17:1  ", binding("127.0.0.17", 1)),
            ("[::ffff:127.0.0.17]:49154", binding("127.0.0.17", 49154)),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line).unwrap(), expected, "{line}");
        }
    }

    #[test]
    fn garbage_is_an_error_that_quotes_the_line() {
        let lines = [
            "49154",
            "127.0.0.17",
            "127.0.0.17:",
            "127.0.0.17:http",
            "127.0.0.17:70000",
            "host:80",
            "[::1:80",
            // A zone id is not part of an IP address: unreadable rather than misread.
            "[fe80::1%eth0]:1",
            "Error: No public port '8080/tcp' published for x",
        ];
        for line in lines {
            let err = parse_bindings(line).unwrap_err();
            assert_eq!(
                err,
                PortError::Unreadable {
                    line: line.trim().to_owned()
                }
            );
        }
    }

    #[test]
    fn the_alias_line_is_chosen_when_it_is_the_only_binding() {
        assert_eq!(choose("127.0.0.17:49154\n"), Ok(49154));
        assert_eq!(choose("\n127.0.0.17:49154\n\n"), Ok(49154));
        // Some engines repeat a binding; that is still one binding.
        assert_eq!(choose("127.0.0.17:49154\n127.0.0.17:49154\n"), Ok(49154));
        assert_eq!(choose("8080/tcp -> 127.0.0.17:32768"), Ok(32768));
    }

    #[test]
    fn a_binding_anywhere_else_is_a_breach() {
        let breaches = [
            // Old engines: the host IP was ignored and only the wildcard is printed.
            ("0.0.0.0:49154", vec![binding("0.0.0.0", 49154)]),
            // Newer engines: one line per binding, IPv4 and IPv6 wildcards besides the alias.
            (
                "0.0.0.0:49154\n[::]:49154\n127.0.0.17:49154",
                vec![binding("0.0.0.0", 49154), binding("::", 49154)],
            ),
            (":::49154\n127.0.0.17:49154", vec![binding("::", 49154)]),
            (
                "127.0.0.17:49154\n127.0.0.1:49154",
                vec![binding("127.0.0.1", 49154)],
            ),
            ("127.0.0.17:49154\n[::1]:49154", vec![binding("::1", 49154)]),
            ("127.0.0.18:49154", vec![binding("127.0.0.18", 49154)]),
        ];
        for (output, others) in breaches {
            let err = choose(output).unwrap_err();
            assert_eq!(
                err,
                PortError::Breach {
                    alias: ALIAS,
                    others
                },
                "{output}"
            );
            assert_eq!(err.kind(), ErrorKind::ScopeNotEnforceable);
        }
    }

    #[test]
    fn the_breach_message_lists_every_other_address() {
        let err = choose("0.0.0.0:49154\n[::]:49154\n127.0.0.17:49154").unwrap_err();
        assert_eq!(
            err.to_string(),
            "docker published it on 0.0.0.0:49154, [::]:49154 besides the alias 127.0.0.17; a \
             bottle's ports must answer on its alias only, so the bundle is refused"
        );
    }

    #[test]
    fn nothing_published_and_two_ports_on_the_alias_are_errors() {
        assert_eq!(choose(""), Err(PortError::NotPublished));
        assert_eq!(choose("\n"), Err(PortError::NotPublished));
        assert_eq!(
            choose("127.0.0.17:1\n127.0.0.17:2"),
            Err(PortError::Ambiguous {
                alias: ALIAS,
                bindings: vec![binding("127.0.0.17", 1), binding("127.0.0.17", 2)],
            })
        );
    }
}

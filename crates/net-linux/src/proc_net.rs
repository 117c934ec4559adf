//! Listening TCP sockets, read from the kernel's tables in /proc/net/tcp and /proc/net/tcp6.
//!
//! Each row gives the local endpoint as `ADDRESS:PORT` in hex. The port is printed as a
//! number, but the address is printed one 32-bit word at a time, each word as the integer
//! the kernel holds in memory: on a little-endian host 127.0.0.1 reads `0100007F`. Decoding
//! therefore needs the byte order of the host that wrote the table, which is a parameter
//! here so that captured text decodes the same on any machine.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bottle_core::Listener;

/// The kernel's code for `TCP_LISTEN` in the `st` column.
const LISTEN: u8 = 0x0A;

/// The byte order in which the kernel printed each 32-bit word of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordOrder {
    Little,
    Big,
}

impl WordOrder {
    /// The order of this machine, which is the order of its own /proc.
    pub(crate) const HOST: WordOrder = if cfg!(target_endian = "big") {
        WordOrder::Big
    } else {
        WordOrder::Little
    };

    fn bytes(self, word: u32) -> [u8; 4] {
        match self {
            WordOrder::Little => word.to_le_bytes(),
            WordOrder::Big => word.to_be_bytes(),
        }
    }
}

/// Why a row of a TCP table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProcNetError {
    #[error("line {line}: expected `SLOT: LOCAL REMOTE STATE ...`, found `{text}`")]
    Columns { line: usize, text: String },
    #[error("line {line}: `{field}` is not a hex ADDRESS:PORT")]
    Endpoint { line: usize, field: String },
    #[error("line {line}: `{field}` is not a hex socket state")]
    State { line: usize, field: String },
}

/// The local endpoints of every socket in `table` that is in the LISTEN state.
///
/// `table` is the whole text of /proc/net/tcp or /proc/net/tcp6; the address length tells
/// the two apart. A row that does not parse fails the whole table: in-use detection that
/// skipped what it could not read would call a busy alias free.
pub(crate) fn parse_listeners(
    table: &str,
    order: WordOrder,
) -> Result<Vec<Listener>, ProcNetError> {
    let mut listeners = Vec::new();
    for (index, text) in table.lines().enumerate() {
        let line = index + 1;
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields.first() {
            None => continue,
            Some(&"sl") if index == 0 => continue,
            Some(_) => {}
        }
        let columns = || ProcNetError::Columns {
            line,
            text: text.trim().to_owned(),
        };
        let [slot, local, _remote, state, ..] = fields[..] else {
            return Err(columns());
        };
        if !slot.ends_with(':') {
            return Err(columns());
        }
        let state = hex_u8(state).ok_or_else(|| ProcNetError::State {
            line,
            field: state.to_owned(),
        })?;
        if state != LISTEN {
            continue;
        }
        let endpoint = decode_endpoint(local, order).ok_or_else(|| ProcNetError::Endpoint {
            line,
            field: local.to_owned(),
        })?;
        listeners.push(endpoint);
    }
    Ok(listeners)
}

/// `ADDRESS:PORT` with an 8-digit (IPv4) or 32-digit (IPv6) address.
fn decode_endpoint(field: &str, order: WordOrder) -> Option<Listener> {
    let (address, port) = field.split_once(':')?;
    if port.len() != 4 {
        return None;
    }
    let port = u16::try_from(hex_u32(port)?).ok()?;
    let addr = match address.len() {
        8 => IpAddr::V4(Ipv4Addr::from(order.bytes(hex_u32(address)?))),
        32 => {
            let mut octets = [0u8; 16];
            for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
                let word = address.get(i * 8..i * 8 + 8)?;
                chunk.copy_from_slice(&order.bytes(hex_u32(word)?));
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(Listener {
        addr: Some(addr),
        port,
    })
}

/// Hex digits only: `from_str_radix` alone would also take a leading sign.
fn hex_u32(digits: &str) -> Option<u32> {
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

fn hex_u8(digits: &str) -> Option<u8> {
    if digits.len() != 2 {
        return None;
    }
    u8::try_from(hex_u32(digits)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/net/tcp captured on x86_64 with listeners on 127.0.0.201 and 0.0.0.0, a
    /// connection in TIME_WAIT, and an ESTABLISHED one.
    const TCP: &str = include_str!("../tests/fixtures/proc-net-tcp.txt");

    /// /proc/net/tcp6 captured on x86_64 with listeners on `::`, on ::ffff:127.0.0.203
    /// (an IPv4-mapped address) and on ::1.
    const TCP6: &str = include_str!("../tests/fixtures/proc-net-tcp6.txt");

    fn listener(addr: &str, port: u16) -> Listener {
        Listener {
            addr: Some(addr.parse().unwrap()),
            port,
        }
    }

    #[test]
    fn ipv4_table_yields_only_listening_sockets() {
        let found = parse_listeners(TCP, WordOrder::Little).unwrap();
        assert_eq!(
            found,
            [listener("127.0.0.201", 0xBAA7), listener("0.0.0.0", 2024)]
        );
    }

    #[test]
    fn ipv6_table_decodes_each_word_and_keeps_ipv4_mapped_addresses() {
        let found = parse_listeners(TCP6, WordOrder::Little).unwrap();
        assert_eq!(
            found,
            [
                listener("::", 0x9567),
                listener("::ffff:127.0.0.203", 0x89DD),
                listener("::1", 5432),
            ]
        );
    }

    #[test]
    fn a_big_endian_host_prints_words_in_network_order() {
        let table = "  sl  local_address rem_address   st\n   0: 7F0000C9:1F90 00000000:0000 0A\n";
        assert_eq!(
            parse_listeners(table, WordOrder::Big).unwrap(),
            [listener("127.0.0.201", 8080)]
        );
    }

    #[test]
    fn an_empty_table_has_no_listeners() {
        let header = TCP.lines().next().unwrap();
        assert_eq!(parse_listeners(header, WordOrder::Little).unwrap(), []);
        assert_eq!(parse_listeners("", WordOrder::Little).unwrap(), []);
    }

    #[test]
    fn malformed_rows_fail_the_table_and_name_the_line() {
        let bad_address = "  sl  local_address\n   0: 0100007G:1F90 00000000:0000 0A\n";
        assert_eq!(
            parse_listeners(bad_address, WordOrder::Little),
            Err(ProcNetError::Endpoint {
                line: 2,
                field: "0100007G:1F90".into()
            })
        );
        let signed = "   0: +100007F:1F90 00000000:0000 0A\n";
        assert!(matches!(
            parse_listeners(signed, WordOrder::Little),
            Err(ProcNetError::Endpoint { line: 1, .. })
        ));
        let short = "   0: 0100007F:1F90\n";
        assert!(matches!(
            parse_listeners(short, WordOrder::Little),
            Err(ProcNetError::Columns { line: 1, .. })
        ));
        let state = "   0: 0100007F:1F90 00000000:0000 LISTEN\n";
        let err = parse_listeners(state, WordOrder::Little).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: `LISTEN` is not a hex socket state"
        );
    }

    #[test]
    fn rows_in_other_states_are_not_decoded() {
        let garbage_but_closed = "   0: ZZZZ 00000000:0000 07\n";
        assert_eq!(
            parse_listeners(garbage_but_closed, WordOrder::Little).unwrap(),
            []
        );
    }
}

//! What Linux's `/proc` says about processes, process groups and listening TCP sockets.
//!
//! Parsing is kept apart from reading, so that the parsers are tested on fixed text.

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The fields of `/proc/<pid>/stat` this plugin needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The one-letter state; `Z` is a zombie, which no longer runs anything.
    pub state: char,
    pub pgrp: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of process `pid`, if it exists.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The processes of group `pgid` that are not zombies.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| s.pgrp == pgid && s.state != 'Z'))
        .collect()
}

/// The inodes of the sockets that the processes `pids` hold open.
pub fn socket_inodes(pids: &[u32]) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|t| t.strip_suffix(']'))
            {
                inodes.extend(inode.parse::<u64>().ok());
            }
        }
    }
    inodes
}

/// A TCP socket in the LISTEN state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
    pub inode: u64,
}

/// The listening sockets in the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn parse_listeners(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(parse_listener_line)
        .collect()
}

fn parse_listener_line(line: &str) -> Option<Listener> {
    const LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    if *fields.get(3)? != LISTEN {
        return None;
    }
    let (addr, port) = fields.get(1)?.split_once(':')?;
    Some(Listener {
        addr: parse_addr(addr)?,
        port: u16::from_str_radix(port, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// The kernel prints an address as its 32-bit words in the machine's byte order.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

/// Every listening TCP socket on the host, IPv4 and IPv6.
pub fn listeners() -> Result<Vec<Listener>, std::io::Error> {
    let mut all = parse_listeners(&fs::read_to_string("/proc/net/tcp")?);
    // A kernel without IPv6 has no tcp6 table, and then nothing listens on IPv6.
    if let Ok(text) = fs::read_to_string("/proc/net/tcp6") {
        all.extend(parse_listeners(&text));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let text = "4242 (my (odd) svc) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000000 100 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                pgrp: 4242,
                start_time: 987654
            }
        );
        assert_eq!(parse_stat("12 (x) Z"), None);
    }

    fn word(bytes: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(bytes))
    }

    #[test]
    fn listening_sockets_are_decoded_in_the_machines_byte_order() {
        let header =
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   \
                      uid  timeout inode";
        let v4 = format!(
            "{header}\n   0: {}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  \
             1000        0 5551 1 0000000000000000 100 0 0 10 0\n   1: {}:A1B2 {}:0050 01 \
             00000000:00000000 00:00000000 00000000  1000 0 5552 1\n",
            word([127, 0, 0, 200]),
            word([127, 0, 0, 1]),
            word([127, 0, 0, 2]),
        );
        let parsed = parse_listeners(&v4);
        assert_eq!(
            parsed,
            [Listener {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 200)),
                port: 8080,
                inode: 5551
            }]
        );

        let mut any = String::new();
        for w in [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]] {
            any.push_str(&word(w));
        }
        let v6 = format!(
            "{header}\n   0: {any}:0050 00000000000000000000000000000000:0000 0A \
             00000000:00000000 00:00000000 00000000  0 0 777 1\n"
        );
        assert_eq!(
            parse_listeners(&v6),
            [Listener {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                port: 80,
                inode: 777
            }]
        );
    }

    #[test]
    fn this_process_is_in_its_own_group_list() {
        let me = std::process::id();
        let pgrp = stat(me).unwrap().pgrp;
        assert!(group_members(pgrp).contains(&me));
    }
}

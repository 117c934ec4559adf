//! IPv4 CIDR blocks and the loopback alias pool that bottles lease their addresses from.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The pool used when no configuration names another: 127.0.0.16 – 127.0.0.31.
pub const DEFAULT_POOL: &str = "127.0.0.16/28";

/// The widest pool bottle accepts: 256 aliases.
pub const WIDEST_POOL_PREFIX: u8 = 24;

/// Why a CIDR block or a pool was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("`{input}` is not an IPv4 CIDR block: expected ADDRESS/PREFIX, e.g. 127.0.0.16/28")]
    Syntax { input: String },
    #[error("`{input}`: the prefix length must be a number from 0 to 32")]
    Prefix { input: String },
    #[error("`{input}` has host bits set: did you mean {suggestion}?")]
    HostBits { input: String, suggestion: Ipv4Cidr },
    #[error("pool {pool} lies outside 127.0.0.0/8: bottle aliases are loopback addresses")]
    NotLoopback { pool: Ipv4Cidr },
    #[error("pool {pool} holds more than 256 aliases: the widest pool allowed is a /24")]
    TooWide { pool: Ipv4Cidr },
    #[error("pool {pool} contains 127.0.0.1, which the host's own services listen on")]
    ContainsHostLoopback { pool: Ipv4Cidr },
}

/// An IPv4 network in CIDR notation, with no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The block holding exactly one address.
    pub fn host(addr: Ipv4Addr) -> Self {
        Ipv4Cidr {
            network: addr,
            prefix: 32,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    /// Whether `addr` lies inside this block.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & Self::mask(self.prefix) == u32::from(self.network)
    }

    /// Whether every address of `other` lies inside this block.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network)
    }

    /// The number of addresses in the block.
    pub fn len(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// Whether the block is empty; a CIDR block never is.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every address of the block, lowest first.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u64::from(u32::from(self.network));
        (first..first + self.len()).map(|a| Ipv4Addr::from(a as u32))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = PoolError;

    fn from_str(input: &str) -> Result<Self, PoolError> {
        let syntax = || PoolError::Syntax {
            input: input.to_owned(),
        };
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix = match prefix {
            None => 32,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u8>() {
                Ok(p) if p <= 32 => p,
                _ => {
                    return Err(PoolError::Prefix {
                        input: input.to_owned(),
                    })
                }
            },
            Some(_) => {
                return Err(PoolError::Prefix {
                    input: input.to_owned(),
                })
            }
        };
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix));
        if network != addr {
            let suggestion = Ipv4Cidr { network, prefix };
            return Err(PoolError::HostBits {
                input: input.to_owned(),
                suggestion,
            });
        }
        Ok(Ipv4Cidr { network, prefix })
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = PoolError;

    fn try_from(s: String) -> Result<Self, PoolError> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The range of loopback addresses that bottles lease their aliases from.
///
/// A pool lies inside 127.0.0.0/8, holds at most 256 addresses and never contains 127.0.0.1,
/// so that no bottle is ever published next to the host's own loopback services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AliasPool {
    block: Ipv4Cidr,
}

impl AliasPool {
    pub fn new(block: Ipv4Cidr) -> Result<Self, PoolError> {
        let loopback = Ipv4Cidr {
            network: Ipv4Addr::new(127, 0, 0, 0),
            prefix: 8,
        };
        if !loopback.covers(&block) {
            return Err(PoolError::NotLoopback { pool: block });
        }
        if block.prefix < WIDEST_POOL_PREFIX {
            return Err(PoolError::TooWide { pool: block });
        }
        if block.contains(Ipv4Addr::LOCALHOST) {
            return Err(PoolError::ContainsHostLoopback { pool: block });
        }
        Ok(AliasPool { block })
    }

    pub fn block(&self) -> Ipv4Cidr {
        self.block
    }

    /// Whether `addr` is one of the pool's aliases.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.block.contains(addr)
    }

    /// The number of aliases, which is the number of bottles the host can run at once.
    pub fn len(&self) -> usize {
        self.block.len() as usize
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Every alias of the pool, lowest first.
    pub fn aliases(&self) -> impl Iterator<Item = Ipv4Addr> {
        self.block.addresses()
    }
}

impl Default for AliasPool {
    fn default() -> Self {
        DEFAULT_POOL.parse().expect("the default pool is valid")
    }
}

impl FromStr for AliasPool {
    type Err = PoolError;

    fn from_str(s: &str) -> Result<Self, PoolError> {
        AliasPool::new(s.parse()?)
    }
}

impl TryFrom<String> for AliasPool {
    type Error = PoolError;

    fn try_from(s: String) -> Result<Self, PoolError> {
        s.parse()
    }
}

impl From<AliasPool> for String {
    fn from(p: AliasPool) -> String {
        p.to_string()
    }
}

impl fmt::Display for AliasPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.block.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_is_sixteen_aliases_from_16_to_31() {
        let pool = AliasPool::default();
        let aliases: Vec<_> = pool.aliases().collect();
        assert_eq!(aliases.len(), 16);
        assert_eq!(aliases[0], Ipv4Addr::new(127, 0, 0, 16));
        assert_eq!(aliases[15], Ipv4Addr::new(127, 0, 0, 31));
        assert!(!pool.contains(Ipv4Addr::new(127, 0, 0, 32)));
    }

    #[test]
    fn a_slash_24_elsewhere_in_loopback_is_accepted() {
        let pool: AliasPool = "127.0.5.0/24".parse().unwrap();
        assert_eq!(pool.len(), 256);
    }

    #[test]
    fn pools_outside_loopback_too_wide_or_holding_localhost_are_refused() {
        assert!(matches!(
            "10.0.0.0/28".parse::<AliasPool>(),
            Err(PoolError::NotLoopback { .. })
        ));
        assert!(matches!(
            "126.0.0.0/7".parse::<AliasPool>(),
            Err(PoolError::NotLoopback { .. })
        ));
        assert!(matches!(
            "127.0.0.0/23".parse::<AliasPool>(),
            Err(PoolError::TooWide { .. })
        ));
        assert!(matches!(
            "127.0.0.0/28".parse::<AliasPool>(),
            Err(PoolError::ContainsHostLoopback { .. })
        ));
        assert!(matches!(
            "127.0.0.1/32".parse::<AliasPool>(),
            Err(PoolError::ContainsHostLoopback { .. })
        ));
    }

    #[test]
    fn malformed_blocks_name_what_was_expected() {
        let err = "127.0.0.17/28".parse::<Ipv4Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`127.0.0.17/28` has host bits set: did you mean 127.0.0.16/28?"
        );
        assert!(matches!(
            "127.0.0/28".parse::<Ipv4Cidr>(),
            Err(PoolError::Syntax { .. })
        ));
        assert!(matches!(
            "127.0.0.16/33".parse::<Ipv4Cidr>(),
            Err(PoolError::Prefix { .. })
        ));
        assert!(matches!(
            "127.0.0.16/+8".parse::<Ipv4Cidr>(),
            Err(PoolError::Prefix { .. })
        ));
        assert!(matches!(
            "127.0.0.16/".parse::<Ipv4Cidr>(),
            Err(PoolError::Prefix { .. })
        ));
    }

    #[test]
    fn a_bare_address_is_a_slash_32() {
        let c: Ipv4Cidr = "127.0.0.17".parse().unwrap();
        assert_eq!(c.to_string(), "127.0.0.17/32");
        assert!(c.contains(Ipv4Addr::new(127, 0, 0, 17)));
        assert!(!c.contains(Ipv4Addr::new(127, 0, 0, 18)));
    }

    #[test]
    fn covers_compares_blocks() {
        let wide: Ipv4Cidr = "127.0.0.16/28".parse().unwrap();
        let host = Ipv4Cidr::host(Ipv4Addr::new(127, 0, 0, 17));
        assert!(wide.covers(&host));
        assert!(!host.covers(&wide));
        assert!(host.covers(&host));
    }
}

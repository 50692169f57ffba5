//! CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, a bare address) and sets of them, parsed
//! once at config load and matched per request without allocation.

use std::{fmt, net::IpAddr, str::FromStr};

/// One block of addresses: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address, its host bits cleared.
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`, what
    /// a dual-stack socket reports for an IPv4 peer) is matched as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(v: u32, prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p => v & (u32::MAX << (32 - u32::from(p))),
    }
}

fn mask128(v: u128, prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p => v & (u128::MAX << (128 - u32::from(p))),
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/PREFIX` or a bare `ADDR` (a single host). Host bits set under the prefix
    /// (`10.1.2.3/8`) are refused: they usually mean a typo, not the block they name.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 or IPv6 address or CIDR block"))?;
        let ip = ip.to_canonical();
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        let net = match ip {
            IpAddr::V4(v4) => IpAddr::V4(mask32(u32::from(v4), prefix).into()),
            IpAddr::V6(v6) => IpAddr::V6(mask128(u128::from(v6), prefix).into()),
        };
        if net != ip {
            return Err(format!(
                "`{s}` has host bits set; the block is `{net}/{prefix}`"
            ));
        }
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// A list of blocks; an address matches when any block contains it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(Vec<Cidr>);

impl CidrSet {
    /// Parses every entry; the error names the first bad one by its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<CidrSet, (usize, String)> {
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| e.as_ref().parse::<Cidr>().map_err(|r| (i, r)))
            .collect::<Result<Vec<_>, _>>()
            .map(CidrSet)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks_match_their_addresses_only() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.0.0")));
        assert!(c.contains(ip("10.1.255.255")));
        assert!(!c.contains(ip("10.2.0.0")));
        assert!(!c.contains(ip("::1")));
        let host: Cidr = "127.0.0.2".parse().unwrap();
        assert!(host.contains(ip("127.0.0.2")));
        assert!(!host.contains(ip("127.0.0.3")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_blocks_and_mapped_ipv4_addresses() {
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(ip("2001:db8:ffff::1")));
        assert!(!c.contains(ip("2001:db9::1")));
        let v4: Cidr = "192.0.2.0/24".parse().unwrap();
        // What a dual-stack listener reports for an IPv4 peer.
        assert!(v4.contains(ip("::ffff:192.0.2.7")));
        let all6: Cidr = "::/0".parse().unwrap();
        assert!(all6.contains(ip("::1")));
        let one: Cidr = "::1/128".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
    }

    #[test]
    fn bad_blocks_are_refused_with_the_reason() {
        for (bad, says) in [
            ("10.0.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("10.0.0.0/", "prefix length"),
            ("10.1.2.3/8", "host bits"),
            ("example.com", "not an IPv4 or IPv6"),
            ("", "not an IPv4 or IPv6"),
            ("10.0.0.0/-1", "prefix length"),
        ] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert_eq!(
            CidrSet::parse(&["10.0.0.0/8", "nope"]).unwrap_err().0,
            1,
            "the error names the entry"
        );
    }

    #[test]
    fn a_set_matches_any_of_its_blocks() {
        let set = CidrSet::parse(&["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        assert!(set.contains(ip("10.9.9.9")));
        assert!(set.contains(ip("2001:db8::5")));
        assert!(!set.contains(ip("192.168.1.1")));
        assert!(!CidrSet::default().contains(ip("10.0.0.1")));
    }
}

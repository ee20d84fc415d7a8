//! Access control lists: IP networks in CIDR notation (`10.0.0.0/8`,
//! `2001:db8::/32`, a bare address for one host). An empty list allows everyone.

use std::net::IpAddr;

/// One IP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let network: IpAddr = addr.parse().map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{text}`: the prefix length must be 0 to {max}")),
            },
        };
        if Cidr::masked(network, prefix) != network {
            return Err(format!("`{text}`: host bits set beyond the /{prefix} prefix"));
        }
        Ok(Cidr { network, prefix })
    }

    fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from((u128::from(v6) & mask).to_be_bytes())
            }
        }
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && Cidr::masked(ip, self.prefix) == self.network
    }
}

/// Whether `ip` may send: an empty list allows everyone.
pub fn allows(list: &[Cidr], ip: IpAddr) -> bool {
    list.is_empty() || list.iter().any(|c| c.contains(ip))
}

/// Parses a configuration list, naming the key and the entry that is wrong.
pub fn parse_list(key: &str, entries: &[String]) -> Result<Vec<Cidr>, (String, String)> {
    entries.iter().enumerate().map(|(i, e)| Cidr::parse(e).map_err(|reason| (format!("{key}[{i}]"), reason))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let net = Cidr::parse("10.1.0.0/16").expect("valid");
        assert!(net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped");
        assert!(!net.contains(ip("2001:db8::1")));
        let host = Cidr::parse("127.0.0.2").expect("valid");
        assert!(host.contains(ip("127.0.0.2")) && !host.contains(ip("127.0.0.1")));
        let v6 = Cidr::parse("2001:db8::/32").expect("valid");
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0").expect("valid").contains(ip("192.0.2.1")));
        assert!(allows(&[], ip("192.0.2.1")), "an empty list allows everyone");
        assert!(!allows(&[host], ip("127.0.0.1")));
    }

    #[test]
    fn bad_networks_are_refused_with_the_reason() {
        assert!(Cidr::parse("10.0.0.0/33").expect_err("too long").contains("0 to 32"));
        assert!(Cidr::parse("10.0.0.1/8").expect_err("host bits").contains("host bits"));
        assert!(Cidr::parse("example.com").expect_err("name").contains("not an IP"));
        assert_eq!(
            parse_list("listen[0].allow", &["10.0.0.0/8".into(), "x".into()]).expect_err("second").0,
            "listen[0].allow[1]"
        );
    }
}

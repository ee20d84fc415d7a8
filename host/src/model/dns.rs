//! `[dns]` settings: where target names are resolved (name servers, static
//! hosts). The resolver that uses them is the proxy side's (`sip::resolve`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// `[dns]`: where names are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers (`servers`, `"ip:port"`); empty: the system's (/etc/resolv.conf).
    pub servers: Vec<SocketAddr>,
    /// Static host names (`hosts`, name → addresses), used before DNS.
    pub hosts: BTreeMap<String, Vec<IpAddr>>,
}

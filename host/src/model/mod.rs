//! The SIP model: messages on the wire (framing, the header index, forwarding
//! edits), URIs, header-value grammar, status codes and reason phrases, the
//! transports and where a message came from, `[dns]` settings. It depends on
//! nothing else in the router; every plane builds on it.

pub mod dns;
pub mod status;
pub mod syntax;
pub mod uri;
pub mod wire;

use std::net::SocketAddr;

/// A SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// The name in lower case (`udp`, `tcp`, `tls`), for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The transport it arrived on.
    pub transport: Transport,
    /// The peer's name from its TLS certificate, for mutual TLS.
    pub tls_peer_name: Option<String>,
    /// The router's listener it arrived at (its bound address): answers leave
    /// from that socket. `None` for a request a tool made up.
    pub local: Option<SocketAddr>,
}

/// Where a Call-ID falls in `[0, 1)` for the draw named `salt`: whether a
/// canary takes a call, whether its decision is recorded. Part of the
/// fleet's contract: every router, of any version and on any platform, puts a
/// Call-ID at the same place, so a call is never split between versions by
/// which router it reached. FNV-1a (64 bits) over the salt and the Call-ID's
/// bytes, mixed by SplitMix64's finaliser, its top 53 bits as the fraction
/// (docs/policy-plane.md).
pub fn call_id_fraction(salt: &str, call_id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt.as_bytes().iter().chain(call_id.as_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

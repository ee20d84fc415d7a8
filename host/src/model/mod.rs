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

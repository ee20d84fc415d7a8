//! The SIP plane: the wire layer, URIs, transports, the proxy core with its
//! transactions, originated messages and health probes. No Wasm in here.

pub mod originate;
pub mod overload;
pub mod probe;
pub mod proxy;
pub mod resolve;
pub mod tls;
pub mod transport;
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

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The transport it arrived on.
    pub transport: Transport,
    /// The peer's name from its TLS certificate, for mutual TLS.
    pub tls_peer_name: Option<String>,
}

//! A router started from a configuration and a directory written into a
//! temporary folder, and what a test keeps beside it (the peers it talks to):
//! the one fixture of the integration tests.
//!
//! ```ignore
//! struct Peers { caller: UdpPeer, um: UdpPeer }
//! let lab = LabBuilder::new().config(CONFIG).directory(&directory).start(Peers { caller, um }).await;
//! lab.caller.send(lab.router, &invite(lab.caller.addr, BOB, "call-1")).await;
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use exum_router::model::Transport;
use exum_router::server::Server;

/// A running router, its folder, and `P`, what the test keeps beside it
/// (reached through `Deref`: `lab.um` is `lab.peers.um`).
pub struct Lab<P = ()> {
    /// The folder holding `router.toml`, `directory.toml` and whatever else
    /// the test wrote.
    pub dir: tempfile::TempDir,
    /// The router.
    pub server: Arc<Server>,
    /// Its first UDP listener.
    pub router: SocketAddr,
    /// What the test keeps beside it.
    pub peers: P,
}

impl<P> std::ops::Deref for Lab<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.peers
    }
}

impl<P> std::ops::DerefMut for Lab<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.peers
    }
}

impl Lab {
    /// A builder: a new temporary folder, nothing written yet.
    pub fn builder() -> LabBuilder {
        LabBuilder::new()
    }
}

impl<P> Lab<P> {
    /// The router's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The router's first listener of `transport`.
    pub fn listener(&self, transport: Transport) -> SocketAddr {
        self.server.local_addr(transport).unwrap_or_else(|| panic!("no {transport:?} listener"))
    }
}

/// Writes a router's files, then starts it.
pub struct LabBuilder {
    dir: tempfile::TempDir,
    directory: String,
}

impl Default for LabBuilder {
    fn default() -> Self {
        LabBuilder::new()
    }
}

impl LabBuilder {
    /// A new temporary folder, nothing written yet.
    pub fn new() -> LabBuilder {
        LabBuilder { dir: tempfile::tempdir().expect("tempdir"), directory: String::new() }
    }

    /// The folder the files are written to.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `router.toml`.
    pub fn config(self, text: &str) -> Self {
        self.file("router.toml", text)
    }

    /// `directory.toml` (empty unless given).
    pub fn directory(mut self, text: &str) -> Self {
        self.directory = text.to_owned();
        self
    }

    /// Another file of the router's folder (a certificate, a password ...).
    pub fn file(self, name: &str, contents: impl AsRef<[u8]>) -> Self {
        std::fs::write(self.dir.path().join(name), contents).unwrap_or_else(|e| panic!("{name}: {e}"));
        self
    }

    /// Starts the router on the folder's `router.toml`, keeping `peers`.
    pub async fn start<P>(self, peers: P) -> Lab<P> {
        std::fs::write(self.dir.path().join("directory.toml"), &self.directory).expect("directory.toml");
        let server = Server::start(&self.dir.path().join("router.toml")).await.expect("the router starts");
        let router = server.local_addr(Transport::Udp).expect("a UDP listener");
        Lab { dir: self.dir, server: Arc::new(server), router, peers }
    }
}

/// An INVITE to `ruri` from `from` over UDP: Call-ID `call_id`, branch
/// `z9hG4bK-{call_id}`.
pub fn invite(from: SocketAddr, ruri: &str, call_id: &str) -> String {
    invite_over(from, "UDP", ruri, call_id)
}

/// [`invite`] over `transport` (`UDP`, `TCP`, `TLS`).
pub fn invite_over(from: SocketAddr, transport: &str, ruri: &str, call_id: &str) -> String {
    crate::peer::request("INVITE", ruri, from, transport, call_id, &format!("z9hG4bK-{call_id}"))
}

//! Transports: UDP sockets and TCP connections (accepted and opened), framing of
//! stream bytes into messages, delivery of every received message to a
//! [`Sink`], and sending. TCP connections are reused per peer address.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::tls::{self, Tls};
use crate::control::acl::{self, Cidr};
use crate::control::config::{Listen, SipSettings};
use crate::metrics::{Dropped, Metrics, TransportLabel};
use crate::model::wire::{Frame, Message, WireError, frame_stream};
use crate::model::{Source, Transport};

/// Where received messages go.
pub trait Sink: Send + Sync + 'static {
    /// A message parsed from the network.
    fn deliver(&self, msg: Message, source: Source);
    /// Bytes that did not parse; `reply_to` is where an answer could go.
    fn malformed(&self, bytes: &[u8], error: WireError, source: Source);
    /// A message from a peer the listener does not allow (`allow`).
    fn refused(&self, msg: Message, source: Source);
}

/// The router's sockets.
pub struct Transports {
    udp: Vec<Arc<UdpSocket>>,
    /// The `allow` list of each UDP socket's listener.
    udp_allow: Vec<Arc<[Cidr]>>,
    /// TCP and TLS listeners: the socket, its `allow` list and `allow_names`, whether TLS.
    tcp_listeners: Mutex<Vec<StreamListener>>,
    /// Open TCP and TLS connections by transport and peer address: the sender of
    /// their writer task.
    tcp: Mutex<HashMap<(Transport, SocketAddr), StreamSender>>,
    local_udp: Vec<SocketAddr>,
    local_tcp: Vec<SocketAddr>,
    local_tls: Vec<SocketAddr>,
    tls: Option<Arc<Tls>>,
    settings: SipSettings,
    sink: OnceLock<Weak<dyn Sink>>,
    shutdown: watch::Receiver<bool>,
    /// The router's counters.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports").field("udp", &self.local_udp).field("tcp", &self.local_tcp).finish()
    }
}

/// The sender of a TCP or TLS connection's writer task.
type StreamSender = mpsc::Sender<Vec<u8>>;

/// A TCP or TLS listener and who may use it.
struct StreamListener {
    listener: TcpListener,
    allow: Arc<[Cidr]>,
    allow_names: Arc<[String]>,
    tls: bool,
}

/// A UDP socket bound to `addr` with a receive buffer of `buffer` bytes asked for.
fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(%addr, bytes = buffer, error = %e, "UDP receive buffer size refused");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl Transports {
    /// Binds every configured listener. Port 0 binds an ephemeral port: see
    /// [`Self::local_addr`].
    pub async fn bind(
        listen: &[Listen],
        settings: SipSettings,
        tls: Option<Arc<Tls>>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<Arc<Transports>> {
        let (mut udp, mut local_udp, mut tcp_listeners, mut local_tcp, mut local_tls) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut udp_allow = Vec::new();
        for l in listen {
            let allow: Arc<[Cidr]> = l.allow.clone().into();
            let allow_names: Arc<[String]> = l.allow_names.clone().into();
            if l.udp {
                let s = bind_udp(l.address, settings.udp_receive_buffer)?;
                local_udp.push(s.local_addr()?);
                udp.push(Arc::new(s));
                udp_allow.push(allow.clone());
            }
            if l.tcp {
                // Same port as UDP when UDP got an ephemeral one.
                let addr = match (l.address.port(), local_udp.last()) {
                    (0, Some(u)) if l.udp => *u,
                    _ => l.address,
                };
                let s = TcpListener::bind(addr).await?;
                local_tcp.push(s.local_addr()?);
                tcp_listeners.push(StreamListener {
                    listener: s,
                    allow: allow.clone(),
                    allow_names: allow_names.clone(),
                    tls: false,
                });
            }
            if l.tls {
                if tls.as_ref().and_then(|t| t.acceptor()).is_none() {
                    return Err(io::Error::other(format!("TLS listener {}: no [tls] certificate", l.address)));
                }
                let s = TcpListener::bind(l.address).await?;
                local_tls.push(s.local_addr()?);
                tcp_listeners.push(StreamListener { listener: s, allow, allow_names, tls: true });
            }
        }
        Ok(Arc::new(Transports {
            udp,
            udp_allow,
            tcp_listeners: Mutex::new(tcp_listeners),
            tcp: Mutex::new(HashMap::new()),
            local_udp,
            local_tcp,
            local_tls,
            tls,
            settings,
            sink: OnceLock::new(),
            shutdown,
            metrics,
        }))
    }

    fn count_malformed(&self, transport: Transport) {
        self.metrics.malformed.get_or_create(&TransportLabel { transport: transport.as_str() }).inc();
    }

    /// The local address of `transport` for peers of `peer`'s address family.
    pub fn local_addr(&self, transport: Transport, peer: Option<SocketAddr>) -> Option<SocketAddr> {
        let list = match transport {
            Transport::Udp => &self.local_udp,
            Transport::Tcp => &self.local_tcp,
            Transport::Tls => &self.local_tls,
        };
        let v6 = peer.is_some_and(|p| p.is_ipv6());
        list.iter().find(|a| a.is_ipv6() == v6).or_else(|| list.first()).copied()
    }

    /// The UDP socket of `to`'s address family (addresses known since bind: no syscall).
    fn udp_socket_for(&self, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        self.local_udp.iter().position(|a| a.is_ipv6() == to.is_ipv6()).map(|i| &self.udp[i])
    }

    /// Starts receiving: one task per UDP socket and TCP listener, delivering to `sink`.
    pub fn start(self: &Arc<Self>, sink: Weak<dyn Sink>) {
        let _ = self.sink.set(sink);
        for (socket, allow) in self.udp.iter().zip(&self.udp_allow) {
            for _ in 0..self.settings.udp_receivers {
                let (me, socket, allow) = (self.clone(), socket.clone(), allow.clone());
                tokio::spawn(async move { me.udp_loop(socket, allow).await });
            }
        }
        let listeners = std::mem::take(&mut *self.tcp_listeners.lock().unwrap_or_else(|e| e.into_inner()));
        for listener in listeners {
            let me = self.clone();
            tokio::spawn(async move { me.accept_loop(listener).await });
        }
    }

    fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    async fn udp_loop(self: Arc<Self>, socket: Arc<UdpSocket>, allow: Arc<[Cidr]>) {
        let mut buf = vec![0u8; 65_535];
        let mut shutdown = self.shutdown.clone();
        loop {
            let (n, peer) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    // ICMP errors of earlier sends surface here on some systems.
                    Err(_) => continue,
                },
                _ = shutdown.changed() => return,
            };
            let Some(sink) = self.sink() else { return };
            let source = Source { addr: peer, transport: Transport::Udp, tls_peer_name: None };
            let bytes = &buf[..n];
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            let allowed = acl::allows(&allow, peer.ip());
            match Message::parse(bytes.to_vec(), false, self.settings.max_message_bytes) {
                Ok(msg) if allowed => sink.deliver(msg, source),
                Ok(msg) => sink.refused(msg, source),
                Err(e) if !allowed => {
                    self.count_malformed(Transport::Udp);
                    self.metrics.count_dropped(Dropped::Refused);
                    tracing::debug!(%peer, error = %e, "unparseable datagram from a peer the listener refuses; dropped");
                }
                Err(e) => {
                    self.count_malformed(Transport::Udp);
                    sink.malformed(bytes, e, source);
                }
            }
        }
    }

    async fn accept_loop(self: Arc<Self>, l: StreamListener) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                r = l.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let by_address = acl::allows(&l.allow, peer.ip());
            if !l.tls {
                self.clone().adopt(stream, peer, Transport::Tcp, None, by_address && l.allow_names.is_empty());
                continue;
            }
            let Some(acceptor) = self.tls.as_ref().and_then(|t| t.acceptor()).cloned() else { continue };
            let me = self.clone();
            let names = l.allow_names.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await;
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        me.metrics.tls_handshakes_failed.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        me.metrics.tls_handshakes_failed.inc();
                        return;
                    }
                };
                let name = tls::peer_name(stream.get_ref().1.peer_certificates());
                let by_name = names.is_empty() || name.as_ref().is_some_and(|n| names.contains(n));
                me.adopt(stream, peer, Transport::Tls, name, by_address && by_name);
            });
        }
    }

    /// Registers a connected stream and starts its reader and writer; what an
    /// accepted peer the listener does not allow sends is refused.
    fn adopt<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        transport: Transport,
        tls_peer_name: Option<String>,
        allowed: bool,
    ) -> mpsc::Sender<Vec<u8>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
        self.tcp.lock().unwrap_or_else(|e| e.into_inner()).insert((transport, peer), tx.clone());
        let (mut reader, mut writer) = tokio::io::split(stream);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let me = self.clone();
        let idle = self.settings.tcp_idle_timeout;
        let max = self.settings.max_message_bytes;
        tokio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 * 1024];
            let mut shutdown = me.shutdown.clone();
            'conn: loop {
                let read = tokio::select! {
                    r = tokio::time::timeout(idle, reader.read(&mut chunk)) => r,
                    _ = shutdown.changed() => break 'conn,
                };
                let n = match read {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                    Err(_) => {
                        if !buf.is_empty() {
                            me.metrics.streams_closed.inc();
                            tracing::debug!(%peer, "TCP peer stalled mid-message; disconnecting");
                        }
                        break;
                    }
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frame_stream(&buf, max) {
                        Ok(Frame::Incomplete) => break,
                        Ok(Frame::KeepAlive(k)) => {
                            buf.drain(..k);
                        }
                        Ok(Frame::Message(len)) => {
                            let bytes: Vec<u8> = buf.drain(..len).collect();
                            let source = Source { addr: peer, transport, tls_peer_name: tls_peer_name.clone() };
                            let Some(sink) = me.sink() else { break 'conn };
                            match Message::parse_or_return(bytes, true, max) {
                                Ok(msg) if allowed => sink.deliver(msg, source),
                                Ok(msg) => sink.refused(msg, source),
                                Err((e, bytes)) => {
                                    me.count_malformed(transport);
                                    if allowed {
                                        sink.malformed(&bytes, e, source);
                                    } else {
                                        me.metrics.count_dropped(Dropped::Refused);
                                        tracing::debug!(%peer, error = %e, "unparseable message from a peer the listener refuses; dropped");
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            me.metrics.streams_closed.inc();
                            tracing::debug!(%peer, error = %e, "closing TCP connection");
                            break 'conn;
                        }
                    }
                }
            }
            me.tcp.lock().unwrap_or_else(|e| e.into_inner()).remove(&(transport, peer));
        });
        tx
    }

    /// Sends `bytes` to `to` over `transport` without waiting: UDP, or an open TCP
    /// connection to that peer. Returns false when it could not be sent.
    pub fn send_now(&self, transport: Transport, to: SocketAddr, bytes: Vec<u8>) -> bool {
        match transport {
            Transport::Udp => self.udp_socket_for(to).is_some_and(|s| s.try_send_to(&bytes, to).is_ok()),
            Transport::Tcp | Transport::Tls => {
                let sender = self.tcp.lock().unwrap_or_else(|e| e.into_inner()).get(&(transport, to)).cloned();
                sender.is_some_and(|s| s.try_send(bytes).is_ok())
            }
        }
    }

    /// Sends `bytes` to `to`, opening a TCP connection when there is none; a
    /// TLS connection is opened to the server's IP address as its name (see
    /// [`Self::send_named`]).
    pub async fn send(self: &Arc<Self>, transport: Transport, to: SocketAddr, bytes: Vec<u8>) -> io::Result<()> {
        self.send_named(transport, to, None, bytes).await
    }

    /// Sends `bytes` to `to`; a new TLS connection checks the server's
    /// certificate against `name` (the host of the URI it was resolved from).
    pub async fn send_named(
        self: &Arc<Self>,
        transport: Transport,
        to: SocketAddr,
        name: Option<&str>,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        match transport {
            Transport::Udp => {
                let socket = self
                    .udp_socket_for(to)
                    .ok_or_else(|| io::Error::other("no UDP listener of that address family"))?;
                socket.send_to(&bytes, to).await.map(|_| ())
            }
            Transport::Tcp | Transport::Tls => {
                let existing = self.tcp.lock().unwrap_or_else(|e| e.into_inner()).get(&(transport, to)).cloned();
                let sender = match existing {
                    Some(s) => s,
                    None => {
                        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(to))
                            .await
                            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
                        let _ = stream.set_nodelay(true);
                        if transport == Transport::Tcp {
                            self.clone().adopt(stream, to, Transport::Tcp, None, true)
                        } else {
                            let tls = self.tls.as_ref().ok_or_else(|| io::Error::other("no [tls] configured"))?;
                            let name = name.map_or_else(|| to.ip().to_string(), str::to_owned);
                            let stream = tokio::time::timeout(Duration::from_secs(5), tls.connect(&name, stream))
                                .await
                                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
                            let peer_name = tls::peer_name(stream.get_ref().1.peer_certificates());
                            self.clone().adopt(stream, to, Transport::Tls, peer_name, true)
                        }
                    }
                };
                sender.send(bytes).await.map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
            }
        }
    }

    /// Reads the TLS certificate and key again (renewed files).
    pub fn reload_tls(&self) -> Result<(), String> {
        self.tls.as_ref().map_or(Ok(()), |t| t.reload())
    }
}

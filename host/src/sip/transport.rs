//! Transports: UDP sockets and TCP connections (accepted and opened), framing of
//! stream bytes into messages, delivery of every received message to a
//! [`Sink`], and sending. TCP connections are reused per peer address.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::tls::{self, Tls};
use crate::control::acl::{self, Cidr};
use crate::control::config::{Listen, SipSettings};
use crate::hep::Hep;
use crate::metrics::{Dropped, Metrics, TransportLabel};
use crate::model::wire::{Frame, Message, Name, WireError, frame_stream};
use crate::model::{Source, Transport};

/// Where received messages go.
pub trait Sink: Send + Sync + 'static {
    /// A message parsed from the network.
    fn deliver(&self, msg: Message, source: Source);
    /// The share of `msg`'s call to capture to HEP when its tenant sets one
    /// (asked once per call, for its first request).
    fn capture_share(&self, _msg: &Message, _source: &Source) -> Option<f64> {
        None
    }
    /// Bytes that did not parse; `reply_to` is where an answer could go.
    fn malformed(&self, bytes: &[u8], error: WireError, source: Source);
    /// A message from a peer the listener does not allow (`allow`).
    fn refused(&self, msg: Message, source: Source);
}

/// Held while a connection to one destination is being opened.
type ConnectGate = Arc<tokio::sync::Mutex<()>>;

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
    /// Outgoing connections being opened, by destination: a send that finds
    /// one waits for it instead of opening a second connection.
    connecting: Mutex<HashMap<(Transport, SocketAddr), ConnectGate>>,
    local_udp: Vec<SocketAddr>,
    local_tcp: Vec<SocketAddr>,
    local_tls: Vec<SocketAddr>,
    /// Every listener's `allow` networks together.
    allowed: Vec<Cidr>,
    /// Networks whose connections the global cap never refuses: the
    /// listeners' `allow` networks and the tenants' `peers` (set by the proxy),
    /// so strangers' idle connections cannot lock them out.
    reserved: std::sync::RwLock<Vec<Cidr>>,
    tls: Option<Arc<Tls>>,
    settings: SipSettings,
    sink: OnceLock<Weak<dyn Sink>>,
    shutdown: watch::Receiver<bool>,
    /// The router's counters.
    metrics: Arc<Metrics>,
    /// HEP capture, when `[hep]` is configured.
    capture: OnceLock<Arc<Hep>>,
    /// Connections accepted and open, in all and by peer address.
    accepted: Arc<Mutex<Accepted>>,
}

/// The accepted connections open now: what the connection caps count.
#[derive(Default)]
struct Accepted {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One accepted connection's place under the caps, given back when dropped
/// (when its reader ends).
struct Slot {
    accepted: Arc<Mutex<Accepted>>,
    ip: IpAddr,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        a.total = a.total.saturating_sub(1);
        if let Some(n) = a.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                a.by_ip.remove(&self.ip);
            }
        }
        self.open.dec();
    }
}

/// Messages waiting to be written to one connection, at most.
const WRITE_QUEUE: usize = 256;

/// File descriptors kept for everything but accepted connections (sockets,
/// outbound connections, files, the admin API).
const RESERVED_FDS: usize = 256;

/// The connection cap that fits the process's file limit: the soft limit is
/// raised to the hard one first (as servers do), and `configured` lowered to
/// leave [`RESERVED_FDS`] when it does not fit.
fn fitting_connection_cap(configured: usize) -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let Some(files) = limit.current.and_then(|n| usize::try_from(n).ok()) else { return configured };
    let fits = files.saturating_sub(RESERVED_FDS).max(16);
    if configured > fits {
        tracing::warn!(configured, files, cap = fits, "max_connections lowered to fit the process's file limit");
        return fits;
    }
    configured
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
/// Writes what is queued for a stream connection, each write within
/// `send_timeout` (a peer that does not read is disconnected); tells the
/// reader through `failed` when writing ends.
async fn write_queue<W: tokio::io::AsyncWrite>(
    mut writer: tokio::io::WriteHalf<W>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    send_timeout: Duration,
    metrics: Arc<Metrics>,
    peer: SocketAddr,
    failed: tokio::sync::oneshot::Sender<()>,
) {
    while let Some(bytes) = rx.recv().await {
        match tokio::time::timeout(send_timeout, writer.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                metrics.count_stream_closed("send_timeout");
                tracing::debug!(%peer, "TCP peer does not read; disconnecting");
                break;
            }
        }
    }
    let _ = failed.send(());
}

/// A listener's UDP socket and TCP listener, on one port. With an ephemeral
/// port (`:0`) the port is UDP's choice, which another socket may hold for
/// TCP: then both are bound again on a new one (a few times) rather than
/// failing the start.
async fn bind_udp_tcp(l: &Listen, buffer: usize) -> io::Result<(Option<UdpSocket>, Option<TcpListener>)> {
    let mut tries = 0;
    loop {
        let udp = if l.udp { Some(bind_udp(l.address, buffer)?) } else { None };
        if !l.tcp {
            return Ok((udp, None));
        }
        let addr = match (&udp, l.address.port()) {
            (Some(u), 0) => u.local_addr()?,
            _ => l.address,
        };
        match TcpListener::bind(addr).await {
            Ok(t) => return Ok((udp, Some(t))),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr != l.address && tries < 16 => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

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
        let mut settings = settings;
        if listen.iter().any(|l| l.tcp || l.tls) {
            settings.max_connections = fitting_connection_cap(settings.max_connections);
        }
        let (mut udp, mut local_udp, mut tcp_listeners, mut local_tcp, mut local_tls) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut udp_allow = Vec::new();
        for l in listen {
            let allow: Arc<[Cidr]> = l.allow.clone().into();
            let allow_names: Arc<[String]> = l.allow_names.clone().into();
            let (udp_socket, tcp_listener) = bind_udp_tcp(l, settings.udp_receive_buffer).await?;
            if let Some(s) = udp_socket {
                local_udp.push(s.local_addr()?);
                udp.push(Arc::new(s));
                udp_allow.push(allow.clone());
            }
            if let Some(s) = tcp_listener {
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
        let allowed: Vec<Cidr> = listen.iter().flat_map(|l| l.allow.iter().copied()).collect();
        Ok(Arc::new(Transports {
            reserved: std::sync::RwLock::new(allowed.clone()),
            allowed,
            udp,
            udp_allow,
            tcp_listeners: Mutex::new(tcp_listeners),
            tcp: Mutex::new(HashMap::new()),
            connecting: Mutex::new(HashMap::new()),
            local_udp,
            local_tcp,
            local_tls,
            tls,
            settings,
            sink: OnceLock::new(),
            shutdown,
            metrics,
            capture: OnceLock::new(),
            accepted: Arc::default(),
        }))
    }

    /// A place under the connection caps for a connection from `peer`, or the
    /// cap that refuses it.
    fn slot(&self, peer: SocketAddr) -> Result<Slot, &'static str> {
        let mut a = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if a.total >= self.settings.max_connections && !self.is_reserved(peer.ip()) {
            return Err("global");
        }
        let n = a.by_ip.entry(peer.ip()).or_insert(0);
        if *n >= self.settings.max_connections_per_ip {
            return Err("per_ip");
        }
        *n += 1;
        a.total += 1;
        self.metrics.connections_open.inc();
        Ok(Slot { accepted: self.accepted.clone(), ip: peer.ip(), open: self.metrics.connections_open.clone() })
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

    /// Every listener's `allow` networks together.
    pub fn allowed_networks(&self) -> &[Cidr] {
        &self.allowed
    }

    /// Sets the networks whose connections the global cap never refuses: the
    /// listeners' `allow` networks and the tenants' `peers`.
    pub fn reserve_for(&self, networks: Vec<Cidr>) {
        *self.reserved.write().unwrap_or_else(|e| e.into_inner()) = networks;
    }

    fn is_reserved(&self, ip: IpAddr) -> bool {
        self.reserved.read().unwrap_or_else(|e| e.into_inner()).iter().any(|c| c.contains(ip))
    }

    /// The bound addresses of the listeners of `transport`, in configuration order.
    pub fn listeners(&self, transport: Transport) -> &[SocketAddr] {
        match transport {
            Transport::Udp => &self.local_udp,
            Transport::Tcp => &self.local_tcp,
            Transport::Tls => &self.local_tls,
        }
    }

    /// The listener a message to `to` over `transport` leaves from (and that
    /// its Via and Record-Route name): one of `to`'s address family that can
    /// reach it (a listener bound to a loopback address reaches loopback
    /// addresses only); of those, `inbound` (the listener the request came in
    /// on) when it is one, else the first. With none that fits, the
    /// transport's listener of the family, or its first.
    pub fn egress(&self, transport: Transport, to: SocketAddr, inbound: Option<SocketAddr>) -> Option<SocketAddr> {
        let list = self.listeners(transport);
        let fits = |a: &&SocketAddr| a.is_ipv6() == to.is_ipv6() && (!a.ip().is_loopback() || to.ip().is_loopback());
        if let Some(inbound) = inbound
            && list.contains(&inbound)
            && fits(&&inbound)
        {
            return Some(inbound);
        }
        list.iter().find(fits).copied().or_else(|| self.local_addr(transport, Some(to)))
    }

    /// Whether `ip:port` is one of the router's listeners: a listener bound to
    /// that address, or to the unspecified address of its family (`0.0.0.0`,
    /// `::`) on that port when `ip` is an address of this host.
    pub fn is_listener(&self, ip: IpAddr, port: u16) -> bool {
        let mut listeners = self.local_udp.iter().chain(&self.local_tcp).chain(&self.local_tls);
        listeners.any(|a| {
            a.port() == port
                && (a.ip() == ip || (a.ip().is_unspecified() && a.is_ipv6() == ip.is_ipv6() && is_local_ip(ip)))
        })
    }

    /// The UDP socket bound to `from`, else the one [`Self::egress`] picks for `to`
    /// (addresses known since bind: no syscall).
    fn udp_socket(&self, from: Option<SocketAddr>, to: SocketAddr) -> Option<&Arc<UdpSocket>> {
        let from = from.filter(|f| self.local_udp.contains(f)).or_else(|| self.egress(Transport::Udp, to, None))?;
        self.local_udp.iter().position(|a| *a == from).map(|i| &self.udp[i])
    }

    /// Starts receiving: one task per UDP socket and TCP listener, delivering to `sink`.
    pub fn start(self: &Arc<Self>, sink: Weak<dyn Sink>) {
        let _ = self.sink.set(sink);
        for (socket, allow) in self.udp.iter().zip(&self.udp_allow) {
            let local = socket.local_addr().ok();
            for _ in 0..self.settings.udp_receivers {
                let (me, socket, allow) = (self.clone(), socket.clone(), allow.clone());
                tokio::spawn(async move { me.udp_loop(socket, local, allow).await });
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

    /// Mirrors every message received and sent to `hep` from now on.
    pub fn set_capture(&self, hep: Arc<Hep>) {
        let _ = self.capture.set(hep);
    }

    /// The HEP capture, when configured.
    pub fn capture(&self) -> Option<&Arc<Hep>> {
        self.capture.get()
    }

    /// Mirrors a received message (parsed or not: `msg`) to the capture.
    fn captured(&self, sink: &dyn Sink, bytes: &[u8], msg: Option<&Message>, source: &Source, allowed: bool) {
        if let Some(hep) = self.capture.get() {
            let call_id = msg.and_then(|m| m.first(Name::CallId));
            let share = || match msg {
                Some(m) if allowed && m.is_request() => sink.capture_share(m, source),
                _ => None,
            };
            hep.received(source.transport, source.addr, source.local, bytes, call_id, share);
        }
    }

    /// Mirrors a sent message to the capture.
    fn capture_sent(&self, transport: Transport, from: Option<SocketAddr>, to: SocketAddr, bytes: &[u8]) {
        if let Some(hep) = self.capture.get() {
            let from =
                from.filter(|f| self.listeners(transport).contains(f)).or_else(|| self.local_addr(transport, Some(to)));
            hep.sent(transport, from, to, bytes);
        }
    }

    async fn udp_loop(self: Arc<Self>, socket: Arc<UdpSocket>, local: Option<SocketAddr>, allow: Arc<[Cidr]>) {
        let mut buf = vec![0u8; 65_535];
        // Made once, not per datagram: waiting for the shutdown registers
        // with the channel only when first polled.
        let mut shutdown = self.shutdown.clone();
        let stopped = shutdown.changed();
        tokio::pin!(stopped);
        loop {
            let (n, peer) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    // ICMP errors of earlier sends surface here on some systems.
                    Err(_) => continue,
                },
                _ = &mut stopped => return,
            };
            let Some(sink) = self.sink() else { return };
            let source = Source { addr: peer, transport: Transport::Udp, tls_peer_name: None, local };
            let bytes = &buf[..n];
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            let allowed = acl::allows(&allow, peer.ip());
            let parsed = Message::parse(bytes.to_vec(), false, self.settings.max_message_bytes);
            self.captured(&*sink, bytes, parsed.as_ref().ok(), &source, allowed);
            match parsed {
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
        let local = l.listener.local_addr().ok();
        let mut shutdown = self.shutdown.clone();
        let mut backoff = AcceptBackoff::default();
        loop {
            let Some((stream, peer)) = backoff.accept(&l.listener, &mut shutdown).await else { return };
            let slot = match self.slot(peer) {
                Ok(slot) => slot,
                Err(cap) => {
                    self.metrics.connections_refused.get_or_create(&crate::metrics::ReasonLabel { reason: cap }).inc();
                    tracing::debug!(%peer, cap, "connection refused: at the connection cap");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let by_address = acl::allows(&l.allow, peer.ip());
            if !l.tls {
                let allowed = by_address && l.allow_names.is_empty();
                self.clone().adopt(stream, peer, local, Transport::Tcp, None, allowed, Some(slot));
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
                me.adopt(stream, peer, local, Transport::Tls, name, by_address && by_name, Some(slot));
            });
        }
    }

    /// Registers a connected stream and starts its reader and writer; what an
    /// accepted peer the listener does not allow sends is refused. `slot` is an
    /// accepted connection's place under the caps, held until it closes.
    ///
    /// The reader closes the connection when a message is not whole within
    /// `tcp_message_timeout` of its first byte, when nothing arrives for
    /// `tcp_idle_timeout` in the middle of a message, when no whole message
    /// (keep-alives do not count) arrives for `tcp_idle_timeout`, and, for an
    /// accepted connection with `tcp_lifetime`, at the first message boundary
    /// after it. The writer closes it when a write does not complete within
    /// `tcp_send_timeout`; at most [`WRITE_QUEUE`] messages wait for it.
    /// `local` is the listener an accepted connection came to, or the one
    /// an opened connection stands for.
    #[allow(clippy::too_many_arguments)]
    fn adopt<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        transport: Transport,
        tls_peer_name: Option<String>,
        allowed: bool,
        slot: Option<Slot>,
    ) -> mpsc::Sender<Vec<u8>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        self.tcp.lock().unwrap_or_else(|e| e.into_inner()).insert((transport, peer), tx.clone());
        let (mut reader, writer) = tokio::io::split(stream);
        let (writer_failed, mut writer_down) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(write_queue(
            writer,
            rx,
            self.settings.tcp_send_timeout,
            self.metrics.clone(),
            peer,
            writer_failed,
        ));
        let me = self.clone();
        let idle = self.settings.tcp_idle_timeout;
        // An accepted connection must send its first whole message sooner.
        let first = if slot.is_some() { self.settings.tcp_first_message_timeout.min(idle) } else { idle };
        let whole = self.settings.tcp_message_timeout;
        let lifetime = slot.as_ref().and(self.settings.tcp_lifetime).map(|l| Instant::now() + l);
        let max = self.settings.max_message_bytes;
        tokio::spawn(async move {
            let _slot = slot;
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut chunk = vec![0u8; 16 * 1024];
            let mut shutdown = me.shutdown.clone();
            let now = Instant::now();
            // The last whole message (or the connection's start), the last byte,
            // and the first byte of the message being read, if any.
            let (mut last_message, mut last_byte, mut message_start) = (now, now, None::<Instant>);
            // Until the first whole message, the (shorter) first-message timeout.
            let mut quiet = first;
            'conn: loop {
                let wake = match message_start {
                    Some(start) => (start + whole).min(last_byte + idle),
                    None => lifetime.map_or(last_message + quiet, |l| l.min(last_message + quiet)),
                };
                let read = tokio::select! {
                    r = reader.read(&mut chunk) => r,
                    _ = tokio::time::sleep_until(wake.into()) => {
                        match message_start {
                            Some(_) => {
                                me.metrics.count_stream_closed("stalled");
                                tracing::debug!(%peer, "TCP message not whole in time; disconnecting");
                            }
                            None if lifetime.is_some_and(|l| l <= Instant::now()) => {
                                me.metrics.count_stream_closed("lifetime");
                                tracing::debug!(%peer, "TCP connection at the end of its lifetime; closing");
                            }
                            None => {}
                        }
                        break 'conn;
                    }
                    _ = &mut writer_down => break 'conn,
                    _ = shutdown.changed() => break 'conn,
                };
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let now = Instant::now();
                last_byte = now;
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match frame_stream(&buf, max) {
                        Ok(Frame::Incomplete) => break,
                        Ok(Frame::KeepAlive(k)) => {
                            buf.drain(..k);
                        }
                        Ok(Frame::Message(len)) => {
                            last_message = now;
                            quiet = idle;
                            message_start = None;
                            let bytes: Vec<u8> = buf.drain(..len).collect();
                            let source = Source { addr: peer, transport, tls_peer_name: tls_peer_name.clone(), local };
                            let Some(sink) = me.sink() else { break 'conn };
                            match Message::parse_or_return(bytes, true, max) {
                                Ok(msg) => {
                                    me.captured(&*sink, msg.bytes(), Some(&msg), &source, allowed);
                                    if allowed { sink.deliver(msg, source) } else { sink.refused(msg, source) }
                                }
                                Err((e, bytes)) => {
                                    me.captured(&*sink, &bytes, None, &source, allowed);
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
                            me.metrics.count_stream_closed("garbage");
                            tracing::debug!(%peer, error = %e, "closing TCP connection");
                            break 'conn;
                        }
                    }
                }
                if buf.is_empty() {
                    message_start = None;
                } else if message_start.is_none() {
                    message_start = Some(now);
                }
            }
            me.tcp.lock().unwrap_or_else(|e| e.into_inner()).remove(&(transport, peer));
        });
        tx
    }

    /// An answer to what arrived from `source`: from the socket it arrived at,
    /// to `to` (see [`Self::send_now_kept`]).
    pub fn reply_kept(&self, source: &Source, to: SocketAddr, bytes: &[u8]) -> bool {
        self.send_now_kept(source.transport, source.local, to, bytes)
    }

    /// Sends `bytes` to `to` over `transport` without waiting: UDP from the
    /// socket bound to `from` (else the one [`Self::egress`] picks), or an open
    /// TCP connection to that peer. Returns false when it could not be sent.
    pub fn send_now(&self, transport: Transport, from: Option<SocketAddr>, to: SocketAddr, bytes: Vec<u8>) -> bool {
        match transport {
            Transport::Udp => self.send_now_kept(transport, from, to, &bytes),
            Transport::Tcp | Transport::Tls => {
                let sender = self.tcp.lock().unwrap_or_else(|e| e.into_inner()).get(&(transport, to)).cloned();
                let Some(sender) = sender else { return false };
                // Mirrored when queued for the connection's writer.
                let copy = self.capture.get().is_some().then(|| bytes.clone());
                let sent = sender.try_send(bytes).is_ok();
                if let Some(copy) = copy.filter(|_| sent) {
                    self.capture_sent(transport, from, to, &copy);
                }
                sent
            }
        }
    }

    /// [`Self::send_now`] of bytes the caller keeps (a response kept for
    /// retransmissions): copied only for a connection's writer, never for UDP.
    pub fn send_now_kept(&self, transport: Transport, from: Option<SocketAddr>, to: SocketAddr, bytes: &[u8]) -> bool {
        match transport {
            Transport::Udp => {
                let sent = self.udp_socket(from, to).is_some_and(|s| s.try_send_to(bytes, to).is_ok());
                if sent {
                    self.capture_sent(transport, from, to, bytes);
                }
                sent
            }
            Transport::Tcp | Transport::Tls => self.send_now(transport, from, to, bytes.to_vec()),
        }
    }

    /// Sends `bytes` to `to`, opening a TCP connection when there is none; a
    /// TLS connection is opened to the server's IP address as its name (see
    /// [`Self::send_named`]).
    pub async fn send(
        self: &Arc<Self>,
        transport: Transport,
        from: Option<SocketAddr>,
        to: SocketAddr,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        self.send_named(transport, from, to, None, bytes).await
    }

    /// Sends `bytes` to `to` (over UDP from the socket bound to `from`, else
    /// the one [`Self::egress`] picks); a new TLS connection checks the
    /// server's certificate against `name` (the host of the URI it was
    /// resolved from).
    pub async fn send_named(
        self: &Arc<Self>,
        transport: Transport,
        from: Option<SocketAddr>,
        to: SocketAddr,
        name: Option<&str>,
        bytes: Vec<u8>,
    ) -> io::Result<()> {
        match transport {
            Transport::Udp => {
                let socket = self
                    .udp_socket(from, to)
                    .ok_or_else(|| io::Error::other("no UDP listener of that address family"))?;
                socket.send_to(&bytes, to).await?;
                self.capture_sent(transport, from, to, &bytes);
                Ok(())
            }
            Transport::Tcp | Transport::Tls => {
                let existing = self.tcp.lock().unwrap_or_else(|e| e.into_inner()).get(&(transport, to)).cloned();
                let sender = match existing {
                    Some(s) => s,
                    None => self.connect(transport, from, to, name).await?,
                };
                let copy = self.capture.get().is_some().then(|| bytes.clone());
                sender.send(bytes).await.map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))?;
                if let Some(copy) = copy {
                    self.capture_sent(transport, from, to, &copy);
                }
                Ok(())
            }
        }
    }

    /// Opens a connection to `to`, one at a time per destination: requests to
    /// a peer sent while its connection is being opened all go on that one
    /// connection (a burst of calls to a UM server opens one connection, not
    /// one per call).
    async fn connect(
        self: &Arc<Self>,
        transport: Transport,
        from: Option<SocketAddr>,
        to: SocketAddr,
        name: Option<&str>,
    ) -> io::Result<StreamSender> {
        let key = (transport, to);
        let gate = self.connecting.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone();
        let opened = {
            let _turn = gate.lock().await;
            let open = self.tcp.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
            match open {
                Some(s) => Ok(s),
                None => self.open(transport, from, to, name).await,
            }
        };
        // The last one out leaves no gate behind (the map holds one reference).
        let mut connecting = self.connecting.lock().unwrap_or_else(|e| e.into_inner());
        if connecting.get(&key).is_some_and(|g| Arc::ptr_eq(g, &gate) && Arc::strong_count(g) == 2) {
            connecting.remove(&key);
        }
        opened
    }

    /// Opens a TCP or TLS connection to `to` and adopts it, standing for the
    /// listener `from` (the one the request's Via names), else the one
    /// [`Self::egress`] picks.
    async fn open(
        self: &Arc<Self>,
        transport: Transport,
        from: Option<SocketAddr>,
        to: SocketAddr,
        name: Option<&str>,
    ) -> io::Result<StreamSender> {
        let stream = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(to))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TCP connect timed out"))??;
        let _ = stream.set_nodelay(true);
        let local = from.filter(|f| self.listeners(transport).contains(f)).or_else(|| self.egress(transport, to, None));
        if transport == Transport::Tcp {
            return Ok(self.clone().adopt(stream, to, local, Transport::Tcp, None, true, None));
        }
        let tls = self.tls.as_ref().ok_or_else(|| io::Error::other("no [tls] configured"))?;
        let name = name.map_or_else(|| to.ip().to_string(), str::to_owned);
        let stream = tokio::time::timeout(Duration::from_secs(5), tls.connect(&name, stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let peer_name = tls::peer_name(stream.get_ref().1.peer_certificates());
        Ok(self.clone().adopt(stream, to, local, Transport::Tls, peer_name, true, None))
    }

    /// Reads the TLS certificate and key again (renewed files).
    pub fn reload_tls(&self) -> Result<(), crate::pki::PkiError> {
        self.tls.as_ref().map_or(Ok(()), |t| t.reload())
    }
}

/// Whether `ip` is an address of this host: a loopback address, or a unicast
/// one a socket can be bound to (asked of the kernel, so interfaces that come
/// and go are seen, and remembered for [`LOCAL_IP_TTL`]; only asked for a
/// request naming a wildcard listener's port). Multicast and broadcast
/// addresses, which Linux lets a socket bind, are never the router's.
fn is_local_ip(ip: IpAddr) -> bool {
    if ip.is_loopback() {
        return true;
    }
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    };
    if !unicast {
        return false;
    }
    static KNOWN: OnceLock<Mutex<HashMap<IpAddr, (bool, Instant)>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Mutex::default);
    let now = Instant::now();
    if let Some((local, at)) = known.lock().unwrap_or_else(|e| e.into_inner()).get(&ip)
        && now.duration_since(*at) < LOCAL_IP_TTL
    {
        return *local;
    }
    let local = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok();
    let mut known = known.lock().unwrap_or_else(|e| e.into_inner());
    if known.len() >= 1024 {
        known.retain(|_, (_, at)| now.duration_since(*at) < LOCAL_IP_TTL);
        if known.len() >= 1024 {
            known.clear();
        }
    }
    known.insert(ip, (local, now));
    local
}

/// How long [`is_local_ip`] trusts what the kernel said of an address.
const LOCAL_IP_TTL: Duration = Duration::from_secs(10);

/// Back-off after failed accepts (out of file descriptors, most often): the
/// wait doubles from 10 ms to 1 s, and a warning is logged when it grows and
/// at most once a second after, not once per failure.
#[derive(Default)]
pub(crate) struct AcceptBackoff {
    wait: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl AcceptBackoff {
    /// How long to wait after this failure.
    pub(crate) fn failed(&mut self, error: &io::Error) -> Duration {
        self.failures += 1;
        let next = (self.wait * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let grew = next > self.wait;
        self.wait = next;
        if grew || self.logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(error = %error, failures = self.failures, wait_ms = self.wait.as_millis() as u64, "accept failed; backing off");
            self.logged = Some(Instant::now());
        }
        self.wait
    }

    /// The next connection `listener` accepts, backing off after failures;
    /// `None` once `shutdown` changes.
    pub(crate) async fn accept(
        &mut self,
        listener: &TcpListener,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => {
                        self.succeeded();
                        return Some(x);
                    }
                    Err(e) => {
                        let wait = self.failed(&e);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = shutdown.changed() => return None,
                        }
                    }
                },
                _ = shutdown.changed() => return None,
            }
        }
    }

    /// An accept succeeded: no wait next time.
    pub(crate) fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting again");
        }
        *self = AcceptBackoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_back_off_up_to_a_second_and_reset_on_success() {
        let mut b = AcceptBackoff::default();
        let e = io::Error::from_raw_os_error(24);
        let waits: Vec<u128> = (0..10).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&e), Duration::from_millis(10));
    }

    #[test]
    fn the_connection_cap_fits_the_file_limit() {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let cap = fitting_connection_cap(usize::MAX);
        match files.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => assert!(cap < n, "{cap} of {n} files"),
            None => assert_eq!(cap, usize::MAX, "no limit"),
        }
        assert_eq!(fitting_connection_cap(16), 16);
    }
}

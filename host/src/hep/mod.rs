//! HEP capture: every SIP message the router receives and sends, and each
//! policy decision (a log event), mirrored as HEPv3 packets ([`packet`]) to
//! a capture server (Homer, sngrep). Off the request path: a message is
//! copied into a bounded queue and a thread of its own sends it; a full queue
//! or an unreachable server drops packets and counts them
//! (`exum_hep_dropped_total`), never delays or fails a call.
//!
//! Which calls are captured: a share of Call-IDs (a hash of the Call-ID below
//! the share), `[hep] share` by default and the tenant's `hep_share` for the
//! calls of a tenant that sets one. A call's tenant is known when its first
//! request arrives; its later messages find the share by Call-ID.

pub mod packet;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::control::config::HepSettings;
use crate::metrics::{Metrics, ReasonLabel};
use crate::model::{Transport, call_id_fraction};

/// Call-IDs whose share differs from the default are kept in two
/// generations, each of this long: a call's share is known for 10 to 20
/// minutes after its first request (its later requests past that fall back
/// to `[hep] share`).
const GENERATION: Duration = Duration::from_secs(600);
/// At most this many Call-IDs per generation (a generation ends sooner at
/// rates above about 800 new calls per second of such tenants).
const GENERATION_CAP: usize = 500_000;

/// The capture: a handle the transports and the proxy hold.
pub struct Hep {
    tx: SyncSender<Item>,
    share: f64,
    decisions: bool,
    /// Call-IDs of tenants with their own share.
    calls: Mutex<Generations>,
    /// How many Call-IDs `calls` holds (read without the lock).
    held: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Hep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hep").field("share", &self.share).finish_non_exhaustive()
    }
}

struct Generations {
    current: HashMap<Box<[u8]>, f64>,
    previous: HashMap<Box<[u8]>, f64>,
    /// When `current` began.
    started: Instant,
}

impl Default for Generations {
    fn default() -> Self {
        Generations { current: HashMap::new(), previous: HashMap::new(), started: Instant::now() }
    }
}

/// One packet to send.
struct Item {
    kind: u8,
    protocol: u8,
    src: SocketAddr,
    dst: SocketAddr,
    time: SystemTime,
    correlation: Box<[u8]>,
    payload: Vec<u8>,
}

impl Hep {
    /// Starts the sender thread. A UDP socket is opened at once (an error is
    /// the router's start-up error); a TCP connection when the first packet
    /// goes, again after it breaks.
    pub fn start(settings: &HepSettings, metrics: Arc<Metrics>) -> io::Result<Arc<Hep>> {
        let link = if settings.tcp { Link::Tcp(None, None) } else { Link::udp(settings.address)? };
        let (hep, rx) = Hep::unstarted(settings, metrics.clone());
        let sender = Sender {
            address: settings.address,
            link,
            capture_id: settings.capture_id,
            auth_key: settings.auth_key.clone().map(String::into_bytes),
            node_name: settings.node_name.clone().into_bytes(),
            metrics,
        };
        std::thread::Builder::new().name("hep".into()).spawn(move || sender.run(rx))?;
        Ok(Arc::new(hep))
    }

    /// The handle and the receiving end of its queue, no thread yet.
    fn unstarted(settings: &HepSettings, metrics: Arc<Metrics>) -> (Hep, Receiver<Item>) {
        let (tx, rx) = sync_channel(settings.queue);
        let hep = Hep {
            tx,
            share: settings.share,
            decisions: settings.decisions,
            calls: Mutex::default(),
            held: AtomicUsize::new(0),
            metrics,
        };
        (hep, rx)
    }

    /// Whether policy decisions are sent as log events.
    pub fn decisions(&self) -> bool {
        self.decisions
    }

    /// A message received from `src` at `dst` (`None`: the listener is not
    /// known). `tenant_share` is asked for a request whose Call-ID has no share
    /// yet: the share of the tenant it is for, if it sets one.
    pub fn received(
        &self,
        transport: Transport,
        src: SocketAddr,
        dst: Option<SocketAddr>,
        bytes: &[u8],
        call_id: Option<&str>,
        tenant_share: impl FnOnce() -> Option<f64>,
    ) {
        let call_id = call_id.map_or(&[][..], str::as_bytes);
        let share = match self.known_share(call_id) {
            Some(s) => s,
            None => match tenant_share().filter(|s| *s != self.share) {
                Some(s) if !call_id.is_empty() => {
                    self.remember(call_id, s);
                    s
                }
                _ => self.share,
            },
        };
        if chosen(call_id, share) {
            self.queue(packet::SIP, transport, src, dst.unwrap_or(UNKNOWN), call_id, bytes.to_vec());
        }
    }

    /// A message sent from `src` (`None`: not known) to `dst`.
    pub fn sent(&self, transport: Transport, src: Option<SocketAddr>, dst: SocketAddr, bytes: &[u8]) {
        let call_id = call_id_in(bytes).unwrap_or_default();
        let share = self.known_share(call_id).unwrap_or(self.share);
        if chosen(call_id, share) {
            self.queue(packet::SIP, transport, src.unwrap_or(UNKNOWN), dst, call_id, bytes.to_vec());
        }
    }

    /// A policy decision (`text`, JSON) about the request with `call_id` that
    /// came from `src` to `dst`: a log event, when the call is captured.
    pub fn decision(&self, call_id: &str, src: SocketAddr, dst: Option<SocketAddr>, text: String) {
        let share = self.known_share(call_id.as_bytes()).unwrap_or(self.share);
        if self.decisions && chosen(call_id.as_bytes(), share) {
            let dst = dst.unwrap_or(UNKNOWN);
            self.queue(packet::LOG, Transport::Udp, src, dst, call_id.as_bytes(), text.into_bytes());
        }
    }

    /// Whether the call is captured: what [`Self::decision`] would check, so
    /// its text is made only when it will be sent.
    pub fn captures(&self, call_id: &str) -> bool {
        self.decisions && chosen(call_id.as_bytes(), self.known_share(call_id.as_bytes()).unwrap_or(self.share))
    }

    fn known_share(&self, call_id: &[u8]) -> Option<f64> {
        if self.held.load(Ordering::Relaxed) == 0 || call_id.is_empty() {
            return None;
        }
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.current.get(call_id).or_else(|| calls.previous.get(call_id)).copied()
    }

    fn remember(&self, call_id: &[u8], share: f64) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.current.len() >= GENERATION_CAP || calls.started.elapsed() >= GENERATION {
            calls.previous = std::mem::take(&mut calls.current);
            calls.started = Instant::now();
        }
        calls.current.insert(call_id.into(), share);
        self.held.store(calls.current.len() + calls.previous.len(), Ordering::Relaxed);
    }

    fn queue(
        &self,
        kind: u8,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        call_id: &[u8],
        payload: Vec<u8>,
    ) {
        let protocol = if transport == Transport::Udp { packet::UDP } else { packet::TCP };
        let item = Item { kind, protocol, src, dst, time: SystemTime::now(), correlation: call_id.into(), payload };
        if let Err(TrySendError::Full(_)) = self.tx.try_send(item) {
            self.metrics.hep_dropped.get_or_create(&ReasonLabel { reason: "queue_full" }).inc();
        }
    }
}

/// The address written when one end is not known.
const UNKNOWN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Whether the call with `call_id` falls in `share` (a message without a
/// Call-ID is captured unless the share is 0). The draw is the fleet's
/// ([`call_id_fraction`]): every router captures the same calls.
fn chosen(call_id: &[u8], share: f64) -> bool {
    if share >= 1.0 {
        return true;
    }
    if share <= 0.0 {
        return false;
    }
    match std::str::from_utf8(call_id) {
        Ok("") | Err(_) => true,
        Ok(id) => call_id_fraction("hep", id) < share,
    }
}

/// The Call-ID of a SIP message's bytes (`Call-ID` or `i`), found in its head.
pub fn call_id_in(bytes: &[u8]) -> Option<&[u8]> {
    let mut lines = bytes.split(|b| *b == b'\n').skip(1);
    lines.find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let name = line[..colon].trim_ascii();
        (name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i"))
            .then(|| line[colon + 1..].trim_ascii())
    })
}

/// The sender thread's side.
struct Sender {
    address: SocketAddr,
    link: Link,
    capture_id: u32,
    auth_key: Option<Vec<u8>>,
    node_name: Vec<u8>,
    metrics: Arc<Metrics>,
}

/// The way to the capture server.
enum Link {
    Udp(UdpSocket),
    /// The connection, and when the last attempt to open one failed.
    Tcp(Option<TcpStream>, Option<Instant>),
}

/// How long a broken TCP link waits before it is tried again (packets meanwhile are dropped).
const RECONNECT: Duration = Duration::from_secs(1);

impl Link {
    fn udp(to: SocketAddr) -> io::Result<Link> {
        let any: SocketAddr =
            if to.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { "[::]:0".parse().expect("literal") };
        let socket = UdpSocket::bind(any)?;
        socket.connect(to)?;
        Ok(Link::Udp(socket))
    }

    fn send(&mut self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(s) => s.send(bytes).map(|_| ()),
            Link::Tcp(stream, failed) => {
                if stream.is_none() {
                    if failed.is_some_and(|at| at.elapsed() < RECONNECT) {
                        return Err(io::Error::new(io::ErrorKind::NotConnected, "capture server down"));
                    }
                    match TcpStream::connect_timeout(&to, RECONNECT) {
                        Ok(s) => {
                            let _ = s.set_nodelay(true);
                            let _ = s.set_write_timeout(Some(RECONNECT));
                            *stream = Some(s);
                            *failed = None;
                        }
                        Err(e) => {
                            *failed = Some(Instant::now());
                            return Err(e);
                        }
                    }
                }
                let s = stream.as_mut().expect("connected above");
                s.write_all(bytes).inspect_err(|_| {
                    *stream = None;
                    *failed = Some(Instant::now());
                })
            }
        }
    }
}

impl Sender {
    fn run(mut self, rx: Receiver<Item>) {
        let mut buf = Vec::with_capacity(4096);
        let mut batch = Vec::with_capacity(BATCH);
        let mut warned = false;
        while let Ok(first) = rx.recv() {
            // Under load, a batch gathers for a moment: one wake-up of this
            // thread per batch, not per message, and none of the router's
            // threads waking it (they find it not waiting).
            batch.push(first);
            std::thread::sleep(GATHER);
            batch.extend(rx.try_iter().take(BATCH));
            for item in batch.drain(..) {
                self.send(&item, &mut buf, &mut warned);
            }
        }
    }

    fn send(&mut self, item: &Item, buf: &mut Vec<u8>, warned: &mut bool) {
        let p = packet::Packet {
            protocol: item.protocol,
            src: item.src,
            dst: item.dst,
            time: item.time,
            kind: item.kind,
            capture_id: self.capture_id,
            auth_key: self.auth_key.as_deref(),
            payload: &item.payload,
            correlation: (!item.correlation.is_empty()).then_some(&*item.correlation),
            node_name: Some(&self.node_name),
        };
        if packet::too_large(&p) {
            self.metrics.hep_dropped.get_or_create(&ReasonLabel { reason: "too_large" }).inc();
            return;
        }
        buf.clear();
        packet::encode(&p, buf);
        match self.link.send(self.address, buf) {
            Ok(()) => {
                self.metrics.hep_sent.inc();
                *warned = false;
            }
            Err(e) => {
                self.metrics.hep_dropped.get_or_create(&ReasonLabel { reason: "send_failed" }).inc();
                if !*warned {
                    tracing::warn!(address = %self.address, error = %e, "HEP capture server unreachable; packets dropped");
                    *warned = true;
                }
            }
        }
    }
}

/// How long the sender lets a batch gather after its first packet.
const GATHER: Duration = Duration::from_millis(1);
/// Packets sent per batch, at most.
const BATCH: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_id_is_found_in_either_form_and_a_share_is_stable() {
        let msg = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\ni:  abc@h \r\nCSeq: 1 INVITE\r\n\r\nCall-ID: body";
        assert_eq!(call_id_in(msg), Some(&b"abc@h"[..]));
        assert_eq!(call_id_in(b"INVITE sip:a SIP/2.0\r\nCALL-ID:x\r\n\r\n"), Some(&b"x"[..]));
        assert_eq!(call_id_in(b"INVITE sip:a SIP/2.0\r\n\r\n"), None);
        let ids: Vec<String> = (0..10_000).map(|i| format!("{i}-call@host")).collect();
        let taken = ids.iter().filter(|id| chosen(id.as_bytes(), 0.25)).count();
        assert!((2_200..2_800).contains(&taken), "about a quarter: {taken}");
        assert!(ids.iter().all(|id| chosen(id.as_bytes(), 1.0) && !chosen(id.as_bytes(), 0.0)));
        assert!(ids.iter().all(|id| chosen(id.as_bytes(), 0.25) == chosen(id.as_bytes(), 0.25)));
        // A call in a smaller share is in every larger one.
        assert!(ids.iter().filter(|id| chosen(id.as_bytes(), 0.1)).all(|id| chosen(id.as_bytes(), 0.5)));
    }

    fn settings(address: SocketAddr, share: f64, queue: usize) -> HepSettings {
        HepSettings {
            address,
            tcp: false,
            capture_id: 7,
            auth_key: Some("pw".into()),
            node_name: "node-a".into(),
            share,
            queue,
            decisions: true,
        }
    }

    #[test]
    fn a_tenants_share_follows_its_calls_and_packets_reach_the_server() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
        server.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let metrics = Arc::new(Metrics::new());
        let hep = Hep::start(&settings(server.local_addr().expect("addr"), 1.0, 100), metrics.clone()).expect("starts");
        let (a, b): (SocketAddr, SocketAddr) =
            ("127.0.0.1:5060".parse().expect("a"), "127.0.0.1:5070".parse().expect("b"));
        let invite = b"INVITE sip:x@t SIP/2.0\r\nCall-ID: off-1\r\n\r\n";
        // A tenant with share 0: neither its request nor what is sent for it.
        hep.received(Transport::Udp, a, Some(b), invite, Some("off-1"), || Some(0.0));
        hep.sent(Transport::Udp, Some(b), a, b"SIP/2.0 100 Trying\r\nCall-ID: off-1\r\n\r\n");
        hep.decision("off-1", a, Some(b), "{}".into());
        // Another call is captured, the tenant not asked again once known.
        hep.received(
            Transport::Tcp,
            a,
            Some(b),
            b"INVITE sip:y@u SIP/2.0\r\nCall-ID: on-1\r\n\r\n",
            Some("on-1"),
            || None,
        );
        hep.decision("on-1", a, Some(b), "{\"decided_by\":\"policy\"}".into());
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).expect("first packet");
        let (p, _) = packet::decode(&buf[..n]).expect("decodes");
        assert_eq!((p.kind, p.protocol, p.src, p.dst, p.capture_id), (packet::SIP, packet::TCP, a, b, 7));
        assert_eq!(
            (p.correlation, p.auth_key, p.node_name),
            (Some(&b"on-1"[..]), Some(&b"pw"[..]), Some(&b"node-a"[..]))
        );
        let n = server.recv(&mut buf).expect("second packet");
        let (p, _) = packet::decode(&buf[..n]).expect("decodes");
        assert_eq!(
            (p.kind, p.payload, p.correlation),
            (packet::LOG, &b"{\"decided_by\":\"policy\"}"[..], Some(&b"on-1"[..]))
        );
        assert!(!hep.captures("off-1") && hep.captures("on-1"));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let metrics = Arc::new(Metrics::new());
        let address: SocketAddr = "127.0.0.1:9".parse().expect("address");
        // Nothing takes from the queue of 2: the third packet on is dropped at once.
        let (hep, rx) = Hep::unstarted(&settings(address, 1.0, 2), metrics.clone());
        for i in 0..5 {
            hep.sent(Transport::Udp, None, address, format!("BYE sip:a SIP/2.0\r\nCall-ID: {i}\r\n\r\n").as_bytes());
        }
        assert_eq!(metrics.hep_dropped.get_or_create(&ReasonLabel { reason: "queue_full" }).get(), 3);
        assert_eq!(
            rx.try_iter().map(|item| item.correlation.to_vec()).collect::<Vec<_>>(),
            [b"0".to_vec(), b"1".to_vec()]
        );
    }

    #[test]
    fn an_unreachable_tcp_server_drops_and_counts() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = closed.local_addr().expect("addr");
        drop(closed);
        let metrics = Arc::new(Metrics::new());
        let hep =
            Hep::start(&HepSettings { tcp: true, ..settings(address, 1.0, 10) }, metrics.clone()).expect("starts");
        hep.sent(Transport::Udp, None, address, b"BYE sip:a SIP/2.0\r\nCall-ID: 1\r\n\r\n");
        let failed = metrics.hep_dropped.get_or_create(&ReasonLabel { reason: "send_failed" });
        let deadline = Instant::now() + Duration::from_secs(10);
        while failed.get() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!((failed.get(), metrics.hep_sent.get()), (1, 0));
    }
}

//! The proxy core (RFC 3261 §16 with the transactions of §17): every received
//! message is matched to a transaction by its keys; a new request starts a task
//! that owns its server transaction and the client transactions it opens, asks
//! the tenant's policy once, and carries the decision out: targets tried one
//! after another with a per-target timer, 3xx recursed into, `on-failure` asked
//! when all failed.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::originate;
use super::overload::{Limiter, Refusal};
use super::resolve::{Destination, Resolver};
use super::transport::{Sink, Transports};
use super::uri::{UriError, UriRef};
use super::wire::{Message, Name, WireError};
use super::{Source, Transport};
use crate::control::Tenants;
use crate::control::config::SipSettings;
use crate::control::metrics::{AccessLabel, OverloadLabel};
use crate::policy::contract::{Attempt, Decision, Failure, Forward, Outcome, Target};
use crate::policy::decision::reason_phrase;
use crate::policy::{PolicyRegistry, TenantPolicy, view};

/// What reaches a transaction's task.
#[derive(Debug)]
pub enum Event {
    /// The request again (a retransmission).
    Retransmission,
    /// An ACK for the transaction's final response.
    Ack,
    /// A CANCEL of the transaction (already answered 200).
    Cancel,
    /// A response for one of the transaction's client transactions (boxed: the
    /// channel's slots are sized by the largest event, and a transaction's
    /// channel lives as long as the transaction lingers).
    Response(Box<Message>),
}

/// Counters of the proxy core.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// New request transactions.
    pub transactions: AtomicU64,
    /// Retransmissions absorbed.
    pub retransmissions: AtomicU64,
    /// Responses that matched no transaction and were dropped.
    pub stray_responses: AtomicU64,
    /// Requests answered 400 or dropped as malformed.
    pub malformed: AtomicU64,
    /// Policy decisions asked for.
    pub decisions: AtomicU64,
    /// Requests refused with 503 while draining for shutdown.
    pub refused_draining: AtomicU64,
    /// New requests refused with 503 because `max_transactions` were in progress.
    pub refused_transactions: AtomicU64,
    /// New requests refused with 503 because their source exceeded its rate.
    pub refused_source_rate: AtomicU64,
    /// Messages refused by access control (the listener's `allow`, a tenant's `peers`).
    pub refused_access: AtomicU64,
}

type Sender = mpsc::UnboundedSender<Event>;

/// The transaction table: server keys and client branches → the owning task.
/// Keys come from the network: a fast hash seeded at random per process.
#[derive(Default)]
struct Table {
    server: HashMap<String, Sender, foldhash::fast::RandomState>,
    client: HashMap<String, Sender, foldhash::fast::RandomState>,
}

/// The proxy.
pub struct Proxy {
    transports: Arc<Transports>,
    /// Target URIs to addresses (RFC 3263).
    resolver: Arc<Resolver>,
    policy: Arc<PolicyRegistry>,
    tenants: ArcSwap<Tenants>,
    settings: SipSettings,
    table: Mutex<Table>,
    secret: u64,
    counter: AtomicU64,
    /// Transactions that have not sent their final response yet.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Set at shutdown: new requests are refused, in-flight ones finish.
    draining: std::sync::atomic::AtomicBool,
    /// Itself, for the transports' [`Sink`] calls that start transaction tasks.
    me: std::sync::OnceLock<std::sync::Weak<Proxy>>,
    /// Counters.
    pub stats: ProxyStats,
    /// Overload control of new requests.
    limiter: Limiter,
    /// Prometheus metrics.
    pub metrics: Arc<crate::control::metrics::Metrics>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("transports", &self.transports).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Creates the proxy and starts receiving on `transports`.
    pub fn start(
        transports: Arc<Transports>,
        resolver: Arc<Resolver>,
        policy: Arc<PolicyRegistry>,
        tenants: Arc<Tenants>,
        settings: SipSettings,
        metrics: Arc<crate::control::metrics::Metrics>,
    ) -> Arc<Proxy> {
        let secret =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64);
        let proxy = Arc::new(Proxy {
            transports: transports.clone(),
            resolver,
            policy,
            tenants: ArcSwap::new(tenants),
            settings,
            table: Mutex::new(Table::default()),
            secret,
            counter: AtomicU64::new(1),
            me: std::sync::OnceLock::new(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            stats: ProxyStats::default(),
            limiter: Limiter::new(settings.overload),
            metrics,
        });
        let _ = proxy.me.set(Arc::downgrade(&proxy));
        let weak: std::sync::Weak<dyn Sink> = Arc::downgrade(&(proxy.clone() as Arc<dyn Sink>));
        transports.start(weak);
        proxy
    }

    /// The transports.
    pub fn transports(&self) -> &Arc<Transports> {
        &self.transports
    }

    /// Transactions in progress, lingering ones included.
    pub fn active_transactions(&self) -> usize {
        self.table.lock().map_or(0, |t| t.server.len())
    }

    /// Transactions that have not sent their final response yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Stops taking new transactions (they get 503 with Retry-After); in-flight
    /// ones go on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the proxy is draining for shutdown.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The tenants the proxy routes for.
    pub fn tenants(&self) -> Arc<Tenants> {
        self.tenants.load_full()
    }

    /// Swaps in a new set of tenants (a reloaded configuration or directory);
    /// transactions in progress keep the tenant they started with.
    pub fn set_tenants(&self, tenants: Arc<Tenants>) {
        self.tenants.store(tenants);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new branch: the magic cookie, a hash of what makes a request loop
    /// (RFC 3261 §16.6 step 8) and a unique counter.
    fn branch(&self, loop_hash: u64) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("z9hG4bK-{loop_hash:016x}-{:x}{n:x}", self.secret & 0xffff)
    }

    /// Registers a client branch for probes and other internal clients.
    pub(crate) fn register_client(&self, branch: String, tx: Sender) {
        self.table().client.insert(branch, tx);
    }

    pub(crate) fn unregister_client(&self, branch: &str) {
        self.table().client.remove(branch);
    }

    pub(crate) fn new_branch(&self) -> String {
        self.branch(self.counter.load(Ordering::Relaxed) ^ self.secret)
    }

    /// Whether `uri` names this router (one of its listening addresses).
    fn is_us(&self, uri: &UriRef<'_>) -> bool {
        let host = uri.host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = host.parse::<IpAddr>() else { return false };
        let port = uri.port.unwrap_or(5060);
        [Transport::Udp, Transport::Tcp].iter().any(|t| {
            self.transports
                .local_addr(*t, Some(SocketAddr::new(ip, port)))
                .is_some_and(|a| a.ip() == ip && a.port() == port)
        })
    }

    fn reply(&self, req: &Message, source: &Source, code: u16, reason: &str, extra: &[(&str, &str)]) -> Vec<u8> {
        let tag = format!("{:x}", self.secret ^ self.counter.fetch_add(1, Ordering::Relaxed));
        let bytes = originate::response(req, code, reason, &tag, extra);
        self.transports.send_now(source.transport, source.addr, bytes.clone());
        bytes
    }

    /// Forwards a response that matches no transaction statelessly: a 2xx for an
    /// INVITE whose transaction is gone (retransmitted 2xx), along its Vias.
    fn forward_stray_2xx(&self, msg: &Message) -> bool {
        let mut vias = msg.values(Name::Via);
        let ours = vias.next().and_then(super::wire::Via::parse);
        if !ours.is_some_and(|v| v.branch.is_some_and(|b| b.starts_with("z9hG4bK-"))) {
            return false;
        }
        let Some(next) = vias.next().and_then(super::wire::Via::parse) else { return false };
        let Some(addr) = via_destination(&next) else { return false };
        let transport = if next.transport.eq_ignore_ascii_case("TCP") { Transport::Tcp } else { Transport::Udp };
        self.transports.send_now(transport, addr, msg.edit().pop_via().finish())
    }

    /// Forwards a request statelessly along its Route set or Request-URI: an ACK
    /// for a 2xx (a transaction of its own, end to end).
    fn forward_stateless(self: &Arc<Self>, msg: Message, source: Source) {
        let me = self.clone();
        tokio::spawn(async move {
            let route = next_hop_of(&me, &msg);
            let Some((target_uri, pop)) = route else { return };
            let Some(d) = me.resolver.resolve(&target_uri, None).await.ok().and_then(|d| d.into_iter().next()) else {
                return;
            };
            let dest = (d.addr, d.transport);
            let local =
                me.transports.local_addr(dest.1, Some(dest.0)).map_or_else(|| "0.0.0.0".into(), |a| a.to_string());
            let mut edit = msg.edit().received(source.addr).prepend_via(format!(
                "{} {local};branch={};rport",
                via_proto(dest.1),
                me.branch(0)
            ));
            if pop {
                edit = edit.pop_route();
            }
            let hops = msg.max_forwards().ok().flatten().unwrap_or(70);
            if hops == 0 {
                return;
            }
            let bytes = edit.max_forwards(hops - 1).finish();
            let _ = me.transports.send(dest.1, dest.0, bytes).await;
        });
    }
}

/// The address a Via says to answer: `received`/`rport` when present, else sent-by.
fn via_destination(via: &super::wire::Via<'_>) -> Option<SocketAddr> {
    let host = via.received.unwrap_or(via.host).trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, via.port.unwrap_or(5060)))
}

fn via_proto(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "SIP/2.0/UDP",
        Transport::Tcp => "SIP/2.0/TCP",
        Transport::Tls => "SIP/2.0/TLS",
    }
}

/// The next hop of an in-dialog request: the first Route that is not us (and
/// whether the first Route, ours, is to be popped), else the Request-URI.
fn next_hop_of(proxy: &Proxy, msg: &Message) -> Option<(String, bool)> {
    let mut routes = msg.values(Name::Route).map(route_uri);
    let first = routes.next();
    let pop = first.as_deref().and_then(|u| UriRef::parse(u).ok()).is_some_and(|u| proxy.is_us(&u));
    let next = if pop { routes.next() } else { first };
    match next {
        Some(uri) => Some((uri, pop)),
        None => msg.request_uri().map(|u| (u.to_owned(), pop)),
    }
}

/// The URI inside a Route or Contact value (`<sip:x;lr>;param` → `sip:x;lr`).
fn route_uri(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if b > a => value[a + 1..b].to_owned(),
        _ => value.split(';').next().unwrap_or(value).trim().to_owned(),
    }
}

impl Proxy {
    /// The first destination of a target URI (for probes).
    pub(crate) async fn resolve_target(&self, uri: &str) -> Result<(SocketAddr, Transport), String> {
        let d = self.resolver.resolve(uri, None).await?;
        d.first().map(|d| (d.addr, d.transport)).ok_or_else(|| format!("{uri}: no address"))
    }
}

/// The server transaction key of a request (RFC 3261 §17.2.3), with ACK and
/// CANCEL mapped to the INVITE they belong to; the RFC 2543 fallback when the
/// branch lacks the magic cookie.
fn server_key(msg: &Message) -> Option<String> {
    let via = msg.top_via()?;
    let method = msg.method()?;
    let method = if method == "ACK" || method == "CANCEL" { "INVITE" } else { method };
    match via.branch {
        Some(b) if b.starts_with("z9hG4bK") => {
            Some(format!("{b}|{}:{}|{method}", via.host.to_ascii_lowercase(), via.port.unwrap_or(5060)))
        }
        _ => {
            let (cseq, _) = msg.cseq()?;
            Some(format!(
                "2543|{}|{}|{}|{cseq}|{}|{method}",
                msg.request_uri().unwrap_or(""),
                msg.from_tag().unwrap_or(""),
                msg.first(Name::CallId).unwrap_or(""),
                via.value
            ))
        }
    }
}

/// What makes a request loop when it comes back unchanged (RFC 3261 §16.6 step 8).
fn loop_hash(msg: &Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    msg.request_uri().hash(&mut h);
    msg.from_tag().hash(&mut h);
    msg.to_tag().hash(&mut h);
    msg.first(Name::CallId).hash(&mut h);
    msg.cseq().map(|c| c.0).hash(&mut h);
    msg.first(Name::ProxyRequire).hash(&mut h);
    h.finish()
}

impl Sink for Proxy {
    fn deliver(&self, msg: Message, source: Source) {
        if let Some(me) = self.me.get().and_then(std::sync::Weak::upgrade) {
            me.handle(msg, source);
        }
    }

    fn refused(&self, msg: Message, source: Source) {
        self.count_access_refused("listener");
        if msg.is_request() && msg.method() != Some("ACK") && msg.top_via().is_some() {
            self.reply(&msg, &source, 403, "Forbidden", &[]);
        }
    }

    fn malformed(&self, bytes: &[u8], error: WireError, source: Source) {
        // Answer when what a response needs (Vias, From, To, Call-ID, CSeq) is
        // readable; then count. A test that sees the count knows any answer was sent.
        if let Some(msg) = lenient(bytes)
            && msg.is_request()
            && msg.method() != Some("ACK")
            && msg.top_via().is_some()
        {
            let warning = format!("399 exum-router \"{error}\"");
            let (code, reason) = match error {
                WireError::Version => (505, reason_phrase(505).to_owned()),
                _ => (400, format!("Bad Request ({error})")),
            };
            self.reply(&msg, &source, code, &reason, &[("Warning", &warning)]);
        }
        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a response to an unparseable request needs, when it is there: the
/// request line rebuilt from its method and URI (any spacing, any version), and
/// only the Via, From, To, Call-ID and CSeq lines (folded continuations kept).
fn lenient(bytes: &[u8]) -> Option<Message> {
    let head_end = memchr::memmem::find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let mut words = first.split_whitespace();
    let (method, uri) = (words.next()?, words.next()?);
    if method.starts_with("SIP/") {
        return None;
    }
    let mut kept = format!("{method} {uri} SIP/2.0\r\n");
    let mut keeping = false;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if keeping {
                kept.push_str(line);
                kept.push_str("\r\n");
            }
            continue;
        }
        let name = line.split_once(':').map(|(n, _)| Name::of(n.trim().as_bytes()));
        keeping = matches!(name, Some(Name::Via | Name::From | Name::To | Name::CallId | Name::CSeq));
        if keeping {
            if line.contains('\0') {
                return None;
            }
            kept.push_str(line);
            kept.push_str("\r\n");
        }
    }
    kept.push_str("\r\n");
    Message::parse(kept.into_bytes(), false, usize::MAX).ok()
}

impl Proxy {
    /// Handles one received message.
    pub fn handle(self: &Arc<Self>, msg: Message, source: Source) {
        if !msg.is_request() {
            self.handle_response(msg);
            return;
        }
        let Some(key) = server_key(&msg) else {
            // No usable Via: nothing can be answered.
            self.stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let method = msg.method().unwrap_or("").to_owned();
        let existing = self.table().server.get(&key).cloned();
        match (method.as_str(), existing) {
            ("ACK", Some(tx)) => {
                let _ = tx.send(Event::Ack);
            }
            ("ACK", None) => {
                if msg.to_tag().is_some() {
                    self.forward_stateless(msg, source);
                }
            }
            ("CANCEL", Some(tx)) => {
                self.reply(&msg, &source, 200, "OK", &[]);
                let _ = tx.send(Event::Cancel);
            }
            ("CANCEL", None) => {
                self.reply(&msg, &source, 481, reason_phrase(481), &[]);
            }
            (_, Some(tx)) => {
                self.stats.retransmissions.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Event::Retransmission);
            }
            (_, None) if self.draining.load(Ordering::Relaxed) => {
                self.stats.refused_draining.fetch_add(1, Ordering::Relaxed);
                self.reply(&msg, &source, 503, reason_phrase(503), &[("Retry-After", "5")]);
            }
            (_, None) if let Err(refusal) = self.admit(&msg, &source) => {
                match refusal {
                    Refusal::Transactions => self.stats.refused_transactions.fetch_add(1, Ordering::Relaxed),
                    Refusal::SourceRate => self.stats.refused_source_rate.fetch_add(1, Ordering::Relaxed),
                };
                self.metrics.overload_refused.get_or_create(&OverloadLabel { reason: refusal.as_str() }).inc();
                let retry_after = self.limiter.retry_after().to_string();
                self.reply(&msg, &source, 503, reason_phrase(503), &[("Retry-After", &retry_after)]);
            }
            (_, None) => {
                let (tx, rx) = mpsc::unbounded_channel();
                self.table().server.insert(key.clone(), tx.clone());
                self.stats.transactions.fetch_add(1, Ordering::Relaxed);
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                let txn = ServerTxn::new(self.clone(), msg, source, key, (tx, rx));
                tokio::spawn(txn.run());
            }
        }
    }

    /// Counts a message refused by access control (`listener` or `tenant`).
    fn count_access_refused(&self, reason: &'static str) {
        self.stats.refused_access.fetch_add(1, Ordering::Relaxed);
        self.metrics.access_refused.get_or_create(&AccessLabel { reason }).inc();
    }

    /// Overload control for a request that would start a transaction: in-dialog
    /// requests (a To tag) always pass, so calls in progress can end.
    fn admit(&self, msg: &Message, source: &Source) -> Result<(), Refusal> {
        if msg.to_tag().is_some() {
            return Ok(());
        }
        self.limiter.admit(source.addr.ip(), self.in_flight.load(Ordering::Relaxed))
    }

    fn handle_response(&self, msg: Message) {
        let branch = msg.top_via().and_then(|v| v.branch).map(str::to_owned);
        let tx = branch.and_then(|b| self.table().client.get(&b).cloned());
        match tx {
            Some(tx) => {
                let _ = tx.send(Event::Response(Box::new(msg)));
            }
            None => {
                let is_2xx_invite = msg.status().is_some_and(|c| (200..300).contains(&c))
                    && msg.cseq().is_some_and(|(_, m)| m == "INVITE");
                if !(is_2xx_invite && self.forward_stray_2xx(&msg)) {
                    self.stats.stray_responses.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// How one target ended.
enum TargetEnd {
    /// A final response went upstream (2xx, 401/407, or after CANCEL): done.
    Answered,
    /// The target failed; try the next.
    Failed(Outcome, Option<Message>),
    /// A 3xx: try these contacts next.
    Redirected(u16, Vec<String>),
}

/// What the forwarded request looks like: the decision's edits.
#[derive(Clone)]
struct ForwardSpec {
    request_uri: Option<String>,
    add: Vec<(String, String)>,
    remove: Vec<String>,
}

impl ForwardSpec {
    fn of(f: &Forward) -> ForwardSpec {
        ForwardSpec {
            request_uri: f.request_uri.clone(),
            add: f.add_headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
            remove: f.remove_headers.clone(),
        }
    }
}

/// One proxied request: its server transaction and the client transactions it
/// opens, in one task.
struct ServerTxn {
    proxy: Arc<Proxy>,
    req: Message,
    source: Source,
    key: String,
    rx: mpsc::UnboundedReceiver<Event>,
    tx: Sender,
    invite: bool,
    /// The last response sent upstream, for retransmissions of the request.
    last_response: Option<Vec<u8>>,
    final_sent: bool,
    cancelled: bool,
    record_route: bool,
    pop_route: bool,
    /// Client branches opened (removed from the table at the end) and the
    /// INVITEs sent on them with their destination: a retransmitted failure
    /// response on an earlier branch is ACKed again (Timer D).
    branches: Vec<String>,
    sent: HashMap<String, (Message, Transport, SocketAddr)>,
    /// Branches that ended in a failure response (their INVITE is kept while
    /// the transaction lingers, to ACK a retransmitted failure again).
    failed: Vec<String>,
    /// Whether the address tried last answered anything (no failover to the
    /// target's next address then).
    responded: bool,
}

impl ServerTxn {
    fn new(
        proxy: Arc<Proxy>,
        req: Message,
        source: Source,
        key: String,
        (tx, rx): (Sender, mpsc::UnboundedReceiver<Event>),
    ) -> ServerTxn {
        let invite = req.method() == Some("INVITE");
        ServerTxn {
            proxy,
            req,
            source,
            key,
            rx,
            tx,
            invite,
            last_response: None,
            final_sent: false,
            cancelled: false,
            record_route: false,
            pop_route: false,
            branches: Vec::new(),
            sent: HashMap::new(),
            failed: Vec::new(),
            responded: false,
        }
    }

    /// ACKs again a retransmitted non-2xx final response of an earlier branch.
    fn reack(&self, resp: &Message) {
        let Some(branch) = resp.top_via().and_then(|v| v.branch) else { return };
        if let (true, Some((sent, transport, dest))) = (resp.status().is_some_and(|c| c >= 300), self.sent.get(branch))
        {
            self.proxy.transports.send_now(*transport, *dest, originate::ack(sent, resp));
        }
    }

    fn respond(&mut self, code: u16, reason: &str, extra: &[(&str, &str)]) {
        let bytes = self.proxy.reply(&self.req, &self.source, code, reason, extra);
        if code >= 200 {
            self.final_sent = true;
        }
        self.last_response = Some(bytes);
    }

    fn relay(&mut self, resp: &Message) {
        let bytes = resp.edit().pop_via().finish();
        self.proxy.transports.send_now(self.source.transport, self.source.addr, bytes.clone());
        if resp.status().is_some_and(|c| c >= 200) {
            self.final_sent = true;
        }
        self.last_response = Some(bytes);
    }

    /// Runs the transaction; [`Proxy::handle`] counted it in `in_flight` before
    /// spawning it, so overload control sees it at once.
    async fn run(mut self) {
        self.process().await;
        self.proxy.in_flight.fetch_sub(1, Ordering::Relaxed);
        // What lingers is small: the request, the answered branch's INVITE and
        // the rest of the state are dropped here.
        let ServerTxn { proxy, source, key, rx, invite, last_response, branches, mut sent, failed, .. } = self;
        sent.retain(|branch, _| failed.contains(branch));
        let lingering = Lingering { proxy, source, rx, invite, last: last_response, sent, key, branches };
        // A task of its own: this one's state (sized for routing) is freed now.
        tokio::spawn(lingering.run());
    }

    /// Validation, routing and forwarding, until a final response went upstream.
    async fn process(&mut self) {
        if let Err((code, reason, warning)) = self.validate() {
            let warning = format!("399 exum-router \"{warning}\"");
            self.respond(code, &reason, &[("Warning", &warning)]);
            return;
        }
        if self.invite {
            self.respond(100, "Trying", &[]);
        }
        // Strict-route compatibility (RFC 3261 §16.4): a Request-URI that is us,
        // with Routes, came from a strict router: the last Route is the real
        // Request-URI.
        let ruri_is_us =
            self.req.request_uri().and_then(|u| UriRef::parse(u).ok()).is_some_and(|u| self.proxy.is_us(&u));
        if ruri_is_us && let Some(last) = self.req.values(Name::Route).last().map(route_uri) {
            let rewritten = self.req.edit().request_uri(&last).pop_last_route().finish();
            match Message::parse(rewritten, false, usize::MAX) {
                Ok(m) => self.req = m,
                Err(e) => {
                    self.respond(400, "Bad Request", &[("Warning", &format!("399 exum-router \"bad Route: {e}\""))]);
                    return;
                }
            }
        }
        // Loose routing: our own Route goes.
        let first_route = self.req.values(Name::Route).next().map(route_uri);
        self.pop_route =
            first_route.as_deref().and_then(|u| UriRef::parse(u).ok()).is_some_and(|u| self.proxy.is_us(&u));

        if self.req.to_tag().is_some() {
            self.forward_in_dialog().await;
            return;
        }
        let ruri = self.req.request_uri().unwrap_or("").to_owned();
        let host = UriRef::parse(&ruri).map(|u| u.host.to_ascii_lowercase()).unwrap_or_default();
        if self.req.method() == Some("OPTIONS")
            && UriRef::parse(&ruri).is_ok_and(|u| u.user.is_none() && self.proxy.is_us(&u))
        {
            self.respond(200, "OK", &[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")]);
            return;
        }
        let tenants = self.proxy.tenants.load_full();
        let Some(tenant) = tenants.by_domain(&host).cloned() else {
            self.respond(404, "Not Found", &[("Warning", "399 exum-router \"no tenant owns this domain\"")]);
            return;
        };
        if !crate::control::acl::allows(&tenant.config.peers, self.source.addr.ip()) {
            self.proxy.count_access_refused("tenant");
            self.respond(403, "Forbidden", &[("Warning", "399 exum-router \"not a peer of this tenant\"")]);
            return;
        }
        self.record_route = tenant.config.record_route;
        self.proxy
            .metrics
            .requests
            .get_or_create(&crate::control::metrics::RequestLabels {
                method: self.req.method().unwrap_or("").to_owned(),
                tenant: tenant.config.id.clone(),
            })
            .inc();
        let view = match view::request_view(&self.req, &self.source) {
            Ok(v) => v,
            Err(e) => {
                self.respond(400, "Bad Request", &[("Warning", &format!("399 exum-router \"{e}\""))]);
                return;
            }
        };
        let policy: Arc<TenantPolicy> = self.proxy.policy.get(&tenant);
        self.proxy.stats.decisions.fetch_add(1, Ordering::Relaxed);
        let verdict = policy.route(&tenant, &view);
        tracing::debug!(tenant = %tenant.config.id, call_id = self.req.first(Name::CallId).unwrap_or(""), decided_by = ?verdict.decided_by, "decision");
        let mut decision = verdict.decision;
        let mut asked_on_failure = false;
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut best: Option<Message> = None;
        loop {
            match decision {
                Decision::Reject(r) => {
                    let reason = if r.reason.is_empty() { reason_phrase(r.code).to_owned() } else { r.reason.clone() };
                    let extra: Vec<(&str, &str)> =
                        r.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
                    self.respond(r.code, &reason, &extra);
                    return;
                }
                Decision::Redirect(r) => {
                    let mut extra: Vec<(&str, String)> =
                        r.contacts.iter().map(|c| ("Contact", format!("<{c}>"))).collect();
                    extra.extend(r.headers.iter().map(|h| (h.name.as_str(), h.value.clone())));
                    let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
                    self.respond(r.code, reason_phrase(r.code), &extra);
                    return;
                }
                Decision::Standard => {
                    self.respond(500, reason_phrase(500), &[]);
                    return;
                }
                Decision::Forward(f) => {
                    let spec = ForwardSpec::of(&f);
                    let mut queue: VecDeque<(Target, Option<String>)> =
                        f.targets.into_iter().map(|t| (t, None)).collect();
                    while let Some((target, contact_uri)) = queue.pop_front() {
                        if self.cancelled {
                            break;
                        }
                        match self.try_target(&target, &spec, contact_uri.as_deref()).await {
                            TargetEnd::Answered => return,
                            TargetEnd::Failed(outcome, resp) => {
                                if let Some(r) = resp
                                    && better(&r, best.as_ref())
                                {
                                    best = Some(r);
                                }
                                tracing::warn!(target = %target.uri, ?outcome, "target failed; trying the next");
                                attempts.push(Attempt { target: target.uri.clone(), outcome });
                            }
                            TargetEnd::Redirected(code, contacts) => {
                                attempts.push(Attempt { target: target.uri.clone(), outcome: Outcome::Response(code) });
                                for c in contacts.into_iter().rev() {
                                    let t = Target { uri: c.clone(), transport: None, timeout_ms: target.timeout_ms };
                                    queue.push_front((t, Some(c)));
                                }
                            }
                        }
                    }
                    if self.cancelled {
                        if !self.final_sent {
                            self.respond(487, reason_phrase(487), &[]);
                        }
                        return;
                    }
                    if asked_on_failure {
                        break;
                    }
                    asked_on_failure = true;
                    let failure = Failure { attempts: attempts.clone() };
                    decision = policy.on_failure(&tenant, &view, &failure).decision;
                }
            }
        }
        // on-failure's forward failed too: the best response, or 480.
        match best {
            Some(r) => self.relay(&r),
            None => self.respond(
                480,
                reason_phrase(480),
                &[("ms-diagnostics", "15030;reason=\"Failed to route to Exchange Server\"")],
            ),
        }
    }

    fn validate(&self) -> Result<(), (u16, String, String)> {
        let bad = |reason: &str| (400, "Bad Request".to_owned(), reason.to_owned());
        let method = self.req.method().unwrap_or("");
        match self.req.cseq() {
            Some((_, m)) if m == method => {}
            Some(_) => return Err(bad("CSeq method does not match the request method")),
            None => return Err(bad("missing or malformed CSeq")),
        }
        for (name, header) in [(Name::From, "From"), (Name::To, "To"), (Name::CallId, "Call-ID")] {
            if self.req.first(name).is_none_or(str::is_empty) {
                return Err(bad(&format!("missing {header}")));
            }
        }
        for (name, header) in [(Name::From, "From"), (Name::To, "To")] {
            if let Err(problem) = self.req.first(name).map_or(Ok(()), check_name_addr) {
                return Err(bad(&format!("bad {header}: {problem}")));
            }
        }
        let ruri = self.req.request_uri().unwrap_or("");
        match UriRef::parse(ruri) {
            Ok(_) => {}
            Err(UriError::UnsupportedScheme(s)) => {
                return Err((416, reason_phrase(416).to_owned(), format!("unsupported URI scheme {s}")));
            }
            Err(e) => return Err(bad(&format!("bad Request-URI: {e}"))),
        }
        match self.req.max_forwards() {
            Ok(Some(0)) => return Err((483, reason_phrase(483).to_owned(), "Max-Forwards reached 0".into())),
            Ok(_) => {}
            Err(e) => return Err(bad(&e.to_string())),
        }
        let required: Vec<&str> = self.req.values(Name::ProxyRequire).collect();
        if !required.is_empty() {
            return Err((
                420,
                reason_phrase(420).to_owned(),
                format!("unsupported extensions: {}", required.join(", ")),
            ));
        }
        // Loop: one of our Vias carries the loop hash this request has now.
        let hash = format!("z9hG4bK-{:016x}-", loop_hash(&self.req));
        for via in self.req.values(Name::Via).skip(1).filter_map(super::wire::Via::parse) {
            if via.branch.is_some_and(|b| b.starts_with(&hash)) {
                return Err((482, reason_phrase(482).to_owned(), "the request has been here before".into()));
            }
        }
        Ok(())
    }

    /// An in-dialog request: along its Route set, no policy.
    async fn forward_in_dialog(&mut self) {
        let Some((uri, _)) = next_hop_of(&self.proxy, &self.req) else {
            self.respond(400, "Bad Request", &[]);
            return;
        };
        let target = Target { uri: uri.clone(), transport: None, timeout_ms: None };
        let spec = ForwardSpec { request_uri: None, add: Vec::new(), remove: Vec::new() };
        match self.try_target(&target, &spec, None).await {
            TargetEnd::Answered => {}
            TargetEnd::Failed(_, Some(resp)) => self.relay(&resp),
            TargetEnd::Failed(outcome, None) => {
                let code = if matches!(outcome, Outcome::Timeout) { 408 } else { 503 };
                self.respond(code, reason_phrase(code), &[]);
            }
            TargetEnd::Redirected(..) => self.respond(480, reason_phrase(480), &[]),
        }
    }

    /// One client transaction to one target.
    async fn try_target(&mut self, target: &Target, spec: &ForwardSpec, contact_uri: Option<&str>) -> TargetEnd {
        let transport = target.transport.map(|t| match t {
            crate::policy::contract::Transport::Udp => Transport::Udp,
            crate::policy::contract::Transport::Tcp => Transport::Tcp,
            crate::policy::contract::Transport::Tls => Transport::Tls,
        });
        let destinations = match self.proxy.resolver.resolve(&target.uri, transport).await {
            Ok(d) if !d.is_empty() => d,
            Ok(_) => {
                tracing::warn!(target = %target.uri, "cannot resolve: no address");
                return TargetEnd::Failed(Outcome::Unreachable, None);
            }
            Err(e) => {
                tracing::warn!(target = %target.uri, "cannot resolve: {e}");
                return TargetEnd::Failed(Outcome::Unreachable, None);
            }
        };
        let count = destinations.len();
        for (i, d) in destinations.into_iter().enumerate() {
            self.responded = false;
            let end = self.try_destination(target, spec, contact_uri, &d).await;
            // RFC 3263 §4.3: an address that did not answer at all (transport
            // error, timeout without any response) gives way to the next one.
            let silent = matches!(end, TargetEnd::Failed(Outcome::Timeout | Outcome::Unreachable, None))
                && !self.responded
                && !self.cancelled
                && !self.final_sent;
            if !(silent && i + 1 < count) {
                return end;
            }
            tracing::info!(target = %target.uri, addr = %d.addr, "no answer; trying the target's next address");
        }
        TargetEnd::Failed(Outcome::Unreachable, None)
    }

    /// One client transaction to one address of a target.
    async fn try_destination(
        &mut self,
        target: &Target,
        spec: &ForwardSpec,
        contact_uri: Option<&str>,
        d: &Destination,
    ) -> TargetEnd {
        let (dest, transport) = (d.addr, d.transport);
        let proxy = self.proxy.clone();
        let local =
            proxy.transports.local_addr(transport, Some(dest)).map_or_else(|| "0.0.0.0:5060".into(), |a| a.to_string());
        let branch = proxy.branch(loop_hash(&self.req));
        let mut edit = self
            .req
            .edit()
            .received(self.source.addr)
            .prepend_via(format!("{} {local};branch={branch};rport", via_proto(transport)));
        if let Some(uri) = contact_uri.or(spec.request_uri.as_deref()) {
            edit = edit.request_uri(uri);
        }
        for name in &spec.remove {
            edit = edit.remove(name);
        }
        for (name, value) in &spec.add {
            edit = edit.add(name, value);
        }
        if self.pop_route {
            edit = edit.pop_route();
        }
        if self.record_route {
            let param = match transport {
                Transport::Udp => "",
                Transport::Tcp => ";transport=tcp",
                Transport::Tls => ";transport=tls",
            };
            let rr = format!("<sip:{local};lr{param}>");
            edit = edit.prepend("Record-Route", &rr);
        }
        let hops = self.req.max_forwards().ok().flatten().unwrap_or(71);
        edit = edit.max_forwards(hops.saturating_sub(1).min(70));
        let bytes = edit.finish();
        let Ok(sent) = Message::parse(bytes.clone(), false, usize::MAX) else {
            return TargetEnd::Failed(Outcome::Unreachable, None);
        };
        proxy.table().client.insert(branch.clone(), self.tx.clone());
        self.branches.push(branch.clone());
        if self.invite {
            self.sent.insert(branch.clone(), (sent.clone(), transport, dest));
        }
        // A new TLS connection checks the server's certificate against the
        // target's host name (or its SRV target's).
        if let Err(e) = proxy.transports.send_named(transport, dest, Some(&d.name), bytes.clone()).await {
            tracing::warn!(target = %target.uri, %dest, "cannot send: {e}");
            return TargetEnd::Failed(Outcome::Unreachable, None);
        }

        let settings = proxy.settings;
        let started = Instant::now();
        let per_target = target.timeout_ms.map_or(settings.target_timeout, |ms| Duration::from_millis(u64::from(ms)));
        let timer_b = started + settings.t1 * 64;
        let mut deadline = started + per_target.min(settings.t1 * 64);
        let mut retransmit_every = settings.t1;
        let mut next_retransmit = (transport == Transport::Udp).then(|| started + retransmit_every);
        let mut provisional = false;
        let mut cancel_sent = false;
        loop {
            let event = next_event(&mut self.rx, next_retransmit.map_or(deadline, |r| r.min(deadline))).await;
            let now = Instant::now();
            match event {
                None if now >= deadline => {
                    if self.invite && provisional && !cancel_sent {
                        // The per-target timer fired while ringing: CANCEL, then move on.
                        let _ = proxy.transports.send(transport, dest, originate::cancel(&sent)).await;
                    }
                    if cancel_sent && now < timer_b {
                        // Waiting for the 487 after our CANCEL ran out: answer ourselves.
                        if !self.final_sent {
                            self.respond(487, reason_phrase(487), &[]);
                        }
                        return TargetEnd::Answered;
                    }
                    return TargetEnd::Failed(Outcome::Timeout, None);
                }
                None => {
                    if let Some(r) = next_retransmit
                        && now >= r
                    {
                        let _ = proxy.transports.send(transport, dest, bytes.clone()).await;
                        retransmit_every =
                            if self.invite { retransmit_every * 2 } else { (retransmit_every * 2).min(settings.t2) };
                        next_retransmit = Some(now + retransmit_every);
                    }
                }
                Some(Event::Retransmission) => {
                    if let Some(last) = self.last_response.clone() {
                        proxy.transports.send_now(self.source.transport, self.source.addr, last);
                    }
                }
                Some(Event::Ack) => {}
                Some(Event::Cancel) => {
                    self.cancelled = true;
                    if !self.invite {
                        continue;
                    }
                    if provisional && !cancel_sent {
                        let _ = proxy.transports.send(transport, dest, originate::cancel(&sent)).await;
                        cancel_sent = true;
                        deadline = now + settings.t1 * 64;
                    } else if !provisional {
                        // Nothing to cancel yet: stop trying this target once
                        // it answers at all, and answer upstream now.
                        self.respond(487, reason_phrase(487), &[]);
                        return TargetEnd::Answered;
                    }
                }
                Some(Event::Response(resp)) => {
                    // Only responses for this branch matter now; an earlier
                    // branch's retransmitted failure is ACKed again.
                    if resp.top_via().and_then(|v| v.branch) != Some(branch.as_str()) {
                        self.reack(&resp);
                        continue;
                    }
                    self.responded = true;
                    let code = resp.status().unwrap_or(500);
                    let is_cancel_response = resp.cseq().is_some_and(|(_, m)| m == "CANCEL");
                    if is_cancel_response {
                        continue;
                    }
                    if code < 200 {
                        next_retransmit = if self.invite { None } else { next_retransmit.map(|_| now + settings.t2) };
                        if !provisional {
                            provisional = true;
                            deadline = deadline.max(now).min(now + per_target);
                        }
                        if self.cancelled && !cancel_sent {
                            let _ = proxy.transports.send(transport, dest, originate::cancel(&sent)).await;
                            cancel_sent = true;
                        }
                        if code > 100 {
                            self.relay(&resp);
                        }
                        continue;
                    }
                    if self.invite && code >= 300 {
                        let _ = proxy.transports.send(transport, dest, originate::ack(&sent, &resp)).await;
                        self.failed.push(branch.clone());
                    }
                    if (200..300).contains(&code) || code == 401 || code == 407 || self.cancelled {
                        self.relay(&resp);
                        return TargetEnd::Answered;
                    }
                    if (300..400).contains(&code) {
                        let contacts: Vec<String> = resp.values(Name::Contact).map(route_uri).collect();
                        if !contacts.is_empty() {
                            return TargetEnd::Redirected(code, contacts);
                        }
                    }
                    if !self.invite && self.req.to_tag().is_some() {
                        self.relay(&resp);
                        return TargetEnd::Answered;
                    }
                    return TargetEnd::Failed(Outcome::Response(code), Some(*resp));
                }
            }
        }
    }
}

/// A transaction after its final response (RFC 3261 §17.2: Completed,
/// Confirmed, or Accepted for a 2xx): absorbs retransmissions of the request and
/// the ACK, retransmits a non-2xx final over UDP until the ACK, and ACKs again a
/// retransmitted failure of a branch. It keeps only what that needs.
struct Lingering {
    proxy: Arc<Proxy>,
    source: Source,
    rx: mpsc::UnboundedReceiver<Event>,
    invite: bool,
    /// The final response sent upstream.
    last: Option<Vec<u8>>,
    /// The INVITEs of branches that failed, by branch.
    sent: HashMap<String, (Message, Transport, SocketAddr)>,
    /// The transaction's key and client branches, removed from the table at the end.
    key: String,
    branches: Vec<String>,
}

impl Lingering {
    /// After the final response: absorb retransmissions and the ACK (INVITE over
    /// UDP: retransmit a non-2xx final until the ACK), then end.
    async fn run(mut self) {
        self.linger().await;
        let mut table = self.proxy.table();
        table.server.remove(&self.key);
        for b in &self.branches {
            table.client.remove(b);
        }
    }

    async fn linger(&mut self) {
        let settings = self.proxy.settings;
        let udp = self.source.transport == Transport::Udp;
        let Some(last) = self.last.take() else { return };
        let final_2xx = last.starts_with(b"SIP/2.0 2");
        let (mut retransmit, end) = if self.invite && !final_2xx {
            // Timer G until the ACK, Timer H at most.
            (udp.then(|| Instant::now() + settings.t1), Instant::now() + settings.t1 * 64)
        } else if udp {
            // Timer J (non-INVITE) / accepted state (2xx): absorb retransmissions.
            (None, Instant::now() + settings.t1 * 64)
        } else {
            return;
        };
        let mut interval = settings.t1;
        let mut end = end;
        loop {
            let event = next_event(&mut self.rx, retransmit.map_or(end, |r| r.min(end))).await;
            let now = Instant::now();
            match event {
                None if now >= end => return,
                None => {
                    self.proxy.transports.send_now(self.source.transport, self.source.addr, last.clone());
                    interval = (interval * 2).min(settings.t2);
                    retransmit = Some(now + interval);
                }
                Some(Event::Ack) => {
                    if self.invite && !final_2xx {
                        // Timer I: absorb further ACKs for T4, then end.
                        retransmit = None;
                        end = if udp { now + settings.t4 } else { now };
                    }
                }
                Some(Event::Retransmission) => {
                    self.proxy.transports.send_now(self.source.transport, self.source.addr, last.clone());
                }
                Some(Event::Response(resp)) => reack(&self.proxy, &self.sent, &resp),
                Some(Event::Cancel) => {}
            }
        }
    }
}

/// The transaction's next event, or `None` when `wake` comes first (a timer).
async fn next_event(rx: &mut mpsc::UnboundedReceiver<Event>, wake: Instant) -> Option<Event> {
    tokio::select! {
        e = rx.recv() => e,
        _ = sleep_until(wake.into()) => None,
    }
}

/// ACKs again a retransmitted non-2xx final response of an earlier branch.
fn reack(proxy: &Proxy, sent: &HashMap<String, (Message, Transport, SocketAddr)>, resp: &Message) {
    let Some(branch) = resp.top_via().and_then(|v| v.branch) else { return };
    if let (true, Some((sent, transport, dest))) = (resp.status().is_some_and(|c| c >= 300), sent.get(branch)) {
        proxy.transports.send_now(*transport, *dest, originate::ack(sent, resp));
    }
}

/// Checks a From or To value: quotes closed (backslash escapes inside), a `<`
/// closed by `>`, and a URI with a scheme inside.
fn check_name_addr(value: &str) -> Result<(), &'static str> {
    let (mut quoted, mut escaped) = (false, false);
    for c in value.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, _, '"') => quoted = !quoted,
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quoted string");
    }
    let Some((uri, _)) = super::uri::name_addr_spans(value) else { return Err("unterminated <") };
    let uri = &value[uri];
    match uri.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !uri.contains(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>') =>
        {
            Ok(())
        }
        _ => Err("no URI"),
    }
}

/// Whether response `r` is a better final answer than `best` (RFC 3261 §16.7:
/// 6xx first, then the lowest class, 4xx before 5xx).
fn better(r: &Message, best: Option<&Message>) -> bool {
    let rank = |code: u16| match code / 100 {
        6 => 0,
        4 => 1,
        5 => 2,
        _ => 3,
    };
    match (r.status(), best.and_then(Message::status)) {
        (Some(_), None) => true,
        (Some(a), Some(b)) => rank(a) < rank(b),
        _ => false,
    }
}

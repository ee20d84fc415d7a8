//! The proxy core (RFC 3261 §16): every received message is matched to its
//! transaction; a new request starts a task that owns its server transaction
//! and the client transactions it opens, and goes validate → decide → execute.
//!
//! - [`classify`]: validation, the router's own OPTIONS and Route, in a dialog
//!   or new; [`validate`]: the checks of §16.3, before anything else.
//! - [`dialog`]: which in-dialog requests are the router's to forward.
//! - [`decide`]: the tenant by the Request-URI's domain, its peers, its policy.
//! - [`execute`]: the decision carried out: targets one after another, 3xx
//!   recursion, `on-failure`; then the transaction lingers for retransmissions.
//! - [`forward`]: the forwarded request's edits, shared with `simulate`.
//! - [`stateless`]: what is forwarded without a transaction (ACK for a 2xx, a
//!   retransmitted 2xx).

pub mod classify;
pub mod decide;
pub mod dialog;
pub mod execute;
pub mod forward;
pub mod stateless;
pub mod validate;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::mpsc;

use super::error::{Answer, RequestError};
use super::originate;
use super::overload::{Ask, Ban, Limiter, RateLimit, Refusal};
use super::resolve::Resolver;
use super::secret::Secret;
use super::transaction::{Event, EventSender, Table, Timers, server_key};
use super::transport::{Sink, Transports};
use crate::control::config::SipSettings;
use crate::control::{LiveTenants, Tenants};
use crate::metrics::{Dropped, Metrics};
use crate::model::uri::UriRef;
use crate::model::wire::{Message, WireError};
use crate::model::{Source, Transport};
use crate::policy::PolicyRegistry;
use crate::sip::resolve::ResolveError;

/// How the router names and marks itself.
#[derive(Debug)]
pub struct Identity {
    /// Its name in the `source` of its `ms-diagnostics` (`[sip] name`).
    pub name: String,
    /// The key of the tags in its branches and Record-Routes (`[sip] secret`).
    pub secret: Secret,
}

/// The proxy.
pub struct Proxy {
    transports: Arc<Transports>,
    /// Target URIs to addresses (RFC 3263).
    resolver: Arc<Resolver>,
    policy: Arc<PolicyRegistry>,
    /// Swapped whole by a reload; a transaction keeps the tenant it started with.
    tenants: Arc<LiveTenants>,
    settings: SipSettings,
    table: Table,
    /// Non-INVITE requests over UDP answered finally, for their
    /// retransmissions (instead of lingering transactions).
    answered: crate::sip::transaction::answered::Answered,
    /// Tags every branch and Record-Route the router mints, so a stray 2xx and
    /// an in-dialog request can be recognised as the router's.
    secret: Secret,
    /// Stray 2xx forwarded per second, at most.
    stray_2xx: RateLimit,
    /// The router's name in the `source` of its `ms-diagnostics` (`[sip] name`).
    name: String,
    counter: AtomicU64,
    /// Transactions that have not sent their final response yet: what overload
    /// control counts and what a graceful shutdown waits for.
    in_flight: AtomicUsize,
    /// Set at shutdown: new requests are refused, in-flight ones finish.
    draining: AtomicBool,
    /// Itself, for the transports' [`Sink`] calls that start transaction tasks.
    me: OnceLock<Weak<Proxy>>,
    /// Overload control of new requests.
    limiter: Limiter,
    /// The router's counters.
    pub metrics: Arc<Metrics>,
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
        tenants: Arc<LiveTenants>,
        settings: SipSettings,
        identity: Identity,
        metrics: Arc<Metrics>,
    ) -> Arc<Proxy> {
        let Identity { name, secret } = identity;
        let proxy = Arc::new(Proxy {
            transports: transports.clone(),
            resolver,
            policy,
            tenants: tenants.clone(),
            settings,
            table: Table::default(),
            answered: crate::sip::transaction::answered::Answered::new(ANSWERED_CAPACITY, ANSWERED_MAX_BYTES),
            secret,
            stray_2xx: RateLimit::per_second(settings.overload.stray_2xx_per_second),
            name,
            counter: AtomicU64::new(1),
            me: OnceLock::new(),
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            limiter: Limiter::new(settings.overload),
            metrics,
        });
        let _ = proxy.me.set(Arc::downgrade(&proxy));
        let me = Arc::downgrade(&proxy);
        tenants.on_swap(move |next| {
            if let Some(proxy) = me.upgrade() {
                proxy.protect_peers(next);
            }
        });
        let weak: Weak<dyn Sink> = Arc::downgrade(&(proxy.clone() as Arc<dyn Sink>));
        transports.start(weak);
        proxy
    }

    /// The transports.
    pub fn transports(&self) -> &Arc<Transports> {
        &self.transports
    }

    /// Transactions in progress, lingering ones included.
    pub fn active_transactions(&self) -> usize {
        self.table.server_count()
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
        self.tenants.load()
    }

    /// The live tenant set (swapped by reloads, the database follower and
    /// the LDAP poller).
    pub fn live_tenants(&self) -> &Arc<LiveTenants> {
        &self.tenants
    }

    /// The networks never banned: every tenant's `peers` and every listener's
    /// `allow` list.
    /// They are also the networks whose connections the global connection cap
    /// never refuses.
    fn protect_peers(&self, tenants: &Tenants) {
        let mut networks = self.transports.allowed_networks().to_vec();
        networks.extend(tenants.iter().flat_map(|t| t.config.peers.iter().copied()));
        // Read only when a ban or the cap is due: duplicates (tenants sharing
        // peers) cost nothing then.
        self.transports.reserve_for(networks.clone());
        self.limiter.protect(networks);
    }

    fn timers(&self) -> Timers {
        Timers { t1: self.settings.t1, t2: self.settings.t2, t4: self.settings.t4 }
    }

    /// A new branch: the magic cookie, a hash of what makes a request loop
    /// (RFC 3261 §16.6 step 8), a unique counter and the secret's tag.
    fn branch(&self, loop_hash: u64) -> String {
        self.secret.branch(loop_hash, self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// A branch for probes and other clients of the router's own.
    pub(crate) fn new_branch(&self) -> String {
        self.branch(0)
    }

    /// The tag of the dialog of `call_id` in the router's Record-Route.
    pub(crate) fn dialog_tag(&self, call_id: &str) -> String {
        self.secret.dialog_tag(call_id)
    }

    /// Registers a client branch for probes and other clients of the router's own.
    pub(crate) fn register_client(&self, branch: String, tx: EventSender) {
        self.table.insert_client(branch, tx);
    }

    /// Forgets a branch registered with [`Self::register_client`].
    pub(crate) fn unregister_client(&self, branch: &str) {
        self.table.remove_client(branch);
    }

    /// The first destination of a target URI (for probes).
    pub(crate) async fn resolve_target(&self, uri: &str) -> Result<super::resolve::Destination, ResolveError> {
        let d = self.resolver.resolve(uri, None).await?;
        d.into_iter().next().ok_or_else(|| ResolveError::NoAddress(uri.to_owned()))
    }

    /// Whether `uri` names this router (one of its listening addresses).
    fn is_us(&self, uri: &UriRef<'_>) -> bool {
        let Some(ip) = exum_address::ip_literal(uri.host) else { return false };
        let tls = matches!(uri.scheme, exum_address::Scheme::Sips)
            || uri.param("transport").flatten().is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let port = uri.port.unwrap_or(if tls { 5061 } else { 5060 });
        self.transports.is_listener(ip, port)
    }

    /// Where a response to `req`, received from `source`, goes (RFC 3261
    /// §18.2.2, RFC 3581): over a connection, back on it; over UDP, to the
    /// source address and port when the top Via has `rport`, else to the
    /// source address (its `received`) at the Via's sent-by port (5060 when it
    /// names none). Never to one of the router's own listeners: a Via naming
    /// one gets the answer at the source address. `maddr` is not followed (a
    /// stranger could aim responses at a third party).
    pub(crate) fn response_address(&self, req: &Message, source: &Source) -> SocketAddr {
        if source.transport != Transport::Udp {
            return source.addr;
        }
        let Some(via) = req.top_via() else { return source.addr };
        if via.rport {
            return source.addr;
        }
        let to = SocketAddr::new(source.addr.ip(), via.port.unwrap_or(5060));
        if to == source.addr || self.transports.is_listener(to.ip(), to.port()) {
            return source.addr;
        }
        to
    }

    /// A To tag for one of the router's own responses (unguessable).
    fn response_tag(&self) -> String {
        self.secret.response_tag(self.counter.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends `answer` to `req` back where it came from (over the transport it
    /// arrived on, whatever its Via says); returns the bytes sent.
    fn send_answer(&self, req: &Message, source: &Source, answer: &Answer) -> Vec<u8> {
        self.send_answer_tagged(req, source, answer, &self.response_tag())
    }

    /// [`Self::send_answer`] with the To tag `tag` (when the request has none).
    fn send_answer_tagged(&self, req: &Message, source: &Source, answer: &Answer, tag: &str) -> Vec<u8> {
        let sourced;
        let answer = if answer.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("ms-diagnostics")) {
            sourced = answer.clone().sourced(&self.name);
            &sourced
        } else {
            answer
        };
        let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str())).collect();
        let bytes = originate::response(req, source.addr, answer.code, &answer.reason, tag, &headers);
        self.transports.reply_kept(source, self.response_address(req, source), &bytes);
        bytes
    }

    /// Answers `req` with the response for `error`, counted by side and code.
    fn reject(&self, req: &Message, source: &Source, error: &RequestError) -> Vec<u8> {
        self.reject_with(req, source, error, &error.answer(), &self.response_tag())
    }

    /// [`Self::reject`] with `answer`, the error's answer with more said, and
    /// the To tag `tag`.
    fn reject_with(&self, req: &Message, source: &Source, error: &RequestError, answer: &Answer, tag: &str) -> Vec<u8> {
        self.metrics.count_request_error(error.side().as_str(), error.code());
        tracing::debug!(peer = %source.addr, code = error.code(), side = error.side().as_str(), %error, "answered by the router");
        self.send_answer_tagged(req, source, answer, tag)
    }

    /// Counts and logs a message nothing can be answered to.
    fn drop_message(&self, reason: Dropped, source: &Source, detail: &dyn std::fmt::Display) {
        self.metrics.count_dropped(reason);
        tracing::debug!(peer = %source.addr, transport = ?source.transport, reason = reason.as_str(), %detail, "message dropped");
    }
}

impl Sink for Proxy {
    fn deliver(&self, msg: Message, source: Source) {
        if let Some(me) = self.me.get().and_then(Weak::upgrade) {
            me.handle(msg, source);
        }
    }

    fn capture_share(&self, msg: &Message, source: &Source) -> Option<f64> {
        decide::tenant_for(&self.tenants(), msg, source).ok().and_then(|t| t.config.hep_share)
    }

    fn refused(&self, msg: Message, source: Source) {
        self.metrics.count_access_refused("listener");
        if msg.is_request() && msg.method() != Some("ACK") && msg.top_via().is_some() {
            self.reject(&msg, &source, &RequestError::ListenerRefused);
        } else {
            self.drop_message(Dropped::Refused, &source, &"not allowed on this listener");
        }
    }

    fn malformed(&self, bytes: &[u8], error: WireError, source: Source) {
        // Answer when what a response needs (Vias, From, To, Call-ID, CSeq) is
        // readable; else count it as dropped.
        match validate::lenient(bytes) {
            Some(msg) if msg.is_request() && msg.method() != Some("ACK") && msg.top_via().is_some() => {
                let error = match error {
                    WireError::Version => RequestError::Version,
                    e => RequestError::bad(e.to_string()),
                };
                self.reject(&msg, &source, &error);
            }
            _ => self.drop_message(Dropped::Unparseable, &source, &error),
        }
    }
}

impl Proxy {
    /// Handles one received message.
    pub fn handle(self: &Arc<Self>, msg: Message, source: Source) {
        if !msg.is_request() {
            self.handle_response(msg, &source);
            return;
        }
        let Some(key) = server_key(&msg) else {
            // No usable Via: nothing can be answered.
            self.drop_message(Dropped::NoVia, &source, &"no usable Via");
            return;
        };
        let method = msg.method().unwrap_or("");
        let existing = self.table.server(&key);
        // A retransmission of a request answered finally (by the router or a
        // target) without a transaction left: the same answer.
        // (Only non-INVITEs are kept: an INVITE's lookup is skipped.)
        if existing.is_none()
            && !matches!(method, "ACK" | "CANCEL" | "INVITE")
            && source.transport == Transport::Udp
            && let Some(answer) = self.answered.get(&key)
        {
            self.metrics.retransmissions.inc();
            self.transports.send_now_kept(Transport::Udp, answer.local, answer.to, &answer.bytes);
            return;
        }
        match (method, existing) {
            ("ACK", Some(entry)) => {
                let _ = entry.tx.send(Event::Ack(msg.to_tag().map(Into::into)));
            }
            // An ACK for a 2xx goes on statelessly: along the router's own
            // Record-Route freely; from a tenant's peer, within the peer's
            // rate; anything else is dropped and counted against the source's
            // rate (a source forging ACKs gets banned).
            ("ACK", None) if msg.to_tag().is_some() => match self.check_dialog(&msg, &source) {
                Ok(dialog::Passed::Tagged) => self.forward_stateless(msg, source),
                Ok(dialog::Passed::Peer) => match self.limiter.take_for(source.addr.ip()) {
                    Ok(()) => self.forward_stateless(msg, source),
                    Err(refusal) => {
                        self.metrics.count_overload(refusal.as_str());
                        self.drop_message(Dropped::RateLimited, &source, &"ACK over the source's rate");
                    }
                },
                Err(_) => {
                    let _ = self.limiter.take_for(source.addr.ip());
                    self.drop_message(Dropped::StrayAck, &source, &"ACK for no dialog of the router's");
                }
            },
            ("ACK", None) => {
                let _ = self.limiter.take_for(source.addr.ip());
                self.drop_message(Dropped::StrayAck, &source, &"ACK for no transaction");
            }
            // A CANCEL only from where the INVITE came (address, port and
            // transport) or from a peer of the INVITE's tenant; another source
            // is answered as if there were no such transaction.
            ("CANCEL", Some(entry)) => {
                let from_origin = entry.origin == (source.addr, source.transport);
                if from_origin || dialog::peer_of_a_tenant(&msg, &source, &self.tenants()) == Some(true) {
                    self.send_answer(&msg, &source, &Answer::new(200));
                    let _ = entry.tx.send(Event::Cancel);
                } else {
                    self.metrics.count_access_refused("cancel");
                    let _ = self.limiter.take_for(source.addr.ip());
                    self.reject(&msg, &source, &RequestError::NoTransaction);
                }
            }
            ("CANCEL", None) => {
                self.reject(&msg, &source, &RequestError::NoTransaction);
            }
            (_, Some(entry)) => {
                self.metrics.retransmissions.inc();
                let _ = entry.tx.send(Event::Retransmission);
            }
            // In a dialog: only the router's dialogs and its tenants' (no relay).
            // A refusal counts against the source's rate: a source that keeps
            // forging dialogs is banned and then dropped unanswered.
            (_, None)
                if msg.to_tag().is_some()
                    && let Err(error) = self.check_dialog(&msg, &source) =>
            {
                if self.limiter.is_banned_after(source.addr.ip()) {
                    self.metrics.count_overload(Refusal::Banned.as_str());
                } else {
                    self.reject(&msg, &source, &error);
                }
            }
            // Draining: no new calls, but calls in progress can still end.
            (_, None) if self.draining.load(Ordering::Relaxed) && msg.to_tag().is_none() => {
                self.metrics.count_overload("draining");
                self.reject(&msg, &source, &RequestError::Draining);
            }
            (_, None) => {
                let held = Held::charge(&self.metrics.transaction_bytes, &msg);
                if let Err(refusal) = self.admit(&msg, &source, &held) {
                    self.metrics.count_overload(refusal.as_str());
                    if refusal == Refusal::Banned {
                        tracing::debug!(peer = %source.addr, "request from a banned source dropped");
                    } else {
                        let retry_after = self.limiter.retry_after();
                        self.reject(&msg, &source, &RequestError::Overloaded { reason: refusal.as_str(), retry_after });
                    }
                    return;
                }
                let (tx, rx) = mpsc::unbounded_channel();
                self.table.insert_server(key.clone(), tx.clone(), (source.addr, source.transport));
                self.metrics.transactions.inc();
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                execute::spawn(self.clone(), msg, source, key, (tx, rx), held);
            }
        }
    }

    /// The sources banned for sending at least twice their rate (see
    /// [`super::overload`]).
    pub fn bans(&self) -> Vec<Ban> {
        self.limiter.bans()
    }

    /// Lifts the ban of `source`; whether it was banned.
    pub fn lift_ban(&self, source: IpAddr) -> bool {
        self.limiter.lift(source)
    }

    /// Whether an in-dialog request is one the router may forward (see
    /// [`dialog`]); refusals are counted.
    fn check_dialog(&self, msg: &Message, source: &Source) -> Result<dialog::Passed, RequestError> {
        self.tenants.with(|tenants| dialog::check(msg, source, tenants, &self.secret, |u| self.is_us(u))).inspect_err(
            |e| {
                self.metrics.count_access_refused(if *e == RequestError::NotAPeer { "tenant" } else { "dialog" });
            },
        )
    }

    /// Overload control for a request that would start a transaction (its bytes
    /// already charged in `held`): in-dialog requests (a To tag) that passed
    /// [`Self::check_dialog`] pass the transaction cap and the source's rate, so
    /// calls in progress can end.
    fn admit(&self, msg: &Message, source: &Source, held: &Held) -> Result<(), Refusal> {
        self.limiter.admit(Ask {
            source: source.addr.ip(),
            transactions: self.table.server_count(),
            bytes: held.total(),
            in_dialog: msg.to_tag().is_some(),
            over_handshake: source.transport != Transport::Udp,
        })
    }

    fn handle_response(&self, msg: Message, source: &Source) {
        let tx = msg.top_via().and_then(|v| v.branch).and_then(|b| self.table.client(b));
        match tx {
            Some(tx) => {
                // Only who received the router's request knows its branch:
                // the source receives at its address.
                if msg.status().is_some_and(|c| c >= 200) {
                    self.limiter.exchanged(source.addr.ip());
                }
                let _ = tx.send(Event::Response(Box::new(msg)));
            }
            None => {
                let is_2xx_invite = msg.status().is_some_and(|c| (200..300).contains(&c))
                    && msg.cseq().is_some_and(|(_, m)| m == "INVITE");
                let reason =
                    if is_2xx_invite { self.forward_stray_2xx(&msg).err() } else { Some(Dropped::StrayResponse) };
                if let Some(reason) = reason {
                    self.drop_message(reason, source, &"response for no transaction");
                }
            }
        }
    }
}

/// Answers kept for retransmissions of non-INVITE requests answered finally
/// over UDP (see [`crate::sip::transaction::answered`]), at most: a few
/// hundred bytes each; a relayed response may be larger, hence the bytes too.
const ANSWERED_CAPACITY: usize = 200_000;
const ANSWERED_MAX_BYTES: usize = 64 << 20;

/// The bytes one transaction is charged for, in the gauge of all transactions'
/// bytes until dropped (when the transaction's lingering ends). An estimate of
/// what it holds, measured with `bench attacks` (10,000 INVITEs with a 60 KB
/// body: about 195 KB of RSS each): the request as received, the copy forwarded
/// and kept for CANCEL and ACK, the copies on their way to the socket (three
/// times the request), and a fixed part for its state and the response kept.
pub(crate) struct Held {
    gauge: prometheus_client::metrics::gauge::Gauge,
    bytes: i64,
}

/// What a transaction holds beyond its request's bytes (state, header index,
/// the response kept for retransmissions).
const TRANSACTION_OVERHEAD: usize = 8192;

impl Held {
    fn charge(gauge: &prometheus_client::metrics::gauge::Gauge, msg: &Message) -> Held {
        let bytes = (3 * msg.bytes().len() + TRANSACTION_OVERHEAD) as i64;
        gauge.inc_by(bytes);
        Held { gauge: gauge.clone(), bytes }
    }

    /// The bytes of all transactions, this one's included.
    fn total(&self) -> usize {
        usize::try_from(self.gauge.get()).unwrap_or(0)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

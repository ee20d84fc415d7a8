//! Overload control: a cap on transactions (lingering ones included), a bound
//! on the bytes they hold, a per-source limit on new requests, and a ban list.
//! Beyond a cap or a source's rate, a new out-of-dialog request is answered
//! `503 Service Unavailable` with `Retry-After`; in-dialog requests the router
//! may forward (BYE, re-INVITE) and transactions already in progress go on, so
//! calls in progress are never lost. A source that keeps sending at least twice
//! its rate for `ban_after` windows in a row is banned for `ban_ms`: its new
//! requests are dropped unanswered (Kamailio's pike module does the same).
//!
//! UDP sources can be spoofed, so a window counts fully toward a ban only
//! when the source showed in it that it receives what the router sends to its
//! address: a request over TCP or TLS (a handshake), an ACK carrying the To
//! tag of a final response the router sent it (the router's tags are
//! unpredictable), or a response to a request the router sent it (the
//! router's branches are too). A window without such an exchange counts half:
//! a flood that never completes one is banned after twice `ban_after`
//! windows. A tenant's `peers` and a listener's `allow` networks are never
//! banned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use crate::control::config::Overload;

/// Why a new request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_transactions` transactions are in the table.
    Transactions,
    /// Transactions hold `max_transaction_bytes`.
    Memory,
    /// The source sent more than its share of new requests.
    SourceRate,
    /// The source is banned: its requests are dropped unanswered.
    Banned,
}

impl Refusal {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Transactions => "transactions",
            Refusal::Memory => "memory",
            Refusal::SourceRate => "source_rate",
            Refusal::Banned => "banned",
        }
    }
}

/// A token bucket.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One source: its bucket, the refusals of its current window, the windows in
/// a row it sent at least twice its rate, and its ban.
#[derive(Clone, Copy)]
struct SourceState {
    bucket: Bucket,
    window_start: Instant,
    refused: u32,
    /// Windows in a row at twice the rate, in halves: a window with an
    /// exchange counts 2, one without 1; banned at `2 × ban_after`.
    hot_halves: u32,
    /// The source completed an exchange in the current window.
    exchanged: bool,
    banned_until: Option<Instant>,
    /// Requests dropped during the ban.
    dropped: u64,
}

/// A banned source, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The source address.
    pub source: IpAddr,
    /// Milliseconds the ban has left.
    pub remaining_ms: u64,
    /// Requests dropped since the ban began.
    pub dropped: u64,
}

/// More sources than this and idle ones (whose bucket is full again) are forgotten.
const MAX_SOURCES: usize = 100_000;

/// The limits and the per-source state.
pub struct Limiter {
    settings: Overload,
    sources: Mutex<HashMap<IpAddr, SourceState, foldhash::fast::RandomState>>,
    /// Networks never banned: the tenants' configured `peers` and the
    /// listeners' `allow` lists. A flood sent with a peer's address (UDP
    /// sources can be spoofed) costs that peer its excess requests (503)
    /// while it lasts, never a ban.
    protected: std::sync::RwLock<Vec<crate::control::acl::Cidr>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("settings", &self.settings).finish()
    }
}

/// What a request asks of the limits: its source, and the transactions and
/// bytes held when it would start.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// The source address.
    pub source: IpAddr,
    /// Transactions in the table.
    pub transactions: usize,
    /// Bytes held by transactions, this request's included.
    pub bytes: usize,
    /// In a dialog the router may forward: exempt from the transaction cap and
    /// the source's rate, and refused for memory only beyond 1.25 times the bound.
    pub in_dialog: bool,
    /// It came over a handshake (TCP, TLS): the source address is its own.
    pub over_handshake: bool,
}

impl Limiter {
    /// A limiter with these settings.
    pub fn new(settings: Overload) -> Limiter {
        Limiter { settings, sources: Mutex::new(HashMap::default()), protected: std::sync::RwLock::default() }
    }

    /// Sets the networks never banned (see [`Limiter`]).
    pub fn protect(&self, networks: Vec<crate::control::acl::Cidr>) {
        *self.protected.write().unwrap_or_else(|e| e.into_inner()) = networks;
    }

    fn is_protected(&self, source: IpAddr) -> bool {
        self.protected.read().unwrap_or_else(|e| e.into_inner()).iter().any(|c| c.contains(source))
    }

    /// The seconds to put in `Retry-After`.
    pub fn retry_after(&self) -> u32 {
        self.settings.retry_after_s
    }

    /// Whether a request may start a transaction: `Err` says why not.
    pub fn admit(&self, ask: Ask) -> Result<(), Refusal> {
        self.admit_at(ask, Instant::now())
    }

    fn admit_at(&self, ask: Ask, now: Instant) -> Result<(), Refusal> {
        let max_bytes = self.settings.max_transaction_bytes;
        let max_bytes = if ask.in_dialog { max_bytes.saturating_add(max_bytes / 4) } else { max_bytes };
        if max_bytes > 0 && ask.bytes > max_bytes {
            return Err(Refusal::Memory);
        }
        if ask.in_dialog {
            return Ok(());
        }
        self.take(ask.source, now, ask.over_handshake)?;
        if self.settings.max_transactions > 0 && ask.transactions >= self.settings.max_transactions {
            return Err(Refusal::Transactions);
        }
        Ok(())
    }

    fn take(&self, source: IpAddr, now: Instant, exchanged: bool) -> Result<(), Refusal> {
        let capacity = f64::from(self.settings.per_source_requests);
        if capacity == 0.0 {
            return Ok(());
        }
        let window = self.settings.per_source_window;
        let rate = capacity / window.as_secs_f64().max(1e-3);
        let refill = |b: &Bucket| (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(capacity);
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, s| s.banned_until.is_some_and(|t| t > now) || refill(&s.bucket) < capacity);
        }
        let s = sources.entry(source).or_insert(SourceState {
            bucket: Bucket { tokens: capacity, at: now },
            window_start: now,
            refused: 0,
            hot_halves: 0,
            exchanged: false,
            banned_until: None,
            dropped: 0,
        });
        match s.banned_until {
            Some(until) if until > now => {
                s.dropped += 1;
                return Err(Refusal::Banned);
            }
            Some(_) => {
                s.banned_until = None;
                s.hot_halves = 0;
                s.dropped = 0;
            }
            None => {}
        }
        // A window over: was it one at twice the rate (as many refused as allowed)?
        if now.saturating_duration_since(s.window_start) >= window {
            let windows = (now.saturating_duration_since(s.window_start).as_secs_f64() / window.as_secs_f64()) as u32;
            let weight = if s.exchanged { 2 } else { 1 };
            s.hot_halves = if windows == 1 && f64::from(s.refused) >= capacity { s.hot_halves + weight } else { 0 };
            s.window_start = now;
            s.refused = 0;
            s.exchanged = false;
            let ban_at = self.settings.ban_after.saturating_mul(2);
            if ban_at > 0 && s.hot_halves >= ban_at && !self.is_protected(source) {
                s.banned_until = Some(now + self.settings.ban);
                s.hot_halves = 0;
                s.dropped = 1;
                return Err(Refusal::Banned);
            }
        }
        s.exchanged |= exchanged;
        let tokens = refill(&s.bucket);
        if tokens < 1.0 {
            s.bucket = Bucket { tokens, at: now };
            s.refused = s.refused.saturating_add(1);
            return Err(Refusal::SourceRate);
        }
        s.bucket = Bucket { tokens: tokens - 1.0, at: now };
        Ok(())
    }

    /// Takes one request from `source`'s rate (for a message that starts no
    /// transaction: a stateless ACK, a refused CANCEL): `Err` when over its
    /// rate or banned.
    pub fn take_for(&self, source: IpAddr) -> Result<(), Refusal> {
        self.take(source, Instant::now(), false)
    }

    /// Notes that `source` completed an exchange (see the module's
    /// documentation): its current window counts fully toward a ban.
    pub fn exchanged(&self, source: IpAddr) {
        if self.settings.per_source_requests == 0 {
            return;
        }
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sources.get_mut(&source) {
            s.exchanged = true;
        }
    }

    /// Counts a request refused before admission (a forged dialog) against its
    /// source's rate, so a source that keeps sending them is banned like one
    /// that floods new requests; whether the source is banned (drop, do not answer).
    pub fn is_banned_after(&self, source: IpAddr) -> bool {
        self.take(source, Instant::now(), false) == Err(Refusal::Banned)
    }

    /// The sources banned now.
    pub fn bans(&self) -> Vec<Ban> {
        let now = Instant::now();
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Ban> = sources
            .iter()
            .filter_map(|(ip, s)| {
                let until = s.banned_until.filter(|t| *t > now)?;
                Some(Ban { source: *ip, remaining_ms: (until - now).as_millis() as u64, dropped: s.dropped })
            })
            .collect();
        out.sort_by_key(|b| b.source);
        out
    }

    /// Lifts the ban of `source`; whether it was banned.
    pub fn lift(&self, source: IpAddr) -> bool {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        match sources.get_mut(&source) {
            Some(s) if s.banned_until.is_some_and(|t| t > now) => {
                s.banned_until = None;
                s.hot_halves = 0;
                true
            }
            _ => false,
        }
    }
}

/// A token bucket shared by all sources: at most `n` a second, `n` at once.
pub struct RateLimit {
    per_second: u32,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").field("per_second", &self.per_second).finish()
    }
}

impl RateLimit {
    /// At most `n` a second (0: none).
    pub fn per_second(n: u32) -> RateLimit {
        RateLimit { per_second: n, bucket: Mutex::new(Bucket { tokens: f64::from(n), at: Instant::now() }) }
    }

    /// Takes one token if there is one.
    pub fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let capacity = f64::from(self.per_second);
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * capacity).min(capacity);
        let ok = tokens >= 1.0;
        *b = Bucket { tokens: if ok { tokens - 1.0 } else { tokens }, at: now.max(b.at) };
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: usize, per_source: u32, window_ms: u64) -> Limiter {
        Limiter::new(Overload {
            max_transactions: max,
            per_source_requests: per_source,
            per_source_window: Duration::from_millis(window_ms),
            retry_after_s: 5,
            ban_after: 0,
            ..Overload::default()
        })
    }

    fn new_from(source: IpAddr, transactions: usize) -> Ask {
        Ask { source, transactions, bytes: 0, in_dialog: false, over_handshake: true }
    }

    #[test]
    fn caps_transactions_in_progress() {
        let l = limiter(2, 0, 1000);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(l.admit(new_from(a, 1)), Ok(()));
        assert_eq!(l.admit(new_from(a, 2)), Err(Refusal::Transactions));
        assert_eq!(l.admit(Ask { in_dialog: true, ..new_from(a, 2) }), Ok(()), "in a dialog: exempt");
        assert_eq!(limiter(0, 0, 1000).admit(new_from(a, 1_000_000)), Ok(()), "0 is no cap");
    }

    #[test]
    fn bounds_the_bytes_held_with_headroom_for_dialogs() {
        let l = Limiter::new(Overload { max_transaction_bytes: 1000, ..Overload::default() });
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(l.admit(Ask { bytes: 1000, ..new_from(a, 0) }), Ok(()));
        assert_eq!(l.admit(Ask { bytes: 1001, ..new_from(a, 0) }), Err(Refusal::Memory));
        assert_eq!(l.admit(Ask { bytes: 1250, in_dialog: true, ..new_from(a, 0) }), Ok(()));
        assert_eq!(l.admit(Ask { bytes: 1251, in_dialog: true, ..new_from(a, 0) }), Err(Refusal::Memory));
    }

    #[test]
    fn limits_each_source_and_refills_over_the_window() {
        let l = limiter(0, 2, 1000);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().expect("ip"), "127.0.0.2".parse().expect("ip"));
        let t0 = Instant::now();
        assert_eq!(l.take(a, t0, true), Ok(()));
        assert_eq!(l.take(a, t0, true), Ok(()));
        assert_eq!(l.take(a, t0, true), Err(Refusal::SourceRate));
        assert_eq!(l.take(b, t0, true), Ok(()), "another source has its own bucket");
        assert_eq!(l.take(a, t0 + Duration::from_millis(499), true), Err(Refusal::SourceRate));
        assert_eq!(l.take(a, t0 + Duration::from_millis(500), true), Ok(()), "one token back after half the window");
        assert_eq!(l.take(a, t0 + Duration::from_millis(500), true), Err(Refusal::SourceRate));
    }

    #[test]
    fn a_source_at_twice_its_rate_for_ban_after_windows_is_banned_then_released() {
        let l = Limiter::new(Overload {
            per_source_requests: 10,
            per_source_window: Duration::from_secs(1),
            ban_after: 3,
            ban: Duration::from_secs(60),
            ..Overload::default()
        });
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        let t0 = Instant::now();
        // Three windows of 30 requests each (10 allowed, 20 refused) from a;
        // b sends its 10 a window and is never banned.
        for w in 0..3u64 {
            let at = t0 + Duration::from_secs(w);
            for _ in 0..30 {
                assert_ne!(l.take(a, at, true), Err(Refusal::Banned), "not yet, window {w}");
            }
            for _ in 0..10 {
                assert_eq!(l.take(b, at, true), Ok(()));
            }
        }
        assert_eq!(l.take(a, t0 + Duration::from_secs(3), true), Err(Refusal::Banned), "a fourth window begins banned");
        assert_eq!(l.take(a, t0 + Duration::from_secs(40), true), Err(Refusal::Banned));
        assert_eq!(l.take(b, t0 + Duration::from_secs(3), true), Ok(()));
        let bans = l.bans();
        assert_eq!(bans.len(), 1);
        assert_eq!((bans[0].source, bans[0].dropped), (a, 2));
        assert_eq!(l.take(a, t0 + Duration::from_secs(64), true), Ok(()), "the ban is over");
        // A source just at its rate is never banned, however long it keeps it.
        let c: IpAddr = "192.0.2.3".parse().expect("ip");
        for w in 0..10u64 {
            for _ in 0..15 {
                assert_ne!(l.take(c, t0 + Duration::from_secs(w), true), Err(Refusal::Banned));
            }
        }
    }

    #[test]
    fn a_flood_that_completes_no_exchange_counts_half_toward_a_ban() {
        let l = Limiter::new(Overload {
            per_source_requests: 10,
            per_source_window: Duration::from_secs(1),
            ban_after: 2,
            ban: Duration::from_secs(60),
            ..Overload::default()
        });
        let (silent, answering): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().expect("ip"), "192.0.2.2".parse().expect("ip"));
        let t0 = Instant::now();
        let window = |source: IpAddr, w: u64| {
            for _ in 0..30 {
                let _ = l.take(source, t0 + Duration::from_secs(w), false);
            }
        };
        // Two hot windows: the source that answered in them is banned at the
        // third, the silent one is not.
        for w in 0..2 {
            window(silent, w);
            window(answering, w);
            l.exchanged(answering);
        }
        assert_eq!(l.take(answering, t0 + Duration::from_secs(2), false), Err(Refusal::Banned));
        assert_ne!(l.take(silent, t0 + Duration::from_secs(2), false), Err(Refusal::Banned), "half counted");
        // Two more hot windows and the silent flood is banned too.
        for w in 2..4 {
            window(silent, w);
        }
        assert_eq!(l.take(silent, t0 + Duration::from_secs(4), false), Err(Refusal::Banned));
    }

    #[test]
    fn a_peer_or_an_allowed_network_is_never_banned_only_limited() {
        let l = Limiter::new(Overload {
            per_source_requests: 10,
            per_source_window: Duration::from_secs(1),
            ban_after: 1,
            ban: Duration::from_secs(60),
            ..Overload::default()
        });
        let networks = crate::control::acl::parse_list("peers", &["192.0.2.0/28".to_owned()]).expect("cidr");
        l.protect(networks);
        let (peer, stranger): (IpAddr, IpAddr) =
            ("192.0.2.5".parse().expect("ip"), "198.51.100.1".parse().expect("ip"));
        let t0 = Instant::now();
        // Both at three times their rate for five windows (a spoofed flood).
        for w in 0..5u64 {
            let at = t0 + Duration::from_secs(w);
            for _ in 0..30 {
                let _ = l.take(stranger, at, true);
                assert_ne!(l.take(peer, at, true), Err(Refusal::Banned), "window {w}");
            }
        }
        assert_eq!(l.bans().iter().map(|b| b.source).collect::<Vec<_>>(), [stranger]);
        assert_eq!(l.take(peer, t0 + Duration::from_secs(5), true), Ok(()), "its rate again once the flood stops");
    }

    #[test]
    fn a_ban_can_be_lifted() {
        let l = Limiter::new(Overload {
            per_source_requests: 1,
            ban_after: 1,
            ban: Duration::from_secs(60),
            ..Overload::default()
        });
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let t0 = Instant::now();
        let _ = (l.take(a, t0, true), l.take(a, t0, true));
        assert_eq!(l.take(a, t0 + Duration::from_secs(1), true), Err(Refusal::Banned));
        assert!(l.lift(a));
        assert!(!l.lift(a), "no longer banned");
        assert!(l.bans().is_empty());
    }

    #[test]
    fn forgets_idle_sources_when_there_are_too_many() {
        let l = limiter(0, 1, 1000);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let _ = l.take(IpAddr::from(i.to_be_bytes()), t0, true);
        }
        assert_eq!(l.sources.lock().expect("lock").len(), MAX_SOURCES);
        // A second later every bucket is full again: they are dropped for the newcomer.
        assert_eq!(l.take("10.0.0.1".parse().expect("ip"), t0 + Duration::from_secs(1), true), Ok(()));
        assert_eq!(l.sources.lock().expect("lock").len(), 1);
    }

    #[test]
    fn a_shared_rate_limit_refills_at_its_rate() {
        let r = RateLimit::per_second(2);
        let t0 = Instant::now();
        assert!(r.take_at(t0) && r.take_at(t0));
        assert!(!r.take_at(t0), "two a second, two at once");
        assert!(r.take_at(t0 + Duration::from_millis(500)), "one back after half a second");
        assert!(!r.take_at(t0 + Duration::from_millis(500)));
        assert!(!RateLimit::per_second(0).take_at(t0 + Duration::from_secs(9)), "0: none");
    }
}

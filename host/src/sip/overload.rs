//! Overload control: a cap on transactions in progress and a per-source limit
//! on new requests. Beyond either, a new out-of-dialog request is answered
//! `503 Service Unavailable` with `Retry-After`; in-dialog requests (BYE, re-INVITE)
//! and transactions already in progress go on, so calls in progress are never lost.

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
    /// `max_transactions` transactions are in progress.
    Transactions,
    /// The source sent more than its share of new requests.
    SourceRate,
}

impl Refusal {
    /// The label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Transactions => "transactions",
            Refusal::SourceRate => "source_rate",
        }
    }
}

/// A token bucket of one source: `per_source_requests` tokens, refilled at that
/// many per `per_source_window`.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// More sources than this and idle ones (whose bucket is full again) are forgotten.
const MAX_SOURCES: usize = 100_000;

/// The limits and the per-source buckets.
pub struct Limiter {
    settings: Overload,
    sources: Mutex<HashMap<IpAddr, Bucket, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("settings", &self.settings).finish()
    }
}

impl Limiter {
    /// A limiter with these settings.
    pub fn new(settings: Overload) -> Limiter {
        Limiter { settings, sources: Mutex::new(HashMap::default()) }
    }

    /// The seconds to put in `Retry-After`.
    pub fn retry_after(&self) -> u32 {
        self.settings.retry_after_s
    }

    /// Whether a new out-of-dialog request from `source` may start a transaction
    /// while `in_progress` are in progress: `Err` says why not.
    pub fn admit(&self, source: IpAddr, in_progress: usize) -> Result<(), Refusal> {
        if self.settings.max_transactions > 0 && in_progress >= self.settings.max_transactions {
            return Err(Refusal::Transactions);
        }
        self.take(source, Instant::now())
    }

    fn take(&self, source: IpAddr, now: Instant) -> Result<(), Refusal> {
        let capacity = f64::from(self.settings.per_source_requests);
        if capacity == 0.0 {
            return Ok(());
        }
        let rate = capacity / self.settings.per_source_window.as_secs_f64().max(1e-3);
        let refill = |b: &Bucket| (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate).min(capacity);
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&source) {
            sources.retain(|_, b| refill(b) < capacity);
        }
        let bucket = sources.entry(source).or_insert(Bucket { tokens: capacity, at: now });
        let tokens = refill(bucket);
        if tokens < 1.0 {
            *bucket = Bucket { tokens, at: now };
            return Err(Refusal::SourceRate);
        }
        *bucket = Bucket { tokens: tokens - 1.0, at: now };
        Ok(())
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
            ..Overload::default()
        })
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

    #[test]
    fn caps_transactions_in_progress() {
        let l = limiter(2, 0, 1000);
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(l.admit(a, 1), Ok(()));
        assert_eq!(l.admit(a, 2), Err(Refusal::Transactions));
        assert_eq!(limiter(0, 0, 1000).admit(a, 1_000_000), Ok(()), "0 is no cap");
    }

    #[test]
    fn limits_each_source_and_refills_over_the_window() {
        let l = limiter(0, 2, 1000);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().expect("ip"), "127.0.0.2".parse().expect("ip"));
        let t0 = Instant::now();
        assert_eq!(l.take(a, t0), Ok(()));
        assert_eq!(l.take(a, t0), Ok(()));
        assert_eq!(l.take(a, t0), Err(Refusal::SourceRate));
        assert_eq!(l.take(b, t0), Ok(()), "another source has its own bucket");
        assert_eq!(l.take(a, t0 + Duration::from_millis(499)), Err(Refusal::SourceRate));
        assert_eq!(l.take(a, t0 + Duration::from_millis(500)), Ok(()), "one token back after half the window");
        assert_eq!(l.take(a, t0 + Duration::from_millis(500)), Err(Refusal::SourceRate));
    }

    #[test]
    fn forgets_idle_sources_when_there_are_too_many() {
        let l = limiter(0, 1, 1000);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            let _ = l.take(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(l.sources.lock().expect("lock").len(), MAX_SOURCES);
        // A second later every bucket is full again: they are dropped for the newcomer.
        assert_eq!(l.take("10.0.0.1".parse().expect("ip"), t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(l.sources.lock().expect("lock").len(), 1);
    }
}

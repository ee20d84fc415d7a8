//! Requests other than INVITE over UDP that were answered finally, by the
//! router itself or with a target's response it relayed: their
//! retransmissions must get the same answer for Timer J (64·T1), but they need
//! no transaction for it. Each is kept here as its key and the response's
//! bytes, in a bounded cache of its own (oldest out first), instead of a
//! lingering transaction (a task and a place in the table, counted against
//! `max_transactions`): a BYE relayed, or a flood of requests the router
//! answers 404 itself, costs a few hundred bytes each and cannot fill the
//! transaction table.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a retransmission of an answered request gets.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The final response sent.
    pub bytes: Arc<[u8]>,
    /// Where it went (see `Proxy::response_address`).
    pub to: SocketAddr,
    /// The listener it left from.
    pub local: Option<SocketAddr>,
}

#[derive(Debug)]
struct Entry {
    answer: Answer,
    until: Instant,
}

/// The cache (see the module documentation).
#[derive(Debug)]
pub struct Answered {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<String, Entry, foldhash::fast::RandomState>,
    /// Keys in the order they were answered, with when they expire.
    order: VecDeque<(String, Instant)>,
    /// The bytes of the answers kept.
    bytes: usize,
}

impl Answered {
    /// A cache of at most `capacity` answers and `max_bytes` of them (a
    /// relayed response may be as large as a message may be).
    pub fn new(capacity: usize, max_bytes: usize) -> Answered {
        Answered { capacity, max_bytes, inner: Mutex::default() }
    }

    /// Keeps `answer` for the request `key` until `keep` from now; the oldest
    /// answers go first when the cache is full, and expired ones on the way.
    pub fn insert(&self, key: String, answer: Answer, keep: Duration) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let until = now + keep;
        let size = answer.bytes.len();
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((oldest, expires)) = inner.order.front().cloned() {
            // The key answered again: its earlier answer's place and bytes are its own.
            let replacing = inner.by_key.get(&key).map_or(0, |e| e.answer.bytes.len());
            let entries = inner.by_key.len() - usize::from(inner.by_key.contains_key(&key));
            if expires > now && entries < self.capacity && inner.bytes - replacing + size <= self.max_bytes {
                break;
            }
            inner.order.pop_front();
            // Unless the key was answered again since (a later place stands for it).
            if inner.by_key.get(&oldest).is_some_and(|e| e.until == expires)
                && let Some(gone) = inner.by_key.remove(&oldest)
            {
                inner.bytes -= gone.answer.bytes.len();
            }
        }
        inner.order.push_back((key.clone(), until));
        inner.bytes += size;
        if let Some(replaced) = inner.by_key.insert(key, Entry { answer, until }) {
            inner.bytes -= replaced.answer.bytes.len();
        }
    }

    /// The answer to resend for a retransmission of `key`, if it is kept.
    pub fn get(&self, key: &str) -> Option<Answer> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.by_key.get(key).filter(|e| e.until > Instant::now()).map(|e| e.answer.clone())
    }

    /// Answers kept now (expired ones included until they are pushed out).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).by_key.len()
    }

    /// Whether no answer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(n: u8) -> Answer {
        Answer { bytes: Arc::from(vec![n]), to: ([127, 0, 0, 1], 5060).into(), local: None }
    }

    #[test]
    fn keeps_answers_until_they_expire_and_at_most_its_capacity() {
        let cache = Answered::new(2, 1 << 20);
        cache.insert("a".into(), answer(1), Duration::from_secs(30));
        cache.insert("b".into(), answer(2), Duration::from_secs(30));
        assert_eq!(cache.get("a").map(|a| a.bytes[0]), Some(1));
        cache.insert("c".into(), answer(3), Duration::from_secs(30));
        assert_eq!(cache.len(), 2, "the oldest went");
        assert!(cache.get("a").is_none());
        assert_eq!(cache.get("c").map(|a| a.bytes[0]), Some(3));
        cache.insert("d".into(), answer(4), Duration::ZERO);
        assert!(cache.get("d").is_none(), "expired at once");
        assert!(Answered::new(0, 1 << 20).get("x").is_none());
    }

    #[test]
    fn keeps_at_most_its_bytes() {
        let big = |n: u8| Answer { bytes: Arc::from(vec![n; 400]), to: ([127, 0, 0, 1], 5060).into(), local: None };
        let cache = Answered::new(100, 1000);
        cache.insert("a".into(), big(1), Duration::from_secs(30));
        cache.insert("b".into(), big(2), Duration::from_secs(30));
        // Answered again: its bytes counted once.
        cache.insert("b".into(), big(3), Duration::from_secs(30));
        assert_eq!((cache.len(), cache.get("a").is_some()), (2, true));
        cache.insert("c".into(), big(4), Duration::from_secs(30));
        assert!(cache.get("a").is_none(), "the oldest went for the bytes");
        assert_eq!((cache.get("b").map(|a| a.bytes[0]), cache.get("c").map(|a| a.bytes[0])), (Some(3), Some(4)));
        cache.insert("huge".into(), Answer { bytes: Arc::from(vec![0; 2000]), ..big(0) }, Duration::from_secs(30));
        assert!(cache.get("huge").is_none() && cache.get("c").is_some(), "larger than the cache: not kept");
    }
}

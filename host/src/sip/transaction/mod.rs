//! Transactions (RFC 3261 §17): the client and server state machines with their
//! timers, free of I/O so they are tested without sockets; the keys that match
//! a message to its transaction; and the table from keys to the task that owns
//! each transaction.

pub mod answered;
pub mod client;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

pub use client::{ClientEnd, ClientStep, ClientTransaction};
pub use server::{ServerStep, ServerTransaction};

use crate::model::Transport;
use crate::model::wire::Message;

/// The protocol timers (`[sip] t1_ms`, `t2_ms`, `t4_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1, the round-trip estimate.
    pub t1: Duration,
    /// T2, the cap of retransmission intervals.
    pub t2: Duration,
    /// T4, how long a message stays in the network.
    pub t4: Duration,
}

/// The grid the end of a lingering transaction (Timers H, I and J, and the
/// 2xx absorb period: once Timer G is over, the end only stops absorbing
/// retransmissions) is rounded up to: the transactions that
/// end within one window end in one timer wake-up of the runtime instead of
/// one each. A later end than the RFC's is allowed (the timers are minimums).
pub const LINGER_GRID: Duration = Duration::from_millis(250);

/// `at`, rounded up to the next point of [`LINGER_GRID`] (counted from the
/// first call in the process).
pub fn on_linger_grid(at: std::time::Instant) -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    let grid = LINGER_GRID.as_nanos();
    let offset = at.saturating_duration_since(base).as_nanos().div_ceil(grid) * grid;
    base + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
}

/// A server transaction in the table: its task, and where its request came
/// from (only that source may CANCEL it, or a peer of its tenant).
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// The task that owns the transaction.
    pub tx: EventSender,
    /// The request's source address and transport.
    pub origin: (SocketAddr, Transport),
}

/// What reaches the task that owns a transaction.
#[derive(Debug)]
pub enum Event {
    /// The request again (a retransmission).
    Retransmission,
    /// An ACK for the transaction's final response, with its To tag.
    Ack(Option<Box<str>>),
    /// A CANCEL of the transaction (already answered 200).
    Cancel,
    /// A response for one of the transaction's client transactions (boxed: the
    /// channel's slots are sized by the largest event, and a transaction's
    /// channel lives as long as the transaction lingers).
    Response(Box<Message>),
}

/// Sends events to the task that owns a transaction.
pub type EventSender = mpsc::UnboundedSender<Event>;

/// The transaction table: server keys and client branches → the owning task.
/// Keys come from the network: a fast hash seeded at random per process.
#[derive(Debug, Default)]
pub struct Table {
    inner: Mutex<Keys>,
}

#[derive(Debug, Default)]
struct Keys {
    server: HashMap<String, ServerEntry, foldhash::fast::RandomState>,
    client: HashMap<String, EventSender, foldhash::fast::RandomState>,
}

impl Table {
    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        // A panic while holding the lock cannot leave the maps half-updated:
        // every operation is one insert or remove.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task of the server transaction with `key`.
    pub fn server(&self, key: &str) -> Option<ServerEntry> {
        self.keys().server.get(key).cloned()
    }

    /// Registers a new server transaction, whose request came from `origin`.
    pub fn insert_server(&self, key: String, tx: EventSender, origin: (SocketAddr, Transport)) {
        self.keys().server.insert(key, ServerEntry { tx, origin });
    }

    /// The task of the client transaction with `branch`.
    pub fn client(&self, branch: &str) -> Option<EventSender> {
        self.keys().client.get(branch).cloned()
    }

    /// Registers a client transaction's branch.
    pub fn insert_client(&self, branch: String, tx: EventSender) {
        self.keys().client.insert(branch, tx);
    }

    /// Forgets a client branch.
    pub fn remove_client(&self, branch: &str) {
        self.keys().client.remove(branch);
    }

    /// Forgets a server transaction and its client branches.
    pub fn remove(&self, key: &str, branches: &[String]) {
        let mut keys = self.keys();
        keys.server.remove(key);
        for b in branches {
            keys.client.remove(b);
        }
    }

    /// Server transactions in the table, lingering ones included.
    pub fn server_count(&self) -> usize {
        self.keys().server.len()
    }
}

/// The server transaction key of a request (RFC 3261 §17.2.3), with ACK and
/// CANCEL mapped to the INVITE they belong to; the RFC 2543 fallback (§17.2.3's
/// last paragraph) when the branch lacks the magic cookie.
pub fn server_key(msg: &Message) -> Option<String> {
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
                msg.first(crate::model::wire::Name::CallId).unwrap_or(""),
                via.value
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lingering_ends_are_rounded_up_to_a_shared_grid() {
        let now = std::time::Instant::now();
        let a = on_linger_grid(now + Duration::from_millis(32_000));
        let b = on_linger_grid(now + Duration::from_millis(32_000) + LINGER_GRID / 3);
        assert!(a >= now + Duration::from_millis(32_000), "never earlier than asked");
        assert!(a < now + Duration::from_millis(32_000) + LINGER_GRID, "at most one grid later");
        // Two ends a third of a grid apart share a point or are one grid apart.
        assert!(b == a || b == a + LINGER_GRID, "{:?}", b.duration_since(a));
        // A point of the grid stays where it is.
        assert_eq!(on_linger_grid(a), a);
    }
}

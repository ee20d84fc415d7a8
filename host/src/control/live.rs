//! The tenant set the router serves now, shared by whoever reads it (the SIP
//! plane, per request) and whoever swaps it (a reload, the database follower,
//! the LDAP poller): read without a lock, swapped whole, one swap at a time,
//! and observable (a counter of swaps to await).

use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::Tenants;

/// What another source lays over a tenant set fresh from the file or the
/// database (the LDAP entries of the tenants that read LDAP), so that the
/// source that read the set needs to know nothing of the other.
pub trait Overlay: Send + Sync + std::fmt::Debug {
    /// `tenants` with the other source's data laid over.
    fn overlay(&self, tenants: Tenants) -> Tenants;
}

/// A hook run with each new set before it serves.
type OnSwap = Box<dyn Fn(&Tenants) + Send + Sync>;

/// The live tenant set.
pub struct LiveTenants {
    current: ArcSwap<Tenants>,
    /// Counts the swaps, so callers can await a reload.
    swapped: watch::Sender<u64>,
    /// Held while an update computes and swaps, so that no two interleave.
    update: Mutex<()>,
    /// Run with each new set before it is visible (the SIP plane protects the
    /// new set's peers from bans).
    on_swap: OnceLock<OnSwap>,
}

impl std::fmt::Debug for LiveTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTenants").field("tenants", &self.current.load().iter().count()).finish_non_exhaustive()
    }
}

impl LiveTenants {
    /// A live set starting with `tenants`.
    pub fn new(tenants: Arc<Tenants>) -> LiveTenants {
        LiveTenants {
            current: ArcSwap::new(tenants),
            swapped: watch::channel(0).0,
            update: Mutex::new(()),
            on_swap: OnceLock::new(),
        }
    }

    /// The set now (transactions keep the set they started with).
    pub fn load(&self) -> Arc<Tenants> {
        self.current.load_full()
    }

    /// Reads the set now without taking a reference count (the request path).
    pub fn with<R>(&self, f: impl FnOnce(&Tenants) -> R) -> R {
        f(&self.current.load())
    }

    /// Sets the hook run with each new set before it serves; once (later
    /// calls are ignored), and run at once on the current set.
    pub fn on_swap(&self, hook: impl Fn(&Tenants) + Send + Sync + 'static) {
        hook(&self.current.load());
        let _ = self.on_swap.set(Box::new(hook));
    }

    /// Swaps in `tenants`.
    pub fn set(&self, tenants: Arc<Tenants>) {
        let _one_at_a_time = self.update.lock().unwrap_or_else(|e| e.into_inner());
        self.swap(tenants);
    }

    /// Swaps in the set `change` computes from the current one (none: no
    /// swap), with no other swap in between.
    pub fn update(&self, change: impl FnOnce(&Arc<Tenants>) -> Option<Arc<Tenants>>) {
        let _one_at_a_time = self.update.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(next) = change(&self.current.load_full()) {
            self.swap(next);
        }
    }

    fn swap(&self, tenants: Arc<Tenants>) {
        if let Some(hook) = self.on_swap.get() {
            hook(&tenants);
        }
        self.current.store(tenants);
        self.swapped.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every swap (a reload applied).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.swapped.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_runs_the_hook_first_and_is_counted() {
        let live = LiveTenants::new(Arc::new(Tenants::default()));
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        live.on_swap(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1, "run on the current set");
        let rx = live.subscribe();
        live.update(|_| None);
        assert_eq!(*rx.borrow(), 0, "no change, no swap");
        live.set(Arc::new(Tenants::default()));
        assert_eq!(*rx.borrow(), 1);
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}

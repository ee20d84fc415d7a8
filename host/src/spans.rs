//! The spans of work outside a request: a tenant's (reloads, policy changes,
//! the directory sources' updates), and blocking work that keeps the span it
//! was started in. The request path has its own (`request`, `policy`,
//! `client`: `sip/proxy/`).
//!
//! | span | where | fields |
//! |---|---|---|
//! | `directory_follower` | the PostgreSQL follower's task | |
//! | `ldap_poller` | the LDAP poller's task | |
//! | `watcher` | the file watcher's task | |
//! | `reload` | a reload of configuration and directory | `trigger` (`SIGHUP`, `admin API`, the file that changed) |
//! | `admin` | one admin API request | `method`, `path` |
//! | `tenant` | work on one tenant inside any of the above | `tenant` |

/// The span of work on one tenant outside a request: events inside carry
/// `tenant` without naming it themselves.
pub fn tenant(id: &str) -> tracing::Span {
    tracing::info_span!("tenant", tenant = %id)
}

/// [`tokio::task::spawn_blocking`], the closure run in the span current
/// where it was spawned (a blocking thread starts with none).
pub fn spawn_blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> tokio::task::JoinHandle<R> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

//! Reading from a hot standby near the router (`[directory] read_url`) while
//! the primary (`url`) notifies the changes: hot standbys cannot `LISTEN`, and
//! a standby replays the primary's changes a little after they commit.
//!
//! So a read never returns a state older than one the router applied: before
//! reading, the router takes the primary's WAL insert position (after the
//! notification came, so past the change's commit) and waits until the
//! standby has replayed at least that far, polling (1 ms doubling to 20 ms)
//! for at most `read_wait_ms`. A standby that lags further, or cannot be
//! reached, is passed over: that read goes to the primary.

use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use super::{Database, DbError};

/// Where a read went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The primary: there is no replica.
    Primary,
    /// The replica, caught up with the primary's position.
    Replica,
    /// The primary: the replica had not replayed the position within `read_wait_ms`.
    Lagging,
    /// The primary: the replica could not be reached or read.
    Unreachable,
}

impl ReadFrom {
    /// The metric's label value.
    pub fn label(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::Replica => "replica",
            ReadFrom::Lagging => "lagging",
            ReadFrom::Unreachable => "unreachable",
        }
    }
}

/// Whether the server has replayed (a standby) or written (a primary, such as
/// a promoted standby) at least position `$1`.
const REACHED: &str = "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                       ELSE pg_current_wal_lsn() END >= $1::text::pg_lsn";

/// The first and the longest pause between two looks at the replica.
const POLL: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(20));

impl Database {
    /// A connection to read from that sees at least what the primary holds
    /// now: the replica once it has replayed the primary's position, else the
    /// primary; with where it is.
    pub async fn reader(&self, what: &str) -> Result<(deadpool_postgres::Object, ReadFrom), DbError> {
        let primary = self.client(what).await?;
        let Some(replica) = &self.replica else { return Ok((primary, ReadFrom::Primary)) };
        let lsn: String = primary
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .map_err(DbError::pg(format!("{what}: the primary's WAL position")))?
            .get(0);
        // Back to the pool while the replica is waited for.
        drop(primary);
        let fallback = async |from| Ok((self.client(what).await?, from));
        let deadline = Instant::now() + self.settings.read_wait;
        let conn = match timeout_at(deadline, replica.get()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the read replica cannot be reached; reading the primary");
                return fallback(ReadFrom::Unreachable).await;
            }
            Err(_) => return fallback(ReadFrom::Unreachable).await,
        };
        let mut pause = POLL.0;
        loop {
            match timeout_at(deadline, conn.query_one(REACHED, &[&lsn])).await {
                Ok(Ok(row)) if row.get::<_, Option<bool>>(0) == Some(true) => return Ok((conn, ReadFrom::Replica)),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %super::describe(&e), "the read replica cannot be read; reading the primary");
                    return fallback(ReadFrom::Unreachable).await;
                }
                Err(_) => return fallback(ReadFrom::Lagging).await,
            }
            if Instant::now() + pause >= deadline {
                return fallback(ReadFrom::Lagging).await;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL.1);
        }
    }
}

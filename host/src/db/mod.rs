//! PostgreSQL as the shared source of a fleet: the directory (tenants, users,
//! contacts, hosted voice-mail policies, dial plans) and the policy versions,
//! with their schema (`host/migrations/`, run at start under an advisory lock)
//! and the follower that applies their changes to a running router.
//!
//! - [`directory`]: reading tenants (all, or one) and importing a directory file.
//! - [`policies`]: policy versions: upload, activate, roll back, list.
//! - [`follow`]: LISTEN/NOTIFY, per-tenant updates, resynchronisation after an
//!   outage, staleness.
//! - [`schema`]: migrations, and which router schemas a database works with
//!   (rolling upgrades: expand, then contract).
//! - [`replica`]: reading from a hot standby that has replayed the change.
//! - [`snapshot`]: the last directory applied, kept on disk to start from.

pub mod directory;
pub mod follow;
pub mod policies;
pub mod replica;
pub mod schema;
pub mod snapshot;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::control::config::PostgresSettings;

/// The channel a change to a tenant's directory rows is notified on (payload:
/// the tenant id).
pub const DIRECTORY_CHANNEL: &str = "exum_directory";
/// The channel a change of a tenant's active policy is notified on.
pub const POLICY_CHANNEL: &str = "exum_policy";

/// A database error, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database did not answer or refused.
    #[error("{what}: {source}")]
    Postgres {
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection from the pool.
    #[error("{what}: no database connection: {source}")]
    Pool {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The schema could not be brought up to date.
    #[error("migrating the schema: {0}")]
    Migrate(String),
    /// The database's schema and this router's do not work together (why,
    /// and what to do).
    #[error("{0}")]
    Schema(String),
    /// A request that cannot be carried out (unknown tenant or version ...).
    #[error("{0}")]
    Invalid(String),
    /// The candidate to promote was rolled back (why).
    #[error("the candidate was rolled back ({0}); start it again to promote it")]
    RolledBack(String),
    /// The TLS settings cannot be used.
    #[error("[directory] ca: {0}")]
    Tls(#[from] crate::pki::PkiError),
    /// The attempt took longer than the connect timeout.
    #[error("{0}: timed out")]
    Timeout(String),
}

impl DbError {
    pub(crate) fn pg(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        let what = what.into();
        move |source| DbError::Postgres { what, source }
    }
}

/// The driver's error with its server-side detail (`{source}` alone prints
/// "db error").
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A connection to the database: a pool for reads and writes, and one to
/// the read replica when there is one (`read_url`).
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    replica: Option<Pool>,
    settings: Arc<PostgresSettings>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn tls_connector(settings: &PostgresSettings) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, DbError> {
    let Some(ca) = &settings.tls_ca else { return Ok(None) };
    let config = crate::pki::client_trusting(ca)?;
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
}

fn pg_config(settings: &PostgresSettings) -> Result<tokio_postgres::Config, DbError> {
    config_of(settings, &settings.url, "url")
}

/// The driver's configuration of connection string `url` (the `key` of
/// `[directory]` it was given as), with the router's timeouts and keepalives.
fn config_of(settings: &PostgresSettings, url: &str, key: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e: tokio_postgres::Error| DbError::Invalid(format!("[directory] {key}: {e}")))?;
    config.connect_timeout(settings.connect_timeout);
    config.keepalives(true);
    // A database gone silent (no FIN, no RST) is noticed in about 25 s.
    config.keepalives_idle(std::time::Duration::from_secs(10));
    config.keepalives_interval(std::time::Duration::from_secs(5));
    config.keepalives_retries(3);
    if config.get_application_name().is_none() {
        config.application_name("exum-router");
    }
    if settings.tls_ca.is_some() {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    Ok(config)
}

/// A pool of `pool_size` connections made with `config`.
fn pool_of(settings: &PostgresSettings, config: tokio_postgres::Config) -> Result<Pool, DbError> {
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let manager = match tls_connector(settings)? {
        Some(tls) => Manager::from_config(config, tls, manager_config),
        None => Manager::from_config(config, NoTls, manager_config),
    };
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(settings.connect_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| DbError::Invalid(format!("[directory]: {e}")))
}

impl Database {
    /// A pool to the database of `settings` (connections are made when used).
    pub fn new(settings: &PostgresSettings) -> Result<Database, DbError> {
        let pool = pool_of(settings, pg_config(settings)?)?;
        let replica = match &settings.read_url {
            Some(url) => Some(pool_of(settings, config_of(settings, url, "read_url")?)?),
            None => None,
        };
        Ok(Database { pool, replica, settings: Arc::new(settings.clone()) })
    }

    /// A connection from the pool.
    pub async fn client(&self, what: &str) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(|source| DbError::Pool { what: what.to_owned(), source })
    }

    /// A connection of its own (not from the pool), its driver task spawned;
    /// the notifications it receives go to `notices`, and its end (the
    /// database gone, or the task aborted) is sent as `None`.
    pub(crate) async fn connect_with(
        &self,
        notices: Option<tokio::sync::mpsc::UnboundedSender<Option<tokio_postgres::Notification>>>,
    ) -> Result<(Client, tokio::task::JoinHandle<()>), DbError> {
        let config = pg_config(&self.settings)?;
        let timeout = self.settings.connect_timeout;
        let what = "connecting to the database";
        let connected = async {
            match tls_connector(&self.settings)? {
                Some(tls) => {
                    let (client, conn) = config.connect(tls).await.map_err(DbError::pg(what))?;
                    Ok::<_, DbError>((client, tokio::spawn(drive(conn, notices))))
                }
                None => {
                    let (client, conn) = config.connect(NoTls).await.map_err(DbError::pg(what))?;
                    Ok((client, tokio::spawn(drive(conn, notices))))
                }
            }
        };
        tokio::time::timeout(timeout + std::time::Duration::from_secs(1), connected)
            .await
            .map_err(|_| DbError::Timeout(what.to_owned()))?
    }
}

/// Drives a connection: forwards its notifications, and a `None` when it ends.
async fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    notices: Option<tokio::sync::mpsc::UnboundedSender<Option<tokio_postgres::Notification>>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if let Some(tx) = &notices {
                    let _ = tx.send(Some(n));
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::debug!(error = %e, "database connection ended");
                break;
            }
            None => break,
        }
    }
    if let Some(tx) = &notices {
        let _ = tx.send(None);
    }
}

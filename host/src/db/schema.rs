//! The database's schema: the migrations in `host/migrations/` (embedded in
//! the binary), applied at start or by `exum-router db migrate`, one instance
//! at a time (an advisory lock), and which routers a database works with.
//!
//! Rolling upgrades go expand, then contract. A migration that only adds (a
//! column with a default, a table) leaves routers of the previous schema
//! working: they start and keep running against the newer database (they read
//! the columns they know). A migration that removes or changes what older
//! routers read declares, in a line `-- exum-router: min_router_schema = N`,
//! the oldest router schema that still works with it; it is applied only
//! when no router of an older schema is connected (each router's listening
//! session is named `exum-router/schema-<its version>`), and once applied,
//! older routers refuse to start against the database, saying why.

use std::sync::OnceLock;

use refinery::Migration;

use super::{Database, DbError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The advisory lock serialising migrations and checks ("exum-db").
const LOCK: i64 = 0x0065_7875_6d2d_6462;
/// How a migration declares the oldest router schema that works with it.
const MARKER: &str = "-- exum-router: min_router_schema =";
/// How a router's listening session is named, followed by its schema version.
const SESSION_PREFIX: &str = "exum-router/schema-";

/// This router's migrations, in order.
pub fn migrations() -> Vec<Migration> {
    embedded::migrations::runner().get_migrations().clone()
}

/// The schema version `migrations` bring a database to (the highest).
pub fn version_of(migrations: &[Migration]) -> i32 {
    migrations.iter().map(Migration::version).max().unwrap_or(0)
}

/// This router's schema version.
pub fn version() -> i32 {
    static VERSION: OnceLock<i32> = OnceLock::new();
    *VERSION.get_or_init(|| version_of(&migrations()))
}

/// The name a router's listening session carries (`application_name`).
pub fn session_name() -> String {
    format!("{SESSION_PREFIX}{}", version())
}

/// The oldest router schema a migration's SQL declares it works with.
fn declared_floor(sql: &str) -> Option<i32> {
    sql.lines().find_map(|l| l.trim().strip_prefix(MARKER)?.trim().parse().ok())
}

/// What [`Database::prepare`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The migrations applied now.
    pub applied: Vec<String>,
    /// The database's schema version, after.
    pub database: i32,
}

impl Database {
    /// Brings the schema up to date with this router's migrations; returns
    /// those applied now.
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        Ok(self.prepare(true, &migrations()).await?.applied)
    }

    /// Checks that the database works with a router of `migrations` and,
    /// with `apply`, applies those it lacks. Refused: a database contracted
    /// past this router's schema; without `apply`, a database older than it;
    /// a migration that contracts while older routers are connected.
    pub async fn prepare(&self, apply: bool, migrations: &[Migration]) -> Result<Prepared, DbError> {
        // A connection of its own: the runner needs a plain client, and the
        // advisory lock is held by the session.
        let (mut client, task) = self.connect_with(None).await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
            .await
            .map_err(DbError::pg("taking the migration lock"))?;
        let prepared = prepare_locked(&mut client, apply, migrations).await;
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await;
        drop(client);
        task.abort();
        prepared
    }
}

async fn prepare_locked(
    client: &mut tokio_postgres::Client,
    apply: bool,
    migrations: &[Migration],
) -> Result<Prepared, DbError> {
    let router = version_of(migrations);
    let (database, floor) = state(client).await?;
    let done = |applied, database| Ok(Prepared { applied, database });
    if database > router {
        if router < floor {
            return Err(DbError::Schema(format!(
                "the database's schema is at version {database} and works with routers of schema {floor} or later \
                 (a newer release removed what older ones read); this router's schema is {router}: upgrade it"
            )));
        }
        tracing::info!(
            database,
            router,
            "the database's schema is newer than this router's and still works with it (a rolling upgrade)"
        );
        return done(Vec::new(), database);
    }
    if database == router {
        return done(Vec::new(), database);
    }
    if !apply {
        return Err(DbError::Schema(format!(
            "the database's schema is at version {database} and this router needs {router}: \
             run `exum-router db migrate` (or set [directory] migrate = true)"
        )));
    }
    let pending: Vec<&Migration> = migrations.iter().filter(|m| m.version() > database).collect();
    let raised = pending.iter().filter_map(|m| Some((declared_floor(m.sql()?)?, m.version()))).max();
    if let Some((to, by)) = raised.filter(|(to, _)| *to > floor) {
        let older = older_routers(client, to).await?;
        if !older.is_empty() {
            return Err(DbError::Schema(format!(
                "migration V{by} works only with routers of schema {to} or later, and {} connected router{} older: \
                 {}; upgrade {} first, then migrate",
                older.len(),
                if older.len() == 1 { " is" } else { "s are" },
                older.join(", "),
                if older.len() == 1 { "it" } else { "them" },
            )));
        }
    }
    let report =
        refinery::Runner::new(migrations).run_async(client).await.map_err(|e| DbError::Migrate(e.to_string()))?;
    if let Some((to, _)) = raised {
        client
            .execute("UPDATE exum.schema_compatibility SET min_router_schema = greatest(min_router_schema, $1)", &[&to])
            .await
            .map_err(DbError::pg("raising the oldest router schema"))?;
    }
    let applied = report.applied_migrations().iter().map(|m| m.to_string()).collect();
    done(applied, router)
}

/// The database's schema version (0: none) and the oldest router schema it
/// works with (1 before the table that says so).
async fn state(client: &tokio_postgres::Client) -> Result<(i32, i32), DbError> {
    let what = "reading the schema version";
    let exists = |table: &'static str| async move {
        let row = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.map_err(DbError::pg(what))?;
        Ok::<bool, DbError>(row.get(0))
    };
    let database: i32 = if exists("refinery_schema_history").await? {
        client
            .query_one("SELECT coalesce(max(version), 0) FROM refinery_schema_history", &[])
            .await
            .map_err(DbError::pg(what))?
            .get(0)
    } else {
        0
    };
    let floor: i32 = if exists("exum.schema_compatibility").await? {
        client
            .query_opt("SELECT min_router_schema FROM exum.schema_compatibility", &[])
            .await
            .map_err(DbError::pg(what))?
            .map_or(1, |r| r.get(0))
    } else {
        1
    };
    Ok((database, floor))
}

/// The routers connected now whose schema is older than `schema`, each as
/// `exum-router/schema-N at ADDRESS (pid P)`.
async fn older_routers(client: &tokio_postgres::Client, schema: i32) -> Result<Vec<String>, DbError> {
    let rows = client
        .query(
            "SELECT application_name, coalesce(host(client_addr), 'a local socket'), pid FROM pg_stat_activity \
             WHERE application_name LIKE $1 AND pid <> pg_backend_pid() ORDER BY pid",
            &[&format!("{SESSION_PREFIX}%")],
        )
        .await
        .map_err(DbError::pg("listing the connected routers"))?;
    Ok(rows
        .iter()
        .filter(|r| {
            let name: &str = r.get(0);
            name.strip_prefix(SESSION_PREFIX).and_then(|v| v.parse::<i32>().ok()).is_none_or(|v| v < schema)
        })
        .map(|r| format!("{} at {} (pid {})", r.get::<_, &str>(0), r.get::<_, &str>(1), r.get::<_, i32>(2)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contract_migration_declares_the_oldest_router_schema_it_works_with() {
        assert_eq!(declared_floor("ALTER TABLE x DROP COLUMN y;\n"), None);
        assert_eq!(declared_floor("-- drops y\n  -- exum-router: min_router_schema = 6\nALTER TABLE x;\n"), Some(6));
        assert_eq!(declared_floor("-- exum-router: min_router_schema = six\n"), None);
    }

    #[test]
    fn this_router_s_schema_is_its_last_migration_and_names_its_session() {
        let all = migrations();
        assert!(all.len() >= 4, "{all:?}");
        assert_eq!(version(), all.iter().map(Migration::version).max().unwrap_or(0));
        assert_eq!(session_name(), format!("exum-router/schema-{}", version()));
        // No migration of this release contracts.
        assert!(all.iter().all(|m| m.sql().and_then(declared_floor).is_none()));
    }
}

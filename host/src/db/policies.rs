//! Policy versions in the database: each tenant's uploaded components (bytes,
//! sha256, when, who) and its active version. Activating is one UPDATE of
//! `exum.policy_active`; every instance applies it through NOTIFY.

use std::time::SystemTime;

use serde::Serialize;

use super::{DbError, describe};

/// A stored version (without its bytes).
#[derive(Debug, Clone, Serialize)]
pub struct StoredVersion {
    /// Its id, unique across tenants.
    pub version_id: i64,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: i32,
    /// Uploaded at (seconds since the epoch).
    pub uploaded_at: u64,
    /// Uploaded by.
    pub uploaded_by: String,
    /// Whether it is the tenant's active version.
    pub active: bool,
}

/// A tenant's active version with its bytes.
#[derive(Debug, Clone)]
pub struct ActiveVersion {
    /// Its id.
    pub version_id: i64,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The component.
    pub bytes: Vec<u8>,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Stores a component for `tenant`: its new version id (the existing one when
/// the same bytes were uploaded before).
pub async fn upload(client: &tokio_postgres::Client, tenant: &str, bytes: &[u8], by: &str) -> Result<i64, DbError> {
    let sha256 = crate::policy::hex_sha256(bytes);
    let row = client
        .query_one(
            "WITH new AS (
                 INSERT INTO exum.policy_versions (tenant_id, bytes, sha256, uploaded_by)
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM exum.tenants WHERE tenant_id = $1)
                 ON CONFLICT (tenant_id, sha256) DO NOTHING
                 RETURNING version_id)
             SELECT version_id FROM new
             UNION ALL
             SELECT version_id FROM exum.policy_versions WHERE tenant_id = $1 AND sha256 = $3
             LIMIT 1",
            &[&tenant, &bytes, &sha256, &by],
        )
        .await;
    match row {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.to_string().contains("unexpected number of rows") => {
            Err(DbError::Invalid(format!("no tenant `{tenant}` in the database")))
        }
        Err(e) => Err(DbError::Invalid(format!("storing the policy of {tenant}: {}", describe(&e)))),
    }
}

/// Gives a tenant of the router's configuration its row in `exum.tenants`
/// (with no settings: it stays defined in the configuration), so versions can
/// be stored for it.
pub async fn ensure_tenant(client: &tokio_postgres::Client, tenant: &str) -> Result<(), DbError> {
    client
        .execute("INSERT INTO exum.tenants (tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING", &[&tenant])
        .await
        .map_err(DbError::pg(format!("adding tenant {tenant}")))?;
    Ok(())
}

/// Makes `version_id` the tenant's active version (one UPDATE; inserted the
/// first time). `None` goes back to the tenant's configured policy.
pub async fn activate(
    client: &tokio_postgres::Client,
    tenant: &str,
    version_id: Option<i64>,
    by: &str,
) -> Result<(), DbError> {
    let updated = client
        .execute(
            "UPDATE exum.policy_active SET version_id = $2, activated_by = $3 WHERE tenant_id = $1",
            &[&tenant, &version_id, &by],
        )
        .await
        .map_err(|e| DbError::Invalid(format!("activating {version_id:?} for {tenant}: {}", describe(&e))))?;
    if updated == 0 {
        client
            .execute(
                "INSERT INTO exum.policy_active (tenant_id, version_id, activated_by) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant_id) DO UPDATE SET version_id = EXCLUDED.version_id, activated_by = EXCLUDED.activated_by",
                &[&tenant, &version_id, &by],
            )
            .await
            .map_err(|e| DbError::Invalid(format!("activating {version_id:?} for {tenant}: {}", describe(&e))))?;
    }
    Ok(())
}

/// Activates the version that was active before the current one; returns it.
pub async fn rollback(client: &tokio_postgres::Client, tenant: &str, by: &str) -> Result<Option<i64>, DbError> {
    let row = client
        .query_opt("SELECT version_id, previous_version_id FROM exum.policy_active WHERE tenant_id = $1", &[&tenant])
        .await
        .map_err(DbError::pg(format!("reading the active policy of {tenant}")))?;
    let Some(row) = row else {
        return Err(DbError::Invalid(format!("tenant `{tenant}` has never had a policy activated")));
    };
    let (current, previous): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
    if previous.is_none() && current.is_none() {
        return Err(DbError::Invalid(format!("tenant `{tenant}` has no previous version to roll back to")));
    }
    activate(client, tenant, previous, by).await?;
    Ok(previous)
}

/// The tenant's versions, newest first.
pub async fn list(client: &tokio_postgres::Client, tenant: &str) -> Result<Vec<StoredVersion>, DbError> {
    let rows = client
        .query(
            "SELECT v.version_id, v.sha256, length(v.bytes), v.uploaded_at, v.uploaded_by,
                    COALESCE(a.version_id = v.version_id, false)
               FROM exum.policy_versions v LEFT JOIN exum.policy_active a USING (tenant_id)
              WHERE v.tenant_id = $1 ORDER BY v.version_id DESC",
            &[&tenant],
        )
        .await
        .map_err(DbError::pg(format!("listing the policies of {tenant}")))?;
    Ok(rows
        .iter()
        .map(|r| StoredVersion {
            version_id: r.get(0),
            sha256: r.get(1),
            size: r.get(2),
            uploaded_at: secs(r.get(3)),
            uploaded_by: r.get(4),
            active: r.get(5),
        })
        .collect())
}

/// The tenant's active version, if it has one.
pub async fn active(client: &tokio_postgres::Client, tenant: &str) -> Result<Option<ActiveVersion>, DbError> {
    let row = client
        .query_opt(
            "SELECT v.version_id, v.sha256, v.bytes FROM exum.policy_active a
               JOIN exum.policy_versions v USING (version_id) WHERE a.tenant_id = $1",
            &[&tenant],
        )
        .await
        .map_err(DbError::pg(format!("reading the active policy of {tenant}")))?;
    Ok(row.map(|r| ActiveVersion { version_id: r.get(0), sha256: r.get(1), bytes: r.get(2) }))
}

/// Every tenant with an active version: tenant id and version id.
pub async fn all_active(client: &tokio_postgres::Client) -> Result<Vec<(String, i64)>, DbError> {
    let rows = client
        .query("SELECT tenant_id, version_id FROM exum.policy_active WHERE version_id IS NOT NULL", &[])
        .await
        .map_err(DbError::pg("reading the active policies"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A tenant's candidate in the database, with its component.
#[derive(Debug, Clone)]
pub struct StoredCandidate {
    /// Its version id.
    pub version_id: i64,
    /// The component.
    pub bytes: Vec<u8>,
    /// `shadow` or `canary`.
    pub mode: String,
    /// A canary's share of new calls.
    pub share: f64,
    /// The canary's rule, where set (else the routers' `[lifecycle]`).
    pub min_calls: Option<i64>,
    /// See [`StoredCandidate::min_calls`].
    pub fault_margin: Option<f64>,
    /// See [`StoredCandidate::min_calls`].
    pub failure_margin: Option<f64>,
    /// Why it was rolled back, if it was.
    pub rolled_back: Option<String>,
}

/// The tenant's candidate, if it has one.
pub async fn candidate(client: &tokio_postgres::Client, tenant: &str) -> Result<Option<StoredCandidate>, DbError> {
    let row = client
        .query_opt(
            "SELECT c.version_id, v.bytes, c.mode, c.share, c.min_calls, c.fault_margin, c.failure_margin,
                    c.state, c.reason
               FROM exum.policy_candidates c JOIN exum.policy_versions v USING (version_id)
              WHERE c.tenant_id = $1",
            &[&tenant],
        )
        .await
        .map_err(DbError::pg(format!("reading the candidate of {tenant}")))?;
    Ok(row.map(|r| StoredCandidate {
        version_id: r.get(0),
        bytes: r.get(1),
        mode: r.get(2),
        share: r.get(3),
        min_calls: r.get(4),
        fault_margin: r.get(5),
        failure_margin: r.get(6),
        rolled_back: (r.get::<_, &str>(7) == "rolled_back")
            .then(|| r.get::<_, Option<String>>(8).unwrap_or_else(|| "rolled back".into())),
    }))
}

/// Every tenant's candidate: tenant id, version id, and whether rolled back.
pub async fn all_candidates(client: &tokio_postgres::Client) -> Result<Vec<(String, i64, bool)>, DbError> {
    let rows = client
        .query("SELECT tenant_id, version_id, state = 'rolled_back' FROM exum.policy_candidates", &[])
        .await
        .map_err(DbError::pg("reading the candidates"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Makes `version_id` the tenant's candidate (replacing any), running.
#[allow(clippy::too_many_arguments)]
pub async fn set_candidate(
    client: &tokio_postgres::Client,
    tenant: &str,
    version_id: i64,
    mode: &str,
    share: f64,
    rule: (Option<i64>, Option<f64>, Option<f64>),
    by: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO exum.policy_candidates
                 (tenant_id, version_id, mode, share, min_calls, fault_margin, failure_margin, started_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant_id) DO UPDATE SET version_id = EXCLUDED.version_id, mode = EXCLUDED.mode,
                 share = EXCLUDED.share, min_calls = EXCLUDED.min_calls, fault_margin = EXCLUDED.fault_margin,
                 failure_margin = EXCLUDED.failure_margin, state = 'running', reason = NULL,
                 started_at = now(), started_by = EXCLUDED.started_by",
            &[&tenant, &version_id, &mode, &share, &rule.0, &rule.1, &rule.2, &by],
        )
        .await
        .map_err(|e| DbError::Invalid(format!("starting candidate {version_id} for {tenant}: {}", describe(&e))))?;
    Ok(())
}

/// Ends the tenant's candidate; whether it had one.
pub async fn clear_candidate(client: &tokio_postgres::Client, tenant: &str) -> Result<bool, DbError> {
    let n = client
        .execute("DELETE FROM exum.policy_candidates WHERE tenant_id = $1", &[&tenant])
        .await
        .map_err(DbError::pg(format!("ending the candidate of {tenant}")))?;
    Ok(n > 0)
}

/// A router rolled the tenant's canary back: every router follows.
pub async fn candidate_rolled_back(
    client: &tokio_postgres::Client,
    tenant: &str,
    version_id: i64,
    reason: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE exum.policy_candidates SET state = 'rolled_back', reason = $3
              WHERE tenant_id = $1 AND version_id = $2 AND state = 'running'",
            &[&tenant, &version_id, &reason],
        )
        .await
        .map_err(DbError::pg(format!("recording the rollback of {tenant}'s canary")))?;
    Ok(())
}

/// The running candidate becomes the active version, in one statement; its
/// version id.
pub async fn promote(client: &tokio_postgres::Client, tenant: &str, by: &str) -> Result<i64, DbError> {
    let row = client
        .query_opt(
            "WITH c AS (DELETE FROM exum.policy_candidates WHERE tenant_id = $1 AND state = 'running'
                        RETURNING version_id)
             UPDATE exum.policy_active a SET version_id = c.version_id, activated_by = $2, activated_at = now()
               FROM c WHERE a.tenant_id = $1 RETURNING a.version_id",
            &[&tenant, &by],
        )
        .await
        .map_err(|e| DbError::Invalid(format!("promoting the candidate of {tenant}: {}", describe(&e))))?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => match candidate(client, tenant).await? {
            Some(c) => Err(DbError::RolledBack(c.rolled_back.unwrap_or_default())),
            None => Err(DbError::Invalid(format!("tenant `{tenant}` has no candidate"))),
        },
    }
}

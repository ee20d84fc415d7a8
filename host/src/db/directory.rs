//! The directory's tables: reading every tenant or one, importing a directory
//! file, showing a tenant. Rows become the same [`TenantData`] a directory
//! file's section is read into, and are validated by the same code.

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::{DbError, describe};
use crate::control::directory::{ContactFile, DialPlanFile, HostedPolicyFile, TenantData, UmServerFile, UserFile};

/// One tenant's rows, as read in one snapshot, and the version they are at.
#[derive(Debug)]
pub struct TenantRows {
    /// The tenant's data (and settings, when the database defines it).
    pub(crate) data: TenantData,
    /// Its version in `exum.tenant_changes` (0 if it has none).
    pub version: i64,
}

/// Every tenant of the database, and the version of every tenant that ever
/// changed (deleted ones included), read in one snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Tenants by id.
    pub tenants: BTreeMap<String, TenantRows>,
    /// Versions by tenant id.
    pub versions: BTreeMap<String, i64>,
}

const USERS: &str =
    "SELECT tenant_id, sip, line, site, hosted_voicemail, hosted_voicemail_policy, eum, eum_more FROM exum.users";
const CONTACTS: &str =
    "SELECT tenant_id, sip, number, kind, site, hosted_voicemail_policy, dial_plan FROM exum.contacts";
const POLICIES: &str = "SELECT tenant_id, scope, destination, organizations FROM exum.hosted_voicemail_policies";
const DIAL_PLANS: &str =
    "SELECT tenant_id, name, phone_context, servers, selection, server_versions FROM exum.dial_plans";

fn user(row: &tokio_postgres::Row) -> UserFile {
    UserFile {
        sip: row.get(1),
        line: row.get(2),
        site: row.get(3),
        hosted_voicemail: row.get(4),
        hosted_voicemail_policy: row.get(5),
        eum: row.get::<_, Option<String>>(6).into_iter().chain(row.get::<_, Vec<String>>(7)).collect(),
    }
}

fn contact(row: &tokio_postgres::Row) -> Result<ContactFile, String> {
    let kind: String = row.get(3);
    let sip: String = row.get(1);
    Ok(ContactFile {
        kind: serde_json::from_value(serde_json::Value::String(kind.clone())).map_err(|_| {
            format!("contacts (sip = {sip}).kind: `{kind}`: expected \"subscriber-access\" or \"auto-attendant\"")
        })?,
        sip,
        number: row.get(2),
        site: row.get(4),
        hosted_voicemail_policy: row.get(5),
        dial_plan: row.get(6),
    })
}

fn hosted_policy(row: &tokio_postgres::Row) -> HostedPolicyFile {
    HostedPolicyFile { scope: row.get(1), destination: row.get(2), organizations: row.get(3) }
}

fn dial_plan(row: &tokio_postgres::Row) -> Result<DialPlanFile, String> {
    let name: String = row.get(1);
    let servers: serde_json::Value = row.get(3);
    let servers: Vec<UmServerFile> = serde_path_to_error::deserialize(servers).map_err(|e| {
        let path = e.path().to_string();
        format!(
            "dial_plans (name = {name}).servers{}: {}",
            if path == "." { String::new() } else { format!(".{path}") },
            e.into_inner()
        )
    })?;
    // The versions, by position (a `version` key in `servers` is read too).
    let mut servers = servers;
    for (server, version) in servers.iter_mut().zip(row.get::<_, Vec<Option<i32>>>(5)) {
        if let Some(v) = version {
            server.version =
                Some(u32::try_from(v).map_err(|_| {
                    format!("dial_plans (name = {name}).server_versions: {v}: an Exchange major version")
                })?);
        }
    }
    let selection: String = row.get(4);
    let selection = serde_json::from_value(serde_json::Value::String(selection.clone())).map_err(|_| {
        format!("dial_plans (name = {name}).selection: `{selection}`: expected \"ordered\" or \"round-robin\"")
    })?;
    Ok(DialPlanFile { name, phone_context: row.get(2), servers, selection })
}

/// A tenant's rows that cannot even be read into a section (a contact kind or
/// a dial plan's servers of the wrong shape): the tenant is refused like one
/// that fails validation.
#[derive(Debug)]
pub struct Unreadable {
    /// The tenant.
    pub tenant: String,
    /// Which row and why.
    pub reason: String,
}

/// Reads every tenant in one REPEATABLE READ snapshot. Tenants with rows of
/// the wrong shape are returned apart.
pub async fn read_all(client: &mut tokio_postgres::Client) -> Result<(Snapshot, Vec<Unreadable>), DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::pg("reading the directory"))?;
    let out = read(&tx, None).await?;
    tx.commit().await.map_err(DbError::pg("reading the directory"))?;
    Ok(out)
}

/// Reads one tenant in one snapshot: `None` when it is not in the database
/// (deleted), with its version either way.
pub async fn read_tenant(
    client: &mut tokio_postgres::Client,
    id: &str,
) -> Result<(Result<Option<TenantRows>, Unreadable>, i64), DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(DbError::pg(format!("reading tenant {id}")))?;
    let (mut snapshot, mut unreadable) = read(&tx, Some(id)).await?;
    tx.commit().await.map_err(DbError::pg(format!("reading tenant {id}")))?;
    let version = snapshot.versions.get(id).copied().unwrap_or(0);
    if let Some(u) = unreadable.pop() {
        return Ok((Err(u), version));
    }
    Ok((Ok(snapshot.tenants.remove(id)), version))
}

async fn read(
    tx: &tokio_postgres::Transaction<'_>,
    only: Option<&str>,
) -> Result<(Snapshot, Vec<Unreadable>), DbError> {
    let filter = |sql: &str, key: &str| match only {
        Some(_) => format!("{sql} WHERE {key} = $1"),
        None => sql.to_owned(),
    };
    let q = |sql: String| query(tx, sql, only);
    let mut snapshot = Snapshot::default();
    let mut broken: BTreeMap<String, String> = BTreeMap::new();
    for row in q(filter("SELECT tenant_id, version FROM exum.tenant_changes", "tenant_id")).await? {
        snapshot.versions.insert(row.get(0), row.get(1));
    }
    for row in q(filter("SELECT tenant_id, settings FROM exum.tenants", "tenant_id")).await? {
        let id: String = row.get(0);
        let settings = match row.get::<_, serde_json::Value>(1) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let version = snapshot.versions.get(&id).copied().unwrap_or(0);
        snapshot.tenants.insert(id, TenantRows { data: TenantData { settings, ..TenantData::default() }, version });
    }
    for row in q(format!("{} ORDER BY tenant_id, scope", filter(POLICIES, "tenant_id"))).await? {
        if let Some(t) = snapshot.tenants.get_mut(row.get::<_, &str>(0)) {
            t.data.hosted_voicemail_policies.push(hosted_policy(&row));
        }
    }
    // Rows that may not even read (a kind or the servers' JSON of the wrong
    // shape) mark their tenant unreadable.
    let mut add = |id: String, row: Result<(), String>| {
        if let Err(e) = row {
            broken.entry(id).or_insert(e);
        }
    };
    for row in q(format!("{} ORDER BY tenant_id, name", filter(DIAL_PLANS, "tenant_id"))).await? {
        let id: String = row.get(0);
        let read = dial_plan(&row).map(|d| {
            if let Some(t) = snapshot.tenants.get_mut(&id) {
                t.data.dial_plans.push(d);
            }
        });
        add(id, read);
    }
    for row in q(format!("{} ORDER BY tenant_id, sip", filter(USERS, "tenant_id"))).await? {
        if let Some(t) = snapshot.tenants.get_mut(row.get::<_, &str>(0)) {
            t.data.users.push(user(&row));
        }
    }
    for row in q(format!("{} ORDER BY tenant_id, sip", filter(CONTACTS, "tenant_id"))).await? {
        let id: String = row.get(0);
        let read = contact(&row).map(|c| {
            if let Some(t) = snapshot.tenants.get_mut(&id) {
                t.data.contacts.push(c);
            }
        });
        add(id, read);
    }
    let mut unreadable = Vec::new();
    for (tenant, reason) in broken {
        snapshot.tenants.remove(&tenant);
        unreadable.push(Unreadable { tenant, reason });
    }
    Ok((snapshot, unreadable))
}

async fn query(
    tx: &tokio_postgres::Transaction<'_>,
    sql: String,
    only: Option<&str>,
) -> Result<Vec<tokio_postgres::Row>, DbError> {
    let what = || format!("reading {}", only.map_or_else(|| "the directory".to_owned(), |t| format!("tenant {t}")));
    let params: Vec<&(dyn ToSql + Sync)> = match &only {
        Some(id) => vec![id],
        None => vec![],
    };
    tx.query(&sql, &params).await.map_err(DbError::pg(what()))
}

/// The names of a tenant's rows (their keys), to name the row of a
/// validation error.
#[derive(Debug, Default)]
pub(crate) struct RowNames {
    users: Vec<String>,
    contacts: Vec<String>,
    policies: Vec<String>,
    dial_plans: Vec<String>,
}

impl RowNames {
    pub(crate) fn of(t: &TenantData) -> RowNames {
        RowNames {
            users: t.users.iter().map(|u| format!("sip = {}", u.sip)).collect(),
            contacts: t.contacts.iter().map(|c| format!("sip = {}", c.sip)).collect(),
            policies: t.hosted_voicemail_policies.iter().map(|p| format!("scope = {}", p.scope)).collect(),
            dial_plans: t.dial_plans.iter().map(|d| format!("name = {}", d.name)).collect(),
        }
    }
}

/// Names the row of a validation error: `users[3]` becomes `users (sip = ...)`
/// (rows are read in key order; the index means nothing to whoever edits them).
pub(crate) fn name_rows(key: &str, names: &RowNames) -> String {
    let tables: [(&str, &Vec<String>); 4] = [
        ("users", &names.users),
        ("contacts", &names.contacts),
        ("hosted_voicemail_policies", &names.policies),
        ("dial_plans", &names.dial_plans),
    ];
    for (table, names) in tables {
        let open = format!("{table}[");
        if let Some(start) = key.find(&open) {
            let rest = &key[start + open.len()..];
            if let Some(end) = rest.find(']')
                && let Ok(i) = rest[..end].parse::<usize>()
                && let Some(named) = names.get(i)
            {
                return format!("{}{table} ({named}){}", &key[..start], &rest[end + 1..]);
            }
        }
    }
    key.to_owned()
}

/// Writes `sections` (tenant id, its data and settings) into the database, in
/// one transaction: each tenant's rows are replaced whole; other tenants are
/// left alone. Returns the number of users written.
pub(crate) async fn import(
    client: &mut tokio_postgres::Client,
    sections: Vec<(String, TenantData)>,
) -> Result<usize, DbError> {
    let what = "importing the directory";
    let tx = client.transaction().await.map_err(DbError::pg(what))?;
    let mut users = 0;
    for (id, t) in sections {
        let settings = serde_json::Value::Object(t.settings);
        tx.execute(
            "INSERT INTO exum.tenants (tenant_id, settings) VALUES ($1, $2)
             ON CONFLICT (tenant_id) DO UPDATE SET settings = EXCLUDED.settings",
            &[&id, &settings],
        )
        .await
        .map_err(DbError::pg(format!("{what}: tenant {id}")))?;
        for table in ["users", "contacts", "hosted_voicemail_policies", "dial_plans"] {
            tx.execute(&format!("DELETE FROM exum.{table} WHERE tenant_id = $1"), &[&id])
                .await
                .map_err(DbError::pg(format!("{what}: tenant {id}")))?;
        }
        let ids = vec![id.clone(); t.users.len()];
        let (mut sip, mut line, mut site, mut hosted, mut policy, mut eum, mut eum_more) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for u in &t.users {
            sip.push(u.sip.as_str());
            line.push(u.line.as_deref());
            site.push(u.site.as_deref());
            hosted.push(u.hosted_voicemail);
            policy.push(u.hosted_voicemail_policy.as_deref());
            eum.push(u.eum.first().map(String::as_str));
            eum_more.push(serde_json::json!(u.eum.get(1..).unwrap_or_default()));
        }
        tx.execute(
            "INSERT INTO exum.users (tenant_id, sip, line, site, hosted_voicemail, hosted_voicemail_policy, eum, eum_more)
             SELECT t, s, l, si, h, p, e, ARRAY(SELECT jsonb_array_elements_text(m))
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::text[], $8::jsonb[])
                    AS u(t, s, l, si, h, p, e, m)",
            &[&ids, &sip, &line, &site, &hosted, &policy, &eum, &eum_more],
        )
        .await
        .map_err(|e| DbError::Invalid(format!("{what}: tenant {id}: users: {}", describe(&e))))?;
        users += t.users.len();
        for c in &t.contacts {
            let kind =
                serde_json::to_value(c.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            tx.execute(
                "INSERT INTO exum.contacts (tenant_id, sip, number, kind, site, hosted_voicemail_policy, dial_plan)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&id, &c.sip, &c.number, &kind, &c.site, &c.hosted_voicemail_policy, &c.dial_plan],
            )
            .await
            .map_err(|e| DbError::Invalid(format!("{what}: tenant {id}: contact {}: {}", c.sip, describe(&e))))?;
        }
        for p in &t.hosted_voicemail_policies {
            tx.execute(
                "INSERT INTO exum.hosted_voicemail_policies (tenant_id, scope, destination, organizations)
                 VALUES ($1, $2, $3, $4)",
                &[&id, &p.scope, &p.destination, &p.organizations],
            )
            .await
            .map_err(|e| DbError::Invalid(format!("{what}: tenant {id}: policy {}: {}", p.scope, describe(&e))))?;
        }
        for d in &t.dial_plans {
            // Versions in their own column, so that routers of the previous
            // release can still read `servers` (see migration V3).
            let versions: Vec<Option<i32>> =
                d.servers.iter().map(|s| s.version.and_then(|v| i32::try_from(v).ok())).collect();
            let plain: Vec<UmServerFile> =
                d.servers.iter().map(|s| UmServerFile { version: None, ..s.clone() }).collect();
            let servers = serde_json::to_value(&plain).unwrap_or_default();
            let selection =
                serde_json::to_value(d.selection).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            tx.execute(
                "INSERT INTO exum.dial_plans (tenant_id, name, phone_context, servers, selection, server_versions)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&id, &d.name, &d.phone_context, &servers, &selection, &versions],
            )
            .await
            .map_err(|e| DbError::Invalid(format!("{what}: tenant {id}: dial plan {}: {}", d.name, describe(&e))))?;
        }
    }
    tx.commit().await.map_err(DbError::pg(what))?;
    Ok(users)
}

/// One tenant as the database holds it, as JSON (the shape of a directory
/// file's section), with its version; `None` if it is not there.
pub async fn show(client: &mut tokio_postgres::Client, id: &str) -> Result<Option<serde_json::Value>, DbError> {
    let (rows, version) = read_tenant(client, id).await?;
    let rows = match rows {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(u) => return Ok(Some(serde_json::json!({"tenant": id, "version": version, "unreadable": u.reason}))),
    };
    let t = rows.data;
    Ok(Some(serde_json::json!({
        "tenant": id,
        "version": version,
        "settings": t.settings,
        "users": t.users,
        "contacts": t.contacts,
        "hosted_voicemail_policies": t.hosted_voicemail_policies,
        "dial_plans": t.dial_plans,
    })))
}

/// The tenant ids of the database.
pub async fn tenant_ids(client: &impl GenericClient) -> Result<Vec<String>, DbError> {
    let rows = client
        .query("SELECT tenant_id FROM exum.tenants ORDER BY tenant_id", &[])
        .await
        .map_err(DbError::pg("listing tenants"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_error_names_the_row_by_its_key() {
        let data = TenantData {
            users: vec![
                UserFile { sip: "sip:a@x.com".into(), ..UserFile::default() },
                UserFile { sip: "sip:b@x.com".into(), ..UserFile::default() },
            ],
            ..TenantData::default()
        };
        let names = RowNames::of(&data);
        assert_eq!(name_rows("tenants.x.users[1].line", &names), "tenants.x.users (sip = sip:b@x.com).line");
        assert_eq!(name_rows("tenants.x.users[7].line", &names), "tenants.x.users[7].line", "no such row: as it was");
        assert_eq!(name_rows("tenants.x.domains[0]", &names), "tenants.x.domains[0]");
    }
}

//! The admin HTTP API, on its own listener (loopback by default; a bearer token
//! required on any other address): tenants with their policy version, hash,
//! load time, state and last error; one tenant's detail; reloads; health and
//! readiness; Prometheus metrics. JSON everywhere but `/metrics`.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /health` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /ready` | 200 while taking calls, 503 while draining for shutdown |
//! | `GET /tenants` | every tenant (see [`tenant_json`]) |
//! | `GET /tenants/{id}` | one tenant, with its counters; 404 if unknown |
//! | `POST /tenants/{id}/reload` | reload its policy file; 200 with the tenant, or 422 with the error (the previous version keeps serving) |
//! | `POST /reload` | reload configuration and directory; 200 with the tenants whose directory was refused (`refused`, they keep their previous one), or 422 with the error |
//! | `GET /directory` | the directory source: `{"source":"file"}`, or for PostgreSQL whether it is connected, stale since when, and the tenants whose rows are refused with why |
//! | `GET /tenants/{id}/policy/versions` | the tenant's policy versions in the database, newest first |
//! | `POST /tenants/{id}/policy/versions` | store the body (a component, checked first) as a new version; `?activate=true` activates it; `X-Uploaded-By` names who; 201 `{"version_id","sha256"}` |
//! | `POST /tenants/{id}/policy/versions/{n}/activate` | make version `n` the active one (every instance applies it) |
//! | `POST /tenants/{id}/policy/rollback[?to=N]` | activate the version active before the current one (or version `N`) |
//! | `GET /tenants/{id}/policy/history`, `.../candidate...` | version history, shadow and canary candidates: see [`lifecycle`] |
//! | `GET /bans` | sources banned for flooding: `{"bans":[{"source","remaining_ms","dropped"}]}` |
//! | `DELETE /bans/{ip}` | lift a ban; 404 if that source is not banned |
//! | `GET /status` | a read-only HTML page of the tenants, their versions and candidates, and the directory |
//! | `GET /metrics` | Prometheus exposition |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod client;
mod lifecycle;
mod status;

use crate::metrics::Metrics;
use crate::policy::{FaultKind, PolicyRegistry, TenantPolicy};
use crate::sip::proxy::Proxy;

/// Reloads configuration and directory: the tenants whose directory was
/// refused (they keep their previous one), or why the whole was refused.
pub type Reload = Arc<dyn Fn() -> Result<Vec<String>, String> + Send + Sync>;

/// What the admin API reads and acts on.
pub struct Admin {
    /// The proxy (tenants, transactions, metrics).
    pub proxy: Arc<Proxy>,
    /// The policy registry.
    pub policy: Arc<PolicyRegistry>,
    /// The bearer token: required for every change, and for every request
    /// when `reads_need_token`; without one, changes are refused.
    pub token: Option<String>,
    /// Whether reads need the token too (the API is not on loopback).
    pub reads_need_token: bool,
    /// The host names requests may name (`Host`, `Origin`) besides IP
    /// addresses and `localhost`: `[admin] names`.
    pub names: Vec<String>,
    /// Reloads configuration and directory.
    pub reload: Reload,
    /// With the directory in PostgreSQL: its status.
    pub directory: Option<Arc<crate::db::follow::DirectoryStatus>>,
    /// With the directory in PostgreSQL: the database, for policy versions.
    pub database: Option<crate::db::Database>,
    /// With tenants reading LDAP: their entries and status.
    pub ldap: Option<Arc<crate::ldap::LdapSync>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin")
    }
}

/// Admin connections open at once, at most; more are closed when accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// A request's header must arrive within this (from the connection's start, or
/// the previous response): an idle connection is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// An admin connection is closed after this, whatever it is doing.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves the admin API on `listener` until `shutdown` changes: at most
/// [`MAX_CONNECTIONS`] connections, each closed when idle for
/// [`HEADER_TIMEOUT`] or open for [`CONNECTION_LIFETIME`]; failed accepts back off.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = crate::sip::transport::AcceptBackoff::default();
    loop {
        let Some((stream, _)) = backoff.accept(&listener, &mut shutdown).await else { return };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            admin
                .proxy
                .metrics
                .connections_refused
                .get_or_create(&crate::metrics::ReasonLabel { reason: "admin" })
                .inc();
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

/// The admin token in `file` (its first line, trimmed).
pub fn read_token(file: &std::path::Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("{}: cannot read the admin token: {e}", file.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(format!("{}: no admin token in it", file.display()));
    }
    Ok(token)
}

/// The admin token in `file`, which is created first with a random token
/// (64 hex digits, readable by its owner only) when it does not exist.
pub fn token_from_file(file: &std::path::Path) -> Result<String, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if !file.exists() {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| "no random bytes for the admin token".to_owned())?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
            .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()));
        match created {
            Ok(()) => {
                tracing::info!(file = %file.display(), "admin token created (changes through the admin API need it)")
            }
            // Created by another start meanwhile: read that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: cannot create the admin token: {e}", file.display())),
        }
    }
    read_token(file)
}

/// The host of a `Host` value or an origin's authority: `host`, `host:port`,
/// `[v6]:port`, lower case.
fn host_of(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_owned();
    }
    authority.split(':').next().unwrap_or("").to_owned()
}

/// Whether a request may change something without a header a browser sends
/// cross-site only after asking (a CORS preflight, which the API never
/// grants): `Authorization`, `X-Uploaded-By`, or a content type a form
/// cannot have.
fn is_non_simple<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    if headers.contains_key(hyper::header::AUTHORIZATION) || headers.contains_key("x-uploaded-by") {
        return true;
    }
    let simple = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"];
    headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .is_some_and(|t| !t.is_empty() && !simple.contains(&t.as_str()))
}

/// Runs `f`, which may compile a policy, on a blocking thread; its compiles
/// are given up when the request is (its connection cut: hyper drops the
/// request's future, and with it the waiter).
async fn compiling<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, tokio::task::JoinError> {
    let waiter = crate::policy::compile::Waiter::new();
    let flag = waiter.flag();
    let result = tokio::task::spawn_blocking(move || crate::policy::compile::on_behalf_of(flag, f)).await;
    drop(waiter);
    result
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

impl Admin {
    /// Whether `host` is one of the API's: an IP address (DNS rebinding needs
    /// a name), `localhost`, or one of `[admin] names`.
    fn is_own_host(&self, host: &str) -> bool {
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() || self.names.iter().any(|n| n == host)
    }

    /// Refuses what a page on another site could make a browser send: a
    /// `Host` that is not the API's (DNS rebinding: 421), an `Origin` that is
    /// not the API's own (403), and a change (any method but GET and HEAD)
    /// without a non-simple header (403).
    #[allow(clippy::result_large_err)]
    fn same_site<B>(&self, req: &Request<B>) -> Result<(), Response<Full<Bytes>>> {
        let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()).map(host_of);
        match host.as_deref() {
            Some(h) if self.is_own_host(h) => {}
            _ => {
                return Err(reply(
                    StatusCode::MISDIRECTED_REQUEST,
                    &json!({"error": "Host is not this API's (add the name to [admin] names)"}),
                ));
            }
        }
        if let Some(origin) = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            if origin == "null" || !self.is_own_host(&host_of(authority)) {
                return Err(reply(
                    StatusCode::FORBIDDEN,
                    &json!({"error": "requests from another origin are refused"}),
                ));
            }
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) && !is_non_simple(req) {
            return Err(reply(
                StatusCode::FORBIDDEN,
                &json!({"error": "a change needs an Authorization or X-Uploaded-By header, or a non-form Content-Type"}),
            ));
        }
        Ok(())
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if let Err(refused) = self.same_site(&req) {
            return refused;
        }
        let change = !matches!(*req.method(), Method::GET | Method::HEAD);
        match &self.token {
            None if change => {
                return reply(
                    StatusCode::FORBIDDEN,
                    &json!({"error": "changes need an admin token: set [admin] token_file = \"admin.token\" (created at the router's first start) or token"}),
                );
            }
            Some(token) if change || self.reads_need_token => {
                let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                if given != Some(format!("Bearer {token}").as_str()) {
                    return reply(StatusCode::UNAUTHORIZED, &json!({"error": "a bearer token is required"}));
                }
            }
            _ => {}
        }
        let path: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
        match (req.method(), path.as_slice()) {
            (&Method::GET, ["health"]) => reply(StatusCode::OK, &json!({"status": "ok"})),
            (&Method::GET, ["ready"]) => {
                if self.proxy.is_draining() {
                    reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"ready": false, "reason": "draining for shutdown"}))
                } else {
                    // Routing on stale data is still routing: ready, and says so.
                    reply(StatusCode::OK, &json!({"ready": true, "directory": self.directory_json()}))
                }
            }
            (&Method::GET, ["directory"]) => reply(StatusCode::OK, &self.directory_json()),
            (&Method::GET, ["status"]) => {
                let mut r = Response::new(Full::new(Bytes::from(self.status_page())));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            (_, ["tenants", id, "policy", ..]) => {
                let id = (*id).to_owned();
                let rest: Vec<String> = path[3..].iter().map(|s| (*s).to_owned()).collect();
                self.policy_versions(req, &id, &rest).await
            }
            (&Method::GET, ["tenants"]) => {
                let tenants = self.proxy.tenants();
                let list: Vec<Value> = tenants.iter().map(|t| tenant_json(t, &self.policy.get(t), None)).collect();
                reply(StatusCode::OK, &json!({ "tenants": list }))
            }
            (&Method::GET, ["tenants", id]) => match self.proxy.tenants().by_id(id) {
                Some(t) => {
                    let mut out = tenant_json(t, &self.policy.get(t), Some(&self.proxy.metrics));
                    if let Some(d) = &self.directory {
                        out["directory_error"] = json!(d.refused(id));
                        out["policy_database_version"] = json!(self.policy.database_version(id).map(|v| v.version_id));
                    }
                    reply(StatusCode::OK, &out)
                }
                None => reply(StatusCode::NOT_FOUND, &json!({"error": format!("no tenant `{id}`")})),
            },
            (&Method::POST, ["tenants", id, "reload"]) => {
                let tenants = self.proxy.tenants();
                let Some(t) = tenants.by_id(id) else {
                    return reply(StatusCode::NOT_FOUND, &json!({"error": format!("no tenant `{id}`")}));
                };
                // Compiling and `init` run off the runtime's workers (with one
                // worker, they would hold every call up).
                let (registry, tenant) = (self.policy.clone(), t.clone());
                let reloaded = tokio::task::spawn_blocking(move || registry.reload_configured(&tenant)).await;
                match reloaded.unwrap_or_else(|e| Err(format!("the reload failed: {e}"))) {
                    Ok(p) => reply(StatusCode::OK, &tenant_json(t, &p, Some(&self.proxy.metrics))),
                    Err(e) => reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": e})),
                }
            }
            (&Method::POST, ["reload"]) => {
                let reload = self.reload.clone();
                let reloaded = tokio::task::spawn_blocking(move || reload()).await;
                match reloaded.unwrap_or_else(|e| Err(format!("the reload failed: {e}"))) {
                    Ok(refused) => reply(StatusCode::OK, &json!({"reloaded": true, "refused": refused})),
                    Err(e) => reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": e})),
                }
            }
            (&Method::GET, ["bans"]) => {
                let bans: Vec<Value> = self
                    .proxy
                    .bans()
                    .iter()
                    .map(|b| json!({"source": b.source.to_string(), "remaining_ms": b.remaining_ms, "dropped": b.dropped}))
                    .collect();
                reply(StatusCode::OK, &json!({ "bans": bans }))
            }
            (&Method::DELETE, ["bans", ip]) => match ip.parse::<std::net::IpAddr>() {
                Ok(ip) if self.proxy.lift_ban(ip) => reply(StatusCode::OK, &json!({"lifted": ip.to_string()})),
                Ok(ip) => reply(StatusCode::NOT_FOUND, &json!({"error": format!("{ip} is not banned")})),
                Err(_) => reply(StatusCode::BAD_REQUEST, &json!({"error": format!("`{ip}` is not an IP address")})),
            },
            (&Method::GET, ["metrics"]) => {
                self.proxy.metrics.transactions_active.set(self.proxy.active_transactions() as i64);
                if let Some(d) = &self.directory {
                    self.proxy.metrics.directory_stale_seconds.set(d.stale_seconds() as i64);
                }
                if let Some(l) = &self.ldap {
                    let (refused, stale) = l.totals();
                    self.proxy.metrics.ldap_refused_entries.set(refused as i64);
                    self.proxy.metrics.ldap_stale_seconds.set(stale as i64);
                }
                let mut r = Response::new(Full::new(Bytes::from(self.proxy.metrics.encode())));
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                r
            }
            _ => reply(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
        }
    }
}

impl Admin {
    fn directory_json(&self) -> Value {
        let mut out = match &self.directory {
            Some(d) => d.json(),
            None => json!({"source": "file"}),
        };
        if let Some(l) = &self.ldap {
            out["ldap"] = l.json();
        }
        out
    }

    /// `/tenants/{id}/policy/...`: history and candidates, and the policy
    /// versions in the database.
    async fn policy_versions(
        &self,
        req: Request<hyper::body::Incoming>,
        id: &str,
        rest: &[String],
    ) -> Response<Full<Bytes>> {
        let Some(tenant) = self.proxy.tenants().by_id(id).cloned() else {
            return reply(StatusCode::NOT_FOUND, &json!({"error": format!("no tenant `{id}`")}));
        };
        let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
        let req = match self.lifecycle(req, &tenant, &parts).await {
            Ok(answer) => return answer,
            Err(req) => req,
        };
        let Some(db) = &self.database else {
            return reply(
                StatusCode::CONFLICT,
                &json!({"error": "policy versions live in the directory database; this router reads a directory file"}),
            );
        };
        let by = uploaded_by(&req);
        let activate_now = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "activate=true"));
        let query = req.uri().query().map(str::to_owned);
        let client = match db.client("the admin API").await {
            Ok(c) => c,
            Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e.to_string()})),
        };
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let fail = db_failure;
        match (req.method().clone(), rest.as_slice()) {
            (Method::GET, ["versions"]) => match crate::db::policies::list(&client, id).await {
                Ok(v) => reply(StatusCode::OK, &json!({"tenant": id, "versions": v})),
                Err(e) => fail(e),
            },
            (Method::POST, ["versions"]) => {
                let bytes = match body(req).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                // Checked before it is stored: a version every instance would refuse is no version.
                let registry = self.policy.clone();
                let (check, of) = (bytes.clone(), tenant.clone());
                let compiled = compiling(move || registry.admissible(&of, &check)).await;
                match compiled {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": e.to_string()})),
                    Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e.to_string()})),
                }
                if let Err(e) = crate::db::policies::ensure_tenant(&client, &tenant.config.id).await {
                    return fail(e);
                }
                let version = match crate::db::policies::upload(&client, id, &bytes, &by).await {
                    Ok(v) => v,
                    Err(e) => return fail(e),
                };
                if activate_now && let Err(e) = crate::db::policies::activate(&client, id, Some(version), &by).await {
                    return fail(e);
                }
                reply(
                    StatusCode::CREATED,
                    &json!({"tenant": id, "version_id": version, "sha256": crate::policy::hex_sha256(&bytes), "activated": activate_now}),
                )
            }
            (Method::POST, ["versions", n, "activate"]) => {
                let Ok(n) = n.parse::<i64>() else {
                    return reply(StatusCode::BAD_REQUEST, &json!({"error": format!("`{n}` is not a version id")}));
                };
                match crate::db::policies::activate(&client, id, Some(n), &by).await {
                    Ok(()) => reply(StatusCode::OK, &json!({"tenant": id, "activated": n})),
                    Err(e) => fail(e),
                }
            }
            (Method::POST, ["rollback"]) => match lifecycle::query(query.as_deref(), "to").map(str::parse::<i64>) {
                None => match crate::db::policies::rollback(&client, id, &by).await {
                    Ok(v) => reply(StatusCode::OK, &json!({"tenant": id, "activated": v})),
                    Err(e) => fail(e),
                },
                Some(Ok(n)) => match crate::db::policies::activate(&client, id, Some(n), &by).await {
                    Ok(()) => reply(StatusCode::OK, &json!({"tenant": id, "activated": n})),
                    Err(e) => fail(e),
                },
                Some(Err(_)) => reply(StatusCode::BAD_REQUEST, &json!({"error": "to: not a version id"})),
            },
            _ => reply(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
        }
    }
}

/// Who the request says it is for the record (`X-Uploaded-By`), else `admin-api`.
fn uploaded_by<B>(req: &Request<B>) -> String {
    req.headers()
        .get("x-uploaded-by")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("admin-api")
        .to_owned()
}

/// A database error as the API answers it: 422 for what the database
/// refused, 503 for a database out of reach.
fn db_failure(e: crate::db::DbError) -> Response<Full<Bytes>> {
    match e {
        crate::db::DbError::Invalid(m) => reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": m})),
        e => reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e.to_string()})),
    }
}

/// A request's body, at most a component's size.
async fn body(req: Request<hyper::body::Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(req.into_body(), crate::policy::engine::MAX_COMPONENT_BYTES);
    match limited.collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(reply(StatusCode::PAYLOAD_TOO_LARGE, &json!({"error": e.to_string()}))),
    }
}

/// A tenant as the API shows it: id, domains, state, policy version, content
/// hash, load time, last error; with `counters`, the tenant's counters too
/// (since the router started, whatever versions decided).
pub fn tenant_json(tenant: &crate::control::Tenant, policy: &TenantPolicy, counters: Option<&Metrics>) -> Value {
    let version = policy.own.as_ref().map(|v| {
        json!({
            "name": v.name,
            "version": v.version,
            "hash": v.hash,
            "size": v.size,
            "loaded": v.is_loaded(),
            "loaded_at": v.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "manifest": v.manifest,
            "limits": {
                "deadline_ms": v.limits.deadline.as_millis() as u64,
                "runtime_deadline_ms": v.limits.runtime_deadline.as_millis() as u64,
                "memory_mib": v.limits.memory_bytes >> 20,
            },
            "signed_by": v.signer,
            "stats": policy.serving.json(),
        })
    });
    let mut out = json!({
        "id": tenant.config.id,
        "domains": tenant.config.domains,
        "state": policy.state(),
        "policy": version,
        "last_error": policy.reload_error().or_else(|| policy.load_error.clone()),
        "quarantined": policy.is_quarantined(),
        "candidate": policy.candidate.as_ref().map(|c| json!({
            "mode": c.mode.as_str(),
            "share": match c.mode { crate::policy::candidate::Mode::Canary { share } => json!(share), _ => Value::Null },
            "state": c.state(),
            "version": c.version.version,
            "name": c.version.name,
            "hash": c.version.hash,
        })),
    });
    if let Some(m) = counters {
        let id = &tenant.config.id;
        let faults: serde_json::Map<String, Value> =
            FaultKind::ALL.iter().map(|k| (k.as_str().to_owned(), json!(m.faults_of(id, k.as_str())))).collect();
        out["stats"] = json!({
            "decisions": m.decisions_of(id),
            "fallbacks": m.fallbacks_of(id),
            "faults": faults,
            "reloads": { "ok": m.reloads_of(id, "ok"), "failed": m.reloads_of(id, "failed") },
        });
    }
    out
}

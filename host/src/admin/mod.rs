//! The admin HTTP API, on its own listener (loopback by default; a bearer token
//! required on any other address): tenants with their policy version, hash,
//! load time, state and last error; one tenant's detail; reloads; health and
//! readiness; Prometheus metrics. JSON everywhere but `/metrics`.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /health` | 200 `{"status":"ok"}` while the process runs |
//! | `GET /version` | `{"version","commit","contract"}`: what `exum-router --version` prints |
//! | `GET /ready` | 200 while taking calls, 503 while draining for shutdown |
//! | `GET /tenants` | every tenant (see [`tenant_json`]); `?on_fallback=true`: those whose calls their fallback decides now (`on_fallback`: `compiling`, `refused` or `quarantined`) |
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
mod error;
mod lifecycle;
mod status;
pub mod traffic;

pub use error::AdminError;

use crate::metrics::Metrics;
use crate::policy::{FaultKind, PolicyRegistry, TenantPolicy};
use crate::sip::proxy::Proxy;

/// Reloads configuration and directory: the tenants whose directory was
/// refused (they keep their previous one), or why the whole was refused.
pub type Reload = Arc<dyn Fn() -> anyhow::Result<Vec<String>> + Send + Sync>;

/// What the admin API reads and acts on.
pub struct Admin {
    /// The proxy (tenants, transactions, metrics).
    pub proxy: Arc<Proxy>,
    /// What the probes saw of each target.
    pub health: Arc<crate::control::health::HealthTable>,
    /// The per-tenant figures over time (the status page's).
    pub traffic: Arc<traffic::Traffic>,
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
pub fn read_token(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the admin token: {e}", file.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(anyhow::anyhow!("{}: no admin token in it", file.display()));
    }
    Ok(token)
}

/// The admin token in `file`, which is created first with a random token
/// (64 hex digits, readable by its owner only) when it does not exist.
pub fn token_from_file(file: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if !file.exists() {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| anyhow::anyhow!("no random bytes for the admin token"))?;
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
            Err(e) => return Err(anyhow::anyhow!("{}: cannot create the admin token: {e}", file.display())),
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
    let result = crate::spans::spawn_blocking(move || crate::policy::compile::on_behalf_of(flag, f)).await;
    drop(waiter);
    result
}

/// What a handler answers: a response, or why the request was refused.
type Answer = Result<Response<Full<Bytes>>, AdminError>;

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = with_type(body.to_string(), "application/json");
    *r.status_mut() = status;
    r
}

/// 200 with `body` as JSON.
fn ok(body: &Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, body)
}

/// 200 with `body` of content type `content_type`.
fn with_type(body: impl Into<Bytes>, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
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
    fn same_site<B>(&self, req: &Request<B>) -> Result<(), AdminError> {
        let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok()).map(host_of);
        if !host.as_deref().is_some_and(|h| self.is_own_host(h)) {
            return Err(AdminError::ForeignHost);
        }
        if let Some(origin) = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            if origin == "null" || !self.is_own_host(&host_of(authority)) {
                return Err(AdminError::ForeignOrigin);
            }
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) && !is_non_simple(req) {
            return Err(AdminError::SimpleChange);
        }
        Ok(())
    }

    /// Refuses a change without the token (or with no token configured),
    /// and a read without it when reads need it.
    fn authorised<B>(&self, req: &Request<B>) -> Result<(), AdminError> {
        let change = !matches!(*req.method(), Method::GET | Method::HEAD);
        match &self.token {
            None if change => Err(AdminError::NoToken),
            Some(token) if change || self.reads_need_token => {
                let given = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                match given == Some(format!("Bearer {token}").as_str()) {
                    true => Ok(()),
                    false => Err(AdminError::BadToken),
                }
            }
            _ => Ok(()),
        }
    }

    /// Answers one request in an `admin` span (and a `tenant` span inside it
    /// when the path names a tenant).
    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        use tracing::Instrument as _;
        let span = tracing::info_span!("admin", method = %req.method(), path = %req.uri().path());
        let tenant = match req.uri().path().trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
            ["tenants", id, ..] => Some(span.in_scope(|| crate::spans::tenant(id))),
            _ => None,
        };
        let answer = match tenant {
            Some(tenant) => self.answer(req).instrument(tenant).instrument(span).await,
            None => self.answer(req).instrument(span).await,
        };
        answer.unwrap_or_else(|e| e.response())
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Answer {
        self.same_site(&req)?;
        self.authorised(&req)?;
        let path: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
        match (req.method(), path.as_slice()) {
            (&Method::GET, ["health"]) => Ok(ok(&json!({"status": "ok"}))),
            (&Method::GET, ["version"]) => Ok(ok(&crate::release::json())),
            (&Method::GET, ["ready"]) => {
                if self.proxy.is_draining() {
                    Ok(reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"ready": false, "reason": "draining for shutdown"}),
                    ))
                } else {
                    // Routing on stale data is still routing: ready, and says so.
                    Ok(ok(&json!({"ready": true, "directory": self.directory_json()})))
                }
            }
            (&Method::GET, ["directory"]) => Ok(ok(&self.directory_json())),
            (&Method::GET, ["status"]) => Ok(with_type(self.status_page(), "text/html; charset=utf-8")),
            (_, ["tenants", id, "policy", ..]) => {
                let id = (*id).to_owned();
                let rest: Vec<String> = path[3..].iter().map(|s| (*s).to_owned()).collect();
                self.policy_versions(req, &id, &rest).await
            }
            (&Method::GET, ["tenants"]) => {
                // `?on_fallback=true`: only the tenants whose calls the fallback decides now.
                let only = lifecycle::query(req.uri().query(), "on_fallback") == Some("true");
                let tenants = self.proxy.tenants();
                let list: Vec<Value> = tenants
                    .iter()
                    .map(|t| (t, self.policy.get(t)))
                    .filter(|(_, p)| !only || p.fallback_reason().is_some())
                    .map(|(t, p)| tenant_json(t, &p, None))
                    .collect();
                Ok(ok(&json!({ "tenants": list })))
            }
            (&Method::GET, ["tenants", id]) => {
                let tenants = self.proxy.tenants();
                let t = tenants.by_id(id).ok_or_else(|| AdminError::NoTenant((*id).to_owned()))?;
                let mut out = tenant_json(t, &self.policy.get(t), Some(&self.proxy.metrics));
                if let Some(d) = &self.directory {
                    out["directory_error"] = json!(d.refused(id));
                    out["policy_database_version"] = json!(self.policy.database_version(id).map(|v| v.version_id));
                }
                Ok(ok(&out))
            }
            (&Method::POST, ["tenants", id, "reload"]) => {
                let tenants = self.proxy.tenants();
                let t = tenants.by_id(id).ok_or_else(|| AdminError::NoTenant((*id).to_owned()))?;
                // Compiling and `init` run off the runtime's workers (with one
                // worker, they would hold every call up).
                let (registry, tenant) = (self.policy.clone(), t.clone());
                let p = crate::spans::spawn_blocking(move || registry.reload_configured(&tenant))
                    .await?
                    .map_err(|e| AdminError::Refused(e.to_string()))?;
                Ok(ok(&tenant_json(t, &p, Some(&self.proxy.metrics))))
            }
            (&Method::POST, ["reload"]) => {
                let reload = self.reload.clone();
                let refused = crate::spans::spawn_blocking(move || reload())
                    .await?
                    .map_err(|e| AdminError::Refused(format!("{e:#}")))?;
                Ok(ok(&json!({"reloaded": true, "refused": refused})))
            }
            (&Method::GET, ["bans"]) => {
                let bans: Vec<Value> = self
                    .proxy
                    .bans()
                    .iter()
                    .map(|b| json!({"source": b.source.to_string(), "remaining_ms": b.remaining_ms, "dropped": b.dropped}))
                    .collect();
                Ok(ok(&json!({ "bans": bans })))
            }
            (&Method::DELETE, ["bans", ip]) => {
                let ip: std::net::IpAddr =
                    ip.parse().map_err(|_| AdminError::BadRequest(format!("`{ip}` is not an IP address")))?;
                match self.proxy.lift_ban(ip) {
                    true => Ok(ok(&json!({"lifted": ip.to_string()}))),
                    false => Err(AdminError::NotFound(format!("{ip} is not banned"))),
                }
            }
            (&Method::GET, ["metrics"]) => Ok(self.metrics()),
            _ => Err(AdminError::NoEndpoint),
        }
    }

    /// `/metrics`: the gauges read on demand, then the exposition.
    fn metrics(&self) -> Response<Full<Bytes>> {
        self.proxy.metrics.transactions_active.set(self.proxy.active_transactions() as i64);
        let mut on_fallback = std::collections::BTreeMap::from([("compiling", 0), ("refused", 0), ("quarantined", 0)]);
        for t in self.proxy.tenants().iter() {
            if let Some(reason) = self.policy.get(t).fallback_reason() {
                *on_fallback.entry(reason).or_insert(0) += 1;
            }
        }
        for (reason, n) in on_fallback {
            self.proxy.metrics.policy_on_fallback.get_or_create(&crate::metrics::ReasonLabel { reason }).set(n);
        }
        if let Some(d) = &self.directory {
            self.proxy.metrics.directory_stale_seconds.set(d.stale_seconds() as i64);
        }
        if let Some(l) = &self.ldap {
            let (refused, stale) = l.totals();
            self.proxy.metrics.ldap_refused_entries.set(refused as i64);
            self.proxy.metrics.ldap_stale_seconds.set(stale as i64);
        }
        with_type(self.proxy.metrics.encode(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
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
    async fn policy_versions(&self, req: Request<hyper::body::Incoming>, id: &str, rest: &[String]) -> Answer {
        let tenant = self.proxy.tenants().by_id(id).cloned().ok_or_else(|| AdminError::NoTenant(id.to_owned()))?;
        let parts: Vec<&str> = rest.iter().map(String::as_str).collect();
        let req = match self.lifecycle(req, &tenant, &parts).await {
            Ok(answer) => return answer,
            Err(req) => req,
        };
        let db = self.database.as_ref().ok_or(AdminError::NoDatabase)?;
        let by = uploaded_by(&req);
        let activate_now = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "activate=true"));
        let query = req.uri().query().map(str::to_owned);
        let client = db.client("the admin API").await?;
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match (req.method().clone(), rest.as_slice()) {
            (Method::GET, ["versions"]) => {
                let versions = crate::db::policies::list(&client, id).await?;
                Ok(ok(&json!({"tenant": id, "versions": versions})))
            }
            (Method::POST, ["versions"]) => {
                let bytes = body(req).await?;
                // Checked before it is stored: a version every instance would refuse is no version.
                self.admissible(&tenant, &bytes).await?;
                crate::db::policies::ensure_tenant(&client, &tenant.config.id).await?;
                let version = crate::db::policies::upload(&client, id, &bytes, &by).await?;
                if activate_now {
                    crate::db::policies::activate(&client, id, Some(version), &by).await?;
                }
                Ok(reply(
                    StatusCode::CREATED,
                    &json!({"tenant": id, "version_id": version, "sha256": crate::policy::hex_sha256(&bytes), "activated": activate_now}),
                ))
            }
            (Method::POST, ["versions", n, "activate"]) => {
                let n: i64 = n.parse().map_err(|_| AdminError::BadRequest(format!("`{n}` is not a version id")))?;
                crate::db::policies::activate(&client, id, Some(n), &by).await?;
                Ok(ok(&json!({"tenant": id, "activated": n})))
            }
            (Method::POST, ["rollback"]) => {
                let activated = match lifecycle::query(query.as_deref(), "to").map(str::parse::<i64>) {
                    None => crate::db::policies::rollback(&client, id, &by).await?,
                    Some(Ok(n)) => {
                        crate::db::policies::activate(&client, id, Some(n), &by).await?;
                        Some(n)
                    }
                    Some(Err(_)) => return Err(AdminError::BadRequest("to: not a version id".into())),
                };
                Ok(ok(&json!({"tenant": id, "activated": activated})))
            }
            _ => Err(AdminError::NoEndpoint),
        }
    }

    /// Whether `bytes` would be accepted as a version of `tenant` (compiled on
    /// a blocking thread): a 422 with why not.
    async fn admissible(&self, tenant: &Arc<crate::control::Tenant>, bytes: &Bytes) -> Result<(), AdminError> {
        let (registry, check, of) = (self.policy.clone(), bytes.clone(), tenant.clone());
        compiling(move || registry.admissible(&of, &check)).await?.map_err(|e| AdminError::Refused(e.to_string()))
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

/// A request's body, at most a component's size.
async fn body(req: Request<hyper::body::Incoming>) -> Result<Bytes, AdminError> {
    use http_body_util::BodyExt as _;
    let limited = http_body_util::Limited::new(req.into_body(), crate::policy::engine::MAX_COMPONENT_BYTES);
    limited.collect().await.map(|b| b.to_bytes()).map_err(|e| AdminError::TooLarge(e.to_string()))
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
            "compiler": v.compiler().map(crate::policy::engine::Compiler::name),
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
        "on_fallback": policy.fallback_reason(),
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

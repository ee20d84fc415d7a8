//! `/tenants/{id}/policy/...` on a router that keeps versions itself (a
//! directory file): the version history, rollback to any kept version, and a
//! shadow or canary candidate with its promotion.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET .../policy/history` | the kept versions, newest first, and the pinned one |
//! | `POST .../policy/rollback[?to=N]` | serve version `N` (default: the one before) again |
//! | `POST .../policy/candidate?mode=shadow` | the body (a component) as a shadow; `?from=N` a kept version instead |
//! | `POST .../policy/candidate?mode=canary&share=0.1` | as a canary taking that share of new calls (`min_calls`, `fault_margin`, `failure_margin` override `[lifecycle]`) |
//! | `GET .../policy/candidate` | the candidate: counters beside the serving version's, divergences, samples |
//! | `GET .../policy/candidate/samples/{i}` | sample `i`'s two decision records (a file `exum-router replay` reads) |
//! | `POST .../policy/candidate/promote` | the candidate serves |
//! | `DELETE .../policy/candidate` | the candidate ends |

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::{Admin, reply};
use crate::control::Tenant;
use crate::policy::candidate::{CanaryRule, Mode};
use crate::policy::{CandidateSource, LifecycleError};

/// The value of `key` in a query string.
pub(super) fn query<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|p| p.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// The number `key` names in the query, if any; why not, for a 400.
fn number<T: std::str::FromStr>(q: Option<&str>, key: &str) -> Result<Option<T>, String> {
    match query(q, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| format!("{key}: `{v}` is not a number")),
    }
}

fn bad(error: String) -> Response<Full<Bytes>> {
    reply(StatusCode::BAD_REQUEST, &json!({ "error": error }))
}

fn refused(e: LifecycleError) -> Response<Full<Bytes>> {
    let status = match e {
        LifecycleError::NoSuchVersion(_) | LifecycleError::NoCandidate => StatusCode::NOT_FOUND,
        LifecycleError::NoPrevious | LifecycleError::RolledBack(_) | LifecycleError::Database => StatusCode::CONFLICT,
        LifecycleError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        LifecycleError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    reply(status, &json!({"error": e.to_string()}))
}

/// The canary rule a request asks for: `min_calls`, `fault_margin`,
/// `failure_margin` as given (unset: the routers' `[lifecycle]`).
type AskedRule = (Option<i64>, Option<f64>, Option<f64>);

fn asked_rule(q: Option<&str>) -> Result<AskedRule, String> {
    Ok((number(q, "min_calls")?, number(q, "fault_margin")?, number(q, "failure_margin")?))
}

impl Admin {
    /// With the directory in PostgreSQL, a candidate is the fleet's: started,
    /// promoted and ended in the database, which every router follows.
    async fn database_candidate(
        &self,
        req: Request<hyper::body::Incoming>,
        tenant: &Arc<Tenant>,
        rest: &[&str],
    ) -> Response<Full<Bytes>> {
        use crate::db::policies;
        let Some(db) = &self.database else { return refused(LifecycleError::Database) };
        let id = tenant.config.id.clone();
        let q = req.uri().query().map(str::to_owned);
        let q = q.as_deref();
        let by = super::uploaded_by(&req);
        let fail = super::db_failure;
        let method = req.method().clone();
        match (method, rest) {
            (Method::POST, ["candidate"]) => {
                let (mode, share) = match (query(q, "mode"), number::<f64>(q, "share")) {
                    (Some("shadow"), Ok(_)) => ("shadow", 0.0),
                    (Some("canary"), Ok(Some(s))) if (0.0..=1.0).contains(&s) => ("canary", s),
                    (Some("canary"), Ok(_)) => return bad("a canary needs ?share= (0 to 1)".into()),
                    (_, Err(e)) => return bad(e),
                    (other, _) => return bad(format!("mode: `{}`: shadow or canary", other.unwrap_or(""))),
                };
                let rule = match asked_rule(q) {
                    Ok(r) => r,
                    Err(e) => return bad(e),
                };
                let from = match number::<i64>(q, "from") {
                    Ok(n) => n,
                    Err(e) => return bad(e),
                };
                let upload = match from {
                    Some(_) => None,
                    None => match super::body(req).await {
                        Ok(b) if b.is_empty() => {
                            return bad("send the component as the body, or ?from=N for a stored version".into());
                        }
                        Ok(b) => Some(b),
                        Err(r) => return r,
                    },
                };
                if let Some(bytes) = &upload {
                    let (registry, check, of) = (self.policy.clone(), bytes.clone(), tenant.clone());
                    match super::compiling(move || registry.admissible(&of, &check)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return reply(StatusCode::UNPROCESSABLE_ENTITY, &json!({"error": e.to_string()})),
                        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e.to_string()})),
                    }
                }
                let client = match db.client("the admin API").await {
                    Ok(c) => c,
                    Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e.to_string()})),
                };
                if let Err(e) = policies::ensure_tenant(&client, &id).await {
                    return fail(e);
                }
                let version_id = match (from, upload) {
                    (Some(n), _) => n,
                    (None, Some(bytes)) => match policies::upload(&client, &id, &bytes, &by).await {
                        Ok(v) => v,
                        Err(e) => return fail(e),
                    },
                    (None, None) => return bad("no component".into()),
                };
                match policies::set_candidate(&client, &id, version_id, mode, share, rule, &by).await {
                    Ok(()) => reply(
                        StatusCode::CREATED,
                        &json!({"tenant": id, "version_id": version_id, "mode": mode, "share": share, "fleet": true}),
                    ),
                    Err(e) => fail(e),
                }
            }
            (Method::POST, ["candidate", "promote"]) => {
                let client = match db.client("the admin API").await {
                    Ok(c) => c,
                    Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e.to_string()})),
                };
                match policies::promote(&client, &id, &by).await {
                    Ok(v) => reply(StatusCode::OK, &json!({"tenant": id, "activated": v})),
                    Err(crate::db::DbError::Invalid(m)) if m.contains("rolled back") => {
                        reply(StatusCode::CONFLICT, &json!({"error": m}))
                    }
                    Err(e) => fail(e),
                }
            }
            (Method::DELETE, ["candidate"]) => {
                let client = match db.client("the admin API").await {
                    Ok(c) => c,
                    Err(e) => return reply(StatusCode::SERVICE_UNAVAILABLE, &json!({"error": e.to_string()})),
                };
                match policies::clear_candidate(&client, &id).await {
                    Ok(true) => reply(StatusCode::OK, &json!({"tenant": id, "candidate": null})),
                    Ok(false) => refused(LifecycleError::NoCandidate),
                    Err(e) => fail(e),
                }
            }
            _ => reply(StatusCode::NOT_FOUND, &json!({"error": "no such endpoint"})),
        }
    }

    /// Answers a lifecycle request, or `None` when the path is not one.
    pub(super) async fn lifecycle(
        &self,
        req: Request<hyper::body::Incoming>,
        tenant: &Arc<Tenant>,
        rest: &[&str],
    ) -> Result<Response<Full<Bytes>>, Request<hyper::body::Incoming>> {
        let id = tenant.config.id.as_str();
        let q = req.uri().query().map(str::to_owned);
        let q = q.as_deref();
        let registry = &self.policy;
        if self.database.is_some()
            && matches!((req.method(), rest), (&Method::POST, ["candidate", ..]) | (&Method::DELETE, ["candidate"]))
        {
            return Ok(self.database_candidate(req, tenant, rest).await);
        }
        let answer = match (req.method().clone(), rest) {
            (Method::GET, ["history"]) => {
                let policy = registry.get(tenant);
                reply(
                    StatusCode::OK,
                    &json!({
                        "tenant": id,
                        "serving": policy.own.as_ref().map(|v| v.version),
                        "versions": registry.history(id),
                    }),
                )
            }
            (Method::POST, ["rollback"]) if self.database.is_none() => {
                let to = match number::<u64>(q, "to") {
                    Ok(n) => n,
                    Err(e) => return Ok(bad(e)),
                };
                let registry = registry.clone();
                let tenant = tenant.clone();
                match tokio::task::spawn_blocking(move || registry.rollback_to(&tenant, to)).await {
                    Ok(Ok(p)) => reply(
                        StatusCode::OK,
                        &json!({"tenant": id, "serving": p.own.as_ref().map(|v| v.version), "pinned": true}),
                    ),
                    Ok(Err(e)) => refused(e),
                    Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e.to_string()})),
                }
            }
            (Method::GET, ["candidate"]) => match registry.get(tenant).candidate.clone() {
                Some(c) => reply(StatusCode::OK, &c.json(&registry.get(tenant).serving)),
                None => refused(LifecycleError::NoCandidate),
            },
            (Method::GET, ["candidate", "samples", i]) => {
                let Some(c) = registry.get(tenant).candidate.clone() else {
                    return Ok(refused(LifecycleError::NoCandidate));
                };
                match i.parse::<usize>().ok().and_then(|i| c.samples().into_iter().nth(i)) {
                    Some(s) => reply(StatusCode::OK, &serde_json::to_value(&s.records).unwrap_or(Value::Null)),
                    None => reply(StatusCode::NOT_FOUND, &json!({"error": format!("no sample `{i}`")})),
                }
            }
            (Method::POST, ["candidate"]) => self.start_candidate(req, tenant, q).await,
            (Method::POST, ["candidate", "promote"]) => match registry.promote(tenant) {
                Ok(p) => reply(StatusCode::OK, &json!({"tenant": id, "serving": p.own.as_ref().map(|v| v.version)})),
                Err(e) => refused(e),
            },
            (Method::DELETE, ["candidate"]) => match registry.abandon(tenant) {
                Ok(_) => reply(StatusCode::OK, &json!({"tenant": id, "candidate": null})),
                Err(e) => refused(e),
            },
            _ => return Err(req),
        };
        Ok(answer)
    }

    /// `POST /tenants/{id}/candidate?mode=shadow|canary&share=..&from=..`:
    /// a candidate from the body's component or a kept version.
    async fn start_candidate(
        &self,
        req: Request<hyper::body::Incoming>,
        tenant: &Arc<Tenant>,
        q: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let registry = &self.policy;
        let mode = match query(q, "mode") {
            Some("shadow") => Mode::Shadow,
            Some("canary") => match number::<f64>(q, "share") {
                Ok(Some(share)) => Mode::Canary { share },
                Ok(None) => {
                    return reply(StatusCode::BAD_REQUEST, &json!({"error": "a canary needs ?share= (0 to 1)"}));
                }
                Err(e) => return bad(e),
            },
            other => {
                return reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": format!("mode: `{}`: shadow or canary", other.unwrap_or(""))}),
                );
            }
        };
        let d = registry.lifecycle().rule;
        let rule = match (number(q, "fault_margin"), number(q, "failure_margin"), number(q, "min_calls")) {
            (Ok(f), Ok(c), Ok(m)) => CanaryRule {
                fault_margin: f.unwrap_or(d.fault_margin),
                failure_margin: c.unwrap_or(d.failure_margin),
                min_calls: m.unwrap_or(d.min_calls),
            },
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return bad(e),
        };
        let from = match number::<u64>(q, "from") {
            Ok(n) => n,
            Err(e) => return bad(e),
        };
        let source = match from {
            Some(n) => CandidateSource::Kept(n),
            None => match super::body(req).await {
                Ok(bytes) if bytes.is_empty() => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        &json!({"error": "send the component as the body, or ?from=N for a kept version"}),
                    );
                }
                Ok(bytes) => CandidateSource::Bytes { bytes: bytes.to_vec(), source: "admin API".into() },
                Err(r) => return r,
            },
        };
        let registry = registry.clone();
        let tenant = tenant.clone();
        match super::compiling(move || registry.start_candidate(&tenant, source, mode, rule)).await {
            Ok(Ok(p)) => {
                let c = p.candidate.as_ref().map(|c| c.json(&p.serving));
                reply(StatusCode::CREATED, &c.unwrap_or(Value::Null))
            }
            Ok(Err(e)) => refused(e),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e.to_string()})),
        }
    }
}

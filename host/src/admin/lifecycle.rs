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
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::{Admin, AdminError, Answer, ok, reply};
use crate::control::Tenant;
use crate::policy::candidate::{CanaryRule, Mode};
use crate::policy::{CandidateSource, LifecycleError};

/// The value of `key` in a query string.
pub(super) fn query<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?.split('&').find_map(|p| p.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// The number `key` names in the query, if any; why not, for a 400.
fn number<T: std::str::FromStr>(q: Option<&str>, key: &str) -> Result<Option<T>, AdminError> {
    match query(q, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| AdminError::BadRequest(format!("{key}: `{v}` is not a number"))),
    }
}

/// The mode a request asks for: `?mode=shadow`, or `?mode=canary&share=S`.
fn asked_mode(q: Option<&str>) -> Result<Mode, AdminError> {
    match query(q, "mode") {
        Some("shadow") => Ok(Mode::Shadow),
        Some("canary") => match number::<f64>(q, "share")? {
            Some(share) => Ok(Mode::Canary { share }),
            None => Err(AdminError::BadRequest("a canary needs ?share= (0 to 1)".into())),
        },
        other => Err(AdminError::BadRequest(format!("mode: `{}`: shadow or canary", other.unwrap_or("")))),
    }
}

/// The canary rule a request asks for: `min_calls`, `fault_margin`,
/// `failure_margin` as given (unset: the routers' `[lifecycle]`).
type AskedRule = (Option<i64>, Option<f64>, Option<f64>);

fn asked_rule(q: Option<&str>) -> Result<AskedRule, AdminError> {
    Ok((number(q, "min_calls")?, number(q, "fault_margin")?, number(q, "failure_margin")?))
}

/// The component in the body, refused when empty (`kept`: what `?from=N`
/// names instead).
async fn component(req: Request<hyper::body::Incoming>, kept: &str) -> Result<Bytes, AdminError> {
    match super::body(req).await? {
        b if b.is_empty() => {
            Err(AdminError::BadRequest(format!("send the component as the body, or ?from=N for a {kept} version")))
        }
        b => Ok(b),
    }
}

impl Admin {
    /// With the directory in PostgreSQL, a candidate is the fleet's: started,
    /// promoted and ended in the database, which every router follows.
    async fn database_candidate(
        &self,
        req: Request<hyper::body::Incoming>,
        tenant: &Arc<Tenant>,
        rest: &[&str],
    ) -> Answer {
        use crate::db::policies;
        let db = self.database.as_ref().ok_or(LifecycleError::Database)?;
        let id = tenant.config.id.clone();
        let q = req.uri().query().map(str::to_owned);
        let q = q.as_deref();
        let by = super::uploaded_by(&req);
        let method = req.method().clone();
        match (method, rest) {
            (Method::POST, ["candidate"]) => {
                let (mode, share) = match asked_mode(q)? {
                    Mode::Shadow => ("shadow", 0.0),
                    Mode::Canary { share } if (0.0..=1.0).contains(&share) => ("canary", share),
                    Mode::Canary { .. } => {
                        return Err(AdminError::BadRequest("a canary needs ?share= (0 to 1)".into()));
                    }
                };
                let rule = asked_rule(q)?;
                let from = number::<i64>(q, "from")?;
                let upload = match from {
                    Some(_) => None,
                    None => Some(component(req, "stored").await?),
                };
                if let Some(bytes) = &upload {
                    self.admissible(tenant, bytes).await?;
                }
                let client = db.client("the admin API").await?;
                policies::ensure_tenant(&client, &id).await?;
                let version_id = match (from, upload) {
                    (Some(n), _) => n,
                    (None, Some(bytes)) => policies::upload(&client, &id, &bytes, &by).await?,
                    (None, None) => return Err(AdminError::BadRequest("no component".into())),
                };
                policies::set_candidate(&client, &id, version_id, mode, share, rule, &by).await?;
                Ok(reply(
                    StatusCode::CREATED,
                    &json!({"tenant": id, "version_id": version_id, "mode": mode, "share": share, "fleet": true}),
                ))
            }
            (Method::POST, ["candidate", "promote"]) => {
                let client = db.client("the admin API").await?;
                let v = policies::promote(&client, &id, &by).await?;
                Ok(ok(&json!({"tenant": id, "activated": v})))
            }
            (Method::DELETE, ["candidate"]) => {
                let client = db.client("the admin API").await?;
                match policies::clear_candidate(&client, &id).await? {
                    true => Ok(ok(&json!({"tenant": id, "candidate": null}))),
                    false => Err(LifecycleError::NoCandidate.into()),
                }
            }
            _ => Err(AdminError::NoEndpoint),
        }
    }

    /// Answers a lifecycle request, or gives the request back when the path
    /// is not one.
    pub(super) async fn lifecycle(
        &self,
        req: Request<hyper::body::Incoming>,
        tenant: &Arc<Tenant>,
        rest: &[&str],
    ) -> Result<Answer, Request<hyper::body::Incoming>> {
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
                Ok(ok(&json!({
                    "tenant": id,
                    "serving": policy.own.as_ref().map(|v| v.version),
                    "versions": registry.history(id),
                })))
            }
            (Method::POST, ["rollback"]) if self.database.is_none() => self.rollback(tenant, q).await,
            (Method::GET, ["candidate"]) => match registry.get(tenant).candidate.clone() {
                Some(c) => Ok(ok(&c.json(&registry.get(tenant).serving))),
                None => Err(LifecycleError::NoCandidate.into()),
            },
            (Method::GET, ["candidate", "samples", i]) => match registry.get(tenant).candidate.clone() {
                None => Err(LifecycleError::NoCandidate.into()),
                Some(c) => match i.parse::<usize>().ok().and_then(|i| c.samples().into_iter().nth(i)) {
                    Some(s) => Ok(ok(&serde_json::to_value(&s.records).unwrap_or(Value::Null))),
                    None => Err(AdminError::NotFound(format!("no sample `{i}`"))),
                },
            },
            (Method::POST, ["candidate"]) => self.start_candidate(req, tenant, q).await,
            (Method::POST, ["candidate", "promote"]) => registry
                .promote(tenant)
                .map(|p| ok(&json!({"tenant": id, "serving": p.own.as_ref().map(|v| v.version)})))
                .map_err(AdminError::from),
            (Method::DELETE, ["candidate"]) => registry
                .abandon(tenant)
                .map(|_| ok(&json!({"tenant": id, "candidate": null})))
                .map_err(AdminError::from),
            _ => return Err(req),
        };
        Ok(answer)
    }

    /// `POST .../policy/rollback[?to=N]` on a router that keeps versions itself.
    async fn rollback(&self, tenant: &Arc<Tenant>, q: Option<&str>) -> Answer {
        let to = number::<u64>(q, "to")?;
        let (registry, of) = (self.policy.clone(), tenant.clone());
        let p = crate::spans::spawn_blocking(move || registry.rollback_to(&of, to)).await??;
        Ok(ok(&json!({"tenant": tenant.config.id, "serving": p.own.as_ref().map(|v| v.version), "pinned": true})))
    }

    /// `POST /tenants/{id}/candidate?mode=shadow|canary&share=..&from=..`:
    /// a candidate from the body's component or a kept version.
    async fn start_candidate(
        &self,
        req: Request<hyper::body::Incoming>,
        tenant: &Arc<Tenant>,
        q: Option<&str>,
    ) -> Answer {
        let mode = asked_mode(q)?;
        let d = self.policy.lifecycle().rule;
        let rule = CanaryRule {
            fault_margin: number(q, "fault_margin")?.unwrap_or(d.fault_margin),
            failure_margin: number(q, "failure_margin")?.unwrap_or(d.failure_margin),
            min_calls: number(q, "min_calls")?.unwrap_or(d.min_calls),
        };
        let source = match number::<u64>(q, "from")? {
            Some(n) => CandidateSource::Kept(n),
            None => {
                CandidateSource::Bytes { bytes: component(req, "kept").await?.to_vec(), source: "admin API".into() }
            }
        };
        let (registry, tenant) = (self.policy.clone(), tenant.clone());
        let p = super::compiling(move || registry.start_candidate(&tenant, source, mode, rule)).await??;
        Ok(reply(StatusCode::CREATED, &p.candidate.as_ref().map_or(Value::Null, |c| c.json(&p.serving))))
    }
}

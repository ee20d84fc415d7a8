//! Deciding where a new out-of-dialog request goes: the tenant that owns the
//! Request-URI's domain, the tenant's `peers`, then one call of the tenant's
//! policy. `serve` and `simulate` both decide here.

use std::sync::Arc;

use crate::control::{Tenant, Tenants, acl};
use crate::model::Source;
use crate::model::uri::{NameAddrRef, Scheme, UriRef};
use crate::model::wire::{Message, Name};
use crate::policy::contract::{Failure, Request};
use crate::policy::{PolicyRegistry, Role, TenantPolicy, Verdict, view};
use crate::sip::error::RequestError;

/// A decision and what it was made with: an `on-failure` later goes to the
/// same tenant and policy version.
pub struct Decided {
    /// The tenant.
    pub tenant: Arc<Tenant>,
    /// The policy version that decided (pinned for `on-failure`).
    pub policy: Arc<TenantPolicy>,
    /// The request as the policy saw it.
    pub view: Request,
    /// The decision, and who made it.
    pub verdict: Verdict,
}

impl std::fmt::Debug for Decided {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decided").field("tenant", &self.tenant.config.id).field("verdict", &self.verdict).finish()
    }
}

/// The tenant that owns the Request-URI's domain and accepts `source`. A `tel:`
/// Request-URI has no domain: its tenant is the one whose `peers` list the
/// source (when exactly one does), else the one that owns the To domain.
pub fn tenant_for(tenants: &Tenants, req: &Message, source: &Source) -> Result<Arc<Tenant>, RequestError> {
    let ruri = req.request_uri().and_then(|u| UriRef::parse(u).ok());
    let tenant = match ruri {
        Some(u) if u.scheme == Scheme::Tel => tel_tenant(tenants, req, source),
        Some(u) => tenants.by_domain(&u.host.to_ascii_lowercase()),
        None => None,
    };
    let tenant = tenant.ok_or(RequestError::UnknownDomain)?;
    if !acl::allows(&tenant.config.peers, source.addr.ip()) {
        return Err(RequestError::NotAPeer);
    }
    Ok(tenant.clone())
}

/// The tenant of a `tel:` request: by the peers that list its source (one
/// tenant only), else by its To domain.
fn tel_tenant<'t>(tenants: &'t Tenants, req: &Message, source: &Source) -> Option<&'t Arc<Tenant>> {
    let ip = source.addr.ip();
    let mut by_peer = tenants.iter().filter(|t| !t.config.peers.is_empty() && acl::allows(&t.config.peers, ip));
    if let (Some(t), None) = (by_peer.next(), by_peer.next()) {
        return Some(t);
    }
    let to = req.first(Name::To).and_then(|v| NameAddrRef::parse(v).ok())?;
    (to.uri.scheme != Scheme::Tel).then(|| tenants.by_domain(&to.uri.host.to_ascii_lowercase())).flatten()
}

/// The span of one policy call: the policy and its version.
fn policy_span(policy: &TenantPolicy) -> tracing::Span {
    let (name, version) = policy.own.as_ref().map_or(("standard", 0), |v| (v.name.as_str(), v.version));
    tracing::debug_span!("policy", policy = name, version, decided_by = tracing::field::Empty)
}

/// Asks `tenant`'s current policy where `req` goes.
pub fn decide(
    registry: &PolicyRegistry,
    tenant: Arc<Tenant>,
    req: &Message,
    source: &Source,
) -> Result<Decided, RequestError> {
    let view = view::request_view(req, source).map_err(|e| RequestError::bad(e.to_string()))?;
    let policy = registry.get(&tenant);
    let verdict = {
        let span = policy_span(&policy).entered();
        let verdict = policy.route(&tenant, &view);
        span.record("decided_by", tracing::field::debug(&verdict.decided_by));
        verdict
    };
    Ok(Decided { tenant, policy, view, verdict })
}

/// Asks the policy version that routed a request (`role`: the serving one or
/// the canary) what to do now that every target failed (`on-failure`).
pub fn on_failure(
    policy: &TenantPolicy,
    tenant: &Arc<Tenant>,
    view: &Request,
    failure: &Failure,
    role: Role,
) -> Verdict {
    let span = policy_span(policy).entered();
    let verdict = policy.on_failure_as(tenant, view, failure, role);
    span.record("decided_by", tracing::field::debug(&verdict.decided_by));
    verdict
}

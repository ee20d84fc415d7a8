//! The standard Exchange UM routing policy: steps 2-6 of the algorithm in the
//! router's `docs/exum-routing.md` (steps 1 and 7 are the router's), as a
//! policy component.
//!
//! The router embeds this component and uses it for every tenant without a policy
//! of its own, for a tenant policy's `standard` decision, and as the default
//! fallback when a tenant's policy faults. Step 1 (the tenant from the
//! Request-URI domain) is the router's; step 7 (OPTIONS probes) is the router's too,
//! and shows here as `host::target_healthy`.
//!
//! The `ms-diagnostics` codes it answers with are listed in [`diagnostics`].

use exum_policy_sdk::{
    Decision, Failure, Forward, Policy, Request, Target, UmContact, User, Voicemail, host, ms_diagnostics,
    normalize_number, parse_uri, routing,
};

/// The `ms-diagnostics` codes of the standard policy. 15000-15999 is the range Lync
/// reserved for Exchange UM routing; these numbers are exum-router's own.
pub mod diagnostics {
    /// 480: the called user's voice-mail setting is `none`.
    pub const NOT_ENABLED: (u32, &str) = (15000, "User is not enabled for Unified Messaging");
    /// 404: a request that is not voice-mail-bound, and the tenant has no default next hop.
    pub const NOT_VOICEMAIL: (u32, &str) = (15002, "Not a voice-mail call and no default next hop");
    /// 404: a voice-mail-bound request for a user or number the directory does not know.
    pub const UNKNOWN_TARGET: (u32, &str) = (15004, "Voice-mail target not found in the directory");
    /// 480: no UM server could be reached and voice-mail rerouting is off.
    pub const FAILED_TO_ROUTE: (u32, &str) = (15030, "Failed to route to Exchange Server");
    /// 480: a hosted target without an applicable hosted voice-mail policy (or one
    /// without destination).
    pub const NO_HOSTED_POLICY: (u32, &str) = exum_policy_sdk::routing::NO_HOSTED_POLICY;
    /// 480: an on-premises user whose EUM phone-context names no known dial plan.
    pub const NO_DIAL_PLAN: (u32, &str) = (15032, "No UM dial plan for the user's phone-context");
}

/// The standard policy.
pub struct Standard;

impl Policy for Standard {
    fn route(req: &Request) -> Decision {
        route(req)
    }

    fn on_failure(req: &Request, _failure: &Failure) -> Decision {
        all_targets_failed(req)
    }
}

exum_policy_sdk::export_policy!(Standard);

/// Where the standard algorithm sends `req` (steps 2-6).
pub fn route(req: &Request) -> Decision {
    if !req.method().eq_ignore_ascii_case("INVITE") {
        return not_voicemail(req);
    }
    let ruri = req.request_uri();
    let address = ruri.address();
    let number = ruri.number();
    let find_user = || host::lookup_user(&address).or_else(|| number.as_deref().and_then(host::lookup_user));
    let find_contact = || host::lookup_contact(&address).or_else(|| number.as_deref().and_then(host::lookup_contact));

    if ruri.is_voicemail() {
        if let Some(user) = find_user() {
            return route_user(req, &user);
        }
        if let Some(contact) = find_contact() {
            return route_contact(req, &contact);
        }
        return reject(404, "Not Found", diagnostics::UNKNOWN_TARGET);
    }
    match find_contact() {
        Some(contact) => route_contact(req, &contact),
        None => not_voicemail(req),
    }
}

/// Step 6: every target failed, or none could be tried. Voice-mail rerouting over
/// the PSTN gateway when the tenant (or the target's site) enables it, else 480.
pub fn all_targets_failed(req: &Request) -> Decision {
    let site = target_site(req);
    let rerouting = host::lookup_rerouting(site.as_deref());
    let number = if req.is_own_mailbox_call() { &rerouting.subscriber_access } else { &rerouting.auto_attendant };
    let (true, Some(gateway), Some(number)) = (rerouting.enabled, &rerouting.pstn_gateway, number) else {
        return reject(480, "Temporarily Unavailable", diagnostics::FAILED_TO_ROUTE);
    };
    let (Some(gateway_uri), Some(number)) = (parse_uri(gateway), normalize_number(number)) else {
        host::log(exum_policy_sdk::Level::Warn, "voice-mail rerouting is enabled but its gateway or number is invalid");
        return reject(480, "Temporarily Unavailable", diagnostics::FAILED_TO_ROUTE);
    };
    let mut ruri = gateway_uri.clone();
    ruri.user = Some(number);
    ruri.params.retain(|p| p.name != "transport" && p.name != "lr");
    ruri.set_param("user", Some("phone"));
    Decision::Forward(routing::with_diversion(req, Forward::to(vec![Target::new(gateway)]).with_request_uri(ruri)))
}

fn route_user(req: &Request, user: &User) -> Decision {
    match user.voicemail {
        Voicemail::None => reject(480, "Temporarily Unavailable", diagnostics::NOT_ENABLED),
        Voicemail::Hosted => route_hosted(req, user.hosted_voicemail_policy.as_deref(), user.site.as_deref()),
        Voicemail::OnPremises => route_on_premises(req, user),
    }
}

fn route_contact(req: &Request, contact: &UmContact) -> Decision {
    route_hosted(req, contact.hosted_voicemail_policy.as_deref(), contact.site.as_deref())
}

/// Step 4: hosted voice mail, to the edge (or the destination over TLS) unless
/// health probes mark that next hop down.
fn route_hosted(req: &Request, granted: Option<&str>, site: Option<&str>) -> Decision {
    match routing::hosted_forward(req.request_uri(), granted, site) {
        Ok(forward) if forward.targets.iter().all(|t| host::target_healthy(&t.uri)) => Decision::Forward(forward),
        Ok(_) => all_targets_failed(req),
        Err(reject) => reject,
    }
}

/// Step 5: on-premises voice mail through the user's dial plan, UM servers in
/// order, servers marked down skipped, Diversion rewritten.
fn route_on_premises(req: &Request, user: &User) -> Decision {
    let phone_context = user
        .eum_address
        .as_deref()
        .and_then(|eum| eum.split(';').find_map(|p| p.trim().strip_prefix("phone-context=")));
    let Some(plan) = phone_context.and_then(host::lookup_dial_plan) else {
        return reject(480, "Temporarily Unavailable", diagnostics::NO_DIAL_PLAN);
    };
    match routing::dial_plan_forward(req, &plan) {
        Some(forward) => Decision::Forward(forward),
        None => all_targets_failed(req),
    }
}

/// The site of the called user or contact, for site-scoped rerouting.
fn target_site(req: &Request) -> Option<String> {
    let address = req.request_uri().address();
    let number = req.request_uri().number();
    host::lookup_user(&address).or_else(|| number.as_deref().and_then(host::lookup_user)).and_then(|u| u.site).or_else(
        || {
            host::lookup_contact(&address)
                .or_else(|| number.as_deref().and_then(host::lookup_contact))
                .and_then(|c| c.site)
        },
    )
}

/// Not this router's business: the tenant's default next hop, or 404.
fn not_voicemail(_req: &Request) -> Decision {
    match host::settings().default_next_hop {
        Some(next_hop) => Decision::Forward(Forward::to(vec![Target::new(&next_hop)])),
        None => reject(404, "Not Found", diagnostics::NOT_VOICEMAIL),
    }
}

fn reject(code: u16, reason: &str, (diag, diag_reason): (u32, &str)) -> Decision {
    Decision::Reject(exum_policy_sdk::Reject::new(code, reason).with_header(ms_diagnostics(diag, diag_reason)))
}

#[cfg(test)]
mod tests;

//! Building blocks of the standard Exchange UM algorithm, for policies that route
//! some calls their own way and the rest like the standard policy.

use crate::{Decision, DialPlan, Forward, Request, Target, UmServer, Uri, host, ms_diagnostics};

/// `ms-diagnostics` of a hosted target without an applicable hosted voice-mail
/// policy (or one without destination).
pub const NO_HOSTED_POLICY: (u32, &str) = (15031, "No hosted voice mail policy");

/// `ms-diagnostics` of a hosted target when the tenant has no enabled hosting
/// provider (its provider is disabled).
pub const NO_HOSTING_PROVIDER: (u32, &str) = (15033, "No enabled hosting provider for hosted voice mail");

/// Step 4 of the standard algorithm: a forward to hosted voice mail for a target
/// whose granted policy and site are given. The Request-URI keeps user and host
/// (and `opaque=app:voicemail`) and gains `ms-destination` and `ms-organization`;
/// the next hop is the tenant's hosting provider (or edge).
///
/// Returns the 480 rejection as `Err` when no hosted voice-mail policy with a
/// destination applies (`ms-diagnostics: 15031`), or when the tenant has no
/// enabled hosting provider (15033).
pub fn hosted_forward(request_uri: &Uri, granted: Option<&str>, site: Option<&str>) -> Result<Forward, Decision> {
    hosted_forward_and_health(request_uri.clone(), granted, site).map(|(forward, _)| forward)
}

/// [`hosted_forward`], and whether health probes let its next hop be tried,
/// from one import call ([`host::resolve_hosted_route`]).
pub fn hosted_forward_and_health(
    request_uri: Uri,
    granted: Option<&str>,
    site: Option<&str>,
) -> Result<(Forward, bool), Decision> {
    let no_policy =
        || Decision::reject_with_diagnostics(480, "Temporarily Unavailable", NO_HOSTED_POLICY.0, NO_HOSTED_POLICY.1);
    let route = host::resolve_hosted_route(granted, site).ok_or_else(no_policy)?;
    let destination = route.destination.filter(|d| !d.is_empty()).ok_or_else(no_policy)?;
    let mut ruri = request_uri;
    ruri.port = None;
    ruri.params.retain(|p| p.name == "opaque");
    ruri.set_param("ms-destination", Some(&destination));
    if let Some(org) = &route.organization {
        ruri.set_param("ms-organization", Some(org));
    }
    let next_hop = route.next_hop.ok_or_else(|| {
        Decision::reject_with_diagnostics(480, "Temporarily Unavailable", NO_HOSTING_PROVIDER.0, NO_HOSTING_PROVIDER.1)
    })?;
    Ok((Forward::to(vec![Target::new(&next_hop)]).with_request_uri(ruri), route.next_hop_healthy))
}

/// The Diversion rule of step 5: removes every Diversion header, and adds one
/// naming the Request-URI when the caller is not the called user (Exchange UM
/// picks the mailbox from it). See [`with_diversion_to`] to name the mailbox
/// user's SIP address (a user found by number).
pub fn with_diversion(req: &Request, forward: Forward) -> Forward {
    let mailbox = (!req.is_own_mailbox_call()).then(|| req.request_uri_address());
    with_diversion_to(forward, mailbox)
}

/// Removes every Diversion header and, with `mailbox` (the called user's SIP
/// address, when the caller is someone else), adds one naming it.
pub fn with_diversion_to(forward: Forward, mailbox: Option<&str>) -> Forward {
    let forward = forward.remove_header("Diversion");
    match mailbox {
        Some(m) => forward.add_header("Diversion", &format!("<{m}>;reason=no-answer")),
        None => forward,
    }
}

/// The UM servers of `plan` that health probes have not marked down, in order,
/// with their timeouts; over TLS when `tls` (a `sips:` request). Empty when
/// every server is down.
pub fn dial_plan_targets(plan: &DialPlan, tls: bool) -> Vec<Target> {
    plan.servers.iter().filter(|s| host::target_healthy(&s.uri)).map(|s| um_server_target(s, tls)).collect()
}

/// Targets for `servers` as [`host::healthy_um_servers`] lists them (in
/// order, with their timeouts), over TLS when `tls`.
pub fn um_server_targets(servers: &[UmServer], tls: bool) -> Vec<Target> {
    servers.iter().map(|s| um_server_target(s, tls)).collect()
}

fn um_server_target(s: &UmServer, tls: bool) -> Target {
    let t = Target::new(&s.uri).with_timeout_ms(s.timeout_ms);
    if tls { t.with_transport(crate::Transport::Tls) } else { t }
}

/// A forward to the UM servers of `plan` that health probes have not marked
/// down, in order, with their timeouts and the Diversion rule. `None` when every
/// server is down.
pub fn dial_plan_forward(req: &Request, plan: &DialPlan) -> Option<Forward> {
    let targets = dial_plan_targets(plan, req.request_uri().scheme.eq_ignore_ascii_case("sips"));
    if targets.is_empty() {
        return None;
    }
    Some(with_diversion(req, Forward::to(targets)))
}

/// An `ms-diagnostics` header (re-exported here for convenience).
pub fn diagnostics(code: u32, reason: &str) -> crate::Header {
    ms_diagnostics(code, reason)
}

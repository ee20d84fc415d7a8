//! The standard Exchange UM routing algorithm (steps 2-6 of `docs/exum-routing.md`
//! in the router's repository; steps 1 and 7 are the router's), as functions a
//! policy can call and adjust.
//!
//! The router's standard policy is exactly [`route`] and [`on_failure`]. A
//! policy that wants the standard decision with a change calls them and edits
//! the result: "VIP callers to a dedicated UM server first, then the standard
//! targets" is
//!
//! ```
//! use exum_policy_sdk::{Decision, Policy, Request, Target, standard};
//!
//! pub struct VipFirst;
//!
//! impl Policy for VipFirst {
//!     fn route(req: &Request) -> Decision {
//!         let decision = standard::route(req);
//!         if req.from().address() == "sip:ceo@contoso.com" {
//!             return decision.map_forward(|f| f.first(Target::new("sip:vip-um.contoso.com;transport=tls")));
//!         }
//!         decision
//!     }
//! }
//! ```
//!
//! It runs inside the calling policy, against the tenant's directory through
//! the same imports (and within the same deadline).
//!
//! The `ms-diagnostics` codes it answers with are listed in [`diagnostics`].

use crate::{
    ContactKind, Decision, DialPlanOf, Failure, Forward, Outcome, Request, Target, UmContact, User, Voicemail, host,
    ms_diagnostics, normalize_number, parse_uri, reason_phrase, routing,
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
    pub const NO_HOSTED_POLICY: (u32, &str) = crate::routing::NO_HOSTED_POLICY;
    /// 480: an on-premises user whose EUM phone-context names no known dial plan.
    pub const NO_DIAL_PLAN: (u32, &str) = (15032, "No UM dial plan for the user's phone-context");
}

/// Whom a request calls, as the directory knows it.
enum Called {
    /// A user, found by SIP address or by number.
    User(User),
    /// An Exchange UM contact (subscriber access, auto attendant).
    Contact(UmContact),
    /// Nobody the directory knows.
    Nobody,
}

/// Looks up the Request-URI: a user first, then a contact, each by SIP address
/// and then by number.
fn called(req: &Request) -> Called {
    let ruri = req.request_uri();
    let address = req.request_uri_address();
    // Users by number with the extension kept: an extension no user has finds
    // nobody, never the main number's user.
    let number_key = ruri.number_key();
    if let Some(user) = host::lookup_user(address).or_else(|| number_key.as_deref().and_then(host::lookup_user)) {
        return Called::User(user);
    }
    let number = ruri.number();
    match host::lookup_contact(address).or_else(|| number.as_deref().and_then(host::lookup_contact)) {
        Some(contact) => Called::Contact(contact),
        None => Called::Nobody,
    }
}

/// Where the standard algorithm sends `req` (steps 2-6).
pub fn route(req: &Request) -> Decision {
    if !req.method().eq_ignore_ascii_case("INVITE") {
        return not_voicemail(req);
    }
    match (req.request_uri().is_voicemail(), called(req)) {
        (true, Called::User(user)) => route_user(req, &user),
        (_, Called::Contact(contact)) => route_contact(req, &contact),
        (true, Called::Nobody) => reject(404, "Not Found", diagnostics::UNKNOWN_TARGET),
        (false, _) => not_voicemail(req),
    }
}

/// Whether `req` is bound for voice mail: an INVITE to a voice-mail URI or to
/// an Exchange UM contact. Only those are ever rerouted or answered 15030.
pub fn is_voicemail_bound(req: &Request) -> bool {
    req.method().eq_ignore_ascii_case("INVITE")
        && (req.request_uri().is_voicemail() || matches!(called(req), Called::Contact(_)))
}

/// Every target failed (`on-failure`): a voice-mail call is rerouted or answered
/// 480/15030 ([`all_targets_failed`]); any other call gets the best response
/// its targets gave (RFC 3261 §16.7), or 408 when none answered.
pub fn on_failure(req: &Request, failure: &Failure) -> Decision {
    if is_voicemail_bound(req) {
        return all_targets_failed(req);
    }
    let code = best_response(failure).unwrap_or(408);
    Decision::Reject(crate::Reject::new(code, reason_phrase(code)))
}

/// The best failure response among the attempts (RFC 3261 §16.7): a 6xx
/// first, else the lowest class, the first of it (redirects were followed).
fn best_response(failure: &Failure) -> Option<u16> {
    let codes = failure.attempts.iter().filter_map(|a| match a.outcome {
        Outcome::Response(code) if code >= 400 => Some(code),
        _ => None,
    });
    codes.min_by_key(|c| if *c >= 600 { 0 } else { *c / 100 })
}

/// Step 6: every target failed, or none could be tried. Voice-mail rerouting over
/// the PSTN gateway when the tenant (or the target's site) enables it, else 480.
/// Callers who want their own mailbox, and calls to a subscriber-access contact,
/// go to the subscriber-access number; others to the auto-attendant number.
pub fn all_targets_failed(req: &Request) -> Decision {
    // A call that may not be diverted ([MS-SIPRE] Ms-Sensitivity) is not
    // rerouted to voice mail over the PSTN either.
    if req.no_diversion() {
        return reject(480, "Temporarily Unavailable", diagnostics::FAILED_TO_ROUTE);
    }
    let called = called(req);
    let site = match &called {
        Called::User(u) => u.site.clone(),
        Called::Contact(c) => c.site.clone(),
        Called::Nobody => None,
    };
    let retrieval = match &called {
        Called::User(u) => own_call(req, u),
        Called::Contact(c) => c.kind == ContactKind::SubscriberAccess,
        Called::Nobody => req.is_own_mailbox_call(),
    };
    let rerouting = host::lookup_rerouting(site.as_deref());
    let number = if retrieval { &rerouting.subscriber_access } else { &rerouting.auto_attendant };
    let (true, Some(gateway), Some(number)) = (rerouting.enabled, &rerouting.pstn_gateway, number) else {
        return reject(480, "Temporarily Unavailable", diagnostics::FAILED_TO_ROUTE);
    };
    let (Some(gateway_uri), Some(number)) = (parse_uri(gateway), normalize_number(number)) else {
        host::log(crate::Level::Warn, "voice-mail rerouting is enabled but its gateway or number is invalid");
        return reject(480, "Temporarily Unavailable", diagnostics::FAILED_TO_ROUTE);
    };
    let mut ruri = gateway_uri.clone();
    ruri.user = Some(number);
    ruri.params.retain(|p| p.name != "transport" && p.name != "lr");
    ruri.set_param("user", Some("phone"));
    let forward = Forward::to(vec![Target::new(gateway)]).with_request_uri(ruri);
    let forward = match &called {
        Called::User(u) => routing::with_diversion_to(forward, mailbox_of(req, u).as_deref()),
        _ => routing::with_diversion(req, forward),
    };
    Decision::Forward(forward)
}

/// Whether the caller is the called user (by the user's SIP address, or the
/// Request-URI for a user reached that way).
fn own_call(req: &Request, user: &User) -> bool {
    req.is_own_mailbox_call() || req.from_address().eq_ignore_ascii_case(&user.sip_address)
}

/// The mailbox a Diversion names for a call to `user`: the user's SIP address
/// (Exchange UM matches mailboxes by it, whatever the Request-URI said), or
/// none when the caller is the user.
fn mailbox_of(req: &Request, user: &User) -> Option<String> {
    (!own_call(req, user)).then(|| user.sip_address.clone())
}

fn route_user(req: &Request, user: &User) -> Decision {
    match user.voicemail {
        Voicemail::None => reject(480, "Temporarily Unavailable", diagnostics::NOT_ENABLED),
        Voicemail::Hosted => route_hosted_user(req, user),
        Voicemail::OnPremises => route_on_premises(req, user),
    }
}

/// A contact of an on-premises dial plan goes to that dial plan's UM servers
/// (the Request-URI and headers as received: the UM server answers its own
/// number); a hosted contact takes step 4.
fn route_contact(req: &Request, contact: &UmContact) -> Decision {
    if let Some(servers) = host::healthy_um_servers(&DialPlanOf::Contact(contact.sip_address.clone())) {
        let targets = routing::um_server_targets(&servers, req.request_uri().scheme.eq_ignore_ascii_case("sips"));
        if targets.is_empty() {
            return all_targets_failed(req);
        }
        return Decision::Forward(Forward::to(targets));
    }
    route_hosted(
        req,
        req.request_uri().clone(),
        contact.hosted_voicemail_policy.as_deref(),
        contact.site.as_deref(),
        None,
    )
}

/// Step 4 for a user: the Request-URI names the user by SIP address (a user
/// dialled by number included), and the Diversion rule of step 5 applies.
fn route_hosted_user(req: &Request, user: &User) -> Decision {
    let mut mailbox = parse_uri(&user.sip_address).unwrap_or_else(|| req.request_uri().clone());
    mailbox.params.clear();
    if req.request_uri().is_voicemail() {
        mailbox.set_param("opaque", Some("app:voicemail"));
    }
    let diversion = mailbox_of(req, user);
    route_hosted(
        req,
        mailbox,
        user.hosted_voicemail_policy.as_deref(),
        user.site.as_deref(),
        Some(diversion.as_deref()),
    )
}

/// Step 4: hosted voice mail, through the hosting provider (or edge) unless
/// health probes mark that next hop down. With `diversion`, the Diversion rule
/// (remove, then name the mailbox when given).
fn route_hosted(
    req: &Request,
    request_uri: crate::Uri,
    granted: Option<&str>,
    site: Option<&str>,
    diversion: Option<Option<&str>>,
) -> Decision {
    match routing::hosted_forward_and_health(request_uri, granted, site) {
        Ok((forward, true)) => Decision::Forward(match diversion {
            Some(mailbox) => routing::with_diversion_to(forward, mailbox),
            None => forward,
        }),
        Ok((_, false)) => all_targets_failed(req),
        Err(reject) => reject,
    }
}

/// Step 5: on-premises voice mail through the user's dial plan, UM servers in
/// order (over TLS for a `sips:` request), servers marked down skipped, the
/// Diversion naming the user's SIP address.
fn route_on_premises(req: &Request, user: &User) -> Decision {
    let phone_context = user
        .eum_address
        .as_deref()
        .and_then(|eum| eum.split(';').find_map(|p| p.trim().strip_prefix("phone-context=")));
    let Some(servers) = phone_context.and_then(|key| host::healthy_um_servers(&DialPlanOf::Key(key.to_owned()))) else {
        return reject(480, "Temporarily Unavailable", diagnostics::NO_DIAL_PLAN);
    };
    let tls = req.request_uri().scheme.eq_ignore_ascii_case("sips");
    let targets = routing::um_server_targets(&servers, tls);
    if targets.is_empty() {
        return all_targets_failed(req);
    }
    Decision::Forward(routing::with_diversion_to(Forward::to(targets), mailbox_of(req, user).as_deref()))
}

/// Not this router's business: the tenant's default next hop, or 404.
fn not_voicemail(_req: &Request) -> Decision {
    match host::settings().default_next_hop {
        Some(next_hop) => Decision::Forward(Forward::to(vec![Target::new(&next_hop)])),
        None => reject(404, "Not Found", diagnostics::NOT_VOICEMAIL),
    }
}

fn reject(code: u16, reason: &str, (diag, diag_reason): (u32, &str)) -> Decision {
    Decision::Reject(crate::Reject::new(code, reason).with_header(ms_diagnostics(diag, diag_reason)))
}

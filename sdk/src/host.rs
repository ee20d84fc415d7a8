//! The router's imports: the calling tenant's directory, target health, the clock
//! and the log.
//!
//! In a component (target `wasm32`) these call the router. Built natively, for a
//! policy's unit tests, they answer from the [`TestHost`](crate::testing::TestHost)
//! installed on the current thread.

use crate::{
    Datetime, DialPlan, DialPlanOf, HostedRoute, HostedVoicemailPolicy, Level, PolicyScope, Rerouting, TenantSettings,
    UmContact, UmServer, User,
};

#[cfg(target_arch = "wasm32")]
use crate::bindings::exum::policy::{clock, directory, health, log as wit_log};

#[cfg(not(target_arch = "wasm32"))]
use crate::testing::with_host;

/// Finds a user by SIP address (parameters ignored) or by number (E.164 or `tel:`).
pub fn lookup_user(address: &str) -> Option<User> {
    #[cfg(target_arch = "wasm32")]
    return directory::lookup_user(address);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_user(address));
}

/// Finds an Exchange UM contact by SIP address or by number.
pub fn lookup_contact(address: &str) -> Option<UmContact> {
    #[cfg(target_arch = "wasm32")]
    return directory::lookup_contact(address);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_contact(address));
}

/// Looks up one hosted voice-mail policy; see [`resolve_hosted_policy`](crate::resolve_hosted_policy)
/// for the resolution a user's calls need.
pub fn lookup_hosted_voicemail_policy(scope: &PolicyScope) -> Option<HostedVoicemailPolicy> {
    #[cfg(target_arch = "wasm32")]
    return directory::lookup_hosted_voicemail_policy(scope);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_hosted_policy(scope));
}

/// Finds an on-premises dial plan by phone-context or by name.
pub fn lookup_dial_plan(key: &str) -> Option<DialPlan> {
    #[cfg(target_arch = "wasm32")]
    return directory::lookup_dial_plan(key);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_dial_plan(key));
}

/// The on-premises dial plan of an Exchange UM contact (by SIP address or
/// number); `None` for a hosted contact.
pub fn lookup_contact_dial_plan(address: &str) -> Option<DialPlan> {
    #[cfg(target_arch = "wasm32")]
    return directory::lookup_contact_dial_plan(address);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_contact_dial_plan(address));
}

/// The voice-mail rerouting settings of a site, or of the tenant.
pub fn lookup_rerouting(site: Option<&str>) -> Rerouting {
    #[cfg(target_arch = "wasm32")]
    return directory::lookup_rerouting(site);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_rerouting(site));
}

/// The tenant's own routing settings.
pub fn settings() -> TenantSettings {
    #[cfg(target_arch = "wasm32")]
    return directory::settings();
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.tenant.clone());
}

/// Hosted voice mail for a user or contact granted `granted` in `site`, in
/// one call: the destination and first organization of the hosted voice-mail
/// policy that applies (granted, else the site's, else the global one), and
/// the tenant's next hop with its health. `None` when no policy applies.
/// [`resolve_hosted_policy`](crate::resolve_hosted_policy), [`settings`] and
/// [`target_healthy`] answer the same in three to five calls.
pub fn resolve_hosted_route(granted: Option<&str>, site: Option<&str>) -> Option<HostedRoute> {
    #[cfg(target_arch = "wasm32")]
    return directory::resolve_hosted_route(granted, site);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_hosted_route(granted, site));
}

/// The UM servers of a dial plan (by key, or of a contact) that health probes
/// have not marked down, in order; empty when all are down, `None` when there
/// is no such dial plan. [`lookup_dial_plan`] and [`target_healthy`] for each
/// server answer the same in several calls.
pub fn healthy_um_servers(of: &DialPlanOf) -> Option<Vec<UmServer>> {
    #[cfg(target_arch = "wasm32")]
    return directory::healthy_um_servers(of);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.find_healthy_um_servers(of));
}

/// Whether a target is believed reachable (not marked down by health probes).
pub fn target_healthy(uri: &str) -> bool {
    #[cfg(target_arch = "wasm32")]
    return health::target_healthy(uri);
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| !h.is_down(uri));
}

/// The current time, with the tenant's UTC offset.
pub fn now() -> Datetime {
    #[cfg(target_arch = "wasm32")]
    return clock::now();
    #[cfg(not(target_arch = "wasm32"))]
    return with_host(|h| h.now);
}

/// Writes a message into the router's log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    wit_log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    with_host(|h| h.logs.borrow_mut().push((level, message.to_owned())));
}

/// The router's standard decision for `req` (the `standard` import): the
/// standard algorithm run by the router, never `standard`. Calling
/// [`crate::standard::route`] instead runs the same algorithm inside the
/// policy (the router's copy is the one the router ships; this one is the
/// SDK's this policy was built with). Built natively, for unit tests, it is
/// [`crate::standard::route`] against the [`TestHost`](crate::testing::TestHost).
pub fn standard_route(req: &crate::Request) -> crate::Decision {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::exum::policy::standard::route(req.wire());
    #[cfg(not(target_arch = "wasm32"))]
    return crate::standard::route(req);
}

/// The router's standard decision when every target of a forward failed (the
/// `standard` import's `on-failure`); natively [`crate::standard::on_failure`].
pub fn standard_on_failure(req: &crate::Request, failure: &crate::Failure) -> crate::Decision {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::exum::policy::standard::on_failure(req.wire(), failure);
    #[cfg(not(target_arch = "wasm32"))]
    return crate::standard::on_failure(req, failure);
}

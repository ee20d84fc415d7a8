//! The example tenant policies, as components, through the real engine on the
//! example deployment's data.

use std::sync::Arc;

use exum_router::control::Tenant;
use exum_router::control::config::PolicySource;
use exum_router::policy::DecidedBy;
use exum_router::policy::contract::Decision;
use exum_router_tests::{Plane, components, invite};

use crate::forward;

/// Routes an INVITE through `tenant_id`'s data with the component at `path`.
fn route_with(path: &str, tenant_id: &str, config: &str, ruri: &str, from: &str) -> exum_router::policy::Verdict {
    let plane = Plane::deployment();
    let base = plane.tenants.by_id(tenant_id).expect("tenant").clone();
    let mut c = base.config.clone();
    c.policy = PolicySource::File(path.into());
    c.policy_config = config.to_owned();
    let tenant = Arc::new(Tenant { config: c, directory: base.directory.clone() });
    let policy = plane.registry.install_configured(&tenant);
    assert_eq!(policy.load_error, None);
    let (_, req) = plane.request(&invite(ruri, from));
    policy.route(&tenant, &req)
}

#[test]
fn pilot_group_sends_pilots_to_hosted_and_leaves_the_rest() {
    const PILOTS: &str = "sip:bob@contoso.com";
    // bob is on-premises in the directory, but a pilot.
    let v = route_with(
        components::PILOT_GROUP,
        "contoso",
        PILOTS,
        "sip:bob@contoso.com;opaque=app:voicemail",
        "sip:z@x.com",
    );
    assert!(matches!(v.decided_by, DecidedBy::Policy { .. }));
    let f = forward(&v);
    assert_eq!(f.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
    assert!(f.request_uri.as_deref().is_some_and(|u| u.contains("ms-organization=contoso-redmond.onmicrosoft.com")));
    // erin is not a pilot: the standard algorithm sends her to DP-Paris.
    let v = route_with(
        components::PILOT_GROUP,
        "contoso",
        PILOTS,
        "sip:erin@contoso.com;opaque=app:voicemail",
        "sip:z@x.com",
    );
    assert_eq!(v.decided_by, DecidedBy::Standard);
    assert_eq!(forward(&v).targets[0].uri, "sip:um1.paris.contoso.com:5061;transport=tls");
}

#[test]
fn after_hours_sends_the_main_number_to_the_attendant() {
    // The main number is the subscriber-access contact's; the attendant the AA's.
    let always_closed = "main=+14255550199; attendant=+14255550198; open=00:00-00:00; days=mon-sun";
    let v = route_with(
        components::AFTER_HOURS,
        "contoso",
        always_closed,
        "sip:+14255550199@contoso.com;user=phone",
        "sip:z@x.com",
    );
    let f = forward(&v);
    assert_eq!(
        f.request_uri.as_deref(),
        Some("sip:aa@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com")
    );
    let always_open = "main=+14255550199; attendant=+14255550198; open=00:00-24:00; days=mon-sun";
    let v = route_with(
        components::AFTER_HOURS,
        "contoso",
        always_open,
        "sip:+14255550199@contoso.com;user=phone",
        "sip:z@x.com",
    );
    assert_eq!(v.decided_by, DecidedBy::Standard);
    assert_eq!(
        forward(&v).request_uri.as_deref(),
        Some("sip:+14255550199@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com")
    );
}

#[test]
fn prefix_routing_picks_dial_plan_or_provider_by_number() {
    let config = "+33=dial-plan:DP-Paris; +1425=hosted:na.um.example.net";
    // dave's line is +1425...: the provider, not his own hosted policy.
    let v = route_with(
        components::PREFIX_ROUTING,
        "contoso",
        config,
        "sip:dave@contoso.com;opaque=app:voicemail",
        "sip:z@x.com",
    );
    assert_eq!(forward(&v).targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
    assert!(forward(&v).request_uri.as_deref().is_some_and(|u| u.contains("ms-destination=na.um.example.net")));
    let v = route_with(
        components::PREFIX_ROUTING,
        "contoso",
        config,
        "sip:+33155550104@contoso.com;user=phone",
        "sip:z@x.com",
    );
    assert_eq!(forward(&v).targets[0].uri, "sip:um1.paris.contoso.com:5061;transport=tls");
    // grace (+1206) matches nothing: standard.
    let v = route_with(
        components::PREFIX_ROUTING,
        "fabrikam",
        config,
        "sip:grace@fabrikam.com;opaque=app:voicemail",
        "sip:z@x.com",
    );
    assert_eq!(v.decided_by, DecidedBy::Standard);
    assert!(matches!(v.decision, Decision::Forward(_)));
}

#[test]
fn vip_first_puts_the_vip_server_before_the_standard_targets() {
    let config = "server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com";
    // erin's standard route is DP-Paris; a VIP caller tries the VIP server first.
    let v = route_with(
        components::VIP_FIRST,
        "contoso",
        config,
        "sip:erin@contoso.com;opaque=app:voicemail",
        "sip:ceo@contoso.com",
    );
    assert!(matches!(v.decided_by, DecidedBy::Policy { .. }));
    let targets: Vec<&str> = forward(&v).targets.iter().map(|t| t.uri.as_str()).collect();
    assert_eq!(targets, ["sip:vip-um.contoso.com;transport=tls", "sip:um1.paris.contoso.com:5061;transport=tls"]);
    assert!(forward(&v).add_headers.iter().any(|h| h.name == "X-Exum-Vip" && h.value == "yes"));
    // Anyone else: the standard decision, byte for byte.
    let other = route_with(
        components::VIP_FIRST,
        "contoso",
        config,
        "sip:erin@contoso.com;opaque=app:voicemail",
        "sip:z@x.com",
    );
    let standard =
        route_with(components::STANDARD, "contoso", "", "sip:erin@contoso.com;opaque=app:voicemail", "sip:z@x.com");
    assert_eq!(other.decision, standard.decision);
    // A bad configuration is refused when loaded.
    let plane = Plane::deployment();
    let base = plane.tenants.by_id("contoso").expect("tenant").clone();
    let mut c = base.config.clone();
    c.policy = PolicySource::File(components::VIP_FIRST.into());
    c.policy_config = "callers=sip:ceo@contoso.com".into();
    let tenant = Arc::new(Tenant { config: c, directory: base.directory.clone() });
    let policy = plane.registry.install_configured(&tenant);
    assert!(policy.load_error.as_deref().is_some_and(|e| e.contains("server=")), "{:?}", policy.load_error);
}

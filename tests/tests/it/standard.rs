//! Every branch of the standard algorithm (docs/exum-routing.md, steps 1-7), through the
//! embedded standard component and the real engine, on the example deployment.

use exum_router::policy::DecidedBy;
use exum_router::policy::contract::{Attempt, Failure, Outcome};
use exum_router_tests::{Plane, invite};

use crate::{diagnostics, forward, reject, route};

const CALLER: &str = "sip:zoe@fabrikam.com";
const UM1: &str = "sip:um1.redmond.contoso.com:5061;transport=tls";
const UM2: &str = "sip:um2.redmond.contoso.com:5061;transport=tls";

#[test]
fn step1_unknown_domain_has_no_tenant() {
    let plane = Plane::deployment();
    assert!(plane.tenants.by_domain("northwind.com").is_none());
    assert!(plane.tenants.by_domain("LITWARE.NET").is_some(), "domains match case-insensitively");
}

#[test]
fn step2_unknown_target_is_404() {
    let plane = Plane::deployment();
    let v = route(&plane, "sip:nobody@contoso.com;opaque=app:voicemail", CALLER);
    let r = reject(&v);
    assert_eq!(r.code, 404);
    assert!(diagnostics(r).starts_with("15004;"));
    assert_eq!(v.decided_by, DecidedBy::Standard);
}

#[test]
fn step3_user_not_enabled_is_480_15000() {
    let plane = Plane::deployment();
    let r = route(&plane, "sip:carol@contoso.com;opaque=app:voicemail", CALLER);
    assert_eq!(reject(&r).code, 480);
    assert_eq!(diagnostics(reject(&r)), "15000;reason=\"User is not enabled for Unified Messaging\"");
}

#[test]
fn step4_hosted_user_goes_to_the_edge_with_site_policy_data() {
    let plane = Plane::deployment();
    let v = route(&plane, "sip:alice@contoso.com;gruu;opaque=app:voicemail", CALLER);
    let f = forward(&v);
    assert_eq!(f.targets.len(), 1);
    assert_eq!(f.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
    assert_eq!(
        f.request_uri.as_deref(),
        Some(
            "sip:alice@contoso.com;opaque=app:voicemail;ms-destination=exap.um.outlook.com;ms-organization=contoso-redmond.onmicrosoft.com"
        ),
        "user and host kept, gruu dropped, site policy (redmond) used"
    );
}

#[test]
fn step4_granted_policy_wins_over_site_and_hosted_flag_over_eum() {
    let plane = Plane::deployment();
    // dave has both the hosted flag and an EUM address: hosted wins; his granted
    // "pilot" policy wins over the site's.
    let f = forward(&route(&plane, "sip:dave@contoso.com;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(
        f.request_uri.as_deref(),
        Some(
            "sip:dave@contoso.com;opaque=app:voicemail;ms-destination=pilot.um.outlook.com;ms-organization=contoso-pilot.onmicrosoft.com"
        )
    );
}

#[test]
fn step4_site_policy_without_destination_is_480_15031() {
    let plane = Plane::deployment();
    let v = route(&plane, "sip:frank@contoso.com;opaque=app:voicemail", CALLER);
    assert_eq!(reject(&v).code, 480);
    assert!(diagnostics(reject(&v)).starts_with("15031;"));
}

#[test]
fn step4_without_edge_goes_to_the_destination_over_tls() {
    let plane = Plane::deployment();
    let f = forward(&route(&plane, "sip:grace@fabrikam.com;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.targets[0].uri, "sip:exap.um.outlook.com;transport=tls");
    assert!(f.request_uri.as_deref().is_some_and(|u| u.ends_with(";ms-organization=fabrikam.onmicrosoft.com")));
}

#[test]
fn step4_um_contacts_by_sip_address_and_by_number() {
    let plane = Plane::deployment();
    let by_number = forward(&route(&plane, "sip:+14255550199@contoso.com;user=phone", "sip:bob@contoso.com")).clone();
    assert_eq!(by_number.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
    assert_eq!(
        by_number.request_uri.as_deref(),
        Some("sip:+14255550199@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com"),
        "contacts without a site use the global policy"
    );
    let by_address = forward(&route(&plane, "sip:attendant@fabrikam.com", CALLER)).clone();
    assert_eq!(by_address.targets[0].uri, "sip:exap.um.outlook.com;transport=tls");
}

#[test]
fn step4_user_by_number_in_the_request_uri() {
    let plane = Plane::deployment();
    let f = forward(&route(&plane, "sip:+14255550100@contoso.com;user=phone;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls", "alice found by her line number");
}

#[test]
fn step5_on_premises_serial_um_servers_and_diversion() {
    let plane = Plane::deployment();
    let f = forward(&route(&plane, "sip:bob@contoso.com;opaque=app:voicemail", CALLER)).clone();
    let targets: Vec<_> = f.targets.iter().map(|t| (t.uri.as_str(), t.timeout_ms)).collect();
    assert_eq!(targets, [(UM1, Some(3000)), (UM2, Some(3000))]);
    assert_eq!(f.request_uri, None, "on-premises keeps the Request-URI");
    assert_eq!(f.remove_headers, ["Diversion"]);
    assert_eq!(f.add_headers.len(), 1);
    assert_eq!(f.add_headers[0].value, "<sip:bob@contoso.com>;reason=no-answer");
}

#[test]
fn step5_own_mailbox_call_gets_no_diversion() {
    let plane = Plane::deployment();
    let f = forward(&route(&plane, "sip:bob@contoso.com;opaque=app:voicemail", "sip:bob@contoso.com")).clone();
    assert_eq!(f.remove_headers, ["Diversion"]);
    assert!(f.add_headers.is_empty());
}

#[test]
fn step5_and_7_servers_marked_down_are_skipped() {
    let plane = Plane::deployment();
    plane.health.set(UM1, false);
    let f = forward(&route(&plane, "sip:bob@contoso.com;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.targets.iter().map(|t| t.uri.as_str()).collect::<Vec<_>>(), [UM2]);
    plane.health.set(UM1, true);
    let f = forward(&route(&plane, "sip:bob@contoso.com;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.targets.len(), 2, "back when probes succeed");
}

#[test]
fn step6_every_server_down_reroutes_to_the_auto_attendant() {
    let plane = Plane::deployment();
    plane.health.set(UM1, false);
    plane.health.set(UM2, false);
    let f = forward(&route(&plane, "sip:bob@contoso.com;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.targets[0].uri, "sip:gw.contoso.com;transport=tcp");
    assert_eq!(f.request_uri.as_deref(), Some("sip:+14255550150@gw.contoso.com;user=phone"));
}

#[test]
fn step6_own_mailbox_reroutes_to_subscriber_access_and_sites_have_their_own() {
    let plane = Plane::deployment();
    let (tenant, req) = plane.request(&invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:bob@contoso.com"));
    let failure = Failure { attempts: vec![Attempt { target: UM1.into(), outcome: Outcome::Response(503) }] };
    let v = plane.policy(&tenant).on_failure(&tenant, &req, &failure);
    assert_eq!(forward(&v).request_uri.as_deref(), Some("sip:+14255550151@gw.contoso.com;user=phone"));

    let (tenant, req) = plane.request(&invite("sip:erin@contoso.com;opaque=app:voicemail", CALLER));
    let v = plane.policy(&tenant).on_failure(&tenant, &req, &failure);
    assert_eq!(forward(&v).targets[0].uri, "sip:gw.paris.contoso.com;transport=tcp");
    assert_eq!(forward(&v).request_uri.as_deref(), Some("sip:+33155550150@gw.paris.contoso.com;user=phone"));
}

#[test]
fn step6_without_rerouting_is_480_15030() {
    let plane = Plane::deployment();
    let (tenant, req) = plane.request(&invite("sip:ivan@litware.com;opaque=app:voicemail", CALLER));
    let failure = Failure {
        attempts: vec![Attempt { target: "sip:um1.litware.com;transport=tcp".into(), outcome: Outcome::Timeout }],
    };
    let v = plane.policy(&tenant).on_failure(&tenant, &req, &failure);
    assert_eq!(reject(&v).code, 480);
    assert_eq!(diagnostics(reject(&v)), "15030;reason=\"Failed to route to Exchange Server\"");
}

#[test]
fn other_requests_go_to_the_default_next_hop_or_404() {
    let plane = Plane::deployment();
    let f = forward(&route(&plane, "sip:ivan@litware.com", CALLER)).clone();
    assert_eq!(f.targets[0].uri, "sip:pool.litware.com;transport=tcp");
    let v = route(&plane, "sip:bob@contoso.com", CALLER);
    assert_eq!(reject(&v).code, 404);
    assert!(diagnostics(reject(&v)).starts_with("15002;"));
}

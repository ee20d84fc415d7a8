//! Native tests of the standard algorithm against the SDK's test host. The same
//! branches run through the router's engine in `tests/`.

use exum_policy_sdk::testing::{TestHost, invite};
use exum_policy_sdk::{ContactKind, Decision, PolicyScope};

use super::route;

fn contoso() -> TestHost {
    TestHost::new("contoso")
        .edge("sip:edge.contoso.com:5061;transport=tls")
        .hosted_user("sip:alice@contoso.com", None, Some("redmond"))
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
        .hosted_policy(PolicyScope::Global, Some("exap.um.outlook.com"), &["contoso.onmicrosoft.com"])
        .dial_plan(
            "DP1",
            "DP1.contoso.com",
            &[("sip:um1.contoso.com;transport=tcp", 3000), ("sip:um2.contoso.com;transport=tcp", 2000)],
        )
        .contact("sip:sa@contoso.com", "+14255550199", ContactKind::SubscriberAccess, None)
}

#[test]
fn hosted_user_goes_to_the_edge_with_routing_data_in_the_request_uri() {
    contoso().install();
    let req = invite("sip:alice@contoso.com;gruu;opaque=app:voicemail").from("sip:carol@fabrikam.com").build();
    let Decision::Forward(f) = route(&req) else { panic!("expected forward") };
    assert_eq!(f.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
    assert_eq!(
        f.request_uri.as_deref(),
        Some(
            "sip:alice@contoso.com;opaque=app:voicemail;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com"
        )
    );
}

#[test]
fn on_premises_user_gets_diversion_and_serial_um_servers() {
    contoso().install();
    let req = invite("sip:bob@contoso.com;opaque=app:voicemail")
        .from("sip:carol@contoso.com")
        .header("Diversion", "<sip:old@contoso.com>")
        .build();
    let Decision::Forward(f) = route(&req) else { panic!("expected forward") };
    let uris: Vec<_> = f.targets.iter().map(|t| (t.uri.as_str(), t.timeout_ms)).collect();
    assert_eq!(
        uris,
        [("sip:um1.contoso.com;transport=tcp", Some(3000)), ("sip:um2.contoso.com;transport=tcp", Some(2000))]
    );
    assert_eq!(f.remove_headers, ["Diversion"]);
    assert_eq!(f.add_headers[0].value, "<sip:bob@contoso.com>;reason=no-answer");
}

#[test]
fn contact_by_number_is_routed_as_hosted() {
    contoso().install();
    let req = invite("sip:+14255550199@contoso.com;user=phone").build();
    assert!(matches!(route(&req), Decision::Forward(_)));
}

#[test]
fn unknown_target_is_404() {
    contoso().install();
    let req = invite("sip:nobody@contoso.com;opaque=app:voicemail").build();
    let Decision::Reject(r) = route(&req) else { panic!("expected reject") };
    assert_eq!(r.code, 404);
}

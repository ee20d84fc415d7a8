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

#[test]
fn a_request_that_is_not_voicemail_bound_goes_to_the_default_next_hop_or_gets_404() {
    let req = invite("sip:alice@contoso.com").build();
    contoso().install();
    let Decision::Reject(r) = route(&req) else { panic!("no default next hop: expected reject") };
    assert_eq!(r.code, 404);
    contoso().default_next_hop("sip:pool.contoso.com;transport=tcp").install();
    let Decision::Forward(f) = route(&req) else { panic!("expected forward") };
    let uris: Vec<_> = f.targets.iter().map(|t| t.uri.as_str()).collect();
    assert_eq!(uris, ["sip:pool.contoso.com;transport=tcp"]);
    assert_eq!(f.request_uri, None, "forwarded as received");
}

#[test]
fn the_tenant_s_domains_are_what_the_policy_sees() {
    contoso().domains(&["contoso.com", "contoso.net"]).install();
    assert_eq!(exum_policy_sdk::host::settings().domains, ["contoso.com", "contoso.net"]);
    TestHost::new("contoso").install();
    assert_eq!(exum_policy_sdk::host::settings().domains, ["contoso.com"]);
}

/// When every UM server failed: a contact in a site with its own rerouting
/// uses that site's gateway and numbers; one without a site, the tenant's.
#[test]
fn site_rerouting_applies_to_a_contact_s_site_and_the_tenant_s_otherwise() {
    use exum_policy_sdk::{Attempt, Failure, Outcome};
    let host = || {
        contoso()
            .rerouting("sip:gw.contoso.com;transport=tcp", "+14255550100", "+14255550101")
            .site_rerouting("paris", "sip:gw.paris.contoso.com;transport=tcp", "+33155550100", "+33155550101")
            .contact("sip:aa-paris@contoso.com", "+33155550150", ContactKind::AutoAttendant, None)
            .contact("sip:aa@contoso.com", "+14255550150", ContactKind::AutoAttendant, None)
    };
    let failure = Failure {
        attempts: vec![Attempt { target: "sip:edge.contoso.com:5061;transport=tls".into(), outcome: Outcome::Timeout }],
    };
    let rerouted_to = |req: &exum_policy_sdk::Request| -> (String, Option<String>) {
        let Decision::Forward(f) = super::on_failure(req, &failure) else { panic!("expected a rerouted forward") };
        (f.targets[0].uri.clone(), f.request_uri.clone())
    };
    let paris = invite("sip:aa-paris@contoso.com").build();
    let other = invite("sip:aa@contoso.com").build();

    // Without contact_site, both contacts use the tenant's rerouting.
    host().install();
    assert_eq!(
        rerouted_to(&paris),
        ("sip:gw.contoso.com;transport=tcp".to_owned(), Some("sip:+14255550100@gw.contoso.com;user=phone".to_owned()))
    );
    // In the site: the site's gateway and auto-attendant number.
    host().contact_site("sip:aa-paris@contoso.com", "paris").install();
    assert_eq!(
        rerouted_to(&paris),
        (
            "sip:gw.paris.contoso.com;transport=tcp".to_owned(),
            Some("sip:+33155550100@gw.paris.contoso.com;user=phone".to_owned())
        )
    );
    assert_eq!(rerouted_to(&other).0, "sip:gw.contoso.com;transport=tcp");
    // A site whose rerouting was given twice keeps the last.
    host()
        .site_rerouting("paris", "sip:gw2.paris.contoso.com", "+33155550200", "+33155550201")
        .contact_site("sip:aa-paris@contoso.com", "paris")
        .install();
    assert_eq!(rerouted_to(&paris).0, "sip:gw2.paris.contoso.com");
}

#[test]
#[should_panic(expected = "no contact sip:nobody@contoso.com added before contact_site")]
fn contact_site_names_a_contact_added_before() {
    let _ = contoso().contact_site("sip:nobody@contoso.com", "paris");
}

/// Composition: the standard decision with a target before and one after.
#[test]
fn the_standard_decision_takes_a_target_first_and_one_after() {
    use exum_policy_sdk::Target;
    contoso().install();
    let req = invite("sip:bob@contoso.com;opaque=app:voicemail").from("sip:carol@contoso.com").build();
    let d = route(&req).map_forward(|f| {
        f.first(Target::new("sip:vip-um.contoso.com;transport=tls")).then(Target::new("sip:last-um.contoso.com"))
    });
    let Decision::Forward(f) = d else { panic!("expected forward") };
    let uris: Vec<_> = f.targets.iter().map(|t| t.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "sip:vip-um.contoso.com;transport=tls",
            "sip:um1.contoso.com;transport=tcp",
            "sip:um2.contoso.com;transport=tcp",
            "sip:last-um.contoso.com"
        ]
    );
    // The standard edits stay: the Diversion naming the mailbox.
    assert_eq!(f.add_headers[0].value, "<sip:bob@contoso.com>;reason=no-answer");
    // A rejection is left as it is.
    let req = invite("sip:nobody@contoso.com;opaque=app:voicemail").build();
    let d = route(&req).map_forward(|f| f.then(Target::new("sip:never.contoso.com")));
    assert!(matches!(d, Decision::Reject(r) if r.code == 404));
}

/// The hosted Request-URI's routing data and next hop of a forward, or the
/// status and `ms-diagnostics` of a reject.
fn outcome(d: Decision) -> (String, String) {
    match d {
        Decision::Forward(f) => (f.targets[0].uri.clone(), f.request_uri.unwrap_or_default()),
        Decision::Reject(r) => (r.code.to_string(), r.headers.first().map(|h| h.value.clone()).unwrap_or_default()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_granted_hosted_policy_wins_over_the_site_s_and_the_site_s_over_the_global_one() {
    let host = || {
        contoso()
            .hosted_user("sip:gina@contoso.com", Some("vip"), Some("redmond"))
            .hosted_user("sip:nodest@contoso.com", Some("empty"), Some("redmond"))
            .hosted_policy(PolicyScope::Site("redmond".into()), Some("site.um.example"), &["redmond.example"])
            .hosted_policy(PolicyScope::Named("vip".into()), Some("vip.um.example"), &[])
            .hosted_policy(PolicyScope::Named("empty".into()), None, &["x.example"])
    };
    host().install();
    let (_, ruri) = outcome(route(&invite("sip:gina@contoso.com;opaque=app:voicemail").build()));
    assert_eq!(ruri, "sip:gina@contoso.com;opaque=app:voicemail;ms-destination=vip.um.example", "granted, no org");
    let (_, ruri) = outcome(route(&invite("sip:alice@contoso.com;opaque=app:voicemail").build()));
    assert!(ruri.ends_with(";ms-destination=site.um.example;ms-organization=redmond.example"), "site: {ruri}");
    // A granted policy without destination is the one that applies: 15031, no
    // fall back to the site's.
    let (code, diag) = outcome(route(&invite("sip:nodest@contoso.com;opaque=app:voicemail").build()));
    assert_eq!((code.as_str(), diag.starts_with("15031;")), ("480", true));
    // Without any hosted policy: 15031 too.
    TestHost::new("contoso")
        .edge("sip:edge.contoso.com:5061;transport=tls")
        .hosted_user("sip:alice@contoso.com", None, None)
        .install();
    let (code, diag) = outcome(route(&invite("sip:alice@contoso.com;opaque=app:voicemail").build()));
    assert_eq!((code.as_str(), diag.starts_with("15031;")), ("480", true));
}

#[test]
fn a_hosted_call_whose_next_hop_is_down_is_rerouted_and_one_without_next_hop_gets_15033() {
    contoso()
        .down("sip:edge.contoso.com:5061;transport=tls")
        .rerouting("sip:gw.contoso.com", "+14255550000", "+14255550001")
        .install();
    let (target, ruri) = outcome(route(&invite("sip:alice@contoso.com;opaque=app:voicemail").build()));
    assert_eq!((target.as_str(), ruri.as_str()), ("sip:gw.contoso.com", "sip:+14255550000@gw.contoso.com;user=phone"));
    contoso().down("sip:edge.contoso.com:5061;transport=tls").install();
    let (code, diag) = outcome(route(&invite("sip:alice@contoso.com;opaque=app:voicemail").build()));
    assert_eq!((code.as_str(), diag.starts_with("15030;")), ("480", true));
    let mut no_edge = contoso();
    no_edge.tenant.edge = None;
    no_edge.install();
    let (code, diag) = outcome(route(&invite("sip:alice@contoso.com;opaque=app:voicemail").build()));
    assert_eq!((code.as_str(), diag.starts_with("15033;")), ("480", true));
}

#[test]
fn um_servers_marked_down_are_skipped_for_users_and_contacts_and_all_down_reroutes() {
    let host =
        || contoso().on_premises_contact("sip:aa@contoso.com", "+14255550150", ContactKind::AutoAttendant, "DP1");
    host().down("sip:um1.contoso.com;transport=tcp").install();
    for ruri in ["sip:bob@contoso.com;opaque=app:voicemail", "sip:+14255550150@contoso.com;user=phone"] {
        let Decision::Forward(f) = route(&invite(ruri).build()) else { panic!("expected forward for {ruri}") };
        let uris: Vec<_> = f.targets.iter().map(|t| (t.uri.as_str(), t.timeout_ms)).collect();
        assert_eq!(uris, [("sip:um2.contoso.com;transport=tcp", Some(2000))], "{ruri}");
    }
    // A sips: request goes to the servers over TLS.
    let Decision::Forward(f) = route(&invite("sips:bob@contoso.com;opaque=app:voicemail").build()) else {
        panic!("expected forward")
    };
    assert_eq!(f.targets[0].transport, Some(exum_policy_sdk::Transport::Tls));
    host()
        .down("sip:um1.contoso.com;transport=tcp")
        .down("sip:um2.contoso.com;transport=tcp")
        .rerouting("sip:gw.contoso.com", "+14255550000", "+14255550001")
        .install();
    for ruri in ["sip:bob@contoso.com;opaque=app:voicemail", "sip:+14255550150@contoso.com;user=phone"] {
        let (target, _) = outcome(route(&invite(ruri).build()));
        assert_eq!(target, "sip:gw.contoso.com", "{ruri}");
    }
    // A user whose phone-context names no dial plan: 15032.
    contoso().on_premises_user("sip:dan@contoso.com", "eum:dan@contoso.com;phone-context=DP9.contoso.com").install();
    let (code, diag) = outcome(route(&invite("sip:dan@contoso.com;opaque=app:voicemail").build()));
    assert_eq!((code.as_str(), diag.starts_with("15032;")), ("480", true));
}

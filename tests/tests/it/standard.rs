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
    assert_eq!(
        diagnostics(reject(&r)),
        "15000;reason=\"User is not enabled for Unified Messaging\";appName=\"ExumRouting\""
    );
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
fn step4_through_the_hosting_provider_s_proxy_over_tls() {
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
    let f =
        forward(&route(&plane, "sip:+14255550100;ext=100@contoso.com;user=phone;opaque=app:voicemail", CALLER)).clone();
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
    assert_eq!(diagnostics(reject(&v)), "15030;reason=\"Failed to route to Exchange Server\";appName=\"ExumRouting\"");
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

// ExUM fidelity (the call flows real Lync deployments send).

fn failure(outcomes: &[(&str, Outcome)]) -> Failure {
    Failure { attempts: outcomes.iter().map(|(t, o)| Attempt { target: (*t).into(), outcome: *o }).collect() }
}

#[test]
fn an_ordinary_call_that_fails_gets_the_best_response_and_is_never_rerouted() {
    let plane = Plane::deployment();
    // litware has a default next hop; contoso reroutes voice mail over its gateway.
    for (ruri, tenant_reroutes) in [("sip:ivan@litware.com", false), ("sip:bob@contoso.com", true)] {
        let (tenant, req) = plane.request(&invite(ruri, CALLER));
        let busy = failure(&[("sip:pool.litware.com;transport=tcp", Outcome::Response(486))]);
        let v = plane.policy(&tenant).on_failure(&tenant, &req, &busy);
        let r = reject(&v);
        assert_eq!((r.code, r.reason.as_str()), (486, "Busy Here"), "{ruri} (rerouting on: {tenant_reroutes})");
        assert!(r.headers.is_empty(), "no 15030 for a call that is not voice-mail-bound: {:?}", r.headers);
        let mixed = failure(&[
            ("sip:a", Outcome::Response(503)),
            ("sip:b", Outcome::Response(404)),
            ("sip:c", Outcome::Timeout),
        ]);
        assert_eq!(reject(&plane.policy(&tenant).on_failure(&tenant, &req, &mixed)).code, 404, "the lowest class");
        let declined = failure(&[("sip:a", Outcome::Response(486)), ("sip:b", Outcome::Response(603))]);
        assert_eq!(reject(&plane.policy(&tenant).on_failure(&tenant, &req, &declined)).code, 603, "6xx first");
        let silent = failure(&[("sip:a", Outcome::Timeout), ("sip:b", Outcome::Unreachable)]);
        assert_eq!(reject(&plane.policy(&tenant).on_failure(&tenant, &req, &silent)).code, 408, "no answer at all");
    }
}

#[test]
fn retrieval_calls_reroute_to_subscriber_access_and_others_to_the_auto_attendant() {
    let plane = Plane::deployment();
    let down = failure(&[("sip:edge.contoso.com:5061;transport=tls", Outcome::Timeout)]);
    // The subscriber-access contact, by address and by number: the SA number.
    for sa in ["sip:sa@contoso.com", "sip:+14255550199@contoso.com;user=phone"] {
        let (tenant, req) = plane.request(&invite(sa, CALLER));
        let v = plane.policy(&tenant).on_failure(&tenant, &req, &down);
        assert_eq!(forward(&v).request_uri.as_deref(), Some("sip:+14255550151@gw.contoso.com;user=phone"), "{sa}");
    }
    // The auto-attendant contact: the AA number.
    let (tenant, req) = plane.request(&invite("sip:aa@contoso.com", CALLER));
    let v = plane.policy(&tenant).on_failure(&tenant, &req, &down);
    assert_eq!(forward(&v).request_uri.as_deref(), Some("sip:+14255550150@gw.contoso.com;user=phone"));
    // A user calling their own mailbox by number: the SA number.
    let (tenant, req) =
        plane.request(&invite("sip:+14255550101@contoso.com;user=phone;opaque=app:voicemail", "sip:bob@contoso.com"));
    let v = plane.policy(&tenant).on_failure(&tenant, &req, &down);
    assert_eq!(forward(&v).request_uri.as_deref(), Some("sip:+14255550151@gw.contoso.com;user=phone"));
    // Per-site rerouting still applies to a user reached by number.
    let (tenant, req) = plane.request(&invite("sip:+33155550104@contoso.com;user=phone;opaque=app:voicemail", CALLER));
    let v = plane.policy(&tenant).on_failure(&tenant, &req, &down);
    assert_eq!(forward(&v).request_uri.as_deref(), Some("sip:+33155550150@gw.paris.contoso.com;user=phone"));
    assert_eq!(forward(&v).add_headers[0].value, "<sip:erin@contoso.com>;reason=no-answer");
}

#[test]
fn the_hosted_path_applies_the_diversion_rule() {
    let plane = Plane::deployment();
    let mut text = invite("sip:alice@contoso.com;opaque=app:voicemail", CALLER);
    text = text.replacen("\r\n\r\n", "\r\nDiversion: <sip:someone@fabrikam.com>;reason=user-busy\r\n\r\n", 1);
    let (tenant, req) = plane.request(&text);
    let v = plane.policy(&tenant).route(&tenant, &req);
    let f = forward(&v);
    assert_eq!(f.remove_headers, ["Diversion"], "the caller's Diversion does not pass");
    assert_eq!(f.add_headers.len(), 1);
    assert_eq!(f.add_headers[0].value, "<sip:alice@contoso.com>;reason=no-answer");
    // Her own call: no Diversion added.
    let f = forward(&route(&plane, "sip:alice@contoso.com;opaque=app:voicemail", "sip:alice@contoso.com")).clone();
    assert_eq!(f.remove_headers, ["Diversion"]);
    assert!(f.add_headers.is_empty());
}

#[test]
fn users_found_by_number_are_named_by_sip_address() {
    let plane = Plane::deployment();
    // bob on-premises, dialled by his number: the Diversion names his SIP address.
    let f = forward(&route(&plane, "sip:+14255550101@contoso.com;user=phone;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.add_headers[0].value, "<sip:bob@contoso.com>;reason=no-answer");
    // bob calling his own mailbox by number: his own call, no Diversion.
    let own = "sip:+14255550101@contoso.com;user=phone;opaque=app:voicemail";
    let f = forward(&route(&plane, own, "sip:bob@contoso.com")).clone();
    assert_eq!(f.remove_headers, ["Diversion"]);
    assert!(f.add_headers.is_empty(), "{:?}", f.add_headers);
    // dave hosted, dialled by number: the Request-URI is his SIP address.
    let f = forward(&route(&plane, "sip:+14255550103@contoso.com;user=phone;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(
        f.request_uri.as_deref(),
        Some(
            "sip:dave@contoso.com;opaque=app:voicemail;ms-destination=pilot.um.outlook.com;ms-organization=contoso-pilot.onmicrosoft.com"
        )
    );
    assert_eq!(f.add_headers[0].value, "<sip:dave@contoso.com>;reason=no-answer");
}

#[test]
fn a_sips_voicemail_request_is_routed_like_sip_over_tls() {
    let plane = Plane::deployment();
    let f = forward(&route(&plane, "sips:bob@contoso.com;opaque=app:voicemail", CALLER)).clone();
    let targets: Vec<_> = f.targets.iter().map(|t| (t.uri.as_str(), t.transport)).collect();
    use exum_router::policy::contract::Transport;
    assert_eq!(targets, [(UM1, Some(Transport::Tls)), (UM2, Some(Transport::Tls))]);
    assert_eq!(f.add_headers[0].value, "<sip:bob@contoso.com>;reason=no-answer");
    let hosted = forward(&route(&plane, "sips:alice@contoso.com;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(hosted.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls");
}

#[test]
fn main_numbers_with_extensions_and_dialled_extensions() {
    let plane = Plane::deployment();
    // henry shares alice's main number; his extension finds him, on-premises.
    let f =
        forward(&route(&plane, "sip:+14255550100;ext=101@contoso.com;user=phone;opaque=app:voicemail", CALLER)).clone();
    assert_eq!(f.targets[0].uri, UM1);
    assert_eq!(f.add_headers[0].value, "<sip:henry@contoso.com>;reason=no-answer");
    // An extension nobody has: 404, never the main number's users.
    let v = route(&plane, "sip:+14255550100;ext=109@contoso.com;user=phone;opaque=app:voicemail", CALLER);
    assert_eq!(reject(&v).code, 404);
    // The main number alone is shared: nobody in particular.
    let v = route(&plane, "sip:+14255550100@contoso.com;user=phone;opaque=app:voicemail", CALLER);
    assert_eq!(reject(&v).code, 404);
    // A dialled extension with the dial plan's phone-context.
    let dialled = "sip:101;phone-context=DP-Redmond.contoso.com@contoso.com;user=phone;opaque=app:voicemail";
    let f = forward(&route(&plane, dialled, CALLER)).clone();
    assert_eq!(f.add_headers[0].value, "<sip:henry@contoso.com>;reason=no-answer");
    let unknown = "sip:109;phone-context=DP-Redmond.contoso.com@contoso.com;user=phone;opaque=app:voicemail";
    assert_eq!(reject(&route(&plane, unknown, CALLER)).code, 404);
}

#[test]
fn an_on_premises_contact_goes_to_its_dial_plans_um_servers() {
    let plane = Plane::deployment();
    for ruri in ["sip:+14255550197@contoso.com;user=phone", "sip:sa-redmond@contoso.com"] {
        let f = forward(&route(&plane, ruri, CALLER)).clone();
        let targets: Vec<_> = f.targets.iter().map(|t| t.uri.as_str()).collect();
        assert_eq!(targets, [UM1, UM2], "{ruri}");
        assert_eq!(f.request_uri, None, "the UM server answers its own number");
        assert!(f.add_headers.is_empty() && f.remove_headers.is_empty());
    }
    // Its dial plan's servers all down: rerouted to the subscriber-access number.
    plane.health.set(UM1, false);
    plane.health.set(UM2, false);
    let f = forward(&route(&plane, "sip:sa-redmond@contoso.com", CALLER)).clone();
    assert_eq!(f.request_uri.as_deref(), Some("sip:+14255550151@gw.contoso.com;user=phone"));
}

#[test]
fn a_disabled_hosting_provider_refuses_hosted_calls() {
    use exum_router::control::Tenants;
    use exum_router::control::config::RouterConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\n[[hosting_provider]]\nidentity = \"ExchangeOnline\"\nproxy = \"exap.um.outlook.com\"\nenabled = false\n\
         [[tenant]]\nid = \"fabrikam\"\ndomains = [\"fabrikam.com\"]\nhosting_provider = \"exchangeonline\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("directory.toml"),
        "[[tenants.fabrikam.users]]\nsip = \"sip:grace@fabrikam.com\"\nhosted_voicemail = true\n\
         [[tenants.fabrikam.hosted_voicemail_policies]]\nscope = \"global\"\ndestination = \"exap.um.outlook.com\"\n",
    )
    .expect("write");
    let (_, tenants) = Tenants::load(&config).expect("loads");
    let plane = Plane::new(tenants);
    let v = route(&plane, "sip:grace@fabrikam.com;opaque=app:voicemail", CALLER);
    assert_eq!(reject(&v).code, 480);
    assert!(diagnostics(reject(&v)).starts_with("15033;"), "{}", diagnostics(reject(&v)));
    // Without any provider (or edge), the configuration is refused, naming the key.
    let text = std::fs::read_to_string(&config).expect("read").replace("hosting_provider = \"exchangeonline\"\n", "");
    std::fs::write(&config, text).expect("write");
    let e = Tenants::load(&config).expect_err("refused").to_string();
    assert!(e.contains("tenant[0].hosting_provider: required"), "{e}");
    assert!(e.contains("sip:grace@fabrikam.com"), "{e}");
    let _ = RouterConfig::load(&config).expect("the configuration alone is valid");
}

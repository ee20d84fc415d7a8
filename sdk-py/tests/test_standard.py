"""The standard algorithm's Python port, which the test host answers the
`standard` import with: held to the Rust expectations.

The first part ports policies/standard/src/tests.rs (the Rust SDK's tests of
the algorithm against its TestHost). The second ports the branches of
tests/tests/it/standard.rs (the router's engine on the example deployment)
that a TestHost can hold: the deployment's directory rebuilt in TestHosts.
"""

import pytest

from exum_policy import (
    Attempt,
    Decision,
    Decision_Forward,
    Decision_Reject,
    Failure,
    Outcome_Response,
    Outcome_SkippedDown,
    Outcome_Timeout,
    Outcome_Unreachable,
    Target,
    Transport,
    host,
    standard,
)
from exum_policy._standard import all_targets_failed, is_voicemail_bound
from exum_policy.host import ContactKind, Level, PolicyScope
from exum_policy.testing import RequestBuilder, TestHost, invite, user


def route(req):
    return standard.route(req)


def forward(d):
    assert isinstance(d, Decision_Forward), f"expected a forward, got {d!r}"
    return d.value


def reject(d):
    assert isinstance(d, Decision_Reject), f"expected a reject, got {d!r}"
    return d.value


def diagnostics(r):
    return r.headers[0].value if r.headers else ""


def contoso() -> TestHost:
    return (
        TestHost("contoso")
        .edge("sip:edge.contoso.com:5061;transport=tls")
        .hosted_user("sip:alice@contoso.com", None, "redmond")
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
        .hosted_policy(PolicyScope.GLOBAL, "exap.um.outlook.com", ["contoso.onmicrosoft.com"])
        .dial_plan(
            "DP1",
            "DP1.contoso.com",
            [("sip:um1.contoso.com;transport=tcp", 3000), ("sip:um2.contoso.com;transport=tcp", 2000)],
        )
        .contact("sip:sa@contoso.com", "+14255550199", ContactKind.SUBSCRIBER_ACCESS, None)
    )


# --- policies/standard/src/tests.rs ------------------------------------------


def test_hosted_user_goes_to_the_edge_with_routing_data_in_the_request_uri():
    contoso().install()
    req = invite("sip:alice@contoso.com;gruu;opaque=app:voicemail").from_("sip:carol@fabrikam.com").build()
    f = forward(route(req))
    assert f.targets[0].uri == "sip:edge.contoso.com:5061;transport=tls"
    assert f.request_uri == (
        "sip:alice@contoso.com;opaque=app:voicemail;ms-destination=exap.um.outlook.com;"
        "ms-organization=contoso.onmicrosoft.com"
    )


def test_on_premises_user_gets_diversion_and_serial_um_servers():
    contoso().install()
    req = (
        invite("sip:bob@contoso.com;opaque=app:voicemail")
        .from_("sip:carol@contoso.com")
        .header("Diversion", "<sip:old@contoso.com>")
        .build()
    )
    f = forward(route(req))
    assert [(t.uri, t.timeout_ms) for t in f.targets] == [
        ("sip:um1.contoso.com;transport=tcp", 3000),
        ("sip:um2.contoso.com;transport=tcp", 2000),
    ]
    assert f.remove_headers == ["Diversion"]
    assert f.add_headers[0].value == "<sip:bob@contoso.com>;reason=no-answer"


def test_contact_by_number_is_routed_as_hosted():
    contoso().install()
    assert isinstance(route(invite("sip:+14255550199@contoso.com;user=phone").build()), Decision_Forward)


def test_unknown_target_is_404():
    contoso().install()
    assert reject(route(invite("sip:nobody@contoso.com;opaque=app:voicemail").build())).code == 404


def test_a_request_that_is_not_voicemail_bound_goes_to_the_default_next_hop_or_gets_404():
    req = invite("sip:alice@contoso.com").build()
    contoso().install()
    assert reject(route(req)).code == 404
    contoso().default_next_hop("sip:pool.contoso.com;transport=tcp").install()
    f = forward(route(req))
    assert [t.uri for t in f.targets] == ["sip:pool.contoso.com;transport=tcp"]
    assert f.request_uri is None, "forwarded as received"


def test_the_tenant_s_domains_are_what_the_policy_sees():
    contoso().domains(["contoso.com", "contoso.net"]).install()
    assert host.settings().domains == ["contoso.com", "contoso.net"]
    TestHost("contoso").install()
    assert host.settings().domains == ["contoso.com"]


def test_site_rerouting_applies_to_a_contact_s_site_and_the_tenant_s_otherwise():
    def make():
        return (
            contoso()
            .rerouting("sip:gw.contoso.com;transport=tcp", "+14255550100", "+14255550101")
            .site_rerouting("paris", "sip:gw.paris.contoso.com;transport=tcp", "+33155550100", "+33155550101")
            .contact("sip:aa-paris@contoso.com", "+33155550150", ContactKind.AUTO_ATTENDANT, None)
            .contact("sip:aa@contoso.com", "+14255550150", ContactKind.AUTO_ATTENDANT, None)
        )

    failure = Failure([Attempt("sip:edge.contoso.com:5061;transport=tls", Outcome_Timeout())])

    def rerouted_to(req):
        f = forward(standard.on_failure(req, failure))
        return (f.targets[0].uri, f.request_uri)

    paris = invite("sip:aa-paris@contoso.com").build()
    other = invite("sip:aa@contoso.com").build()
    make().install()
    assert rerouted_to(paris) == ("sip:gw.contoso.com;transport=tcp", "sip:+14255550100@gw.contoso.com;user=phone")
    make().contact_site("sip:aa-paris@contoso.com", "paris").install()
    assert rerouted_to(paris) == (
        "sip:gw.paris.contoso.com;transport=tcp",
        "sip:+33155550100@gw.paris.contoso.com;user=phone",
    )
    assert rerouted_to(other)[0] == "sip:gw.contoso.com;transport=tcp"
    make().site_rerouting("paris", "sip:gw2.paris.contoso.com", "+33155550200", "+33155550201").contact_site(
        "sip:aa-paris@contoso.com", "paris"
    ).install()
    assert rerouted_to(paris)[0] == "sip:gw2.paris.contoso.com"


def test_contact_site_names_a_contact_added_before():
    with pytest.raises(ValueError, match="no contact sip:nobody@contoso.com added before contact_site"):
        contoso().contact_site("sip:nobody@contoso.com", "paris")


def test_the_standard_decision_takes_a_target_first_and_one_after():
    contoso().install()
    req = invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:carol@contoso.com").build()
    d = Decision.map_forward(
        route(req),
        lambda f: f.first(Target("sip:vip-um.contoso.com;transport=tls")).then(Target("sip:last-um.contoso.com")),
    )
    f = forward(d)
    assert [t.uri for t in f.targets] == [
        "sip:vip-um.contoso.com;transport=tls",
        "sip:um1.contoso.com;transport=tcp",
        "sip:um2.contoso.com;transport=tcp",
        "sip:last-um.contoso.com",
    ]
    assert f.add_headers[0].value == "<sip:bob@contoso.com>;reason=no-answer"
    req = invite("sip:nobody@contoso.com;opaque=app:voicemail").build()
    d = Decision.map_forward(route(req), lambda f: f.then(Target("sip:never.contoso.com")))
    assert reject(d).code == 404


def outcome(d):
    """The next hop and Request-URI of a forward, or the status and
    ms-diagnostics of a reject."""
    if isinstance(d, Decision_Forward):
        return (d.value.targets[0].uri, d.value.request_uri or "")
    if isinstance(d, Decision_Reject):
        return (str(d.value.code), diagnostics(d.value))
    raise AssertionError(f"unexpected {d!r}")


def test_the_granted_hosted_policy_wins_over_the_site_s_and_the_site_s_over_the_global_one():
    contoso().hosted_user("sip:gina@contoso.com", "vip", "redmond").hosted_user(
        "sip:nodest@contoso.com", "empty", "redmond"
    ).hosted_policy(PolicyScope.site("redmond"), "site.um.example", ["redmond.example"]).hosted_policy(
        PolicyScope.named("vip"), "vip.um.example", []
    ).hosted_policy(PolicyScope.named("empty"), None, ["x.example"]).install()
    _, ruri = outcome(route(invite("sip:gina@contoso.com;opaque=app:voicemail").build()))
    assert ruri == "sip:gina@contoso.com;opaque=app:voicemail;ms-destination=vip.um.example", "granted, no org"
    _, ruri = outcome(route(invite("sip:alice@contoso.com;opaque=app:voicemail").build()))
    assert ruri.endswith(";ms-destination=site.um.example;ms-organization=redmond.example"), ruri
    code, diag = outcome(route(invite("sip:nodest@contoso.com;opaque=app:voicemail").build()))
    assert (code, diag.startswith("15031;")) == ("480", True)
    TestHost("contoso").edge("sip:edge.contoso.com:5061;transport=tls").hosted_user(
        "sip:alice@contoso.com", None, None
    ).install()
    code, diag = outcome(route(invite("sip:alice@contoso.com;opaque=app:voicemail").build()))
    assert (code, diag.startswith("15031;")) == ("480", True)


def test_a_hosted_call_whose_next_hop_is_down_is_rerouted_and_one_without_next_hop_gets_15033():
    contoso().down("sip:edge.contoso.com:5061;transport=tls").rerouting(
        "sip:gw.contoso.com", "+14255550000", "+14255550001"
    ).install()
    target, ruri = outcome(route(invite("sip:alice@contoso.com;opaque=app:voicemail").build()))
    assert (target, ruri) == ("sip:gw.contoso.com", "sip:+14255550000@gw.contoso.com;user=phone")
    contoso().down("sip:edge.contoso.com:5061;transport=tls").install()
    code, diag = outcome(route(invite("sip:alice@contoso.com;opaque=app:voicemail").build()))
    assert (code, diag.startswith("15030;")) == ("480", True)
    no_edge = contoso()
    no_edge.tenant.edge = None
    no_edge.install()
    code, diag = outcome(route(invite("sip:alice@contoso.com;opaque=app:voicemail").build()))
    assert (code, diag.startswith("15033;")) == ("480", True)


def test_um_servers_marked_down_are_skipped_for_users_and_contacts_and_all_down_reroutes():
    def make():
        return contoso().on_premises_contact("sip:aa@contoso.com", "+14255550150", ContactKind.AUTO_ATTENDANT, "DP1")

    make().down("sip:um1.contoso.com;transport=tcp").install()
    for ruri in ["sip:bob@contoso.com;opaque=app:voicemail", "sip:+14255550150@contoso.com;user=phone"]:
        f = forward(route(invite(ruri).build()))
        assert [(t.uri, t.timeout_ms) for t in f.targets] == [("sip:um2.contoso.com;transport=tcp", 2000)], ruri
    f = forward(route(invite("sips:bob@contoso.com;opaque=app:voicemail").build()))
    assert f.targets[0].transport == Transport.TLS
    make().down("sip:um1.contoso.com;transport=tcp").down("sip:um2.contoso.com;transport=tcp").rerouting(
        "sip:gw.contoso.com", "+14255550000", "+14255550001"
    ).install()
    for ruri in ["sip:bob@contoso.com;opaque=app:voicemail", "sip:+14255550150@contoso.com;user=phone"]:
        target, _ = outcome(route(invite(ruri).build()))
        assert target == "sip:gw.contoso.com", ruri
    contoso().on_premises_user("sip:dan@contoso.com", "eum:dan@contoso.com;phone-context=DP9.contoso.com").install()
    code, diag = outcome(route(invite("sip:dan@contoso.com;opaque=app:voicemail").build()))
    assert (code, diag.startswith("15032;")) == ("480", True)


# --- tests/tests/it/standard.rs, on the example deployment's directory --------

CALLER = "sip:zoe@fabrikam.com"
UM1 = "sip:um1.redmond.contoso.com:5061;transport=tls"
UM2 = "sip:um2.redmond.contoso.com:5061;transport=tls"


def deployment_contoso() -> TestHost:
    """contoso of examples/deployment (router.toml and directory.toml)."""
    h = (
        TestHost("contoso")
        .edge("sip:edge.contoso.com:5061;transport=tls")
        .rerouting("sip:gw.contoso.com;transport=tcp", "+14255550150", "+14255550151")
        .site_rerouting("paris", "sip:gw.paris.contoso.com;transport=tcp", "+33155550150", "+33155550151")
        .hosted_policy(PolicyScope.GLOBAL, "exap.um.outlook.com", ["contoso.onmicrosoft.com"])
        .hosted_policy(PolicyScope.site("redmond"), "exap.um.outlook.com", ["contoso-redmond.onmicrosoft.com"])
        .hosted_policy(PolicyScope.site("paris"), None, [])
        .hosted_policy(
            PolicyScope.named("pilot"), "pilot.um.outlook.com", ["contoso-pilot.onmicrosoft.com", "contoso.onmicrosoft.com"]
        )
        .dial_plan("DP-Redmond", "DP-Redmond.contoso.com", [(UM1, 3000), (UM2, 3000)])
        .dial_plan("DP-Paris", "DP-Paris.contoso.com", [("sip:um1.paris.contoso.com:5061;transport=tls", 2000)])
        .contact("sip:sa@contoso.com", "+14255550199", ContactKind.SUBSCRIBER_ACCESS)
        .contact("sip:aa@contoso.com", "+14255550198", ContactKind.AUTO_ATTENDANT)
        .on_premises_contact("sip:sa-redmond@contoso.com", "+14255550197", ContactKind.SUBSCRIBER_ACCESS, "DP-Redmond")
    )
    for record in [
        user("sip:alice@contoso.com", number="+14255550100", site="redmond", voicemail=host.Voicemail.HOSTED),
        user(
            "sip:bob@contoso.com",
            number="+14255550101",
            site="redmond",
            voicemail=host.Voicemail.ON_PREMISES,
            eum_address="eum:bob@contoso.com;phone-context=DP-Redmond.contoso.com",
        ),
        user("sip:carol@contoso.com", site="redmond"),
        user(
            "sip:dave@contoso.com",
            number="+14255550103",
            site="redmond",
            voicemail=host.Voicemail.HOSTED,
            hosted_voicemail_policy="pilot",
            eum_address="eum:dave@contoso.com;phone-context=DP-Redmond.contoso.com",
        ),
        user(
            "sip:erin@contoso.com",
            number="+33155550104",
            site="paris",
            voicemail=host.Voicemail.ON_PREMISES,
            eum_address="eum:erin@contoso.com;phone-context=DP-Paris.contoso.com",
        ),
        user("sip:frank@contoso.com", site="paris", voicemail=host.Voicemail.HOSTED),
    ]:
        h.user(record)
    return h


def deployment_fabrikam() -> TestHost:
    """fabrikam: cross-premises, through the hosting provider's proxy."""
    return (
        TestHost("fabrikam")
        .edge("sip:exap.um.outlook.com;transport=tls")
        .hosted_user("sip:grace@fabrikam.com")
        .hosted_user("sip:heidi@fabrikam.com")
        .contact("sip:attendant@fabrikam.com", "+12065550199", ContactKind.AUTO_ATTENDANT)
        .hosted_policy(PolicyScope.GLOBAL, "exap.um.outlook.com", ["fabrikam.onmicrosoft.com"])
    )


def deployment_litware() -> TestHost:
    """litware: on-premises, a default next hop, no rerouting."""
    return (
        TestHost("litware")
        .domains(["litware.com", "litware.net"])
        .default_next_hop("sip:pool.litware.com;transport=tcp")
        .on_premises_user("sip:ivan@litware.com", "eum:ivan@litware.com;phone-context=DP-Litware.litware.com")
        .on_premises_user("sip:judy@litware.net", "eum:judy@litware.net;phone-context=DP-Litware.litware.com")
        .dial_plan(
            "DP-Litware",
            "DP-Litware.litware.com",
            [
                ("sip:um1.litware.com;transport=tcp", 2500),
                ("sip:um2.litware.com;transport=tcp", 2500),
                ("sip:um3.litware.com;transport=tcp", 3000),  # no timeout in directory.toml: the default
            ],
        )
    )


def call(ruri, caller=CALLER):
    return invite(ruri).from_(caller).build()


def failure(*outcomes):
    return Failure([Attempt(t, o) for t, o in outcomes])


def test_step2_unknown_target_is_404():
    deployment_contoso().install()
    r = reject(route(call("sip:nobody@contoso.com;opaque=app:voicemail")))
    assert r.code == 404
    assert diagnostics(r).startswith("15004;")


def test_step3_user_not_enabled_is_480_15000():
    deployment_contoso().install()
    r = reject(route(call("sip:carol@contoso.com;opaque=app:voicemail")))
    assert r.code == 480
    assert diagnostics(r) == '15000;reason="User is not enabled for Unified Messaging";appName="ExumRouting"'


def test_step4_hosted_user_goes_to_the_edge_with_site_policy_data():
    deployment_contoso().install()
    f = forward(route(call("sip:alice@contoso.com;gruu;opaque=app:voicemail")))
    assert [t.uri for t in f.targets] == ["sip:edge.contoso.com:5061;transport=tls"]
    assert f.request_uri == (
        "sip:alice@contoso.com;opaque=app:voicemail;ms-destination=exap.um.outlook.com;"
        "ms-organization=contoso-redmond.onmicrosoft.com"
    ), "user and host kept, gruu dropped, site policy (redmond) used"


def test_step4_granted_policy_wins_over_site_and_hosted_flag_over_eum():
    deployment_contoso().install()
    f = forward(route(call("sip:dave@contoso.com;opaque=app:voicemail")))
    assert f.request_uri == (
        "sip:dave@contoso.com;opaque=app:voicemail;ms-destination=pilot.um.outlook.com;"
        "ms-organization=contoso-pilot.onmicrosoft.com"
    )


def test_step4_site_policy_without_destination_is_480_15031():
    deployment_contoso().install()
    r = reject(route(call("sip:frank@contoso.com;opaque=app:voicemail")))
    assert r.code == 480
    assert diagnostics(r).startswith("15031;")


def test_step4_through_the_hosting_provider_s_proxy_over_tls():
    deployment_fabrikam().install()
    f = forward(route(call("sip:grace@fabrikam.com;opaque=app:voicemail")))
    assert f.targets[0].uri == "sip:exap.um.outlook.com;transport=tls"
    assert f.request_uri.endswith(";ms-organization=fabrikam.onmicrosoft.com")
    by_address = forward(route(call("sip:attendant@fabrikam.com")))
    assert by_address.targets[0].uri == "sip:exap.um.outlook.com;transport=tls"


def test_step4_um_contacts_by_sip_address_and_by_number():
    deployment_contoso().install()
    f = forward(route(call("sip:+14255550199@contoso.com;user=phone", "sip:bob@contoso.com")))
    assert f.targets[0].uri == "sip:edge.contoso.com:5061;transport=tls"
    assert f.request_uri == (
        "sip:+14255550199@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com"
    ), "contacts without a site use the global policy"
    assert f.add_headers == [] and f.remove_headers == [], "no Diversion rule for a contact"


def test_step5_on_premises_serial_um_servers_and_diversion():
    deployment_contoso().install()
    f = forward(route(call("sip:bob@contoso.com;opaque=app:voicemail")))
    assert [(t.uri, t.timeout_ms) for t in f.targets] == [(UM1, 3000), (UM2, 3000)]
    assert f.request_uri is None, "on-premises keeps the Request-URI"
    assert f.remove_headers == ["Diversion"]
    assert [h.value for h in f.add_headers] == ["<sip:bob@contoso.com>;reason=no-answer"]


def test_step5_own_mailbox_call_gets_no_diversion():
    deployment_contoso().install()
    f = forward(route(call("sip:bob@contoso.com;opaque=app:voicemail", "sip:bob@contoso.com")))
    assert f.remove_headers == ["Diversion"]
    assert f.add_headers == []


def test_step5_and_7_servers_marked_down_are_skipped():
    h = deployment_contoso().down(UM1).install()
    f = forward(route(call("sip:bob@contoso.com;opaque=app:voicemail")))
    assert [t.uri for t in f.targets] == [UM2]
    h.down_targets.clear()
    assert len(forward(route(call("sip:bob@contoso.com;opaque=app:voicemail"))).targets) == 2, "back when probes succeed"


def test_step6_every_server_down_reroutes_to_the_auto_attendant():
    deployment_contoso().down(UM1).down(UM2).install()
    f = forward(route(call("sip:bob@contoso.com;opaque=app:voicemail")))
    assert f.targets[0].uri == "sip:gw.contoso.com;transport=tcp"
    assert f.request_uri == "sip:+14255550150@gw.contoso.com;user=phone"


def test_step6_own_mailbox_reroutes_to_subscriber_access_and_sites_have_their_own():
    deployment_contoso().install()
    busy = failure((UM1, Outcome_Response(503)))
    d = standard.on_failure(call("sip:bob@contoso.com;opaque=app:voicemail", "sip:bob@contoso.com"), busy)
    assert forward(d).request_uri == "sip:+14255550151@gw.contoso.com;user=phone"
    d = standard.on_failure(call("sip:erin@contoso.com;opaque=app:voicemail"), busy)
    assert forward(d).targets[0].uri == "sip:gw.paris.contoso.com;transport=tcp"
    assert forward(d).request_uri == "sip:+33155550150@gw.paris.contoso.com;user=phone"


def test_step6_without_rerouting_is_480_15030():
    deployment_litware().install()
    d = standard.on_failure(
        call("sip:ivan@litware.com;opaque=app:voicemail"), failure(("sip:um1.litware.com;transport=tcp", Outcome_Timeout()))
    )
    r = reject(d)
    assert r.code == 480
    assert diagnostics(r) == '15030;reason="Failed to route to Exchange Server";appName="ExumRouting"'


def test_other_requests_go_to_the_default_next_hop_or_404():
    deployment_litware().install()
    assert forward(route(call("sip:ivan@litware.com"))).targets[0].uri == "sip:pool.litware.com;transport=tcp"
    deployment_contoso().install()
    r = reject(route(call("sip:bob@contoso.com")))
    assert r.code == 404
    assert diagnostics(r).startswith("15002;")


def test_an_ordinary_call_that_fails_gets_the_best_response_and_is_never_rerouted():
    for make, ruri in [(deployment_litware, "sip:ivan@litware.com"), (deployment_contoso, "sip:bob@contoso.com")]:
        make().install()
        req = call(ruri)
        r = reject(standard.on_failure(req, failure(("sip:pool.litware.com;transport=tcp", Outcome_Response(486)))))
        assert (r.code, r.reason) == (486, "Busy Here"), ruri
        assert r.headers == [], "no 15030 for a call that is not voice-mail-bound"
        mixed = failure(("sip:a", Outcome_Response(503)), ("sip:b", Outcome_Response(404)), ("sip:c", Outcome_Timeout()))
        assert reject(standard.on_failure(req, mixed)).code == 404, "the lowest class"
        declined = failure(("sip:a", Outcome_Response(486)), ("sip:b", Outcome_Response(603)))
        assert reject(standard.on_failure(req, declined)).code == 603, "6xx first"
        silent = failure(("sip:a", Outcome_Timeout()), ("sip:b", Outcome_Unreachable()))
        r = reject(standard.on_failure(req, silent))
        assert (r.code, r.reason) == (408, "Request Timeout"), "no answer at all"
        first = failure(("sip:a", Outcome_Response(404)), ("sip:b", Outcome_Response(480)), ("sip:c", Outcome_SkippedDown()))
        assert reject(standard.on_failure(req, first)).code == 404, "the first of the lowest class"
        low = failure(("sip:a", Outcome_Response(302)), ("sip:b", Outcome_Response(503)))
        assert reject(standard.on_failure(req, low)).code == 503, "below 400 is no failure response"


def test_retrieval_calls_reroute_to_subscriber_access_and_others_to_the_auto_attendant():
    deployment_contoso().install()
    down = failure(("sip:edge.contoso.com:5061;transport=tls", Outcome_Timeout()))
    for sa in ["sip:sa@contoso.com", "sip:+14255550199@contoso.com;user=phone"]:
        d = standard.on_failure(call(sa), down)
        assert forward(d).request_uri == "sip:+14255550151@gw.contoso.com;user=phone", sa
    d = standard.on_failure(call("sip:aa@contoso.com"), down)
    assert forward(d).request_uri == "sip:+14255550150@gw.contoso.com;user=phone"
    d = standard.on_failure(
        call("sip:+14255550101@contoso.com;user=phone;opaque=app:voicemail", "sip:bob@contoso.com"), down
    )
    assert forward(d).request_uri == "sip:+14255550151@gw.contoso.com;user=phone"
    d = standard.on_failure(call("sip:+33155550104@contoso.com;user=phone;opaque=app:voicemail"), down)
    assert forward(d).request_uri == "sip:+33155550150@gw.paris.contoso.com;user=phone"
    assert forward(d).add_headers[0].value == "<sip:erin@contoso.com>;reason=no-answer"


def test_the_hosted_path_applies_the_diversion_rule():
    deployment_contoso().install()
    req = (
        invite("sip:alice@contoso.com;opaque=app:voicemail")
        .from_(CALLER)
        .header("Diversion", "<sip:someone@fabrikam.com>;reason=user-busy")
        .build()
    )
    f = forward(route(req))
    assert f.remove_headers == ["Diversion"], "the caller's Diversion does not pass"
    assert [h.value for h in f.add_headers] == ["<sip:alice@contoso.com>;reason=no-answer"]
    f = forward(route(call("sip:alice@contoso.com;opaque=app:voicemail", "sip:alice@contoso.com")))
    assert f.remove_headers == ["Diversion"]
    assert f.add_headers == []


def test_users_found_by_number_are_named_by_sip_address():
    deployment_contoso().install()
    f = forward(route(call("sip:+14255550101@contoso.com;user=phone;opaque=app:voicemail")))
    assert f.add_headers[0].value == "<sip:bob@contoso.com>;reason=no-answer"
    own = "sip:+14255550101@contoso.com;user=phone;opaque=app:voicemail"
    f = forward(route(call(own, "sip:bob@contoso.com")))
    assert f.remove_headers == ["Diversion"]
    assert f.add_headers == []
    f = forward(route(call("sip:+14255550103@contoso.com;user=phone;opaque=app:voicemail")))
    assert f.request_uri == (
        "sip:dave@contoso.com;opaque=app:voicemail;ms-destination=pilot.um.outlook.com;"
        "ms-organization=contoso-pilot.onmicrosoft.com"
    )
    assert f.add_headers[0].value == "<sip:dave@contoso.com>;reason=no-answer"


def test_a_sips_voicemail_request_is_routed_like_sip_over_tls():
    deployment_contoso().install()
    f = forward(route(call("sips:bob@contoso.com;opaque=app:voicemail")))
    assert [(t.uri, t.transport) for t in f.targets] == [(UM1, Transport.TLS), (UM2, Transport.TLS)]
    assert f.add_headers[0].value == "<sip:bob@contoso.com>;reason=no-answer"
    hosted = forward(route(call("sips:alice@contoso.com;opaque=app:voicemail")))
    assert hosted.targets[0].uri == "sip:edge.contoso.com:5061;transport=tls"


def test_an_on_premises_contact_goes_to_its_dial_plans_um_servers():
    h = deployment_contoso().install()
    for ruri in ["sip:+14255550197@contoso.com;user=phone", "sip:sa-redmond@contoso.com"]:
        f = forward(route(call(ruri)))
        assert [t.uri for t in f.targets] == [UM1, UM2], ruri
        assert f.request_uri is None, "the UM server answers its own number"
        assert f.add_headers == [] and f.remove_headers == []
    h.down(UM1).down(UM2)
    f = forward(route(call("sip:sa-redmond@contoso.com")))
    assert f.request_uri == "sip:+14255550151@gw.contoso.com;user=phone"


def test_a_disabled_hosting_provider_refuses_hosted_calls():
    # The router gives no next hop for a disabled provider: the edge is none.
    TestHost("fabrikam").hosted_user("sip:grace@fabrikam.com").hosted_policy(
        PolicyScope.GLOBAL, "exap.um.outlook.com"
    ).install()
    r = reject(route(call("sip:grace@fabrikam.com;opaque=app:voicemail")))
    assert r.code == 480
    assert diagnostics(r).startswith("15033;")


# --- the port's other branches -------------------------------------------------


def test_only_invites_are_voicemail_bound():
    deployment_contoso().install()
    options = RequestBuilder("OPTIONS", "sip:bob@contoso.com;opaque=app:voicemail").build()
    assert not is_voicemail_bound(options)
    assert reject(route(options)).code == 404, "not voice mail: no default next hop"
    assert is_voicemail_bound(RequestBuilder("invite", "sip:bob@contoso.com;opaque=app:voicemail").build())
    assert is_voicemail_bound(call("sip:aa@contoso.com")), "a contact"
    assert not is_voicemail_bound(call("sip:bob@contoso.com"))


def test_a_contact_is_routed_with_or_without_the_voicemail_parameter():
    deployment_contoso().install()
    plain = forward(route(call("sip:aa@contoso.com")))
    tagged = forward(route(call("sip:aa@contoso.com;opaque=app:voicemail")))
    assert plain.request_uri == "sip:aa@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com"
    assert tagged.request_uri.startswith("sip:aa@contoso.com;opaque=app:voicemail;ms-destination=")


def test_a_hosted_user_without_the_voicemail_parameter_is_not_voicemail():
    deployment_contoso().install()
    assert diagnostics(reject(route(call("sip:alice@contoso.com")))).startswith("15002;")


def test_an_invalid_rerouting_gateway_or_number_is_logged_and_480():
    TestHost("contoso").rerouting("not a uri", "+14255550150", "+14255550151").install()
    r = reject(all_targets_failed(call("sip:nobody@contoso.com;opaque=app:voicemail")))
    assert (r.code, diagnostics(r).startswith("15030;")) == (480, True)
    assert TestHost.logged() == [
        (Level.WARN, "voice-mail rerouting is enabled but its gateway or number is invalid")
    ]
    TestHost("contoso").rerouting("sip:gw.contoso.com", "5550150", "5550151").install()
    assert reject(all_targets_failed(call("sip:nobody@contoso.com;opaque=app:voicemail"))).code == 480


def test_rerouting_drops_transport_and_lr_and_keeps_other_gateway_parameters():
    TestHost("contoso").rerouting("sip:gw.contoso.com:5080;transport=tcp;lr;x=1", "+1 425 555 0150", "+14255550151").install()
    # Nobody in the directory, called by someone else: the auto attendant, the
    # Diversion naming the Request-URI.
    f = forward(all_targets_failed(call("sip:Nobody@Contoso.com;opaque=app:voicemail")))
    assert f.targets[0].uri == "sip:gw.contoso.com:5080;transport=tcp;lr;x=1"
    assert f.request_uri == "sip:+14255550150@gw.contoso.com:5080;x=1;user=phone"
    assert [h.value for h in f.add_headers] == ["<sip:nobody@contoso.com>;reason=no-answer"]
    own = forward(all_targets_failed(call("sip:nobody@contoso.com;opaque=app:voicemail", "sip:nobody@contoso.com")))
    assert own.request_uri == "sip:+14255550151@gw.contoso.com:5080;x=1;user=phone"
    assert own.add_headers == []


def test_an_unparsable_user_sip_address_keeps_the_request_uri():
    TestHost("contoso").edge("sip:edge").user(
        user("bad address", number="+14255550100", voicemail=host.Voicemail.HOSTED)
    ).hosted_policy(PolicyScope.GLOBAL, "d.example").install()
    f = forward(route(call("sip:+14255550100@contoso.com:5060;user=phone;opaque=app:voicemail")))
    assert f.request_uri == "sip:+14255550100@contoso.com;opaque=app:voicemail;ms-destination=d.example"
    assert f.add_headers[0].value == "<bad address>;reason=no-answer"


def test_step6_does_not_reroute_a_call_that_may_not_be_diverted():
    deployment_contoso().install()
    busy = failure((UM1, Outcome_Response(503)))
    for value in ["normal-no-diversion", "Private-No-Diversion"]:
        req = invite("sip:bob@contoso.com;opaque=app:voicemail").from_(CALLER).header("Ms-Sensitivity", value).build()
        assert req.no_diversion()
        r = reject(standard.on_failure(req, busy))
        assert r.code == 480, value
        assert diagnostics(r).startswith("15030;"), value
    # normal and private calls are rerouted as any other.
    req = invite("sip:bob@contoso.com;opaque=app:voicemail").from_(CALLER).header("Ms-Sensitivity", "private").build()
    assert forward(standard.on_failure(req, busy)).request_uri == "sip:+14255550150@gw.contoso.com;user=phone"

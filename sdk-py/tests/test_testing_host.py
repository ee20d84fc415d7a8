"""The test host: each import's answer, as the Rust SDK's TestHost gives it."""

import pytest

from exum_policy import host
from exum_policy._bindings import clock, directory, health, log, standard
from exum_policy.host import ContactKind, DialPlanOf, Level, PolicyScope, Voicemail
from exum_policy.testing import TestHost, invite, user


def contoso() -> TestHost:
    return (
        TestHost("contoso")
        .edge("sip:edge.contoso.com:5061;transport=tls")
        .hosted_user("sip:alice@contoso.com", None, "redmond")
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
        .user(user("sip:carol@contoso.com", number="+14255550102", line_uri="tel:+14255550102"))
        .hosted_policy(PolicyScope.GLOBAL, "exap.um.outlook.com", ["contoso.onmicrosoft.com", "second.example"])
        .dial_plan(
            "DP1",
            "DP1.contoso.com",
            [("sip:um1.contoso.com;transport=tcp", 3000), ("sip:um2.contoso.com;transport=tcp", 2000)],
        )
        .contact("sip:sa@contoso.com", "+1 425 555 0199", ContactKind.SUBSCRIBER_ACCESS)
        .on_premises_contact("sip:aa@contoso.com", "+14255550150", ContactKind.AUTO_ATTENDANT, "dp1")
    )


def test_a_new_host_owns_its_domain_and_starts_on_a_monday():
    h = TestHost("contoso").install()
    assert host.settings() == directory.TenantSettings("contoso", ["contoso.com"], None, None)
    assert (host.now().unix_seconds, host.now().utc_offset_minutes) == (1_767_607_200, 0)
    assert host.lookup_rerouting(None) == directory.Rerouting(False, None, None, None)
    assert h is TestHost.installed()


def test_the_tenant_s_domains_are_what_the_policy_sees():
    contoso().domains(["contoso.com", "contoso.net"]).install()
    assert host.settings().domains == ["contoso.com", "contoso.net"]
    TestHost("contoso").install()
    assert host.settings().domains == ["contoso.com"]


def test_users_by_sip_address_whatever_the_scheme_case_and_parameters():
    contoso().install()
    for address in [
        "sip:alice@contoso.com",
        "SIP:Alice@Contoso.COM",
        "sips:alice@contoso.com",
        "sip:alice@contoso.com:5061;transport=tls",
        "<sip:alice@contoso.com>",
        "sip:%61lice@contoso.com",
    ]:
        found = host.lookup_user(address)
        assert found is not None and found.sip_address == "sip:alice@contoso.com", address
    assert host.lookup_user("sip:alice@fabrikam.com") is None
    assert host.lookup_user("not an address") is None
    assert host.lookup_user("") is None


def test_users_by_number():
    contoso().install()
    for number in ["+14255550102", "tel:+1-425-555-0102", "0014255550102", "+14255550102;ext=5"]:
        assert host.lookup_user(number).sip_address == "sip:carol@contoso.com", number
    assert host.lookup_user("tel:+14255550199") is None
    assert host.lookup_user("tel:5550102;phone-context=x") is None
    # A SIP URI is a SIP address, even with a number in it.
    assert host.lookup_user("sip:+14255550102@contoso.com;user=phone") is None


def test_the_voicemail_settings_of_the_builders():
    contoso().hosted_user("sip:gina@contoso.com", "vip", "paris").install()
    alice = host.lookup_user("sip:alice@contoso.com")
    assert (alice.voicemail, alice.site, alice.hosted_voicemail_policy) == (Voicemail.HOSTED, "redmond", None)
    gina = host.lookup_user("sip:gina@contoso.com")
    assert (gina.voicemail, gina.site, gina.hosted_voicemail_policy) == (Voicemail.HOSTED, "paris", "vip")
    bob = host.lookup_user("sip:bob@contoso.com")
    assert (bob.voicemail, bob.eum_address) == (Voicemail.ON_PREMISES, "eum:bob@contoso.com;phone-context=DP1.contoso.com")
    assert host.lookup_user("sip:carol@contoso.com").voicemail == Voicemail.NONE
    with pytest.raises(TypeError):
        user("sip:x@y.com", nmber="+1")


def test_contacts_by_sip_address_and_by_normalized_number():
    contoso().install()
    assert host.lookup_contact("sip:sa@contoso.com").kind == ContactKind.SUBSCRIBER_ACCESS
    assert host.lookup_contact("sips:SA@contoso.com").number == "+1 425 555 0199"
    assert host.lookup_contact("+14255550199").sip_address == "sip:sa@contoso.com"
    assert host.lookup_contact("tel:+14255550150").sip_address == "sip:aa@contoso.com"
    assert host.lookup_contact("sip:alice@contoso.com") is None
    assert host.lookup_user("sip:sa@contoso.com") is None


def test_dial_plans_by_phone_context_or_name_in_any_case():
    contoso().install()
    assert host.lookup_dial_plan("DP1.contoso.com").name == "DP1"
    assert host.lookup_dial_plan("dp1.CONTOSO.com").name == "DP1"
    assert host.lookup_dial_plan("dp1").phone_context == "DP1.contoso.com"
    assert host.lookup_dial_plan("DP2") is None


def test_a_contact_s_dial_plan_only_for_an_on_premises_contact():
    contoso().install()
    assert host.lookup_contact_dial_plan("sip:aa@contoso.com").name == "DP1"
    assert host.lookup_contact_dial_plan("+14255550150").name == "DP1"
    assert host.lookup_contact_dial_plan("sip:sa@contoso.com") is None, "hosted"
    assert host.lookup_contact_dial_plan("sip:nobody@contoso.com") is None


def test_hosted_policies_by_exact_scope():
    contoso().hosted_policy(PolicyScope.site("redmond"), None, []).hosted_policy(
        PolicyScope.named("vip"), "vip.example", ["a", "b"]
    ).install()
    assert host.lookup_hosted_voicemail_policy(PolicyScope.GLOBAL).name == "global"
    site = host.lookup_hosted_voicemail_policy(PolicyScope.site("redmond"))
    assert (site.name, site.destination, site.organizations) == ("site:redmond", None, [])
    assert host.lookup_hosted_voicemail_policy(PolicyScope.named("vip")).organizations == ["a", "b"]
    assert host.lookup_hosted_voicemail_policy(PolicyScope.site("paris")) is None
    assert host.lookup_hosted_voicemail_policy(PolicyScope.named("redmond")) is None


def test_the_hosted_route_resolves_granted_then_site_then_global_with_the_edge_s_health():
    h = contoso().hosted_policy(PolicyScope.site("redmond"), "site.example", []).hosted_policy(
        PolicyScope.named("vip"), "vip.example", ["vip.org"]
    )
    h.install()
    r = host.resolve_hosted_route("vip", "redmond")
    assert r == directory.HostedRoute("vip.example", "vip.org", "sip:edge.contoso.com:5061;transport=tls", True)
    r = host.resolve_hosted_route("nope", "redmond")
    assert (r.destination, r.organization) == ("site.example", None)
    r = host.resolve_hosted_route(None, None)
    assert (r.destination, r.organization) == ("exap.um.outlook.com", "contoso.onmicrosoft.com")
    h.down("sip:edge.contoso.com:5061;transport=tls")
    assert host.resolve_hosted_route(None, None).next_hop_healthy is False
    h.tenant.edge = None
    r = host.resolve_hosted_route(None, None)
    assert (r.next_hop, r.next_hop_healthy) == (None, False)
    TestHost("contoso").install()
    assert host.resolve_hosted_route("vip", "redmond") is None


def test_healthy_um_servers_of_a_dial_plan_or_a_contact():
    h = contoso().install()
    assert [s.uri for s in host.healthy_um_servers(DialPlanOf.key("DP1"))] == [
        "sip:um1.contoso.com;transport=tcp",
        "sip:um2.contoso.com;transport=tcp",
    ]
    h.down("sip:um1.contoso.com;transport=tcp")
    assert host.healthy_um_servers(DialPlanOf.contact("sip:aa@contoso.com")) == [
        directory.UmServer("sip:um2.contoso.com;transport=tcp", 2000)
    ]
    h.down("sip:um2.contoso.com;transport=tcp")
    assert host.healthy_um_servers(DialPlanOf.key("dp1.contoso.com")) == []
    assert host.healthy_um_servers(DialPlanOf.key("DP9")) is None
    assert host.healthy_um_servers(DialPlanOf.contact("sip:sa@contoso.com")) is None


def test_target_health_is_exactly_the_uri_marked_down():
    contoso().down("sip:um1.contoso.com;transport=tcp").install()
    assert host.target_healthy("sip:um1.contoso.com;transport=tcp") is False
    assert host.target_healthy("sip:um1.contoso.com") is True
    assert host.target_healthy("sip:never-probed.example") is True


def test_rerouting_of_a_site_falls_back_to_the_tenant_s_and_the_last_given_wins():
    contoso().rerouting("sip:gw.contoso.com", "+14255550100", "+14255550101").site_rerouting(
        "paris", "sip:gw.paris", "+33155550100", "+33155550101"
    ).site_rerouting("paris", "sip:gw2.paris", "+33155550200", "+33155550201").install()
    assert host.lookup_rerouting(None) == directory.Rerouting(True, "+14255550100", "+14255550101", "sip:gw.contoso.com")
    assert host.lookup_rerouting("paris").pstn_gateway == "sip:gw2.paris"
    assert host.lookup_rerouting("redmond").pstn_gateway == "sip:gw.contoso.com"


def test_contact_site_names_a_contact_added_before():
    contoso().contact_site("sip:sa@contoso.com", "paris").install()
    assert host.lookup_contact("sip:sa@contoso.com").site == "paris"
    with pytest.raises(ValueError, match="no contact sip:nobody@contoso.com added before contact_site"):
        contoso().contact_site("sip:nobody@contoso.com", "paris")


def test_the_clock_and_the_log():
    contoso().at(1_767_650_000, -480).install()
    assert (host.now().unix_seconds, host.now().utc_offset_minutes) == (1_767_650_000, -480)
    host.log(Level.INFO, "hello")
    host.log(Level.WARN, "careful")
    assert TestHost.logged() == [(Level.INFO, "hello"), (Level.WARN, "careful")]


def test_answers_are_copies():
    contoso().install()
    host.lookup_user("sip:alice@contoso.com").site = "changed"
    host.settings().domains.append("x.com")
    assert host.lookup_user("sip:alice@contoso.com").site == "redmond"
    assert host.settings().domains == ["contoso.com"]


def test_install_replaces_the_generated_import_functions():
    h = contoso().install()
    assert directory.lookup_user("sip:alice@contoso.com").sip_address == "sip:alice@contoso.com"
    assert health.target_healthy("sip:x") is True
    assert clock.now() == h.now
    log.log(Level.ERROR, "direct")
    assert h.logs[-1] == (Level.ERROR, "direct")
    decision = standard.route(invite("sip:nobody@contoso.com;opaque=app:voicemail").build().wire)
    assert decision.value.code == 404

"""Native tests under CPython against the SDK's TestHost (as the Rust crate's)."""

from exum_policy import standard
from exum_policy.testing import TestHost, invite

from policy import VipFirst

CONFIG = "server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com, sip:cfo@contoso.com"


def host() -> TestHost:
    return (
        TestHost("contoso")
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
        .dial_plan("DP1", "DP1.contoso.com", [("sip:um1.contoso.com;transport=tls", 3000)])
    )


def test_vip_callers_try_the_vip_server_first_then_the_standard_targets():
    host().install()
    policy = VipFirst()
    assert policy.init(CONFIG) is None
    forward = policy.route(invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:ceo@contoso.com").build()).value
    assert [t.uri for t in forward.targets] == ["sip:vip-um.contoso.com;transport=tls", "sip:um1.contoso.com;transport=tls"]
    assert any(h.name == "X-Exum-Vip" for h in forward.add_headers)


def test_everyone_else_gets_the_standard_decision_unchanged():
    host().install()
    policy = VipFirst()
    policy.init(CONFIG)
    req = invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:z@fabrikam.com").build()
    assert policy.route(req) == standard.route(req)
    unknown = invite("sip:nobody@contoso.com;opaque=app:voicemail").from_("sip:ceo@contoso.com").build()
    assert policy.route(unknown).value.code == 404


def test_a_bad_configuration_is_refused_with_the_reason():
    assert "server=" in VipFirst().init("callers=sip:a@b.com")
    assert "not a SIP URI" in VipFirst().init("server=nope; callers=sip:a@b.com")
    assert "at least one" in VipFirst().init("server=sip:vip.example.com; callers=")

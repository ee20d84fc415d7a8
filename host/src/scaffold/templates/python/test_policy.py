"""Native tests of the policy under CPython, against the SDK's TestHost: `pytest`."""

from exum_policy import standard
from exum_policy.testing import TestHost, invite

from policy import {Type}


def contoso() -> TestHost:
    """A tenant with one on-premises user on dial plan DP1."""
    return (
        TestHost("contoso")
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
        .dial_plan("DP1", "DP1.contoso.com", [("sip:um1.contoso.com;transport=tls", 3000)])
    )


def test_listed_callers_reach_the_standard_targets_with_the_header():
    contoso().install()
    policy = {Type}()
    assert policy.init("sip:ceo@contoso.com") is None, "the configuration is valid"
    req = invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:ceo@contoso.com").build()
    forward = policy.route(req).value
    assert forward.targets[0].uri == "sip:um1.contoso.com;transport=tls"
    assert any(h.name == "X-Priority-Caller" for h in forward.add_headers)


def test_other_callers_get_the_standard_decision():
    contoso().install()
    policy = {Type}()
    policy.init("sip:ceo@contoso.com")
    req = invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:someone@fabrikam.com").build()
    assert policy.route(req) == standard.route(req)


def test_a_bad_configuration_is_refused():
    assert "not a SIP address" in {Type}().init("not an address")

"""Native tests under CPython against the SDK's TestHost (as the Rust crate's)."""

from exum_policy import Decision, host
from exum_policy.testing import TestHost, invite

from policy import AfterHours, Hours

CONFIG = "main=+14255550100; attendant=+14255550150; open=08:00-18:00; days=mon-fri"
MONDAY_10 = 1_767_607_200  # Monday 2026-01-05 10:00 UTC


def setup(at: int) -> AfterHours:
    (
        TestHost("contoso")
        .edge("sip:exap.um.outlook.com;transport=tls")
        .contact("sip:aa@contoso.com", "+14255550150", host.ContactKind.AUTO_ATTENDANT)
        .hosted_policy(host.PolicyScope_Global(), "exap.um.outlook.com", ["contoso.onmicrosoft.com"])
        .at(at, 0)
        .install()
    )
    policy = AfterHours()
    assert policy.init(CONFIG) is None
    return policy


def main():
    return invite("sip:+14255550100@contoso.com;user=phone").build()


def test_business_hours_follow_the_standard_algorithm():
    assert setup(MONDAY_10).route(main()) == Decision.standard()


def test_after_hours_the_main_number_goes_to_the_attendant():
    forward = setup(MONDAY_10 + 9 * 3600).route(main()).value
    assert forward.request_uri == (
        "sip:aa@contoso.com;ms-destination=exap.um.outlook.com;ms-organization=contoso.onmicrosoft.com"
    )
    assert forward.targets[0].uri == "sip:exap.um.outlook.com;transport=tls"


def test_weekends_are_closed_and_other_numbers_untouched():
    policy = setup(MONDAY_10 + 5 * 86_400)
    assert policy.route(main()).value.targets
    other = invite("sip:+14255550111@contoso.com;user=phone").build()
    assert policy.route(other) == Decision.standard()


def test_local_time_uses_the_tenant_offset():
    h = Hours.parse(CONFIG)
    assert h.is_open(MONDAY_10, 0)
    assert not h.is_open(MONDAY_10, -8 * 60), "02:00 in UTC-8"


def test_refuses_bad_config():
    assert "attendant" in Hours.parse("main=+1425")
    assert isinstance(Hours.parse("main=+1425;attendant=+1426;open=8-18"), str)
    assert isinstance(Hours.parse("main=+1425;attendant=+1426;days=mon-xyz"), str)
    assert isinstance(Hours.parse("main=5550100;attendant=+1426"), str)

"""Decision builders (sdk/src/helpers.rs) and the records the router receives."""

import pytest

from exum_policy import (
    Decision,
    Decision_Forward,
    Decision_Redirect,
    Decision_Reject,
    Decision_Standard,
    Forward,
    Header,
    Redirect,
    Reject,
    Target,
    Transport,
    Uri,
    host,
    ms_diagnostics,
    resolve_hosted_policy,
    types,
)
from exum_policy.host import PolicyScope
from exum_policy.testing import TestHost


def test_builds_decisions():
    d = Decision.reject_with_diagnostics(480, "Temporarily Unavailable", 15030, "Failed")
    assert isinstance(d, Decision_Reject)
    assert d.value.headers[0] == Header("ms-diagnostics", '15030;reason="Failed";appName="ExumRouting"')
    f = Forward.to([Target("sip:a@b").with_timeout_ms(100)]).remove_header("Diversion").add_header("X", "y")
    assert (f.targets[0].timeout_ms, f.remove_headers, f.add_headers) == (100, ["Diversion"], [Header("X", "y")])


def test_the_records_are_the_contract_s():
    t = Target("sip:um1.contoso.com").with_transport(Transport.TLS).with_timeout_ms(3000)
    assert isinstance(t, types.Target)
    assert t == types.Target("sip:um1.contoso.com", Transport.TLS, 3000)
    assert types.Target("sip:um1.contoso.com", Transport.TLS, 3000) == t
    assert t != types.Target("sip:um1.contoso.com", None, 3000)
    f = Forward.to([t]).with_request_uri(Uri.parse("sip:A@b;lr"))
    assert isinstance(f, types.Forward)
    assert f == types.Forward([types.Target("sip:um1.contoso.com", Transport.TLS, 3000)], "sip:A@b;lr", [], [])
    assert Reject(486) == types.Reject(486, "", [])
    assert Redirect(302, ["sip:a@b", Uri.parse("sip:c@d")]) == types.Redirect(302, ["sip:a@b", "sip:c@d"], [])


def test_targets_first_then_and_uris():
    f = Forward.to(["sip:b", Target("sip:c")]).first(Target("sip:a")).then("sip:d")
    assert [t.uri for t in f.targets] == ["sip:a", "sip:b", "sip:c", "sip:d"]
    assert all(isinstance(t, Target) for t in f.targets)
    assert Target(Uri.parse("sip:x@Y.com;transport=tls")).uri == "sip:x@y.com;transport=tls"


def test_the_decision_cases():
    assert Decision.forward(Forward.to([])) == Decision_Forward(types.Forward([], None, [], []))
    assert Decision.reject(404) == Decision_Reject(types.Reject(404, "", []))
    assert Decision.reject(404, "Nobody") == Decision_Reject(types.Reject(404, "Nobody", []))
    r = Decision.redirect(302, ["sip:vm@contoso.com"])
    assert type(r) is Decision_Redirect and r.value.contacts == ["sip:vm@contoso.com"]
    assert type(Decision.standard()) is Decision_Standard
    assert Reject(480, "x").with_header(ms_diagnostics(1, "y")).headers == [Header("ms-diagnostics", '1;reason="y";appName="ExumRouting"')]
    assert Redirect(302, ["sip:a"]).with_header(Header("X", "1")).headers == [Header("X", "1")]
    with pytest.raises(TypeError):
        Decision()


def test_map_forward_changes_a_forward_and_leaves_the_rest():
    # A forward as the router's `standard` import returns it: generated records.
    wire = types.Decision_Forward(
        types.Forward([types.Target("sip:um1", None, 3000)], None, [types.Header("Diversion", "<sip:b@c>")], ["Diversion"])
    )
    seen = []

    def change(f):
        seen.append(type(f))
        return f.first(Target("sip:vip")).add_header("X-Vip", "yes")

    d = Decision.map_forward(wire, change)
    assert seen == [Forward]
    assert type(d) is Decision_Forward
    assert [t.uri for t in d.value.targets] == ["sip:vip", "sip:um1"]
    assert d.value.add_headers == [Header("Diversion", "<sip:b@c>"), Header("X-Vip", "yes")]
    assert [t.uri for t in wire.value.targets] == ["sip:um1"], "the decision given is not changed"
    # An SDK forward is not changed either.
    mine = Decision.forward(Forward.to(["sip:a"]))
    Decision.map_forward(mine, lambda f: f.then("sip:b"))
    assert [t.uri for t in mine.value.targets] == ["sip:a"]
    # None: the forward as the function left it.
    d = Decision.map_forward(wire, lambda f: f.targets.clear())
    assert d.value.targets == []
    # Anything else as it is.
    reject = Decision.reject(404, "Not Found")
    assert Decision.map_forward(reject, change) is reject
    standard = Decision.standard()
    assert Decision.map_forward(standard, change) is standard


def test_resolve_hosted_policy_prefers_granted_then_site_then_global():
    TestHost("contoso").hosted_policy(PolicyScope.GLOBAL, "g.example").hosted_policy(
        PolicyScope.site("redmond"), "s.example"
    ).hosted_policy(PolicyScope.named("vip"), None, ["org"]).install()
    assert resolve_hosted_policy("vip", "redmond").name == "vip"
    assert resolve_hosted_policy("nope", "redmond").destination == "s.example"
    assert resolve_hosted_policy(None, "paris").name == "global"
    TestHost("contoso").install()
    assert resolve_hosted_policy("vip", "redmond") is None
    assert host.lookup_hosted_voicemail_policy(PolicyScope.GLOBAL) is None

"""export_policy: the class componentize-py exports, at the wire level."""

import pytest

from exum_policy import (
    Decision,
    Decision_Forward,
    Decision_Reject,
    Decision_Standard,
    Failure,
    Forward,
    Policy,
    Request,
    Target,
    export_policy,
    standard,
    types,
)
from exum_policy._bindings import Err, exports
from exum_policy.host import PolicyScope
from exum_policy.testing import TestHost, invite


class VipFirst(Policy):
    """The Rust example vip-first: VIP callers try a dedicated server first."""

    def __init__(self):
        self.server = None
        self.callers = set()
        self.seen = []

    def init(self, config):
        server, sep, callers = config.partition(";")
        if not server.startswith("server="):
            return "policy_config must start with `server=`"
        self.server = server[len("server=") :]
        self.callers = {c.strip() for c in callers.split(",") if c.strip()}
        if not self.callers:
            raise ValueError("callers: list at least one SIP address")
        return None

    def route(self, req):
        self.seen.append(req)
        decision = standard.route(req)
        if req.from_address in self.callers:
            return Decision.map_forward(decision, lambda f: f.first(Target(self.server)).add_header("X-Exum-Vip", "yes"))
        return decision


def host():
    return (
        TestHost("contoso")
        .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
        .dial_plan("DP1", "DP1.contoso.com", [("sip:um1.contoso.com;transport=tls", 3000)])
        .install()
    )


def test_the_handler_is_the_contract_s_and_takes_wire_requests():
    host()
    Handler = export_policy(VipFirst)
    assert exports.Handler in Handler.__mro__
    assert Handler.__name__ == "Handler"
    Handler().init("server=sip:vip-um.contoso.com; sip:ceo@contoso.com")
    wire = invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:ceo@contoso.com").build().wire
    d = Handler().route(wire)
    assert type(d) is Decision_Forward
    assert [t.uri for t in d.value.targets] == ["sip:vip-um.contoso.com", "sip:um1.contoso.com;transport=tls"]
    assert d.value.add_headers[-1] == types.Header("X-Exum-Vip", "yes")
    # One policy for every Handler instance (componentize-py makes one per call),
    # handed the wire request wrapped.
    policy = Handler.policy()
    assert isinstance(policy, VipFirst) and policy.server == "sip:vip-um.contoso.com"
    assert isinstance(policy.seen[0], Request) and policy.seen[0].wire is wire
    other = Handler().route(invite("sip:bob@contoso.com;opaque=app:voicemail").from_("sip:z@fabrikam.com").build().wire)
    assert other == standard.route(invite("sip:bob@contoso.com;opaque=app:voicemail").build())


def test_on_failure_defaults_to_the_standard_decision():
    host()
    Handler = export_policy(VipFirst)
    d = Handler().on_failure(invite("sip:bob@contoso.com").build().wire, Failure([]))
    assert type(d) is Decision_Standard


def test_init_refuses_with_err_and_the_message():
    Handler = export_policy(VipFirst)
    with pytest.raises(Err) as e:
        Handler().init("nope")
    assert e.value.value == "policy_config must start with `server=`"
    with pytest.raises(Err) as e:
        Handler().init("server=sip:x;")
    assert e.value.value == "callers: list at least one SIP address"
    assert isinstance(e.value, types.Err)


def test_init_accepts_none_only():
    class Odd(Policy):
        def init(self, config):
            return True

        def route(self, req):
            return Decision.standard()

    with pytest.raises(Err, match="Odd.init returned True"):
        export_policy(Odd)().init("")
    assert export_policy(Odd())().route(invite("sip:a@b").build().wire) == Decision.standard()


def test_a_policy_that_fails_to_construct_refuses_its_configuration():
    class Broken(Policy):
        def __init__(self):
            raise KeyError("missing")

        def route(self, req):
            return Decision.standard()

    with pytest.raises(Err) as e:
        export_policy(Broken)().init("")
    assert e.value.value == "'missing'"


def test_route_must_return_a_decision_and_subclasses_become_the_contract_s_cases():
    class Loose(Policy):
        def route(self, req):
            kind = req.request_uri.user
            if kind == "forward":
                return Forward.to([Target("sip:um1")])
            if kind == "sub":
                class Mine(types.Decision_Reject):
                    pass

                return Mine(types.Reject(486, "", []))
            return None

    Handler = export_policy(Loose)
    with pytest.raises(TypeError, match=r"Loose.route returned Forward\(.*not a decision"):
        Handler().route(invite("sip:forward@b").build().wire)
    with pytest.raises(TypeError, match="Loose.route returned None"):
        Handler().route(invite("sip:none@b").build().wire)
    d = Handler().route(invite("sip:sub@b").build().wire)
    assert type(d) is Decision_Reject and d.value.code == 486


def test_the_default_route_is_abstract():
    class Nothing(Policy):
        pass

    with pytest.raises(NotImplementedError, match="Nothing.route"):
        export_policy(Nothing)().route(invite("sip:a@b").build().wire)


def test_the_pilot_example_of_the_package_docstring():
    from exum_policy import host as h

    PILOTS = {"sip:alice@contoso.com"}

    class Pilot(Policy):
        def route(self, req):
            if req.request_uri.is_voicemail() and req.request_uri_address in PILOTS:
                edge = h.settings().edge or "sip:exap.um.outlook.com;transport=tls"
                return Decision.forward(Forward.to([Target(edge)]))
            return Decision.standard()

    Handler = export_policy(Pilot)
    TestHost("contoso").edge("sip:edge.contoso.com:5061;transport=tls").hosted_policy(
        PolicyScope.GLOBAL, "exap.um.outlook.com"
    ).install()
    d = Handler().route(invite("sip:alice@contoso.com;opaque=app:voicemail").from_("sip:bob@contoso.com").build().wire)
    assert d.value.targets[0].uri == "sip:edge.contoso.com:5061;transport=tls"
    assert Handler().route(invite("sip:carol@contoso.com;opaque=app:voicemail").build().wire) == Decision.standard()

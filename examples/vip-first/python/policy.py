"""Example policy (Python): the standard decision, adjusted. Calls from VIP
callers try a dedicated UM server first and then the standard targets, with a
header telling the UM server why; every other call is left exactly as the
standard algorithm decides. The same policy as the Rust and TypeScript ones
beside it, decision for decision.

``policy_config``: ``server=<SIP URI>; callers=<SIP address>, <SIP address>, ...``
(``server=sip:vip-um.contoso.com;transport=tls; callers=sip:ceo@contoso.com``).
The server's URI may hold ``;`` parameters: everything after ``server=`` up to
``; callers=`` is the URI.
"""

from typing import List, Optional, Tuple, Union

from exum_policy import Decision, Policy, Target, export_policy, parse_uri, standard


def parse(config: str) -> Union[Tuple[str, List[str]], str]:
    """``(server, callers)`` from ``server=...; callers=...``, or why it is refused."""
    server, sep, callers_text = config.partition("callers=")
    if not sep:
        return "policy_config needs `server=<SIP URI>; callers=<addresses>`"
    server = server.strip()
    if not server.startswith("server="):
        return "policy_config must start with `server=`"
    server = server[len("server="):].strip().rstrip(";").strip()
    uri = parse_uri(server)
    if uri is None or uri.scheme not in ("sip", "sips"):
        return f"server: `{server}` is not a SIP URI"
    callers = []
    for entry in (c.strip() for c in callers_text.split(",")):
        if not entry:
            continue
        caller = parse_uri(entry)
        if caller is None:
            return f"callers: `{entry}` is not a SIP address"
        callers.append(caller.address())
    if not callers:
        return "callers: list at least one SIP address"
    return server, callers


class VipFirst(Policy):
    """The VIP-first policy."""

    def __init__(self) -> None:
        self.server: Optional[str] = None
        self.callers: List[str] = []

    def init(self, config: str) -> Optional[str]:
        parsed = parse(config)
        if isinstance(parsed, str):
            return parsed
        self.server, self.callers = parsed
        return None

    def route(self, req):
        decision = standard.route(req)
        if self.server is not None and req.from_.address() in self.callers:
            server = self.server
            return Decision.map_forward(decision, lambda f: f.first(Target(server)).add_header("X-Exum-Vip", "yes"))
        return decision

    def on_failure(self, req, failure):
        return standard.on_failure(req, failure)


Handler = export_policy(VipFirst)

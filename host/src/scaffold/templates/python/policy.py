"""{name}: an exum-router routing policy.

It starts as the router's standard Exchange UM algorithm with one
adjustment: calls from the callers listed in `policy_config` (SIP addresses,
comma-separated) carry an `X-Priority-Caller: yes` header to the UM server.
Change `route` to route your way: `standard.route(req)` gives the standard
decision to start from, `routing` its building blocks, `host` the tenant's
directory.
"""

from exum_policy import Decision, Policy, export_policy, parse_uri, standard


class {Type}(Policy):
    """The policy: the functions the router calls, on a `Request`."""

    def __init__(self) -> None:
        self.callers: list[str] = []

    def init(self, config: str):
        """Called once per instance with the tenant's `policy_config`; a string returned refuses it."""
        callers = []
        for entry in (e.strip() for e in config.split(",")):
            if not entry:
                continue
            uri = parse_uri(entry)
            if uri is None:
                return f"`{entry}` is not a SIP address"
            callers.append(uri.address())
        self.callers = callers
        return None

    def route(self, req):
        """Where a new request goes."""
        decision = standard.route(req)
        if req.from_.address() in self.callers:
            return Decision.map_forward(decision, lambda f: f.add_header("X-Priority-Caller", "yes"))
        return decision

    def on_failure(self, req, failure):
        """Every target of a forward failed: what happens next."""
        return standard.on_failure(req, failure)


# The component's export: what `exum-router build` turns into a component.
Handler = export_policy({Type})

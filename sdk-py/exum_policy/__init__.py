"""Write exum-router routing policies in Python.

A policy is a Python module (``app.py``) that subclasses :class:`Policy` and
exports it as ``Handler = export_policy(MyPolicy)``; componentize-py builds it
into a WebAssembly component against the contract ``sdk/wit/policy.wit``, and
it runs in the router's sandbox. Under plain CPython the same module is
tested with pytest against the in-memory :class:`testing.TestHost`.

Example: a pilot group of users goes to hosted voice mail, every other call
to the router's standard algorithm::

    from exum_policy import Decision, Forward, Policy, Target, export_policy, host

    PILOTS = {"sip:alice@contoso.com"}

    class Pilot(Policy):
        def route(self, req):
            if req.request_uri.is_voicemail() and req.request_uri_address in PILOTS:
                edge = host.settings().edge or "sip:exap.um.outlook.com;transport=tls"
                return Decision.forward(Forward.to([Target(edge)]))
            return Decision.standard()

    Handler = export_policy(Pilot)

What is here:

- :class:`Request`: the request as received, its fields parsed on first use;
- :class:`Uri`, :func:`parse_uri`, :func:`normalize_number`,
  :func:`number_key`, :func:`reason_phrase`: addresses and numbers, parsed
  as the router parses them;
- decisions and their builders (:class:`Decision`, :class:`Forward`,
  :class:`Target`, :class:`Reject`, :class:`Redirect`), :func:`ms_diagnostics`,
  :func:`resolve_hosted_policy`;
- :mod:`~exum_policy.host`: the router's imports (directory, health, clock, log)
  and the directory's types;
- :mod:`~exum_policy.standard`: the router's standard decision, to adjust;
- :mod:`~exum_policy.routing`: building blocks of the standard algorithm;
- :mod:`~exum_policy.testing`: the in-memory stand-in for the router.
"""

from . import host, routing, standard
from ._bindings import types
from .decision import (
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
    ms_diagnostics,
    resolve_hosted_policy,
)
from .number import extension, normalize_number, number_key
from .policy import Policy, export_policy
from .request import Request
from .status import reason_phrase
from .uri import Param, Uri, UriError, parse_uri

#: The contract's records, as generated.
Attempt = types.Attempt
Failure = types.Failure
Source = types.Source
Span = types.Span
IpAddress_Ipv4 = types.IpAddress_Ipv4
IpAddress_Ipv6 = types.IpAddress_Ipv6
Outcome_Response = types.Outcome_Response
Outcome_Timeout = types.Outcome_Timeout
Outcome_Unreachable = types.Outcome_Unreachable
Outcome_SkippedDown = types.Outcome_SkippedDown

__version__ = "0.1.0"

__all__ = [
    "Attempt",
    "Decision",
    "Decision_Forward",
    "Decision_Redirect",
    "Decision_Reject",
    "Decision_Standard",
    "Failure",
    "Forward",
    "Header",
    "IpAddress_Ipv4",
    "IpAddress_Ipv6",
    "Outcome_Response",
    "Outcome_SkippedDown",
    "Outcome_Timeout",
    "Outcome_Unreachable",
    "Param",
    "Policy",
    "Redirect",
    "Reject",
    "Request",
    "Source",
    "Span",
    "Target",
    "Transport",
    "Uri",
    "UriError",
    "export_policy",
    "extension",
    "host",
    "ms_diagnostics",
    "normalize_number",
    "number_key",
    "parse_uri",
    "reason_phrase",
    "resolve_hosted_policy",
    "routing",
    "standard",
    "types",
]

"""The router's standard Exchange UM routing algorithm, for a policy to take
its decision and adjust it.

:func:`route` and :func:`on_failure` call the contract's ``standard`` import:
the router runs the algorithm (the one it ships) against the tenant's
directory and answers with its decision, never ``standard``. "VIP callers to a
dedicated UM server first, then the standard targets" is::

    decision = standard.route(req)
    if req.from_address == "sip:ceo@contoso.com":
        decision = Decision.map_forward(decision, lambda f: f.first(Target("sip:vip-um.contoso.com;transport=tls")))
    return decision

Under CPython the :class:`~exum_policy.testing.TestHost` answers with a port
of the algorithm run against its directory.

The ``ms-diagnostics`` codes the algorithm answers with are the constants
here, ``(code, reason)`` pairs.
"""

from typing import Tuple, Union

from ._bindings import standard as _standard
from ._bindings import types
from .request import Request
from .routing import NO_HOSTED_POLICY, NO_HOSTING_PROVIDER

__all__ = [
    "route",
    "on_failure",
    "NOT_ENABLED",
    "NOT_VOICEMAIL",
    "UNKNOWN_TARGET",
    "FAILED_TO_ROUTE",
    "NO_HOSTED_POLICY",
    "NO_DIAL_PLAN",
    "NO_HOSTING_PROVIDER",
]

#: 480: the called user's voice-mail setting is ``none``.
NOT_ENABLED: Tuple[int, str] = (15000, "User is not enabled for Unified Messaging")
#: 404: a request that is not voice-mail-bound, and the tenant has no default next hop.
NOT_VOICEMAIL: Tuple[int, str] = (15002, "Not a voice-mail call and no default next hop")
#: 404: a voice-mail-bound request for a user or number the directory does not know.
UNKNOWN_TARGET: Tuple[int, str] = (15004, "Voice-mail target not found in the directory")
#: 480: no UM server could be reached and voice-mail rerouting is off.
FAILED_TO_ROUTE: Tuple[int, str] = (15030, "Failed to route to Exchange Server")
#: 480: an on-premises user whose EUM phone-context names no known dial plan.
NO_DIAL_PLAN: Tuple[int, str] = (15032, "No UM dial plan for the user's phone-context")


def _wire(req: Union[Request, types.Request]) -> types.Request:
    return req.wire if isinstance(req, Request) else req


def route(req: Union[Request, types.Request]) -> "types.Decision":
    """The router's standard decision for ``req`` (never ``standard``)."""
    return _standard.route(_wire(req))


def on_failure(req: Union[Request, types.Request], failure: types.Failure) -> "types.Decision":
    """The router's standard decision when every target of a forward failed:
    voice-mail rerouting or 480 for a voice-mail call, else the best response
    the targets gave (or 408)."""
    return _standard.on_failure(_wire(req), failure)

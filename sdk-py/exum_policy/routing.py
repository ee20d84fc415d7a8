"""Building blocks of the standard Exchange UM algorithm, for policies that
route some calls their own way and the rest like the standard policy.

Functions that take a :class:`~exum_policy.Forward` may change it in place
(a generated ``types.Forward`` is copied first): use the one they return.
"""

from typing import Iterable, List, Optional, Tuple

from . import host
from ._bindings import types
from ._text import eq_ignore_ascii_case
from .decision import Decision, Decision_Forward, Forward, Target, Transport, ms_diagnostics
from .request import Request
from .uri import Uri

__all__ = [
    "NO_HOSTED_POLICY",
    "NO_HOSTING_PROVIDER",
    "hosted_forward",
    "hosted_forward_and_health",
    "with_diversion",
    "with_diversion_to",
    "dial_plan_targets",
    "um_server_targets",
    "dial_plan_forward",
    "diagnostics",
]

#: ``ms-diagnostics`` of a hosted target without an applicable hosted voice-mail
#: policy (or one without destination).
NO_HOSTED_POLICY: Tuple[int, str] = (15031, "No hosted voice mail policy")

#: ``ms-diagnostics`` of a hosted target when the tenant has no enabled hosting
#: provider (its provider is disabled).
NO_HOSTING_PROVIDER: Tuple[int, str] = (15033, "No enabled hosting provider for hosted voice mail")


def hosted_forward(request_uri: Uri, granted: Optional[str], site: Optional[str]) -> "types.Decision":
    """Step 4 of the standard algorithm: a forward to hosted voice mail for a
    target whose granted policy and site are given. The Request-URI keeps user
    and host (and ``opaque=app:voicemail``) and gains ``ms-destination`` and
    ``ms-organization``; the next hop is the tenant's hosting provider (or edge).

    Returns ``Decision_Forward``, or the 480 rejection when no hosted voice-mail
    policy with a destination applies (``ms-diagnostics: 15031``) or the tenant
    has no enabled hosting provider (15033). ``request_uri`` is not changed.
    """
    return hosted_forward_and_health(request_uri, granted, site)[0]


def hosted_forward_and_health(
    request_uri: Uri, granted: Optional[str], site: Optional[str]
) -> Tuple["types.Decision", bool]:
    """:func:`hosted_forward`, and whether health probes let its next hop be
    tried (``False`` with a rejection), from one import call
    (:func:`host.resolve_hosted_route`)."""
    route = host.resolve_hosted_route(granted, site)
    if route is None or not route.destination:
        return Decision.reject_with_diagnostics(480, "Temporarily Unavailable", *NO_HOSTED_POLICY), False
    ruri = request_uri.copy()
    ruri.port = None
    ruri.params = [p for p in ruri.params if p.name == "opaque"]
    ruri.set_param("ms-destination", route.destination)
    if route.organization is not None:
        ruri.set_param("ms-organization", route.organization)
    if route.next_hop is None:
        return Decision.reject_with_diagnostics(480, "Temporarily Unavailable", *NO_HOSTING_PROVIDER), False
    forward = Forward.to([Target(route.next_hop)]).with_request_uri(ruri)
    return Decision_Forward(forward), route.next_hop_healthy


def with_diversion(req: Request, forward: types.Forward) -> Forward:
    """The Diversion rule of step 5: removes every Diversion header, and adds one
    naming the Request-URI when the caller is not the called user (Exchange UM
    picks the mailbox from it). See :func:`with_diversion_to` to name the
    mailbox user's SIP address (a user found by number)."""
    mailbox = None if req.is_own_mailbox_call() else req.request_uri_address
    return with_diversion_to(forward, mailbox)


def with_diversion_to(forward: types.Forward, mailbox: Optional[str]) -> Forward:
    """Removes every Diversion header and, with ``mailbox`` (the called user's
    SIP address, when the caller is someone else), adds one naming it."""
    forward = Forward.of(forward).remove_header("Diversion")
    if mailbox is not None:
        forward.add_header("Diversion", f"<{mailbox}>;reason=no-answer")
    return forward


def dial_plan_targets(plan: host.DialPlan, tls: bool) -> List[Target]:
    """The UM servers of ``plan`` that health probes have not marked down, in
    order, with their timeouts; over TLS when ``tls`` (a ``sips:`` request).
    Empty when every server is down."""
    return [_um_server_target(s, tls) for s in plan.servers if host.target_healthy(s.uri)]


def um_server_targets(servers: Iterable[host.UmServer], tls: bool) -> List[Target]:
    """Targets for ``servers`` as :func:`host.healthy_um_servers` lists them (in
    order, with their timeouts), over TLS when ``tls``."""
    return [_um_server_target(s, tls) for s in servers]


def _um_server_target(server: host.UmServer, tls: bool) -> Target:
    target = Target(server.uri).with_timeout_ms(server.timeout_ms)
    return target.with_transport(Transport.TLS) if tls else target


def dial_plan_forward(req: Request, plan: host.DialPlan) -> Optional[Forward]:
    """A forward to the UM servers of ``plan`` that health probes have not
    marked down, in order, with their timeouts and the Diversion rule. ``None``
    when every server is down."""
    targets = dial_plan_targets(plan, eq_ignore_ascii_case(req.request_uri.scheme, "sips"))
    if not targets:
        return None
    return with_diversion(req, Forward.to(targets))


def diagnostics(code: int, reason: str) -> types.Header:
    """An ``ms-diagnostics`` header (:func:`exum_policy.ms_diagnostics`)."""
    return ms_diagnostics(code, reason)

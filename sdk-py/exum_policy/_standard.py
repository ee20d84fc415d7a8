"""A port of the router's standard Exchange UM routing algorithm (the Rust
SDK's ``standard.rs``: steps 2-6 of ``docs/exum-routing.md``), run against
the host imports. It is what the test host answers the ``standard`` import
with under CPython; in a component the router runs its own copy.

Each function mirrors the Rust function of the same name.
"""

from typing import Optional, Union

from . import host, routing
from ._bindings import types
from ._text import eq_ignore_ascii_case, trim
from .decision import Decision_Forward, Decision_Reject, Forward, Reject, Target, ms_diagnostics
from .number import normalize_number
from .request import Request
from .standard import FAILED_TO_ROUTE, NO_DIAL_PLAN, NOT_ENABLED, NOT_VOICEMAIL, UNKNOWN_TARGET
from .status import reason_phrase
from .uri import Uri, parse_uri

__all__ = ["route", "on_failure", "is_voicemail_bound", "all_targets_failed"]

Called = Union[host.User, host.UmContact, None]
"""Whom a request calls: a user, an Exchange UM contact, or nobody."""


def _called(req: Request) -> Called:
    """Looks up the Request-URI: a user first, then a contact, each by SIP
    address and then by number (users with the extension kept)."""
    ruri = req.request_uri
    address = req.request_uri_address
    user = host.lookup_user(address)
    if user is None:
        number_key = ruri.number_key()
        if number_key is not None:
            user = host.lookup_user(number_key)
    if user is not None:
        return user
    contact = host.lookup_contact(address)
    if contact is None:
        number = ruri.number()
        if number is not None:
            contact = host.lookup_contact(number)
    return contact


def _is_invite(req: Request) -> bool:
    return eq_ignore_ascii_case(req.method, "INVITE")


def route(req: Request) -> "types.Decision":
    """Where the standard algorithm sends ``req`` (steps 2-6)."""
    if not _is_invite(req):
        return _not_voicemail(req)
    voicemail = req.request_uri.is_voicemail()
    called = _called(req)
    if voicemail and isinstance(called, host.User):
        return _route_user(req, called)
    if isinstance(called, host.UmContact):
        return _route_contact(req, called)
    if voicemail and called is None:
        return _reject(404, "Not Found", UNKNOWN_TARGET)
    return _not_voicemail(req)


def is_voicemail_bound(req: Request) -> bool:
    """Whether ``req`` is bound for voice mail: an INVITE to a voice-mail URI or
    to an Exchange UM contact."""
    return _is_invite(req) and (req.request_uri.is_voicemail() or isinstance(_called(req), host.UmContact))


def on_failure(req: Request, failure: types.Failure) -> "types.Decision":
    """Every target failed: a voice-mail call is rerouted or answered 480/15030;
    any other call gets the best response its targets gave (RFC 3261 §16.7),
    or 408 when none answered."""
    if is_voicemail_bound(req):
        return all_targets_failed(req)
    code = _best_response(failure)
    if code is None:
        code = 408
    return Decision_Reject(Reject(code, reason_phrase(code)))


def _best_response(failure: types.Failure) -> Optional[int]:
    """A 6xx first, else the lowest class, the first of it."""
    codes = [
        a.outcome.value for a in failure.attempts if isinstance(a.outcome, types.Outcome_Response) and a.outcome.value >= 400
    ]
    if not codes:
        return None
    return min(codes, key=lambda c: 0 if c >= 600 else c // 100)


def all_targets_failed(req: Request) -> "types.Decision":
    """Step 6: voice-mail rerouting over the PSTN gateway when the tenant (or
    the target's site) enables it, else 480/15030. Callers who want their own
    mailbox, and calls to a subscriber-access contact, go to the
    subscriber-access number; others to the auto-attendant number."""
    # A call that may not be diverted (Ms-Sensitivity) is not rerouted either.
    if req.no_diversion():
        return _reject(480, "Temporarily Unavailable", FAILED_TO_ROUTE)
    called = _called(req)
    site = None if called is None else called.site
    if isinstance(called, host.User):
        retrieval = _own_call(req, called)
    elif isinstance(called, host.UmContact):
        retrieval = called.kind == host.ContactKind.SUBSCRIBER_ACCESS
    else:
        retrieval = req.is_own_mailbox_call()
    rerouting = host.lookup_rerouting(site)
    number = rerouting.subscriber_access if retrieval else rerouting.auto_attendant
    gateway = rerouting.pstn_gateway
    if not (rerouting.enabled and gateway is not None and number is not None):
        return _reject(480, "Temporarily Unavailable", FAILED_TO_ROUTE)
    gateway_uri = parse_uri(gateway)
    e164 = normalize_number(number)
    if gateway_uri is None or e164 is None:
        host.log(host.Level.WARN, "voice-mail rerouting is enabled but its gateway or number is invalid")
        return _reject(480, "Temporarily Unavailable", FAILED_TO_ROUTE)
    ruri = gateway_uri.copy()
    ruri.user = e164
    ruri.params = [p for p in ruri.params if p.name != "transport" and p.name != "lr"]
    ruri.set_param("user", "phone")
    forward = Forward.to([Target(gateway)]).with_request_uri(ruri)
    if isinstance(called, host.User):
        forward = routing.with_diversion_to(forward, _mailbox_of(req, called))
    else:
        forward = routing.with_diversion(req, forward)
    return Decision_Forward(forward)


def _own_call(req: Request, user: host.User) -> bool:
    """Whether the caller is the called user (by the user's SIP address, or the
    Request-URI for a user reached that way)."""
    return req.is_own_mailbox_call() or eq_ignore_ascii_case(req.from_address, user.sip_address)


def _mailbox_of(req: Request, user: host.User) -> Optional[str]:
    """The mailbox a Diversion names for a call to ``user``: the user's SIP
    address, or none when the caller is the user."""
    return None if _own_call(req, user) else user.sip_address


def _route_user(req: Request, user: host.User) -> "types.Decision":
    if user.voicemail == host.Voicemail.NONE:
        return _reject(480, "Temporarily Unavailable", NOT_ENABLED)
    if user.voicemail == host.Voicemail.HOSTED:
        return _route_hosted_user(req, user)
    return _route_on_premises(req, user)


def _route_contact(req: Request, contact: host.UmContact) -> "types.Decision":
    """A contact of an on-premises dial plan goes to that dial plan's UM servers
    (Request-URI and headers as received); a hosted contact takes step 4."""
    servers = host.healthy_um_servers(host.DialPlanOf_Contact(contact.sip_address))
    if servers is not None:
        targets = routing.um_server_targets(servers, eq_ignore_ascii_case(req.request_uri.scheme, "sips"))
        if not targets:
            return all_targets_failed(req)
        return Decision_Forward(Forward.to(targets))
    return _route_hosted(req, req.request_uri.copy(), contact.hosted_voicemail_policy, contact.site, False, None)


def _route_hosted_user(req: Request, user: host.User) -> "types.Decision":
    """Step 4 for a user: the Request-URI names the user by SIP address, and the
    Diversion rule of step 5 applies."""
    mailbox = parse_uri(user.sip_address) or req.request_uri.copy()
    mailbox.params.clear()
    if req.request_uri.is_voicemail():
        mailbox.set_param("opaque", "app:voicemail")
    return _route_hosted(req, mailbox, user.hosted_voicemail_policy, user.site, True, _mailbox_of(req, user))


def _route_hosted(
    req: Request,
    request_uri: Uri,
    granted: Optional[str],
    site: Optional[str],
    divert: bool,
    mailbox: Optional[str],
) -> "types.Decision":
    """Step 4: hosted voice mail, through the hosting provider (or edge) unless
    health probes mark that next hop down. With ``divert``, the Diversion rule
    (remove, then name ``mailbox`` when given)."""
    decision, healthy = routing.hosted_forward_and_health(request_uri, granted, site)
    if not isinstance(decision, Decision_Forward):
        return decision
    if not healthy:
        return all_targets_failed(req)
    forward = decision.value
    if divert:
        forward = routing.with_diversion_to(forward, mailbox)
    return Decision_Forward(forward)


def _route_on_premises(req: Request, user: host.User) -> "types.Decision":
    """Step 5: on-premises voice mail through the user's dial plan, UM servers in
    order (over TLS for a ``sips:`` request), servers marked down skipped, the
    Diversion naming the user's SIP address."""
    phone_context = None
    if user.eum_address is not None:
        for p in user.eum_address.split(";"):
            p = trim(p)
            if p.startswith("phone-context="):
                phone_context = p[len("phone-context=") :]
                break
    servers = None if phone_context is None else host.healthy_um_servers(host.DialPlanOf_Key(phone_context))
    if servers is None:
        return _reject(480, "Temporarily Unavailable", NO_DIAL_PLAN)
    tls = eq_ignore_ascii_case(req.request_uri.scheme, "sips")
    targets = routing.um_server_targets(servers, tls)
    if not targets:
        return all_targets_failed(req)
    return Decision_Forward(routing.with_diversion_to(Forward.to(targets), _mailbox_of(req, user)))


def _not_voicemail(req: Request) -> "types.Decision":
    """Not this router's business: the tenant's default next hop, or 404."""
    next_hop = host.settings().default_next_hop
    if next_hop is not None:
        return Decision_Forward(Forward.to([Target(next_hop)]))
    return _reject(404, "Not Found", NOT_VOICEMAIL)


def _reject(code: int, reason: str, diagnostics: "tuple[int, str]") -> "types.Decision":
    return Decision_Reject(Reject(code, reason).with_header(ms_diagnostics(*diagnostics)))

"""Decisions and their builders, ``ms-diagnostics``, and hosted voice-mail
policy resolution.

:class:`Target`, :class:`Forward`, :class:`Reject` and :class:`Redirect` are
the contract's records (subclasses of the generated ``types.Target``, ...)
with builder methods; componentize-py hands them to the router as they are.
The builders change the record and return it, so they chain:
``Forward.to([Target("sip:um1.contoso.com")]).add_header("X-Why", "vip")``.

A decision is one of the contract's variant cases, ``Decision_Forward``,
``Decision_Reject``, ``Decision_Redirect`` or ``Decision_Standard`` (test it
with ``isinstance``, read its record as ``.value``); :class:`Decision` builds
them.
"""

import dataclasses
from typing import Callable, Iterable, Optional

from . import host
from ._bindings import types

__all__ = [
    "Target",
    "Forward",
    "Reject",
    "Redirect",
    "Decision",
    "Header",
    "Transport",
    "Decision_Forward",
    "Decision_Reject",
    "Decision_Redirect",
    "Decision_Standard",
    "ms_diagnostics",
    "resolve_hosted_policy",
]

Header = types.Header
Transport = types.Transport
Decision_Forward = types.Decision_Forward
Decision_Reject = types.Decision_Reject
Decision_Redirect = types.Decision_Redirect
Decision_Standard = types.Decision_Standard

#: The types a decision can be (the contract's ``decision`` variant).
DECISION_CASES = (Decision_Forward, Decision_Reject, Decision_Redirect, Decision_Standard)


def _record_eq(base: type):
    """An ``__eq__`` under which an SDK record equals the generated record of
    the same fields (the dataclass one requires the very same class)."""
    names = [f.name for f in dataclasses.fields(base)]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, base):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    return __eq__


def _text(uri: object) -> str:
    return uri if isinstance(uri, str) else str(uri)


class Target(types.Target):
    """One next hop: ``Target("sip:um1.contoso.com;transport=tls")``, with the
    router's default transport and timeout unless set. ``uri`` may be a
    :class:`~exum_policy.Uri`."""

    def __init__(self, uri: object, transport: Optional[Transport] = None, timeout_ms: Optional[int] = None) -> None:
        super().__init__(_text(uri), transport, timeout_ms)

    @classmethod
    def of(cls, target: object) -> "Target":
        """``target`` as an SDK target: itself if it is one, a copy of a
        generated ``types.Target``, or a new target for a URI."""
        if isinstance(target, cls):
            return target
        if isinstance(target, types.Target):
            return cls(target.uri, target.transport, target.timeout_ms)
        return cls(target)

    def with_timeout_ms(self, timeout_ms: int) -> "Target":
        """Sets how long to wait for this target before trying the next, in ms."""
        self.timeout_ms = timeout_ms
        return self

    def with_transport(self, transport: Transport) -> "Target":
        """Sets the transport (``Transport.TLS``)."""
        self.transport = transport
        return self

    __eq__ = _record_eq(types.Target)


class Forward(types.Forward):
    """Forward the request: try the targets in order until one answers,
    optionally with a new Request-URI, header fields added and removed."""

    def __init__(
        self,
        targets: Iterable[object] = (),
        request_uri: Optional[object] = None,
        add_headers: Iterable[Header] = (),
        remove_headers: Iterable[str] = (),
    ) -> None:
        super().__init__(
            [Target.of(t) for t in targets],
            None if request_uri is None else _text(request_uri),
            list(add_headers),
            list(remove_headers),
        )

    @classmethod
    def to(cls, targets: Iterable[object]) -> "Forward":
        """Forward to ``targets`` (:class:`Target` or URIs), in order, with no other change."""
        return cls(targets)

    @classmethod
    def of(cls, forward: types.Forward) -> "Forward":
        """``forward`` as an SDK forward: itself if it is one, else a copy of the
        generated record (as the ``standard`` import returns)."""
        if isinstance(forward, cls):
            return forward
        return cls._copy_of(forward)

    def copy(self) -> "Forward":
        """An independent copy (targets and headers too)."""
        return Forward._copy_of(self)

    @classmethod
    def _copy_of(cls, forward: types.Forward) -> "Forward":
        return cls(
            [Target(t.uri, t.transport, t.timeout_ms) for t in forward.targets],
            forward.request_uri,
            [Header(h.name, h.value) for h in forward.add_headers],
            forward.remove_headers,
        )

    def first(self, target: object) -> "Forward":
        """Tries ``target`` before the other targets."""
        self.targets.insert(0, Target.of(target))
        return self

    def then(self, target: object) -> "Forward":
        """Tries ``target`` after the other targets."""
        self.targets.append(Target.of(target))
        return self

    def with_request_uri(self, uri: object) -> "Forward":
        """Rewrites the Request-URI of the forwarded request (a string or a
        :class:`~exum_policy.Uri`)."""
        self.request_uri = _text(uri)
        return self

    def add_header(self, name: str, value: str) -> "Forward":
        """Adds a header field to the forwarded request (after the removals)."""
        self.add_headers.append(Header(name, value))
        return self

    def remove_header(self, name: str) -> "Forward":
        """Removes every field of header ``name`` from the forwarded request
        (case-insensitive; compact forms match their long names)."""
        self.remove_headers.append(name)
        return self

    __eq__ = _record_eq(types.Forward)


class Reject(types.Reject):
    """Answer with a final error response: ``code`` 400 to 699, ``reason``
    empty for the standard phrase."""

    def __init__(self, code: int, reason: str = "", headers: Iterable[Header] = ()) -> None:
        super().__init__(code, reason, list(headers))

    def with_header(self, header: Header) -> "Reject":
        """Adds a header field to the response (:func:`ms_diagnostics`)."""
        self.headers.append(header)
        return self

    __eq__ = _record_eq(types.Reject)


class Redirect(types.Redirect):
    """Answer with a redirection: ``code`` 300 to 399, the Contact URIs to offer
    (at least one; strings or :class:`~exum_policy.Uri`)."""

    def __init__(self, code: int, contacts: Iterable[object], headers: Iterable[Header] = ()) -> None:
        super().__init__(code, [_text(c) for c in contacts], list(headers))

    def with_header(self, header: Header) -> "Redirect":
        """Adds a header field to the response."""
        self.headers.append(header)
        return self

    __eq__ = _record_eq(types.Redirect)


class Decision:
    """Builds decisions: the contract's variant cases ``Decision_Forward``,
    ``Decision_Reject``, ``Decision_Redirect`` and ``Decision_Standard``, the
    values a policy returns. Not instantiated."""

    def __new__(cls, *args, **kwargs):
        raise TypeError("Decision only builds decisions: Decision.forward(...), Decision.reject(...), ...")

    @staticmethod
    def forward(forward: types.Forward) -> Decision_Forward:
        """Forward the request (a :class:`Forward`)."""
        if not isinstance(forward, types.Forward):
            raise TypeError(f"Decision.forward takes a Forward, not {type(forward).__name__}")
        return Decision_Forward(forward)

    @staticmethod
    def reject(code: int, reason: str = "") -> Decision_Reject:
        """Reject with ``code`` and ``reason`` (empty for the standard phrase)."""
        return Decision_Reject(Reject(code, reason))

    @staticmethod
    def reject_with_diagnostics(code: int, reason: str, diag_code: int, diag_reason: str) -> Decision_Reject:
        """Reject with ``code``, ``reason`` and an ``ms-diagnostics`` header."""
        return Decision_Reject(Reject(code, reason).with_header(ms_diagnostics(diag_code, diag_reason)))

    @staticmethod
    def redirect(code: int, contacts: Iterable[object]) -> Decision_Redirect:
        """Redirect with ``code`` (3xx) to ``contacts``."""
        return Decision_Redirect(Redirect(code, contacts))

    @staticmethod
    def standard() -> Decision_Standard:
        """Let the router's standard algorithm decide."""
        return Decision_Standard()

    @staticmethod
    def map_forward(decision: "types.Decision", change: Callable[[Forward], Optional[Forward]]) -> "types.Decision":
        """A forward changed by ``change`` (a target added, a header more); any
        other decision as it is. ``change`` gets a copy of the forward as an SDK
        :class:`Forward` (also when the decision came from the router, through
        the ``standard`` import) and returns it; ``None`` means the forward as
        ``change`` left it. ``decision`` itself is not changed."""
        if not isinstance(decision, Decision_Forward):
            return decision
        forward = Forward._copy_of(decision.value)
        changed = change(forward)
        return Decision_Forward(forward if changed is None else changed)


APP_NAME = "ExumRouting"
"""The ``appName`` of the ``ms-diagnostics`` Exchange UM routing writes, as Lync's."""


def ms_diagnostics(code: int, reason: str) -> Header:
    """An ``ms-diagnostics`` header, as Lync's Exchange UM routing writes them:
    ``ms-diagnostics: 15030;reason="...";appName="ExumRouting"``."""
    return Header("ms-diagnostics", f'{code};reason="{reason}";appName="{APP_NAME}"')


def resolve_hosted_policy(granted: Optional[str], site: Optional[str]) -> Optional[host.HostedVoicemailPolicy]:
    """The hosted voice-mail policy that applies to a user or contact: the
    granted one, else the site's, else the tenant's global policy."""
    if granted is not None:
        policy = host.lookup_hosted_voicemail_policy(host.PolicyScope_Named(granted))
        if policy is not None:
            return policy
    if site is not None:
        policy = host.lookup_hosted_voicemail_policy(host.PolicyScope_Site(site))
        if policy is not None:
            return policy
    return host.lookup_hosted_voicemail_policy(host.PolicyScope_Global())



"""An in-memory stand-in for the router, so a policy is unit-tested under
plain CPython with pytest: build a :class:`TestHost` with the tenant's users,
contacts, hosted voice-mail policies, dial plans, rerouting, down targets and
clock, :meth:`~TestHost.install` it, and call the policy. :func:`invite`
builds requests.

The host answers every import as the Rust SDK's test host does, and the
``standard`` import with a port of the router's standard algorithm run
against its directory.

``install()`` replaces the functions of the ``wit_world.imports`` modules
(``directory``, ``health``, ``clock``, ``log``, ``standard``) for the whole
process; the last host installed answers.
"""

import copy
from typing import List, Optional, Sequence, Tuple

from . import _standard
from ._bindings import clock, directory, health, log, standard, types
from ._text import eq_ignore_ascii_case
from .host import (
    ContactKind,
    Datetime,
    DialPlan,
    HostedRoute,
    HostedVoicemailPolicy,
    Level,
    PolicyScope_Global,
    PolicyScope_Named,
    PolicyScope_Site,
    Rerouting,
    TenantSettings,
    UmContact,
    UmServer,
    User,
    Voicemail,
)
from .number import normalize_number
from .request import Request
from .uri import parse_uri

__all__ = ["TestHost", "RequestBuilder", "invite", "user"]

_installed: Optional["TestHost"] = None


class TestHost:
    """The data the router would answer a policy's imports with, for one
    tenant. The builder methods change the host and return it.

    The attributes are the Rust test host's fields, but for three whose
    names are builder methods here: ``rerouting_settings``, ``site_reroutings``
    and ``down_targets``."""

    __test__ = False  # not a pytest test class

    def __init__(self, tenant_id: str) -> None:
        """An empty directory for tenant ``tenant_id`` owning the domain
        ``<id>.com``, at 2026-01-05 10:00 UTC (a Monday)."""
        #: The tenant's settings (what ``host.settings()`` answers).
        self.tenant = TenantSettings(id=tenant_id, domains=[f"{tenant_id}.com"], edge=None, default_next_hop=None)
        #: The users.
        self.users: List[User] = []
        #: The Exchange UM contacts.
        self.contacts: List[UmContact] = []
        #: Contacts of an on-premises dial plan: SIP address and dial plan key.
        self.contact_dial_plans: List[Tuple[str, str]] = []
        #: Hosted voice-mail policies with their scope.
        self.hosted_policies: List[Tuple[object, HostedVoicemailPolicy]] = []
        #: On-premises dial plans.
        self.dial_plans: List[DialPlan] = []
        #: The tenant's rerouting settings.
        self.rerouting_settings = Rerouting(enabled=False, auto_attendant=None, subscriber_access=None, pstn_gateway=None)
        #: Per-site rerouting settings.
        self.site_reroutings: List[Tuple[str, Rerouting]] = []
        #: Targets marked down.
        self.down_targets: List[str] = []
        #: What ``host.now()`` answers.
        self.now = Datetime(unix_seconds=1_767_607_200, utc_offset_minutes=0)
        #: What the policy logged: ``(level, message)``.
        self.logs: List[Tuple[Level, str]] = []

    # --- building ------------------------------------------------------------

    def edge(self, uri: str) -> "TestHost":
        """Sets the tenant's edge next hop."""
        self.tenant.edge = uri
        return self

    def default_next_hop(self, uri: str) -> "TestHost":
        """Sets where requests that are not voice-mail-bound go."""
        self.tenant.default_next_hop = uri
        return self

    def domains(self, domains: Sequence[str]) -> "TestHost":
        """Sets the tenant's SIP domains."""
        self.tenant.domains = list(domains)
        return self

    def hosted_user(self, sip: str, granted: Optional[str] = None, site: Optional[str] = None) -> "TestHost":
        """Adds a user whose mailbox is hosted, with an optional granted policy and site."""
        self.users.append(user(sip, voicemail=Voicemail.HOSTED, hosted_voicemail_policy=granted, site=site))
        return self

    def on_premises_user(self, sip: str, eum: str) -> "TestHost":
        """Adds a user with an on-premises mailbox on the dial plan named by
        ``eum``'s phone-context (``eum:alice@contoso.com;phone-context=DP1.contoso.com``)."""
        self.users.append(user(sip, voicemail=Voicemail.ON_PREMISES, eum_address=eum))
        return self

    def user(self, record: User) -> "TestHost":
        """Adds a user as given (see the module's :func:`user`)."""
        self.users.append(record)
        return self

    def contact(self, sip: str, number: str, kind: ContactKind, granted: Optional[str] = None) -> "TestHost":
        """Adds an Exchange UM contact."""
        self.contacts.append(
            UmContact(sip_address=sip, number=number, kind=kind, site=None, hosted_voicemail_policy=granted)
        )
        return self

    def on_premises_contact(self, sip: str, number: str, kind: ContactKind, plan: str) -> "TestHost":
        """Adds an Exchange UM contact of the on-premises dial plan ``plan`` (its
        name or phone-context)."""
        self.contact(sip, number, kind, None)
        self.contact_dial_plans.append((sip, plan))
        return self

    def hosted_policy(self, scope: object, destination: Optional[str], organizations: Sequence[str] = ()) -> "TestHost":
        """Adds a hosted voice-mail policy with a scope (``PolicyScope.GLOBAL``,
        ``PolicyScope.site("redmond")``, ``PolicyScope.named("pilot")``)."""
        if isinstance(scope, PolicyScope_Site):
            name = f"site:{scope.value}"
        elif isinstance(scope, PolicyScope_Named):
            name = scope.value
        elif isinstance(scope, PolicyScope_Global):
            name = "global"
        else:
            raise TypeError(f"not a policy scope: {scope!r}")
        policy = HostedVoicemailPolicy(name=name, destination=destination, organizations=list(organizations))
        self.hosted_policies.append((scope, policy))
        return self

    def dial_plan(self, name: str, phone_context: str, servers: Sequence[Tuple[str, int]]) -> "TestHost":
        """Adds a dial plan with its UM servers ``(uri, timeout_ms)`` in order."""
        self.dial_plans.append(
            DialPlan(name=name, phone_context=phone_context, servers=[UmServer(uri=u, timeout_ms=t) for u, t in servers])
        )
        return self

    def rerouting(self, gateway: str, auto_attendant: str, subscriber_access: str) -> "TestHost":
        """Enables tenant-wide voice-mail rerouting."""
        self.rerouting_settings = Rerouting(
            enabled=True, auto_attendant=auto_attendant, subscriber_access=subscriber_access, pstn_gateway=gateway
        )
        return self

    def site_rerouting(self, site: str, gateway: str, auto_attendant: str, subscriber_access: str) -> "TestHost":
        """Enables voice-mail rerouting for one site (its own gateway and numbers),
        used for that site's users and contacts instead of the tenant's."""
        self.site_reroutings = [(s, r) for s, r in self.site_reroutings if s != site]
        self.site_reroutings.append(
            (
                site,
                Rerouting(
                    enabled=True, auto_attendant=auto_attendant, subscriber_access=subscriber_access, pstn_gateway=gateway
                ),
            )
        )
        return self

    def contact_site(self, sip: str, site: str) -> "TestHost":
        """Puts the contact added before with SIP address ``sip`` in ``site``.
        Raises ``ValueError`` when there is no such contact."""
        for c in self.contacts:
            if c.sip_address == sip:
                c.site = site
                return self
        raise ValueError(f"no contact {sip} added before contact_site")

    def down(self, uri: str) -> "TestHost":
        """Marks a target down, as failed health probes would."""
        self.down_targets.append(uri)
        return self

    def at(self, unix_seconds: int, utc_offset_minutes: int = 0) -> "TestHost":
        """Sets the clock."""
        self.now = Datetime(unix_seconds=unix_seconds, utc_offset_minutes=utc_offset_minutes)
        return self

    def install(self) -> "TestHost":
        """Makes this the host the policy's imports answer from (the import
        functions of ``wit_world.imports`` are replaced). Returns the host."""
        global _installed
        _installed = self
        directory.lookup_user = lambda address: _copy(self.find_user(address))
        directory.lookup_contact = lambda address: _copy(self.find_contact(address))
        directory.lookup_hosted_voicemail_policy = lambda scope: _copy(self.find_hosted_policy(scope))
        directory.lookup_dial_plan = lambda key: _copy(self.find_dial_plan(key))
        directory.lookup_contact_dial_plan = lambda address: _copy(self.find_contact_dial_plan(address))
        directory.lookup_rerouting = lambda site: _copy(self.find_rerouting(site))
        directory.settings = lambda: _copy(self.tenant)
        directory.resolve_hosted_route = lambda granted, site: self.find_hosted_route(granted, site)
        directory.healthy_um_servers = lambda of: _copy(self.find_healthy_um_servers(of))
        health.target_healthy = lambda uri: not self.is_down(uri)
        clock.now = lambda: _copy(self.now)
        log.log = lambda level, message: self.logs.append((level, message))
        standard.route = lambda req: _standard.route(Request(req))
        standard.on_failure = lambda req, failure: _standard.on_failure(Request(req), failure)
        return self

    @staticmethod
    def installed() -> "TestHost":
        """The host installed last. Raises ``RuntimeError`` when there is none."""
        if _installed is None:
            raise RuntimeError("no TestHost installed: call TestHost(...).install() first")
        return _installed

    @staticmethod
    def logged() -> List[Tuple[Level, str]]:
        """What the policy logged so far on the installed host."""
        return list(TestHost.installed().logs)

    # --- the answers (what the router's directory answers) --------------------

    def find_user(self, address: str) -> Optional[User]:
        """A user by SIP address (``sips:`` is ``sip:``, parameters ignored) or by number."""
        kind, key = _directory_key(address)
        if kind == "sip":
            return next((u for u in self.users if _key_of(u.sip_address) == key), None)
        if kind == "number":
            return next((u for u in self.users if u.number == key), None)
        return None

    def find_contact(self, address: str) -> Optional[UmContact]:
        """An Exchange UM contact by SIP address or by number."""
        kind, key = _directory_key(address)
        if kind == "sip":
            return next((c for c in self.contacts if _key_of(c.sip_address) == key), None)
        if kind == "number":
            return next((c for c in self.contacts if normalize_number(c.number) == key), None)
        return None

    def find_contact_dial_plan(self, address: str) -> Optional[DialPlan]:
        """The dial plan of an on-premises contact."""
        contact = self.find_contact(address)
        if contact is None:
            return None
        plan = next((p for sip, p in self.contact_dial_plans if sip == contact.sip_address), None)
        return None if plan is None else self.find_dial_plan(plan)

    def find_hosted_policy(self, scope: object) -> Optional[HostedVoicemailPolicy]:
        """The hosted voice-mail policy of exactly this scope."""
        return next((p for s, p in self.hosted_policies if s == scope), None)

    def find_dial_plan(self, key: str) -> Optional[DialPlan]:
        """A dial plan by phone-context or name (case-insensitive)."""
        return next(
            (d for d in self.dial_plans if eq_ignore_ascii_case(d.phone_context, key) or eq_ignore_ascii_case(d.name, key)),
            None,
        )

    def find_hosted_route(self, granted: Optional[str], site: Optional[str]) -> Optional[HostedRoute]:
        """The hosted route: the granted policy, else the site's, else the global one."""
        policy = None
        if granted is not None:
            policy = self.find_hosted_policy(PolicyScope_Named(granted))
        if policy is None and site is not None:
            policy = self.find_hosted_policy(PolicyScope_Site(site))
        if policy is None:
            policy = self.find_hosted_policy(PolicyScope_Global())
        if policy is None:
            return None
        next_hop = self.tenant.edge
        return HostedRoute(
            destination=policy.destination,
            organization=policy.organizations[0] if policy.organizations else None,
            next_hop=next_hop,
            next_hop_healthy=next_hop is not None and not self.is_down(next_hop),
        )

    def find_healthy_um_servers(self, of: object) -> Optional[List[UmServer]]:
        """The servers of a dial plan (by key, or of a contact) not marked down."""
        if isinstance(of, directory.DialPlanOf_Key):
            plan = self.find_dial_plan(of.value)
        elif isinstance(of, directory.DialPlanOf_Contact):
            plan = self.find_contact_dial_plan(of.value)
        else:
            raise TypeError(f"not a DialPlanOf: {of!r}")
        if plan is None:
            return None
        return [s for s in plan.servers if not self.is_down(s.uri)]

    def is_down(self, uri: str) -> bool:
        """Whether ``uri`` was marked down (exactly as written)."""
        return uri in self.down_targets

    def find_rerouting(self, site: Optional[str]) -> Rerouting:
        """The site's rerouting settings, else the tenant's."""
        if site is not None:
            for name, r in self.site_reroutings:
                if name == site:
                    return r
        return self.rerouting_settings


def _copy(value):
    """A deep copy, so a policy that changes an answer does not change the host."""
    return copy.deepcopy(value)


def _directory_key(address: str) -> Tuple[str, Optional[str]]:
    """``("number", e164)``, ``("sip", address)`` or ``("invalid", None)``."""
    number = normalize_number(address)
    if number is not None:
        return "number", number
    uri = parse_uri(address)
    if uri is None:
        return "invalid", None
    if uri.scheme == "tel":
        n = uri.number()
        return ("number", n) if n is not None else ("invalid", None)
    return "sip", _sip_key(uri.address())


def _sip_key(address: str) -> str:
    """``sips:alice@...`` is the same address as ``sip:alice@...``, as in the
    router's directory."""
    return "sip:" + address[len("sips:") :] if address.startswith("sips:") else address


def _key_of(sip: str) -> str:
    uri = parse_uri(sip)
    return _sip_key(uri.address()) if uri is not None else ""


def user(sip: str, **fields) -> User:
    """A user with voice-mail setting ``none`` and nothing else set, but the
    ``fields`` given: ``user("sip:a@b.com", voicemail=Voicemail.HOSTED, site="paris")``."""
    record = User(
        sip_address=sip,
        line_uri=None,
        number=None,
        site=None,
        voicemail=Voicemail.NONE,
        hosted_voicemail_policy=None,
        eum_address=None,
    )
    for name, value in fields.items():
        if not hasattr(record, name):
            raise TypeError(f"User has no field {name!r}")
        setattr(record, name, value)
    return record


def invite(request_uri: str) -> "RequestBuilder":
    """Starts building an INVITE to ``request_uri``."""
    return RequestBuilder("INVITE", request_uri)


class RequestBuilder:
    """Builds a :class:`~exum_policy.Request` for a test: the head written out
    as the router would receive it, with the spans the router would send.
    The setters change the builder and return it."""

    def __init__(self, method: str, request_uri: str) -> None:
        """A request with ``method`` to ``request_uri``, from
        ``sip:caller@example.com`` (tag ``1928301774``), to the Request-URI
        without its parameters, Call-ID ``a84b4c76e66710@pc33.example.com``,
        CSeq 1, over UDP from 192.0.2.10:5060."""
        self._method = method
        self._request_uri = request_uri
        self._from = "sip:caller@example.com"
        self._to = request_uri.split(";", 1)[0]
        self._headers: List[Tuple[str, str]] = []
        self._source = types.Source(
            address=types.IpAddress_Ipv4((192, 0, 2, 10)), port=5060, transport=types.Transport.UDP, tls_peer_name=None
        )

    def from_(self, uri: str) -> "RequestBuilder":
        """Sets the From URI (written inside ``<>``)."""
        self._from = uri
        return self

    def to(self, uri: str) -> "RequestBuilder":
        """Sets the To URI."""
        self._to = uri
        return self

    def header(self, name: str, value: str) -> "RequestBuilder":
        """Adds a header field (a value may hold CRLF and whitespace to fold it)."""
        self._headers.append((name, value))
        return self

    def source(self, source: types.Source) -> "RequestBuilder":
        """Sets where the request comes from."""
        self._source = source
        return self

    def build(self) -> Request:
        """The request."""
        head = bytearray()

        def span(text: str) -> types.Span:
            data = text.encode("utf-8")
            s = types.Span(start=len(head), len=len(data))
            head.extend(data)
            return s

        def push(text: str) -> None:
            head.extend(text.encode("utf-8"))

        method = span(self._method)
        push(" ")
        request_uri = span(self._request_uri)
        push(" SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9\r\nMax-Forwards: 70\r\nFrom: <")
        from_uri = span(self._from)
        push(">;tag=")
        from_tag = span("1928301774")
        push("\r\nTo: <")
        to_uri = span(self._to)
        push(">\r\nCall-ID: ")
        call_id = span("a84b4c76e66710@pc33.example.com")
        push("\r\nCSeq: 1 ")
        push(self._method)
        push("\r\n")
        for name, value in self._headers:
            push(f"{name}: {value}\r\n")
        return Request(
            types.Request(
                head=head.decode("utf-8"),
                method=method,
                request_uri=request_uri,
                from_uri=from_uri,
                from_tag=from_tag,
                to_uri=to_uri,
                to_tag=None,
                call_id=call_id,
                cseq=1,
                source=self._source,
            )
        )

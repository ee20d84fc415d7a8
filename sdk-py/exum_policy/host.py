"""The router's imports: the calling tenant's directory, target health, the
clock and the log, and the directory's types.

In a component these call the router, and every answer is the calling
tenant's own data. Under CPython, in a policy's tests, they answer from the
:class:`~exum_policy.testing.TestHost` installed.
"""

from typing import List, Optional

from ._bindings import clock, directory, health
from ._bindings import log as _log

__all__ = [
    "lookup_user",
    "lookup_contact",
    "lookup_hosted_voicemail_policy",
    "lookup_dial_plan",
    "lookup_contact_dial_plan",
    "lookup_rerouting",
    "settings",
    "resolve_hosted_route",
    "healthy_um_servers",
    "target_healthy",
    "now",
    "log",
    "User",
    "Voicemail",
    "UmContact",
    "ContactKind",
    "PolicyScope",
    "PolicyScope_Global",
    "PolicyScope_Site",
    "PolicyScope_Named",
    "HostedVoicemailPolicy",
    "UmServer",
    "DialPlan",
    "Rerouting",
    "TenantSettings",
    "HostedRoute",
    "DialPlanOf",
    "DialPlanOf_Key",
    "DialPlanOf_Contact",
    "Datetime",
    "Level",
]

# The directory's types, as generated from the contract.
User = directory.User
Voicemail = directory.Voicemail
UmContact = directory.UmContact
ContactKind = directory.ContactKind
PolicyScope_Global = directory.PolicyScope_Global
PolicyScope_Site = directory.PolicyScope_Site
PolicyScope_Named = directory.PolicyScope_Named
HostedVoicemailPolicy = directory.HostedVoicemailPolicy
UmServer = directory.UmServer
DialPlan = directory.DialPlan
Rerouting = directory.Rerouting
TenantSettings = directory.TenantSettings
HostedRoute = directory.HostedRoute
DialPlanOf_Key = directory.DialPlanOf_Key
DialPlanOf_Contact = directory.DialPlanOf_Contact
Datetime = clock.Datetime
Level = _log.Level


class PolicyScope:
    """Which hosted voice-mail policy to look up: ``PolicyScope.GLOBAL``,
    ``PolicyScope.site("redmond")``, ``PolicyScope.named("pilot")``. The values
    are the contract's ``PolicyScope_Global``, ``PolicyScope_Site`` and
    ``PolicyScope_Named``."""

    #: The tenant's global policy.
    GLOBAL = PolicyScope_Global()

    @staticmethod
    def site(name: str) -> "directory.PolicyScope":
        """The policy of the site ``name``."""
        return PolicyScope_Site(name)

    @staticmethod
    def named(name: str) -> "directory.PolicyScope":
        """The per-user policy ``name``, as granted to users and contacts."""
        return PolicyScope_Named(name)


class DialPlanOf:
    """Which dial plan's UM servers :func:`healthy_um_servers` lists:
    ``DialPlanOf.key("DP1.contoso.com")`` (a phone-context or name) or
    ``DialPlanOf.contact("sip:sa@contoso.com")`` (an Exchange UM contact's SIP
    address or number)."""

    @staticmethod
    def key(key: str) -> "directory.DialPlanOf":
        """The dial plan with this phone-context or name."""
        return DialPlanOf_Key(key)

    @staticmethod
    def contact(address: str) -> "directory.DialPlanOf":
        """The dial plan of the Exchange UM contact with this SIP address or number."""
        return DialPlanOf_Contact(address)


def lookup_user(address: str) -> Optional[User]:
    """Finds a user by SIP address (parameters ignored) or by number (E.164 or ``tel:``)."""
    return directory.lookup_user(address)


def lookup_contact(address: str) -> Optional[UmContact]:
    """Finds an Exchange UM contact by SIP address or by number."""
    return directory.lookup_contact(address)


def lookup_hosted_voicemail_policy(scope: "directory.PolicyScope") -> Optional[HostedVoicemailPolicy]:
    """Looks up one hosted voice-mail policy; :func:`exum_policy.resolve_hosted_policy`
    does the resolution a user's calls need (granted, then site, then global)."""
    return directory.lookup_hosted_voicemail_policy(scope)


def lookup_dial_plan(key: str) -> Optional[DialPlan]:
    """Finds an on-premises dial plan by phone-context or by name."""
    return directory.lookup_dial_plan(key)


def lookup_contact_dial_plan(address: str) -> Optional[DialPlan]:
    """The on-premises dial plan of an Exchange UM contact (by SIP address or
    number); ``None`` for a hosted contact."""
    return directory.lookup_contact_dial_plan(address)


def lookup_rerouting(site: Optional[str]) -> Rerouting:
    """The voice-mail rerouting settings of a site (falling back to the
    tenant's), or of the tenant when ``site`` is ``None``."""
    return directory.lookup_rerouting(site)


def settings() -> TenantSettings:
    """The tenant's own routing settings."""
    return directory.settings()


def resolve_hosted_route(granted: Optional[str], site: Optional[str]) -> Optional[HostedRoute]:
    """Hosted voice mail for a user or contact granted ``granted`` in ``site``, in
    one call: the destination and first organization of the hosted voice-mail
    policy that applies (granted, else the site's, else the global one), and
    the tenant's next hop with its health. ``None`` when no policy applies."""
    return directory.resolve_hosted_route(granted, site)


def healthy_um_servers(of: "directory.DialPlanOf") -> Optional[List[UmServer]]:
    """The UM servers of a dial plan (:class:`DialPlanOf`) that health probes
    have not marked down, in order; empty when all are down, ``None`` when
    there is no such dial plan (or the contact is hosted)."""
    return directory.healthy_um_servers(of)


def target_healthy(uri: str) -> bool:
    """Whether a target is believed reachable (not marked down by health probes)."""
    return health.target_healthy(uri)


def now() -> Datetime:
    """The current time, with the tenant's UTC offset."""
    return clock.now()


def log(level: Level, message: str) -> None:
    """Writes a message into the router's log (at most 1 KiB is kept)."""
    _log.log(level, message)

"""Example policy (Python): after business hours, calls to the main number go
to the auto attendant (a hosted Exchange UM contact); during business hours,
and for every other call, the standard algorithm decides. The same policy as
the Rust and TypeScript ones beside it, decision for decision.

``policy_config`` is ``key=value`` pairs separated by ``;``:
``main=+14255550100; attendant=+14255550150; open=08:00-18:00; days=mon-fri``.
Times are the tenant's local time (``utc_offset_minutes`` in the router config).
"""

import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from exum_policy import Decision, Policy, export_policy, host, normalize_number, parse_uri, routing

WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DIGITS = re.compile(r"\+?[0-9]+")


class Refused(Exception):
    """A configuration refused, with the reason."""


@dataclass
class Hours:
    """The parsed configuration."""

    main: str
    attendant: str
    open: int
    close: int
    days: Tuple[int, int]

    @staticmethod
    def parse(config: str) -> Union["Hours", str]:
        """The hours from ``policy_config``, or why they are refused."""
        try:
            return Hours._parse(config)
        except Refused as e:
            return str(e)

    @staticmethod
    def _parse(config: str) -> "Hours":
        main = attendant = None
        opening = None
        days = (0, 4)
        for pair in (p.strip() for p in config.split(";")):
            if not pair:
                continue
            key, sep, value = pair.partition("=")
            if not sep:
                raise Refused(f"`{pair}`: expected key=value")
            key, value = key.strip(), value.strip()
            if key in ("main", "attendant"):
                number = normalize_number(value)
                if number is None:
                    raise Refused(f"{key}: `{value}` is not E.164")
                if key == "main":
                    main = number
                else:
                    attendant = number
            elif key == "open":
                a, sep, b = value.partition("-")
                if not sep:
                    raise Refused("open: expected HH:MM-HH:MM")
                opening = (minute_of_day(a), minute_of_day(b))
            elif key == "days":
                a, sep, b = value.partition("-")
                if not sep:
                    raise Refused("days: expected mon-fri")
                days = (weekday(a), weekday(b))
            else:
                raise Refused(f"unknown key `{key}`")
        if main is None:
            raise Refused("main is required")
        if attendant is None:
            raise Refused("attendant is required")
        opens, closes = opening if opening is not None else (8 * 60, 18 * 60)
        return Hours(main, attendant, opens, closes, days)

    def is_open(self, unix_seconds: int, offset_minutes: int) -> bool:
        """Whether ``unix_seconds`` at ``offset_minutes`` from UTC is within business hours."""
        local = unix_seconds + offset_minutes * 60
        day = (local // 86400 + 3) % 7  # 1970-01-01 was a Thursday
        minute = (local % 86400) // 60
        return self.days[0] <= day <= self.days[1] and self.open <= minute < self.close


def minute_of_day(text: str) -> int:
    h, sep, m = text.strip().partition(":")
    if not sep:
        raise Refused(f"`{text}`: expected HH:MM")
    if not _DIGITS.fullmatch(h):
        raise Refused(f"`{text}`: bad hour")
    if not _DIGITS.fullmatch(m):
        raise Refused(f"`{text}`: bad minute")
    if int(h) > 24 or int(m) > 59:
        raise Refused(f"`{text}` is not a time of day")
    return int(h) * 60 + int(m)


def weekday(text: str) -> int:
    name = text.strip().lower()
    if name not in WEEKDAYS:
        raise Refused(f"`{text}` is not a weekday (mon..sun)")
    return WEEKDAYS.index(name)


class AfterHours(Policy):
    """The after-hours policy."""

    def __init__(self) -> None:
        self.hours: Optional[Hours] = None

    def init(self, config: str) -> Optional[str]:
        hours = Hours.parse(config)
        if isinstance(hours, str):
            return hours
        self.hours = hours
        return None

    def route(self, req):
        hours = self.hours
        if hours is None or req.request_uri.number() != hours.main:
            return Decision.standard()
        now = host.now()
        if hours.is_open(now.unix_seconds, now.utc_offset_minutes):
            return Decision.standard()
        attendant = host.lookup_contact(hours.attendant)
        if attendant is None:
            host.log(host.Level.WARN, "the configured attendant is not an Exchange UM contact")
            return Decision.standard()
        aa = parse_uri(attendant.sip_address)
        if aa is None:
            return Decision.standard()
        return routing.hosted_forward(aa, attendant.hosted_voicemail_policy, attendant.site)


Handler = export_policy(AfterHours)

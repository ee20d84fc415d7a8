"""The request a policy routes: the head as the router received it, with
typed accessors that parse what they are asked for, once, on first use."""

from functools import cached_property
from typing import List, Optional, Tuple

from . import host
from ._bindings import types
from ._text import ascii_lower, eq_ignore_ascii_case, trim
from .uri import Uri, parse_uri

__all__ = ["Request", "long_header_name"]


class Request:
    """A request to route: the contract's ``types.Request`` record (``wire``)
    with its fields parsed from the head on first use, and kept.

    The record's spans are UTF-8 byte offsets into ``head``; a span that does
    not fall on characters of the head reads as an empty string.
    """

    def __init__(self, wire: types.Request) -> None:
        #: The contract's record, as the router sent it.
        self.wire = wire
        # The head's UTF-8 bytes when it is not pure ASCII (spans are byte
        # offsets); None when character and byte offsets agree.
        self._bytes: Optional[bytes] = None if wire.head.isascii() else wire.head.encode("utf-8")

    @classmethod
    def from_wire(cls, wire: types.Request) -> "Request":
        """Wraps the contract's request record."""
        return cls(wire)

    def _span(self, span: types.Span) -> str:
        start, end = span.start, span.start + span.len
        if self._bytes is None:
            head = self.wire.head
            return head[start:end] if end <= len(head) else ""
        if end > len(self._bytes):
            return ""
        try:
            return self._bytes[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return ""

    @cached_property
    def method(self) -> str:
        """The method (``INVITE``)."""
        return self._span(self.wire.method)

    @cached_property
    def request_uri_text(self) -> str:
        """The Request-URI as written."""
        return self._span(self.wire.request_uri)

    @cached_property
    def request_uri(self) -> Uri:
        """The Request-URI, parsed. (The router hands over only requests whose
        Request-URI it could parse; one this SDK cannot parse reads as the
        empty :class:`Uri`.) Copy it (``.copy()``) before changing it."""
        return parse_uri(self.request_uri_text) or Uri()

    @cached_property
    def from_(self) -> Uri:
        """The From header's URI (empty if unparsable). Named ``from_`` because
        ``from`` is a Python keyword."""
        return parse_uri(self._span(self.wire.from_uri)) or Uri()

    @cached_property
    def from_tag(self) -> Optional[str]:
        """The From header's tag."""
        tag = self.wire.from_tag
        return None if tag is None else self._span(tag)

    @cached_property
    def to(self) -> Uri:
        """The To header's URI (empty if unparsable)."""
        return parse_uri(self._span(self.wire.to_uri)) or Uri()

    @cached_property
    def to_tag(self) -> Optional[str]:
        """The To header's tag (in-dialog requests only)."""
        tag = self.wire.to_tag
        return None if tag is None else self._span(tag)

    @cached_property
    def call_id(self) -> str:
        """The Call-ID."""
        return self._span(self.wire.call_id)

    @property
    def cseq(self) -> int:
        """The CSeq number."""
        return self.wire.cseq

    @property
    def source(self) -> types.Source:
        """Where the request came from (address, port, transport, TLS peer name)."""
        return self.wire.source

    @property
    def head(self) -> str:
        """The head exactly as received: request line and header fields."""
        return self.wire.head

    @cached_property
    def headers(self) -> List[Tuple[str, str]]:
        """Every header field in order, as ``(name, value)``: compact names
        expanded to long ones, folded lines joined with one space."""
        return _parse_headers(self.wire.head)

    def header(self, name: str) -> Optional[str]:
        """The first value of header ``name`` (case-insensitive; compact forms match)."""
        name = long_header_name(name)
        for n, v in self.headers:
            if eq_ignore_ascii_case(n, name):
                return v
        return None

    def headers_named(self, name: str) -> List[str]:
        """Every value of header ``name``, in order."""
        name = long_header_name(name)
        return [v for n, v in self.headers if eq_ignore_ascii_case(n, name)]

    def no_diversion(self) -> bool:
        """Whether the call must not be diverted ([MS-SIPRE] 2.2.10):
        ``Ms-Sensitivity: normal-no-diversion`` or ``private-no-diversion``.
        Such a call is never rerouted to voice mail."""
        value = self.header("Ms-Sensitivity")
        return value is not None and value.strip().lower() in ("normal-no-diversion", "private-no-diversion")

    def is_own_mailbox_call(self) -> bool:
        """Whether the caller (From) and the called address (Request-URI) are the
        same user: a user calling their own mailbox."""
        return self.from_address == self.request_uri_address

    @cached_property
    def from_address(self) -> str:
        """The caller's address: ``from_.address()``, computed once."""
        return self.from_.address()

    @cached_property
    def request_uri_address(self) -> str:
        """The called address: ``request_uri.address()``, computed once."""
        return self.request_uri.address()

    def tenant(self) -> str:
        """The tenant that owns the request (``host.settings().id``)."""
        return host.settings().id

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.request_uri_text}>"


def _parse_headers(head: str) -> List[Tuple[str, str]]:
    """Splits a head into header fields: the request line skipped, folded lines
    joined, compact names expanded."""
    out: List[Tuple[str, str]] = []
    for line in head.split("\n")[1:]:
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue
        if line[0] in " \t":
            if out:
                name, value = out[-1]
                out[-1] = (name, f"{value} {trim(line)}")
            continue
        if ":" in line:
            name, value = line.split(":", 1)
            out.append((long_header_name(trim(name)), trim(value)))
    return out


_COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
}


def long_header_name(name: str) -> str:
    """The long name of a compact header form (``v`` gives ``Via``), or the name itself."""
    if len(name) != 1:
        return name
    return _COMPACT.get(ascii_lower(name), name)

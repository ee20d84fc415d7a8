"""SIP, SIPS and tel URIs as policies see them: :class:`Uri`, owned and
editable, rendered back to text by ``str()``; :func:`parse_uri`, which also
takes the URI out of a name-addr (``"Bob" <sip:bob@contoso.com>;tag=1``).

The parser is a port of the router's (``exum-address``), with the same
refusals: no scheme, a scheme other than ``sip``, ``sips`` or ``tel``, no host,
a bad port, an unbracketed IPv6 address, whitespace, control characters or
``<>"`` in the URI. Escapes (``%41``) are kept as written; :meth:`Uri.address`
decodes those of unreserved characters.
"""

import ipaddress
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ._text import ascii_lower, eq_ignore_ascii_case, is_ascii_digits, trim
from .number import normalize_number
from .number import number_key as _number_key

__all__ = ["Param", "Uri", "UriError", "parse_uri"]


class UriError(ValueError):
    """Why a URI did not parse.

    ``kind`` is one of ``no-scheme``, ``unsupported-scheme`` (``detail``: the
    scheme, lower-cased), ``no-host``, ``bad-port`` (``detail``: the text where
    the port belongs), ``unterminated`` (``detail``: ``<`` or ``[``),
    ``bad-char`` (``detail``: the character), ``unbracketed-ipv6`` and
    ``bad-ipv6``. ``str()`` gives the router's sentence for it.
    """

    _MESSAGES = {
        "no-scheme": "no URI scheme",
        "unsupported-scheme": "unsupported URI scheme `{}`",
        "no-host": "no host",
        "bad-port": "invalid port `{}`",
        "unterminated": "unterminated `{}`",
        "bad-char": "invalid character {!r} in URI",
        "unbracketed-ipv6": "IPv6 address without brackets",
        "bad-ipv6": "invalid IPv6 reference",
    }

    def __init__(self, kind: str, detail: Optional[str] = None) -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(self._MESSAGES[kind].format(detail))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UriError):
            return NotImplemented
        return (self.kind, self.detail) == (other.kind, other.detail)

    def __hash__(self) -> int:
        return hash((self.kind, self.detail))

    def __repr__(self) -> str:
        return f"UriError({self.kind!r}, {self.detail!r})"


@dataclass
class Param:
    """One URI parameter: ``;name=value``, or ``;name`` (``value`` ``None``)."""

    #: The name, lower-cased when parsed (``opaque``, ``transport``).
    name: str
    #: The value as written, or ``None`` for a bare parameter such as ``;gruu``.
    value: Optional[str] = None


@dataclass
class Uri:
    """A SIP, SIPS or tel URI, owned and editable. Headers are not kept: this is
    the URI a request is routed to, rendered back by ``str()``.

    ``Uri()`` is the empty URI (``address()`` gives ``":"``), what an
    unparsable URI of a request reads as.
    """

    #: The scheme, lower-cased: ``sip``, ``sips`` or ``tel`` (empty if unparsable).
    scheme: str = ""
    #: The user part (``alice``, ``+14255550100``) with its password if it has
    #: one (``alice:secret``), or the number of a tel URI.
    user: Optional[str] = None
    #: The host, lower-cased; an IPv6 reference keeps its brackets. Empty for tel.
    host: str = ""
    #: The port, if any.
    port: Optional[int] = None
    #: The parameters in order.
    params: List[Param] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "Uri":
        """Parses an addr-spec (``sip:alice@contoso.com;transport=tcp``); headers
        (``?subject=x``) are dropped. Raises :class:`UriError`."""
        scheme, user, password, host, port, params, _headers = _parse(text)
        if password is not None:
            user = f"{user}:{password}"
        return cls(
            scheme=scheme,
            user=user,
            host=ascii_lower(host),
            port=port,
            params=[Param(ascii_lower(n), v) for n, v in _params(params)],
        )

    def copy(self) -> "Uri":
        """An independent copy (its parameters too)."""
        return Uri(self.scheme, self.user, self.host, self.port, [Param(p.name, p.value) for p in self.params])

    def param(self, name: str) -> Optional[Param]:
        """The first parameter named ``name`` (case-insensitive), or ``None`` when
        absent. A bare ``;name`` gives a :class:`Param` whose value is ``None``."""
        for p in self.params:
            if eq_ignore_ascii_case(p.name, name):
                return p
        return None

    def param_value(self, name: str) -> Optional[str]:
        """The value of parameter ``name``; ``None`` when absent or bare."""
        p = self.param(name)
        return None if p is None else p.value

    def has_param(self, name: str) -> bool:
        """Whether parameter ``name`` is present, with or without a value."""
        return self.param(name) is not None

    def is_voicemail(self) -> bool:
        """Whether the URI asks for voice mail: it carries ``opaque=app:voicemail``
        (the value case-insensitive)."""
        value = self.param_value("opaque")
        return value is not None and eq_ignore_ascii_case(value, "app:voicemail")

    def address(self) -> str:
        """The address of record without port or parameters, lower-cased, escapes
        of unreserved characters decoded: ``sip:alice@contoso.com`` for
        ``sip:Alice@contoso.com:5060;gruu``; ``tel:number`` for tel. The
        directory's key for users and contacts."""
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_unescape(self.user))
            if self.host:
                out.append("@")
        out.append(self.host)
        return ascii_lower("".join(out))

    def number(self) -> Optional[str]:
        """The E.164 number in the user part (``sip:+14255550100@contoso.com;user=phone``,
        ``tel:+14255550100``), if it holds one."""
        return normalize_number(self.user) if self.user is not None else None

    def number_key(self) -> Optional[str]:
        """The number's directory key, its extension kept
        (``sip:+14255550100;ext=101@contoso.com`` gives ``+14255550100;ext=101``);
        a tel URI's ``ext`` parameter counts."""
        if self.user is None:
            return None
        ext = self.param_value("ext")
        if ext is not None and eq_ignore_ascii_case(self.scheme, "tel"):
            return _number_key(f"{self.user};ext={ext}")
        return _number_key(self.user)

    def set_param(self, name: str, value: Optional[str] = None) -> "Uri":
        """Sets parameter ``name`` to ``value`` (``None`` for a bare ``;name``),
        replacing the first one of that name (case-insensitive) or appending it.
        Returns the URI."""
        p = self.param(name)
        if p is not None:
            p.value = value
        else:
            self.params.append(Param(name, value))
        return self

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.host:
                out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        for p in self.params:
            out.append(f";{p.name}")
            if p.value is not None:
                out.append(f"={p.value}")
        return "".join(out)


def parse_uri(text: str) -> Optional[Uri]:
    """Parses a ``sip:``, ``sips:`` or ``tel:`` URI, with or without angle
    brackets (``"Bob" <sip:bob@contoso.com>;tag=1`` yields the URI inside the
    brackets). Returns ``None`` for anything else."""
    try:
        return Uri.parse(_addr_spec(text))
    except UriError:
        return None


# --- the parser, a port of exum-address -------------------------------------

_SCHEMES = ("sip", "sips", "tel")
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SCHEME_CHARS = _ALPHA | frozenset("0123456789+-.")
_HEX = "0123456789abcdefABCDEF"
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_UNRESERVED_MARKS = "-_.!~*'()"


def _addr_spec(text: str) -> str:
    """The text between ``<`` and ``>`` when it has them (outside quotes), else
    the whole text, trimmed. Raises :class:`UriError` for an unclosed ``<``."""
    text = trim(text)
    lt = _find_unquoted(text, "<")
    if lt is None:
        return text
    close = text.find(">", lt)
    if close < 0:
        raise UriError("unterminated", "<")
    return text[lt + 1 : close]


def _find_unquoted(text: str, needle: str) -> Optional[int]:
    """The first ``needle`` outside a quoted string (``"..."``, with ``\\`` escapes)."""
    quoted = False
    escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == needle and not quoted:
            return i
    return None


def _is_scheme_name(text: str) -> bool:
    """RFC 3986 §3.1: ``ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )``."""
    return bool(text) and text[0] in _ALPHA and all(c in _SCHEME_CHARS for c in text)


def _parse(text: str) -> Tuple[str, Optional[str], Optional[str], str, Optional[int], str, Optional[str]]:
    """``(scheme, user, password, host, port, params, headers)`` of an
    addr-spec, as ``UriRef::parse``: slices of the text in their case, the
    scheme lower-cased."""
    text = trim(text)
    for c in text:
        if c <= " " or c == "\x7f" or c in '<>"':
            raise UriError("bad-char", c)
    if ":" not in text:
        raise UriError("no-scheme")
    scheme, rest = text.split(":", 1)
    if not _is_scheme_name(scheme):
        raise UriError("no-scheme")
    scheme = ascii_lower(scheme)
    if scheme not in _SCHEMES:
        raise UriError("unsupported-scheme", scheme)

    def split_headers(part: str) -> Tuple[str, Optional[str]]:
        if "?" in part:
            before, headers = part.split("?", 1)
            return before, headers
        return part, None

    if scheme == "tel":
        # RFC 3966: no userinfo or host; parameters follow the number.
        rest, headers = split_headers(rest)
        number, _, params = rest.partition(";")
        if not number:
            raise UriError("no-host")
        return scheme, number, None, "", None, params, headers
    # The userinfo ends at the `@`: a user part may hold `;` and `?`. With several
    # `@`, the last one before the first `?` if there is one, else the last one.
    question = rest.find("?")
    before_question = rest if question < 0 else rest[:question]
    at = before_question.rfind("@")
    if at < 0:
        at = rest.rfind("@")
    if at >= 0:
        userinfo: Optional[str] = rest[:at]
        hostpart = rest[at + 1 :]
    else:
        userinfo, hostpart = None, rest
    hostpart, headers = split_headers(hostpart)
    hostport, _, params = hostpart.partition(";")
    user: Optional[str] = None
    password: Optional[str] = None
    if userinfo is not None:
        if ":" in userinfo:
            user, password = userinfo.split(":", 1)
        else:
            user = userinfo
    host, port = _split_host_port(hostport)
    if not host:
        raise UriError("no-host")
    return scheme, user, password, host, port, params, headers


def _split_host_port(hostport: str) -> Tuple[str, Optional[int]]:
    if hostport.startswith("["):
        inner = hostport[1:]
        end = inner.find("]")
        if end < 0:
            raise UriError("unterminated", "[")
        if _ipv6_reference(inner[:end]) is None:
            raise UriError("bad-ipv6")
        after = inner[end + 1 :]
        if after.startswith(":"):
            port: Optional[str] = after[1:]
        elif not after:
            port = None
        else:
            raise UriError("bad-port", after)
        host = hostport[: end + 2]
    elif ":" in hostport:
        host, port = hostport.split(":", 1)
        if ":" in port:
            raise UriError("unbracketed-ipv6")
    else:
        host, port = hostport, None
    if port is None:
        return host, None
    if is_ascii_digits(port) and int(port) <= 0xFFFF:
        return host, int(port)
    raise UriError("bad-port", port)


def _ipv6_reference(inner: str) -> Optional[ipaddress.IPv6Address]:
    """The address inside an IPv6 reference, tolerating three colons before an
    embedded IPv4 address (RFC 5118 §4.10), as the router does."""
    ip = _ipv6(inner)
    if ip is not None:
        return ip
    if ":::" not in inner:
        return None
    head, tail = inner.split(":::", 1)
    if ":" in tail or _ipv4(tail) is None:
        return None
    return _ipv6(f"{head}::{tail}")


def _ipv6(text: str) -> Optional[ipaddress.IPv6Address]:
    # Only hex digits, `:` and `.`: Python also takes a `%scope`, Rust does not.
    if not text or any(c not in _IPV6_CHARS for c in text):
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def _ipv4(text: str) -> Optional[ipaddress.IPv4Address]:
    if not text or any(c not in "0123456789." for c in text):
        return None
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _params(text: str) -> List[Tuple[str, Optional[str]]]:
    """The parameters in ``text`` (``transport=tls;lr``) as ``(name, value)``
    pairs, trimmed, in order, empty ones skipped; names and values keep their case."""
    out: List[Tuple[str, Optional[str]]] = []
    for piece in text.split(";"):
        piece = trim(piece)
        if not piece:
            continue
        if "=" in piece:
            name, value = piece.split("=", 1)
            out.append((trim(name), trim(value)))
        else:
            out.append((piece, None))
    return out


def _unescape(user: str) -> str:
    """``user`` with the escapes of unreserved characters decoded (``b%6Fb`` is
    ``bob``, RFC 3261 §19.1.4); reserved ones stay escaped."""
    if "%" not in user:
        return user
    out = []
    i = 0
    n = len(user)
    while i < n:
        if user[i] == "%" and i + 2 < n and user[i + 1] in _HEX and user[i + 2] in _HEX:
            c = chr(int(user[i + 1 : i + 3], 16))
            if (c.isascii() and c.isalnum()) or c in _UNRESERVED_MARKS:
                out.append(c)
                i += 3
                continue
        out.append(user[i])
        i += 1
    return "".join(out)

"""E.164 telephone numbers (``+14255550100``): the form the directory keys
users and contacts by, whatever form a number was written or dialled in.
The same rules as the router's (``exum-address``)."""

from typing import Optional

from ._text import eq_ignore_ascii_case, trim

__all__ = ["normalize_number", "extension", "number_key"]

#: The longest E.164 number: ``+`` and 15 digits (ITU-T E.164 §6).
_MAX_LEN = 16
_DIGITS = "0123456789"


def normalize_number(number: str) -> Optional[str]:
    """Normalises a telephone number to E.164 (``+14255550100``).

    Accepts a ``tel:`` prefix (any case), drops parameters such as ``;ext=100``,
    drops the visual separators ``-.()`` and spaces, and turns a leading
    international ``00`` into ``+``. Returns ``None`` unless what is left is
    ``+`` and 1 to 15 digits, the first not ``0``: a local or private number has
    no E.164 form.
    """
    number = trim(number)
    if eq_ignore_ascii_case(number[:4], "tel:"):
        number = number[4:]
    number = number.split(";", 1)[0]
    if number.startswith("+"):
        digits = number[1:]
    elif number.startswith("00"):
        digits = number[2:]
    else:
        return None
    out = ["+"]
    for c in digits:
        if c in _DIGITS:
            if c == "0" and len(out) == 1:
                return None
            if len(out) >= _MAX_LEN:
                return None
            out.append(c)
        elif c in " -.()":
            continue
        else:
            return None
    return "".join(out) if len(out) > 1 else None


def extension(number: str) -> Optional[str]:
    """The extension a telephone number carries (``tel:+14255550100;ext=101``,
    ``+14255550100;ext=1-01``): its digits, visual separators dropped; ``None``
    without one, or when it is not digits."""
    if ";" not in number:
        return None
    params = number.split(";", 1)[1]
    value = None
    for p in params.split(";"):
        if "=" not in p:
            continue
        name, v = p.split("=", 1)
        if eq_ignore_ascii_case(trim(name), "ext"):
            value = trim(v)
            break
    if value is None:
        return None
    out = []
    for c in value:
        if c in _DIGITS:
            out.append(c)
        elif c in "-.()":
            continue
        else:
            return None
    return "".join(out) or None


def number_key(number: str) -> Optional[str]:
    """The directory key of a telephone number: its E.164 form, followed by
    ``;ext=<digits>`` when it carries an extension (``tel:+1 425 555 0100;ext=101``
    gives ``+14255550100;ext=101``), so users who share a main number are told
    apart by their extensions."""
    e164 = normalize_number(number)
    if e164 is None:
        return None
    ext = extension(number)
    return f"{e164};ext={ext}" if ext is not None else e164

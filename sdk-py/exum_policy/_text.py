"""String helpers with Rust's semantics, so the SDK parses exactly as the
router does: ASCII-only case folding, and Rust's set of whitespace for
trimming (Python's ``str.strip()`` also strips U+001C..U+001F)."""

#: The characters Rust's ``char::is_whitespace`` accepts (``str::trim``).
RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def trim(text: str) -> str:
    """``text`` without leading and trailing whitespace, as Rust's ``str::trim``."""
    return text.strip(RUST_WHITESPACE)


def trim_start(text: str) -> str:
    """``text`` without leading whitespace, as Rust's ``str::trim_start``."""
    return text.lstrip(RUST_WHITESPACE)


def ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lower-cased and every other character kept."""
    if text.isascii():
        return text.lower()
    return text.translate(_ASCII_LOWER)


def eq_ignore_ascii_case(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` are equal but for the case of ASCII letters."""
    return len(a) == len(b) and ascii_lower(a) == ascii_lower(b)


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits."""
    return text.isascii() and text.isdigit()

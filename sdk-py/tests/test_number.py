"""Numbers and reason phrases: the Rust tests of exum-address (number.rs, status.rs)."""

from exum_policy import extension, normalize_number, number_key, reason_phrase


def test_normalizes_numbers():
    assert normalize_number("+1 (425) 555-0100") == "+14255550100"
    assert normalize_number("tel:+14255550100;ext=100") == "+14255550100"
    assert normalize_number("TEL:+1.425.555.0100") == "+14255550100"
    assert normalize_number("  +14255550100  ") == "+14255550100"
    assert normalize_number("0044 20 7946 0000") == "+442079460000"
    assert normalize_number("0044 20") == "+4420"
    assert normalize_number("+1") == "+1"
    assert normalize_number("+123456789012345") == "+123456789012345"


def test_number_keys_keep_the_extension():
    assert number_key("tel:+1 425 555 0100;ext=101") == "+14255550100;ext=101"
    assert number_key("+14255550100;EXT=1-01;phone-context=x") == "+14255550100;ext=101"
    assert number_key("tel:+14255550100") == "+14255550100"
    assert number_key("+14255550100;ext=") == "+14255550100", "an empty extension is none"
    assert extension("+14255550100;ext=1a") is None
    assert extension("+14255550100; Ext = 1(0)1 ") == "101"
    assert extension("+14255550100;ext=1 01") is None, "spaces are no separators in an extension"
    assert number_key("5550100") is None


def test_refuses_what_is_not_e164():
    for text in [
        "5550100",
        "tel:5550100;phone-context=+1425",
        "+1425555010x",
        "+",
        "+ - ()",
        "00",
        "+1234567890123456",
        "+0 425 555 0100",
        "000 425 555 0100",
        "sip:+14255550100@contoso.com",
        "tél:+1",
        "",
        "+１２３",
    ]:
        assert normalize_number(text) is None, text


def test_output_is_e164_and_normal():
    for text in ["+1 (425) 555-0100", "0044 20 7946 0000", "tel:+33-1-55-55-01-50;ext=1"]:
        n = normalize_number(text)
        assert n.startswith("+") and n[1:].isdigit() and not n[1:].startswith("0")
        assert normalize_number(n) == n


def test_the_phrases_of_rfc_3261_and_a_class_phrase_for_the_rest():
    assert reason_phrase(100) == "Trying"
    assert reason_phrase(200) == "OK"
    assert reason_phrase(505) == "Version Not Supported"
    assert reason_phrase(483) == "Too Many Hops"
    assert reason_phrase(486) == "Busy Here"
    assert reason_phrase(499) == "Request Failure"
    assert reason_phrase(399) == "Redirection"
    assert reason_phrase(699) == "Global Failure"

"""URIs as the router parses them: the Rust tests of exum-address (uri.rs,
name_addr.rs) and the SDK's uri.rs, on the owned Uri."""

import pytest

from exum_policy import Param, Uri, UriError, parse_uri
from exum_policy.uri import _params


def error(text: str):
    """The (kind, detail) of the UriError parsing ``text`` raises."""
    with pytest.raises(UriError) as e:
        Uri.parse(text)
    return (e.value.kind, e.value.detail)


def test_an_escaped_unreserved_character_is_the_character_in_an_address():
    escaped = Uri.parse("sip:b%6Fb@Contoso.com;opaque=app:voicemail")
    assert escaped.address() == "sip:bob@contoso.com"
    assert escaped.user == "b%6Fb", "the URI itself keeps its escapes"
    reserved = Uri.parse("sip:a%3Bb%40c@contoso.com")
    assert reserved.address() == "sip:a%3bb%40c@contoso.com", "reserved characters stay escaped"
    assert Uri.parse("sip:%61lice@x.com").address() == "sip:alice@x.com"
    assert Uri.parse("sip:b%6Fb:p%61ss@Contoso.com").address() == "sip:bob:pass@contoso.com"
    assert Uri.parse("sips:%41@x.com;gruu").address() == "sips:a@x.com"
    assert Uri.parse("tel:+1-425-555-0100;ext=1").address() == "tel:+1-425-555-0100"
    assert Uri.parse("sip:a%4@x.com").address() == "sip:a%4@x.com", "an incomplete escape is kept"
    assert Uri.parse("sip:a%2@x.com").address() == "sip:a%2@x.com"


def test_parses_sip_uri_with_params():
    u = Uri.parse("sip:alice@Contoso.com;gruu;opaque=app:voicemail")
    assert (u.scheme, u.user, u.host, u.port) == ("sip", "alice", "contoso.com", None)
    assert u.param("OPAQUE") == Param("opaque", "app:voicemail")
    assert u.param_value("opaque") == "app:voicemail"
    assert u.param("gruu") == Param("gruu", None)
    assert u.has_param("gruu") and u.param_value("gruu") is None
    assert u.param("lr") is None and not u.has_param("lr")
    assert u.address() == "sip:alice@contoso.com"
    assert str(u) == "sip:alice@contoso.com;gruu;opaque=app:voicemail"


def test_parses_gruu_voicemail_uri():
    for parse in (Uri.parse, parse_uri):
        uri = parse("sip:Alice@Contoso.com;gruu;opaque=app:voicemail")
        assert uri.user == "Alice"
        assert uri.host == "contoso.com"
        assert uri.has_param("gruu")
        assert uri.is_voicemail()
        assert uri.address() == "sip:alice@contoso.com"
        assert str(uri) == "sip:Alice@contoso.com;gruu;opaque=app:voicemail"


def test_voicemail_is_the_opaque_value_in_any_case():
    assert Uri.parse("sip:a@b;OPAQUE=APP:VoiceMail").is_voicemail()
    assert not Uri.parse("sip:a@b;opaque").is_voicemail()
    assert not Uri.parse("sip:a@b;opaque=app:voicemail2").is_voicemail()


def test_schemes_are_case_insensitive_and_rendered_lower_case():
    u = Uri.parse("SIPS:Bob@B.com")
    assert u.scheme == "sips"
    assert u.address() == "sips:bob@b.com"
    assert Uri.parse("TEL:+1").scheme == "tel"


def test_parses_ipv6_and_ports():
    u = Uri.parse("sip:[2001:db8::1]:5061;transport=tls")
    assert (u.host, u.port) == ("[2001:db8::1]", 5061)
    u = Uri.parse("sip:bob@[::ffff:192.0.2.1]")
    assert (u.host, u.port) == ("[::ffff:192.0.2.1]", None)
    assert Uri.parse("sip:bob@um1.contoso.com:0").port == 0
    assert Uri.parse("sip:bob@um1.contoso.com:05060").port == 5060
    assert error("sip:um1.contoso.com:99999") == ("bad-port", "99999")
    assert error("sip:um1.contoso.com:") == ("bad-port", "")
    assert error("sip:um1.contoso.com:+5060") == ("bad-port", "+5060")
    assert error("sip:um1.contoso.com:50x") == ("bad-port", "50x")
    assert error("sip:um1.contoso.com:５０６０") == ("bad-port", "５０６０"), "ASCII digits only"
    assert error("sip:[2001:db8::1") == ("unterminated", "[")
    assert error("sip:[2001:db8::1]5061") == ("bad-port", "5061")
    assert error("sip:[2001:db8::1]:x") == ("bad-port", "x")


def test_refuses_ipv6_without_brackets_and_bad_references():
    assert error("sip:2001:db8::1") == ("unbracketed-ipv6", None)
    assert error("sip:alice@2001:db8::1:5060") == ("unbracketed-ipv6", None)
    assert error("sip:::1") == ("unbracketed-ipv6", None)
    assert error("sip:[contoso.com]") == ("bad-ipv6", None)
    assert error("sip:[]") == ("bad-ipv6", None)
    assert error("sip:[192.0.2.1]:5060") == ("bad-ipv6", None)
    assert error("sip:[fe80::1%eth0]") == ("bad-ipv6", None), "no zone (Python's ipaddress takes one)"


def test_refuses_other_schemes_and_junk():
    assert error("http://x") == ("unsupported-scheme", "http")
    assert error("MailTo:a@b") == ("unsupported-scheme", "mailto")
    assert error("alice") == ("no-scheme", None)
    assert error(":alice") == ("no-scheme", None)
    assert error("alice@contoso.com:5060") == ("no-scheme", None)
    assert error("1sip:a@b") == ("no-scheme", None)
    assert error("sïp:a@b") == ("no-scheme", None), "ASCII letters only"
    assert error("sip:") == ("no-host", None)
    assert error("sip:alice@") == ("no-host", None)
    assert error("sip:alice@;lr") == ("no-host", None)
    assert error("tel:") == ("no-host", None)
    assert error("tel:;phone-context=x") == ("no-host", None)
    assert error("sip:a@b\r\nVia: x") == ("bad-char", "\r")
    assert error("sip:a b@c") == ("bad-char", " ")
    assert error("sip:a@b>") == ("bad-char", ">")
    assert error('sip:a"@b') == ("bad-char", '"')
    assert error("sip:a@b\x7f") == ("bad-char", "\x7f")
    assert error("\x1csip:a@b") == ("bad-char", "\x1c"), "trimmed as Rust trims: U+001C is not whitespace"
    assert Uri.parse("  sip:a@b  ").host == "b"
    assert Uri.parse("\u3000sip:a@b\u00a0").host == "b", "Unicode whitespace is trimmed"


def test_parses_tel_uris():
    t = Uri.parse("tel:+1-425-555-0100;ext=100;phone-context=x")
    assert (t.scheme, t.user, t.host, t.port) == ("tel", "+1-425-555-0100", "", None)
    assert t.param_value("ext") == "100"
    assert t.number() == "+14255550100"
    assert t.address() == "tel:+1-425-555-0100"
    owned = Uri.parse("tel:+14255550100;ext=100")
    assert owned.number() == "+14255550100"
    assert str(owned) == "tel:+14255550100;ext=100"


def test_user_parameters_and_passwords():
    u = Uri.parse("sip:+14255550100;phone-context=dp1@contoso.com;user=phone")
    assert u.user == "+14255550100;phone-context=dp1"
    assert (u.host, u.params) == ("contoso.com", [Param("user", "phone")])
    assert u.number() == "+14255550100"
    u = Uri.parse("sip:alice:Secret@contoso.com:5060")
    assert (u.user, u.port) == ("alice:Secret", 5060)
    assert u.address() == "sip:alice:secret@contoso.com"
    assert str(u) == "sip:alice:Secret@contoso.com:5060"
    assert Uri.parse("sip:alice:@b").user == "alice:"
    u = Uri.parse("sip:contoso.com")
    assert (u.user, u.host) == (None, "contoso.com")


def test_headers_are_dropped():
    u = Uri.parse("sip:bob@b.com;method=REFER?subject=hi&priority=urgent")
    assert (u.host, u.params) == ("b.com", [Param("method", "REFER")])
    assert str(u) == "sip:bob@b.com;method=REFER"


def test_user_parts_may_hold_question_marks_and_semicolons():
    text = "sip:bob.(voice~mail)!*'&=+$,;?/x:pa$s&w=rd+,@contoso.com;transport=udp"
    u = Uri.parse(text)
    assert u.user == "bob.(voice~mail)!*'&=+$,;?/x:pa$s&w=rd+,"
    assert (u.host, u.params) == ("contoso.com", [Param("transport", "udp")])
    u = Uri.parse("sip:a?b@host;lr?h=1")
    assert (u.user, u.host, u.params) == ("a?b", "host", [Param("lr")])
    u = Uri.parse("sip:bob@contoso.com?Replaces=abc@host")
    assert (u.user, u.host) == ("bob", "contoso.com")
    u = Uri.parse("sip:alice@fabrikam.com@contoso.com")
    assert (u.user, u.host) == ("alice@fabrikam.com", "contoso.com")


def test_request_uris_of_the_torture_corpus():
    for ok in [
        "sip:b%6Fb@contoso.com;opaque=app:voicemail",
        "sip:bob;mailbox=bob%40vm.contoso.com@contoso.com",
        "sip:bob@contoso.com;unknownparam",
        "sip:[2001:db8::10]",
        "sip:[2001:db8::10:5070]",
        "sip:[2001:db8::10]:5070",
        "sip:bob@[2001:db8::192.0.2.1]",
        "sip:bob@[2001:db8:::192.0.2.1]",
    ]:
        assert Uri.parse(ok) is not None, ok
    three = Uri.parse("sip:bob@[2001:db8:::192.0.2.1]:5070")
    assert (three.host, three.port) == ("[2001:db8:::192.0.2.1]", 5070)
    u = Uri.parse("sip:[2001:db8::10:5070]")
    assert (u.host, u.port) == ("[2001:db8::10:5070]", None)
    for bad, expected in [
        ("<sip:bob@contoso.com;opaque=app:voicemail>", ("bad-char", "<")),
        ("sip:2001:db8::10", ("unbracketed-ipv6", None)),
        ("sip:bob@[2001:db8::::192.0.2.1]", ("bad-ipv6", None)),
        ("sip:bob@[2001:db8:::10]", ("bad-ipv6", None)),
        ("sip:bob@[192.0.2.1]", ("bad-ipv6", None)),
        ("im:bob@contoso.com", ("unsupported-scheme", "im")),
        ("exum-unrouted+scheme.v1:opaque/content;for=bob?x", ("unsupported-scheme", "exum-unrouted+scheme.v1")),
    ]:
        assert error(bad) == expected, bad


def test_params_are_trimmed_and_empty_ones_skipped():
    owned = Uri.parse("sip:a@b;;Transport=TLS;")
    assert owned.params == [Param("transport", "TLS")]
    u = Uri.parse("sip:a@b;lr;;Transport=TLS;;=x;maddr=")
    assert u.params == [Param("lr"), Param("transport", "TLS"), Param("", "x"), Param("maddr", "")]
    # The splitting itself trims (as exum-address's Params); a URI holds no spaces.
    assert _params(" lr ;; Transport = TLS ;;=x;maddr=") == [("lr", None), ("Transport", "TLS"), ("", "x"), ("maddr", "")]
    assert _params("") == [] and _params(" ; ") == []


def test_edits_params():
    u = Uri.parse("sip:alice@contoso.com:5060;transport=tcp;opaque=app:voicemail")
    u.port = None
    u.set_param("TRANSPORT", "tls")
    u.set_param("ms-destination", "exap.um.outlook.com")
    u.set_param("lr")
    assert str(u) == "sip:alice@contoso.com;transport=tls;opaque=app:voicemail;ms-destination=exap.um.outlook.com;lr"
    assert Uri().address() == ":"
    assert not Uri().is_voicemail()
    assert str(Uri()) == ":"


def test_copies_are_independent():
    u = Uri.parse("sip:a@b;lr")
    c = u.copy()
    c.set_param("lr", "x")
    c.params.append(Param("y"))
    assert str(u) == "sip:a@b;lr"
    assert c == Uri.parse("sip:a@b;lr=x;y")


def test_errors_render_as_sentences():
    assert str(UriError("unsupported-scheme", "http")) == "unsupported URI scheme `http`"
    assert str(UriError("bad-port", "99999")) == "invalid port `99999`"
    assert str(UriError("bad-char", "\r")) == "invalid character '\\r' in URI"
    assert str(UriError("unterminated", "<")) == "unterminated `<`"
    assert isinstance(UriError("no-host"), ValueError)


def test_number_keys_of_uris():
    assert Uri.parse("sip:+14255550100;ext=101@contoso.com;user=phone").number_key() == "+14255550100;ext=101"
    assert Uri.parse("tel:+14255550100;ext=101").number_key() == "+14255550100;ext=101"
    assert Uri.parse("TEL:+14255550100;EXT=101").number_key() == "+14255550100;ext=101"
    assert Uri.parse("sip:+14255550100@contoso.com;ext=101").number_key() == "+14255550100", "a SIP URI's ext is no extension"
    assert Uri.parse("sip:alice@contoso.com").number_key() is None
    assert Uri.parse("sip:contoso.com").number() is None


# sdk/src/uri.rs: parse_uri takes the URI out of a name-addr.


def test_parses_name_addr_ipv6_and_tel():
    uri = parse_uri('"Bob" <sip:bob@[2001:db8::1]:5070;transport=tcp>;tag=9')
    assert uri.host == "[2001:db8::1]"
    assert uri.port == 5070
    assert uri.param_value("transport") == "tcp"
    assert parse_uri("tel:+14255550100;ext=100").number() == "+14255550100"
    assert parse_uri("http://example.com") is None
    assert parse_uri("sip:alice@host:99999") is None


def test_display_names_may_hold_angle_brackets():
    assert parse_uri('"Bob <B>" <sip:bob@contoso.com>;tag=1').address() == "sip:bob@contoso.com"
    assert parse_uri(r'"Say \"hi\" <x>" <sip:a@b>').address() == "sip:a@b"
    assert parse_uri("<sip:bob@contoso.com") is None
    assert parse_uri(' "A <b>" <sip:a@b;lr>;tag=1 ') == Uri.parse("sip:a@b;lr")
    assert parse_uri(" sip:a@b;transport=tls ") == Uri.parse("sip:a@b;transport=tls"), "a bare URI keeps its params"


def test_refuses_what_the_router_refuses():
    assert parse_uri("sip:2001:db8::1") is None
    assert parse_uri("sip:[2001:db8::1]junk") is None
    assert parse_uri("sip:a b@c") is None
    assert parse_uri("") is None
    assert str(parse_uri("sip:a@b;lr?subject=x")) == "sip:a@b;lr", "headers are accepted and dropped"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@contoso.com",
        "sips:Bob:pw@[2001:db8::1]:5061;transport=tls;lr",
        "sip:+14255550100;ext=1@b.com;user=phone",
        "tel:+1-425-555-0100;ext=9",
        "sip:10.0.0.1:5060;maddr=x;ttl=",
    ],
)
def test_rendered_uris_parse_back_to_themselves(text):
    u = Uri.parse(text)
    assert Uri.parse(str(u)) == u
    assert str(u).lower() == text.lower()

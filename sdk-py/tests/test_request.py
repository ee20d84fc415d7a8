"""The request: sdk/src/request.rs's tests, and the spans as UTF-8 byte offsets."""

from exum_policy import Request, Span, Uri, types
from exum_policy.testing import RequestBuilder, TestHost, invite


def test_header_lookup_matches_compact_forms_and_folds():
    req = invite("sip:a@b.c").header("k", "100rel").header("Subject", "a\r\n  folded").build()
    assert req.header("Supported") == "100rel"
    assert req.header("k") == "100rel"
    assert req.header("subject") == "a folded"
    assert req.header("Diversion") is None
    assert req.header("From").startswith("<sip:caller@example.com>")
    assert req.header("f") == req.header("From")


def test_headers_keep_their_order_and_every_value():
    req = (
        invite("sip:a@b.c")
        .header("Diversion", "<sip:x@b.c>;reason=user-busy")
        .header("v", "SIP/2.0/TCP 10.0.0.1")
        .header("diversion", "<sip:y@b.c>")
        .build()
    )
    assert req.headers_named("Diversion") == ["<sip:x@b.c>;reason=user-busy", "<sip:y@b.c>"]
    assert req.headers_named("Via") == ["SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9", "SIP/2.0/TCP 10.0.0.1"]
    assert [n for n, _ in req.headers] == [
        "Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Diversion", "Via", "diversion"
    ]


def test_addresses_are_those_of_the_parsed_uris_and_own_calls_compare_them():
    req = invite("sip:B%6Fb@Contoso.com;opaque=app:voicemail").from_('"Bob" <sip:bob@CONTOSO.com:5060>').build()
    assert req.from_address == req.from_.address()
    assert req.from_address == "sip:bob@contoso.com"
    assert req.request_uri_address == req.request_uri.address()
    assert req.is_own_mailbox_call()
    other = invite("sip:bob@contoso.com").from_("sips:bob@contoso.com").build()
    assert not other.is_own_mailbox_call(), "the scheme counts"
    unparsable = invite("sip:bob@contoso.com").from_("not a uri").build()
    assert unparsable.from_address == ":"
    assert unparsable.from_ == Uri()
    assert not unparsable.is_own_mailbox_call()


def test_parses_fields_from_spans():
    req = invite("sip:Alice@contoso.com;gruu;opaque=app:voicemail").from_("sip:bob@contoso.com").build()
    assert req.method == "INVITE"
    assert req.request_uri_text == "sip:Alice@contoso.com;gruu;opaque=app:voicemail"
    assert req.request_uri.address() == "sip:alice@contoso.com"
    assert req.request_uri.is_voicemail()
    assert req.from_.address() == "sip:bob@contoso.com"
    assert req.from_tag == "1928301774"
    assert req.to == Uri.parse("sip:Alice@contoso.com")
    assert req.to_tag is None
    assert req.call_id == "a84b4c76e66710@pc33.example.com"
    assert req.cseq == 1
    assert req.source.port == 5060
    assert req.source.transport == types.Transport.UDP
    assert req.head.startswith("INVITE sip:Alice@contoso.com;gruu;opaque=app:voicemail SIP/2.0\r\nVia: ")


def test_the_head_is_the_rust_builder_s():
    req = RequestBuilder("OPTIONS", "sip:um1.contoso.com;transport=tcp").header("X", "1").build()
    assert req.head == (
        "OPTIONS sip:um1.contoso.com;transport=tcp SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:caller@example.com>;tag=1928301774\r\n"
        "To: <sip:um1.contoso.com>\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "X: 1\r\n"
    )
    assert req.wire.method == Span(0, 7)
    assert req.wire.request_uri == Span(8, len("sip:um1.contoso.com;transport=tcp"))


def test_spans_are_utf8_byte_offsets():
    req = invite("sip:zoë@contoso.com;opaque=app:voicemail").from_('"Zoë" <sip:zoë@fabrikam.com>').build()
    assert not req.head.isascii()
    assert req.request_uri_text == "sip:zoë@contoso.com;opaque=app:voicemail"
    assert req.wire.request_uri.len == len(req.request_uri_text.encode())
    assert req.from_.user == "zoë"
    assert req.from_tag == "1928301774"
    assert req.call_id == "a84b4c76e66710@pc33.example.com"
    assert req.request_uri_address == "sip:zoë@contoso.com"


def test_a_span_outside_the_head_or_across_a_character_reads_as_empty():
    wire = invite("sip:zoë@contoso.com").build().wire
    inside_e = wire.head.encode().index("ë".encode()) + 1
    wire.call_id = Span(inside_e, 3)
    wire.to_tag = Span(len(wire.head.encode()) - 2, 10)
    req = Request(wire)
    assert req.call_id == ""
    assert req.to_tag == ""
    ascii_wire = invite("sip:a@b").build().wire
    ascii_wire.call_id = Span(len(ascii_wire.head) - 1, 2)
    assert Request(ascii_wire).call_id == ""


def test_an_unparsable_request_uri_reads_as_empty():
    req = invite("nonsense").build()
    assert req.request_uri == Uri()
    assert req.request_uri_address == ":"
    assert not req.request_uri.is_voicemail()


def test_fields_are_parsed_once():
    req = invite("sip:a@b.c").build()
    assert req.request_uri is req.request_uri
    assert req.headers is req.headers


def test_the_tenant_is_the_host_s():
    TestHost("contoso").install()
    assert invite("sip:a@contoso.com").build().tenant() == "contoso"

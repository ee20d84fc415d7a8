use proptest::prelude::*;

use super::*;

const INVITE: &str = "INVITE sip:alice@contoso.com;opaque=app:voicemail SIP/2.0\r\n\
v: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP 192.0.2.9;branch=z9hG4bKold\r\n\
Max-Forwards: 70\r\n\
f: \"Carol, C.\" <sip:carol@fabrikam.com>;tag=1928301774\r\n\
t: <sip:alice@contoso.com>\r\n\
i: a84b4c76e66710@pc33.fabrikam.com\r\n\
CSeq: 314159 INVITE\r\n\
Route: <sip:router.contoso.com;lr>, <sip:next.contoso.com;lr>\r\n\
Subject: a folded\r\n  subject\r\n\
Diversion: <sip:x@contoso.com>;reason=unconditional\r\n\
l: 4\r\n\r\nv=0\nEXTRA";

fn parse(s: &str) -> Result<Message, WireError> {
    Message::parse(s.as_bytes().to_vec(), false, DEFAULT_MAX_MESSAGE)
}

#[test]
fn indexes_compact_folded_and_comma_joined_headers() {
    let m = parse(INVITE).expect("valid");
    assert_eq!(m.method(), Some("INVITE"));
    assert_eq!(m.request_uri(), Some("sip:alice@contoso.com;opaque=app:voicemail"));
    let vias: Vec<&str> = m.values(Name::Via).collect();
    assert_eq!(vias.len(), 2);
    let top = m.top_via().expect("via");
    assert_eq!((top.transport, top.host, top.port), ("UDP", "[2001:db8::10]", Some(5060)));
    assert_eq!(top.branch, Some("z9hG4bK776asdhds"));
    assert!(top.rport);
    assert_eq!(m.first(Name::CallId), Some("a84b4c76e66710@pc33.fabrikam.com"));
    assert_eq!(m.cseq(), Some((314159, "INVITE")));
    assert_eq!(m.max_forwards(), Ok(Some(70)));
    assert_eq!(m.from_tag(), Some("1928301774"));
    assert_eq!(m.to_tag(), None);
    let subject = m.fields.iter().find(|f| m.text(&f.name_range) == "Subject").expect("subject");
    assert_eq!(m.value_unfolded(subject), "a folded subject");
    assert_eq!(m.values(Name::Route).collect::<Vec<_>>(), ["<sip:router.contoso.com;lr>", "<sip:next.contoso.com;lr>"]);
    assert_eq!(m.header("diversion"), Some("<sip:x@contoso.com>;reason=unconditional"));
    assert_eq!(&m.bytes()[m.body.clone()], b"v=0\n", "bytes past Content-Length are dropped");
}

#[test]
fn edits_splice_without_touching_the_rest() {
    let m = parse(INVITE).expect("valid");
    let out = m
        .edit()
        .request_uri("sip:alice@contoso.com;ms-destination=x")
        .prepend_via("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnew".into())
        .max_forwards(69)
        .pop_route()
        .remove("Diversion")
        .add("Diversion", "<sip:alice@contoso.com>;reason=no-answer")
        .finish();
    let e = Message::parse(out, true, DEFAULT_MAX_MESSAGE).expect("re-parses, even as a stream");
    assert_eq!(e.request_uri(), Some("sip:alice@contoso.com;ms-destination=x"));
    assert_eq!(e.top_via().and_then(|v| v.branch), Some("z9hG4bKnew"));
    assert_eq!(e.values(Name::Via).count(), 3);
    assert_eq!(e.max_forwards(), Ok(Some(69)));
    assert_eq!(e.values(Name::Route).collect::<Vec<_>>(), ["<sip:next.contoso.com;lr>"]);
    assert_eq!(e.header("Diversion"), Some("<sip:alice@contoso.com>;reason=no-answer"));
    assert_eq!(e.fields.iter().filter(|f| e.text(&f.name_range) == "Diversion").count(), 1);
    assert_eq!(e.first(Name::From), m.first(Name::From));
    assert_eq!(&e.bytes()[e.body.clone()], b"v=0\n");
}

#[test]
fn received_rport_and_strict_route_edits() {
    let m = parse(INVITE).expect("valid");
    let source: std::net::SocketAddr = "[2001:db8::99]:40000".parse().expect("addr");
    let e =
        Message::parse(m.edit().received(source).pop_last_route().finish(), true, DEFAULT_MAX_MESSAGE).expect("valid");
    let top = e.top_via().expect("via");
    assert_eq!(top.received, Some("2001:db8::99"));
    assert!(top.value.ends_with(";received=2001:db8::99;rport=40000"), "{}", top.value);
    assert_eq!(top.branch, Some("z9hG4bK776asdhds"));
    assert_eq!(e.values(Name::Via).count(), 2, "the second Via is kept");
    assert_eq!(e.values(Name::Route).collect::<Vec<_>>(), ["<sip:router.contoso.com;lr>"]);
}

#[test]
fn frames_streams_by_content_length() {
    let two = format!("{INVITE}\r\n\r\n");
    let one = INVITE.replace("EXTRA", "");
    let both = format!("{one}{one}");
    let first = match frame_stream(both.as_bytes(), DEFAULT_MAX_MESSAGE) {
        Ok(Frame::Message(n)) => n,
        other => panic!("{other:?}"),
    };
    assert_eq!(first, one.len(), "two messages in one segment");
    assert_eq!(frame_stream(&both.as_bytes()[..10], DEFAULT_MAX_MESSAGE), Ok(Frame::Incomplete));
    assert_eq!(
        frame_stream(&one.as_bytes()[..one.len() - 1], DEFAULT_MAX_MESSAGE),
        Ok(Frame::Incomplete),
        "body not all there"
    );
    assert_eq!(frame_stream(b"\r\n\r\nINVITE", DEFAULT_MAX_MESSAGE), Ok(Frame::KeepAlive(4)));
    let no_length = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n";
    assert_eq!(
        frame_stream(no_length.as_bytes(), DEFAULT_MAX_MESSAGE),
        Err(WireError::ContentLength("missing on a stream transport"))
    );
    assert!(matches!(frame_stream(two.as_bytes(), 100), Err(WireError::TooLarge(100))));
    let huge = "OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 99999999\r\n\r\n";
    assert_eq!(frame_stream(huge.as_bytes(), DEFAULT_MAX_MESSAGE), Err(WireError::TooLarge(DEFAULT_MAX_MESSAGE)));
}

#[test]
fn refuses_malformed_messages_precisely() {
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nTo: x\r\n"), Err(WireError::Unterminated));
    assert_eq!(parse("INVITE sip:a@b SIP/3.0\r\n\r\n"), Err(WireError::Version));
    assert_eq!(parse("INVITE  SIP/2.0\r\n\r\n"), Err(WireError::StartLine));
    assert_eq!(parse("SIP/2.0 99 Nope\r\n\r\n"), Err(WireError::StartLine));
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n"), Err(WireError::HeaderLine(2)));
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nX: a\0b\r\n\r\n"), Err(WireError::Nul));
    // A NUL is SIP only as the octet a quoted-pair escapes in a quoted string.
    let escaped = parse("INVITE sip:a@b SIP/2.0\r\nFrom: \"N:\\\0 \\\\\" <sip:a@b>\r\n\r\n").expect("quoted-pair");
    assert_eq!(escaped.first(Name::From), Some("\"N:\\\0 \\\\\" <sip:a@b>"));
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nFrom: \"N:\0\" <sip:a@b>\r\n\r\n"), Err(WireError::Nul));
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nFrom: \"\\\\\0\" <sip:a@b>\r\n\r\n"), Err(WireError::Nul));
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nFrom: N:\\\0 <sip:a@b>\r\n\r\n"), Err(WireError::Nul));
    // Only in a name-addr's quoted string, its quoting carried over folded lines.
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nCall-ID: a\"\\\0\"b\r\n\r\n"), Err(WireError::Nul));
    assert_eq!(parse("INVITE sip:a@b SIP/2.0\r\nFrom: \"abc\r\n x\" \\\0 <sip:a@b>\r\n\r\n"), Err(WireError::Nul));
    assert!(parse("INVITE sip:a@b SIP/2.0\r\nFrom: \"abc\r\n x\\\0\" <sip:a@b>\r\n\r\n").is_ok(), "folded");
    assert_eq!(parse("INVITE sip:a@b\0 SIP/2.0\r\nFrom: \"\\\0\" <sip:a@b>\r\n\r\n"), Err(WireError::Nul));
    assert_eq!(
        parse("INVITE sip:a@b SIP/2.0\r\nl: -1\r\n\r\n").map(|_| ()),
        Err(WireError::ContentLength("not a non-negative number below 10^9"))
    );
    assert_eq!(
        parse("INVITE sip:a@b SIP/2.0\r\nl: 5\r\nl: 6\r\n\r\nabcdef").map(|_| ()),
        Err(WireError::ContentLength("repeated with different values"))
    );
    assert_eq!(
        parse("INVITE sip:a@b SIP/2.0\r\nl: 50\r\n\r\nabc").map(|_| ()),
        Err(WireError::ContentLength("larger than the bytes received"))
    );
    let many = format!("INVITE sip:a@b SIP/2.0\r\n{}\r\n", "X: y\r\n".repeat(MAX_HEADERS + 1));
    assert_eq!(parse(&many), Err(WireError::TooManyHeaders));
    let r = parse("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n").expect("response");
    assert_eq!(r.status(), Some(180));
}

fn header_line() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just("Via".to_owned()),
        Just("v".to_owned()),
        Just("Route".to_owned()),
        Just("Diversion".to_owned()),
        "[A-Za-z][A-Za-z0-9-]{0,12}",
    ];
    // Content-Length and Max-Forwards are what the round trip sets itself.
    let name = name.prop_filter("not a header the edit owns", |n| {
        !matches!(Name::of(n.as_bytes()), Name::ContentLength | Name::MaxForwards)
    });
    (name, "[ -~]{0,40}")
}

proptest! {
    /// Any bytes: parse never panics.
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(bytes.clone(), false, DEFAULT_MAX_MESSAGE);
        let _ = frame_stream(&bytes, DEFAULT_MAX_MESSAGE);
    }

    /// Generated messages: the index finds every header, and an edit round trip
    /// keeps what was not edited.
    #[test]
    fn edit_round_trip(headers in proptest::collection::vec(header_line(), 0..12), body in "[a-z]{0,20}") {
        let mut text = String::from("OPTIONS sip:a@example.com SIP/2.0\r\n");
        for (n, v) in &headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let m = Message::parse(text.into_bytes(), true, DEFAULT_MAX_MESSAGE).expect("generated messages parse");
        prop_assert_eq!(m.fields.len(), headers.len() + 1);
        for (f, (n, v)) in m.fields.iter().zip(&headers) {
            prop_assert_eq!(m.text(&f.name_range), n.as_str());
            prop_assert_eq!(m.value(f), v.trim());
        }
        let out = m.edit().prepend_via("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx".into()).max_forwards(69).remove("Diversion").finish();
        let e = Message::parse(out, true, DEFAULT_MAX_MESSAGE).expect("edited messages parse");
        prop_assert_eq!(e.top_via().and_then(|v| v.branch), Some("z9hG4bKx"));
        prop_assert_eq!(e.max_forwards(), Ok(Some(69)));
        prop_assert!(e.header("Diversion").is_none());
        let kept: Vec<(&str, &str)> = m.fields.iter().filter(|f| !m.text(&f.name_range).eq_ignore_ascii_case("diversion")).map(|f| (m.text(&f.name_range), m.value(f))).collect();
        let after: Vec<(&str, &str)> = e.fields.iter().skip(1).filter(|f| f.name != Name::MaxForwards).map(|f| (e.text(&f.name_range), e.value(f))).collect();
        prop_assert_eq!(after, kept);
        prop_assert_eq!(&e.bytes()[e.body.clone()], body.as_bytes());
    }
}

/// Found by fuzzing (fuzz/regressions/wire-*): a message at the limit of header
/// fields parses, and the forwarding edits (a Via, a Diversion, a Content-Length
/// when the datagram had none) take it beyond the limit, so a copy that loops
/// back is refused as too large rather than mistaken for another message.
#[test]
fn forwarding_edits_can_take_a_message_past_the_field_limit() {
    let head = "INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\n";
    let filler: String = (0..MAX_HEADERS - 2).map(|i| format!("X-{i}: v\r\n")).collect();
    let text = format!("{head}{filler}Content-Length: 0\r\n\r\n");
    let m = Message::parse(text.into_bytes(), false, usize::MAX).expect("at the limit");
    assert_eq!(m.fields.len(), MAX_HEADERS);
    let edited = m.edit().prepend_via("SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK-2".into()).finish();
    assert!(matches!(Message::parse(edited, false, usize::MAX), Err(WireError::TooManyHeaders)));
}

#[test]
fn comma_items_split_outside_quotes_and_brackets_and_never_panic() {
    let items: Vec<&str> = comma_items(r#""a, \"b\"" <sip:x@y;p=1,2>, <sip:z@w> , ,"#).collect();
    assert_eq!(items, [r#""a, \"b\"" <sip:x@y;p=1,2>"#, "<sip:z@w>", "", ""]);
    assert_eq!(comma_items("\"open, quote").collect::<Vec<_>>(), ["\"open, quote"]);
    assert_eq!(comma_items("<open, bracket").collect::<Vec<_>>(), ["<open, bracket"]);
    assert_eq!(comma_items("\"ends in \\").collect::<Vec<_>>(), ["\"ends in \\"]);
    assert_eq!(comma_items("é, ü").collect::<Vec<_>>(), ["é", "ü"]);
    assert_eq!(split_commas(" , a,,b, ").collect::<Vec<_>>(), ["a", "b"]);
}

//! Request validation (RFC 3261 §16.3), before the tenant is looked up: syntax
//! (required and single-value headers, the grammar of From, To, Via, Contact
//! and Content-Type, the Request-URI), then the URI scheme, Max-Forwards, loops
//! and Proxy-Require. Also the lenient reading of a request that did not parse,
//! so that it can still be answered.

use crate::model::syntax;
use crate::model::uri::{UriError, UriRef};
use crate::model::wire::{Message, Name};
use crate::sip::error::RequestError;

/// Headers a request must have, and which may appear once only.
const REQUIRED_SINGLE: [(Name, &str); 4] =
    [(Name::From, "From"), (Name::To, "To"), (Name::CallId, "Call-ID"), (Name::CSeq, "CSeq")];

/// Largest CSeq number (RFC 3261 §8.1.1.5: less than 2^31).
const MAX_CSEQ: u32 = (1 << 31) - 1;

/// Checks `req` as §16.3 orders it. `options_to_us` is whether it is an OPTIONS
/// addressed to this router itself (which may answer it whatever Max-Forwards).
pub fn validate(req: &Message, options_to_us: bool) -> Result<(), RequestError> {
    check_syntax(req)?;
    match UriRef::parse_request_uri(req.request_uri().unwrap_or("")) {
        Ok(_) => {}
        Err(UriError::UnsupportedScheme(s)) => return Err(RequestError::UnsupportedScheme(s)),
        Err(e) => return Err(RequestError::bad(format!("bad Request-URI: {e}"))),
    }
    match req.max_forwards() {
        Ok(Some(0)) if !options_to_us => return Err(RequestError::TooManyHops),
        Ok(_) => {}
        Err(e) => return Err(RequestError::bad(e.to_string())),
    }
    // Loop: one of our Vias carries the loop hash this request has now. The
    // hash is computed only when a Via below the top one could be ours.
    let mut ours = req
        .values(Name::Via)
        .skip(1)
        .filter_map(crate::model::wire::Via::parse)
        .filter_map(|v| branch_loop_hash(v.branch?))
        .peekable();
    if ours.peek().is_some() {
        let hash = loop_hash(req);
        if ours.any(|h| h == hash) {
            return Err(RequestError::Loop);
        }
    }
    let required: Vec<&str> = req.values(Name::ProxyRequire).collect();
    if !required.is_empty() {
        return Err(RequestError::BadExtension(required.join(", ")));
    }
    Ok(())
}

/// The values `Ms-Sensitivity` may have ([MS-SIPRE] 2.2.10), compared
/// without regard to case.
pub const SENSITIVITIES: [&str; 4] = ["normal", "private", "normal-no-diversion", "private-no-diversion"];

/// [MS-SIPRE] 2.2.10: at most one `Ms-Sensitivity`, with one of
/// [`SENSITIVITIES`]; else 400 naming the header.
fn sensitivity(req: &Message) -> Result<(), RequestError> {
    let mut values = req.values_named(&["Ms-Sensitivity"]);
    match (values.next(), values.next()) {
        (_, Some(_)) => Err(RequestError::bad("more than one Ms-Sensitivity header")),
        (Some(v), None) if !SENSITIVITIES.iter().any(|s| s.eq_ignore_ascii_case(v.trim())) => Err(RequestError::bad(
            format!("bad Ms-Sensitivity: `{v}` is not normal, private, normal-no-diversion or private-no-diversion"),
        )),
        _ => Ok(()),
    }
}

/// Whether `req` may not be diverted ([MS-SIPRE] 3.9.5.2.1): its
/// `Ms-Sensitivity` is `normal-no-diversion` or `private-no-diversion`.
pub fn no_diversion(req: &Message) -> bool {
    req.values_named(&["Ms-Sensitivity"]).next().is_some_and(|v| {
        let v = v.trim();
        v.eq_ignore_ascii_case("normal-no-diversion") || v.eq_ignore_ascii_case("private-no-diversion")
    })
}

/// RFC 3261 §16.3 step 1: the request's syntax, as far as the proxy relies on it.
fn check_syntax(req: &Message) -> Result<(), RequestError> {
    let bad = |what: &str, problem: &str| RequestError::bad(format!("bad {what}: {problem}"));
    for (name, header) in REQUIRED_SINGLE {
        let mut fields = req.fields_named(name);
        match (fields.next(), fields.next()) {
            (None, _) => return Err(RequestError::bad(format!("missing {header}"))),
            (Some(_), Some(_)) => return Err(RequestError::bad(format!("more than one {header} header"))),
            (Some(f), None) if req.value(f).is_empty() => return Err(RequestError::bad(format!("empty {header}"))),
            _ => {}
        }
    }
    for (name, header) in [(Name::From, "From"), (Name::To, "To")] {
        let value = req.first(name).unwrap_or("");
        syntax::check_name_addr(value).map_err(|p| bad(header, p))?;
    }
    let method = req.method().unwrap_or("");
    match req.cseq() {
        Some((n, m)) if m == method && n <= MAX_CSEQ => {}
        Some((_, m)) if m != method => return Err(RequestError::bad("CSeq method does not match the request method")),
        _ => return Err(bad("CSeq", "not a number below 2^31 and a method")),
    }
    for (name, header) in [(Name::MaxForwards, "Max-Forwards"), (Name::ContentType, "Content-Type")] {
        if req.fields_named(name).nth(1).is_some() {
            return Err(RequestError::bad(format!("more than one {header} header")));
        }
    }
    sensitivity(req)?;
    if let Some(ct) = req.first(Name::ContentType) {
        syntax::check_content_type(ct).map_err(|p| bad("Content-Type", p))?;
    }
    for f in req.fields_named(Name::Via) {
        syntax::check_list(req.value(f), syntax::check_via).map_err(|p| bad("Via", p))?;
    }
    for f in req.fields_named(Name::Contact) {
        let value = req.value(f);
        if value.trim() != "*" {
            syntax::check_list(value, syntax::check_name_addr).map_err(|p| bad("Contact", p))?;
        }
    }
    for (name, header) in [(Name::Route, "Route"), (Name::RecordRoute, "Record-Route")] {
        for f in req.fields_named(name) {
            syntax::check_list(req.value(f), syntax::check_name_addr).map_err(|p| bad(header, p))?;
        }
    }
    Ok(())
}

/// The loop hash in a branch the router minted (`z9hG4bK-<16 hex>-...`).
fn branch_loop_hash(branch: &str) -> Option<u64> {
    let hex = branch.strip_prefix("z9hG4bK-")?.get(..16)?;
    u64::from_str_radix(hex, 16).ok()
}

/// What makes a request loop when it comes back unchanged (RFC 3261 §16.6 step 8).
pub fn loop_hash(msg: &Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    msg.request_uri().hash(&mut h);
    msg.from_tag().hash(&mut h);
    msg.to_tag().hash(&mut h);
    msg.first(Name::CallId).hash(&mut h);
    msg.cseq().map(|c| c.0).hash(&mut h);
    msg.first(Name::ProxyRequire).hash(&mut h);
    h.finish()
}

/// What a response to an unparseable request needs, when it is there: the
/// request line rebuilt from its method and URI (any spacing, any version), and
/// only the Via, From, To, Call-ID and CSeq lines (folded continuations kept).
pub fn lenient(bytes: &[u8]) -> Option<Message> {
    let head_end = memchr::memmem::find(bytes, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(bytes, b"\n\n"))
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.lines();
    let first = lines.next()?.trim();
    let mut words = first.split_whitespace();
    let (method, uri) = (words.next()?, words.next()?);
    if method.starts_with("SIP/") || !method.bytes().all(crate::model::wire::is_token) {
        return None;
    }
    let mut kept = format!("{method} {uri} SIP/2.0\r\n");
    let mut keeping = false;
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if keeping {
                kept.push_str(line);
                kept.push_str("\r\n");
            }
            continue;
        }
        let name = line.split_once(':').map(|(n, _)| Name::of(n.trim().as_bytes()));
        keeping = matches!(name, Some(Name::Via | Name::From | Name::To | Name::CallId | Name::CSeq));
        if keeping {
            if line.contains(['\0', '\u{fffd}']) {
                return None;
            }
            kept.push_str(line);
            kept.push_str("\r\n");
        }
    }
    kept.push_str("\r\n");
    Message::parse(kept.into_bytes(), false, usize::MAX).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(extra: &str, replace: Option<(&str, &str)>) -> Message {
        let mut text = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n\
             Call-ID: c1\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        if let Some((from, to)) = replace {
            assert!(text.contains(from), "{from}");
            text = text.replacen(from, to, 1);
        }
        Message::parse(text.into_bytes(), false, usize::MAX).expect("parses")
    }

    fn code(r: Result<(), RequestError>) -> u16 {
        r.err().map_or(0, |e| e.code())
    }

    #[test]
    fn valid_requests_pass_and_each_problem_gets_its_status() {
        assert_eq!(code(validate(&req("", None), false)), 0);
        assert_eq!(code(validate(&req("", Some(("Max-Forwards: 70", "Max-Forwards: 0"))), false)), 483);
        assert_eq!(code(validate(&req("", Some(("Max-Forwards: 70", "Max-Forwards: 0"))), true)), 0);
        assert_eq!(code(validate(&req("", Some(("Max-Forwards: 70", "Max-Forwards: 0070"))), false)), 0);
        assert_eq!(code(validate(&req("", Some(("sip:bob@example.com S", "mailto:bob@example.com S"))), false)), 416);
        assert_eq!(code(validate(&req("Proxy-Require: foo\r\n", None), false)), 420);
        assert_eq!(code(validate(&req("Require: foo\r\n", None), false)), 0, "a proxy ignores Require");
    }

    #[test]
    fn syntax_errors_are_400_naming_the_problem() {
        for (extra, replace, words) in [
            ("", Some(("Call-ID: c1\r\n", "")), "missing Call-ID"),
            ("From: <sip:x@example.com>\r\n", None, "more than one From"),
            ("", Some(("From: <sip:a@example.com>", "From: Bell, Alexander <sip:a@example.com>")), "bad From"),
            ("", Some(("CSeq: 1 INVITE", "CSeq: 1 OPTIONS")), "CSeq method"),
            ("", Some(("CSeq: 1 INVITE", "CSeq: 4294967296 INVITE")), "bad CSeq"),
            ("Content-Type: application\r\n", None, "bad Content-Type"),
            ("Contact: <sip:a@127.0.0.1>;;expires=1\r\n", None, "bad Contact"),
            ("Contact: <sip:a@127.0.0.1>,,<sip:b@127.0.0.1>\r\n", None, "bad Contact"),
            ("", Some(("branch=z9hG4bK1", "branch=z9hG4bK1;;rport")), "bad Via"),
            ("", Some(("sip:bob@example.com S", "sip:bob@example.com?Subject=x S")), "headers in a Request-URI"),
            ("", Some(("sip:bob@example.com S", "sip:bob@2001:db8::1 S")), "bad Request-URI"),
        ] {
            let e = validate(&req(extra, replace), false).expect_err(words);
            assert_eq!(e.code(), 400, "{words}");
            assert!(e.to_string().contains(words), "{words}: {e}");
        }
    }

    #[test]
    fn unusual_but_valid_whitespace_passes() {
        let folded = req(
            "",
            Some((
                "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
                "vIa  : SIP  /   2.0\r\n  /  UDP\r\n   127.0.0.1:5070 ; branch = z9hG4bK1",
            )),
        );
        assert_eq!(code(validate(&folded, false)), 0);
        assert!(folded.top_via().is_some_and(|v| v.branch == Some("z9hG4bK1")));
    }

    #[test]
    fn a_request_that_does_not_parse_is_read_leniently_for_its_answer() {
        let bytes = b"INVITE sip:bob@example.com SIP/7.0\r\nVia: SIP/7.0/UDP 127.0.0.1;branch=z9hG4bK2\r\n\
                      From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c2\r\n\
                      CSeq: 5 INVITE\r\nX: \0\r\n\r\n";
        let msg = lenient(bytes).expect("answerable");
        assert_eq!(msg.method(), Some("INVITE"));
        assert!(msg.top_via().is_some());
        assert!(lenient(b"garbage").is_none());
        assert!(lenient(b"SIP/2.0 200 OK\r\n\r\n").is_none());
    }
}

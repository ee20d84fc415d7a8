//! Messages the router originates: responses to requests it answers itself
//! (100 Trying, errors, redirects, 200 to CANCEL), ACK for a non-2xx final
//! response, CANCEL, and OPTIONS probes (RFC 3261 §8.2.6, §9.1, §17.1.1.3).
//!
//! Everything is written out directly from the request's header values, into
//! one buffer: the 100 Trying of every INVITE is made here, and ACK and CANCEL
//! must repeat the INVITE's Request-URI byte for byte (IPv6 references
//! included).

use std::fmt::Write as _;

use crate::model::wire::{Message, Name};

/// A response to `req`, received from `source`, with `code`, `reason`, a To
/// tag when the To header has none (not for 100), and `extra` header fields.
/// The top Via gets `received` and `rport` as a forwarded request's does
/// (RFC 3261 §18.2.1, RFC 3581).
pub fn response(
    req: &Message,
    source: std::net::SocketAddr,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    // Written straight into one buffer: the 100 Trying of every INVITE is
    // made here.
    let mut out = String::with_capacity(req.bytes().len().min(2048) + 128);
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for (i, via) in req.values(Name::Via).enumerate() {
        out.push_str("Via: ");
        if i == 0 {
            out.push_str(&crate::model::wire::with_received(via, source));
        } else {
            out.push_str(via);
        }
        out.push_str("\r\n");
    }
    if let Some(from) = req.first(Name::From) {
        let _ = write!(out, "From: {from}\r\n");
    }
    if let Some(to) = req.first(Name::To) {
        if code > 100 && req.to_tag().is_none() {
            let _ = write!(out, "To: {to};tag={to_tag}\r\n");
        } else {
            let _ = write!(out, "To: {to}\r\n");
        }
    }
    if let Some(call_id) = req.first(Name::CallId) {
        let _ = write!(out, "Call-ID: {call_id}\r\n");
    }
    if let Some(cseq) = req.first(Name::CSeq) {
        let _ = write!(out, "CSeq: {cseq}\r\n");
    }
    for (name, value) in extra {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("Server: exum-router\r\nContent-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// The ACK for a non-2xx final `resp` to the INVITE `sent` (the request as the
/// router sent it): same Request-URI, top Via, From, Call-ID and Route; the
/// response's To.
pub fn ack(sent: &Message, resp: &Message) -> Vec<u8> {
    in_transaction(sent, "ACK", resp.first(Name::To))
}

/// The CANCEL of the INVITE `sent`.
pub fn cancel(sent: &Message) -> Vec<u8> {
    in_transaction(sent, "CANCEL", None)
}

fn in_transaction(sent: &Message, method: &str, to: Option<&str>) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    let uri = sent.request_uri().unwrap_or("");
    let _ = write!(out, "{method} {uri} SIP/2.0\r\n");
    if let Some(via) = sent.values(Name::Via).next() {
        let _ = write!(out, "Via: {via}\r\n");
    }
    out.push_str("Max-Forwards: 70\r\n");
    if let Some(from) = sent.first(Name::From) {
        let _ = write!(out, "From: {from}\r\n");
    }
    if let Some(to) = to.or_else(|| sent.first(Name::To)) {
        let _ = write!(out, "To: {to}\r\n");
    }
    if let Some(call_id) = sent.first(Name::CallId) {
        let _ = write!(out, "Call-ID: {call_id}\r\n");
    }
    let number = sent.cseq().map_or(1, |(n, _)| n);
    let _ = write!(out, "CSeq: {number} {method}\r\n");
    for route in sent.values(Name::Route) {
        let _ = write!(out, "Route: {route}\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

/// An OPTIONS probe to `uri` from the router at `local` (`host:port`), over
/// `transport` (`UDP`, `TCP`).
pub fn options(uri: &str, local: &str, via_protocol: &str, branch: &str, call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: {via_protocol} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:exum-router@{local}>;tag={branch}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         User-Agent: exum-router\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wire::DEFAULT_MAX_MESSAGE;

    fn parse(bytes: Vec<u8>) -> Message {
        Message::parse(bytes, true, DEFAULT_MAX_MESSAGE).expect("originated messages parse")
    }

    const INVITE: &str = "INVITE sip:bob@contoso.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKour\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKcaller\r\n\
        From: <sip:a@b>;tag=1\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\
        Route: <sip:um1;lr>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn responses_copy_the_transaction_headers_and_tag_to() {
        let req = parse(INVITE.as_bytes().to_vec());
        let r = parse(response(&req, SOURCE, 480, "Temporarily Unavailable", "xyz", &[("ms-diagnostics", "15030")]));
        assert_eq!(r.status(), Some(480));
        assert_eq!(r.values(Name::Via).count(), 2);
        assert_eq!(r.to_tag(), Some("xyz"));
        assert_eq!(r.header("ms-diagnostics"), Some("15030"));
        let trying = parse(response(&req, SOURCE, 100, "Trying", "xyz", &[]));
        assert_eq!(trying.to_tag(), None, "100 Trying carries no tag");
    }

    const SOURCE: std::net::SocketAddr =
        std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9)), 5999);

    #[test]
    fn a_response_fills_received_and_rport_in_the_top_via_only() {
        let req = parse(
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n\
              Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x>\r\n\
              Call-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        );
        let r = parse(response(&req, SOURCE, 200, "OK", "t", &[]));
        let vias: Vec<&str> = r.values(Name::Via).collect();
        assert_eq!(vias[0], "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;received=192.0.2.9;rport=5999");
        assert_eq!(vias[1], "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKb");
    }

    #[test]
    fn ack_and_cancel_follow_the_invite() {
        let sent = parse(INVITE.as_bytes().to_vec());
        let resp = parse(b"SIP/2.0 503 Unavailable\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKour\r\nTo: <sip:bob@contoso.com>;tag=t9\r\nContent-Length: 0\r\n\r\n".to_vec());
        let a = parse(ack(&sent, &resp));
        assert_eq!(a.method(), Some("ACK"));
        assert_eq!(a.top_via().and_then(|v| v.branch), Some("z9hG4bKour"));
        assert_eq!(a.values(Name::Via).count(), 1);
        assert_eq!(a.to_tag(), Some("t9"));
        assert_eq!(a.cseq(), Some((7, "ACK")));
        assert_eq!(a.first(Name::Route), Some("<sip:um1;lr>"));
        let c = parse(cancel(&sent));
        assert_eq!((c.method(), c.cseq()), (Some("CANCEL"), Some((7, "CANCEL"))));
        assert_eq!(c.to_tag(), None);
    }
}

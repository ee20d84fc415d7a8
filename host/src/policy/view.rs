//! The request view a policy sees, built from a request the wire layer parsed:
//! the head as received and the spans of the fields the router parsed. The
//! bridge between the SIP plane and the contract's `request` record.

use std::net::IpAddr;
use std::ops::Range;

use super::bindings::exum::policy::types::{IpAddress, Request, Source, Span, Transport};
use crate::model::{self, uri, wire};

/// Why a message cannot be shown to a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// A response, not a request.
    #[error("a response, not a request")]
    NotARequest,
    /// A header the view needs is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header the view needs does not parse.
    #[error("invalid {header} header: {reason}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Why.
        reason: String,
    },
}

/// Builds the view of a request parsed by the wire layer: the head is copied
/// once; the spans point into it.
pub fn request_view(msg: &wire::Message, source: &model::Source) -> Result<Request, ViewError> {
    let (Some(method), wire::StartLine::Request { uri, .. }) = (msg.method(), &msg.start) else {
        return Err(ViewError::NotARequest);
    };
    let (cseq, _) =
        msg.cseq().ok_or_else(|| ViewError::Invalid { header: "CSeq", reason: "expected `number METHOD`".into() })?;
    let field = |name: wire::Name, header: &'static str| {
        msg.fields_named(name)
            .next()
            .map(|f| f.value.clone())
            .filter(|r| !r.is_empty())
            .ok_or(ViewError::Missing(header))
    };
    let name_addr = |name: wire::Name, header: &'static str| {
        let range = field(name, header)?;
        let (uri, tag) = uri::name_addr_spans(msg.text(&range))
            .ok_or_else(|| ViewError::Invalid { header, reason: "unterminated `<`".into() })?;
        Ok::<_, ViewError>((
            span(range.start + uri.start..range.start + uri.end),
            tag.map(|t| span(range.start + t.start..range.start + t.end)),
        ))
    };
    let (from_uri, from_tag) = name_addr(wire::Name::From, "From")?;
    let (to_uri, to_tag) = name_addr(wire::Name::To, "To")?;
    let call_id = span(field(wire::Name::CallId, "Call-ID")?);
    Ok(Request {
        head: msg.head().to_owned(),
        method: span(0..method.len()),
        request_uri: span(uri.clone()),
        from_uri,
        from_tag,
        to_uri,
        to_tag,
        call_id,
        cseq,
        source: source_view(source),
    })
}

fn source_view(source: &model::Source) -> Source {
    Source {
        address: match source.addr.ip() {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                IpAddress::Ipv4((a, b, c, d))
            }
            IpAddr::V6(v6) => {
                let [a, b, c, d, e, f, g, h] = v6.segments();
                IpAddress::Ipv6((a, b, c, d, e, f, g, h))
            }
        },
        port: source.addr.port(),
        transport: match source.transport {
            model::Transport::Udp => Transport::Udp,
            model::Transport::Tcp => Transport::Tcp,
            model::Transport::Tls => Transport::Tls,
        },
        tls_peer_name: source.tls_peer_name.clone(),
    }
}

fn span(range: Range<usize>) -> Span {
    Span { start: range.start as u32, len: range.len() as u32 }
}

/// The text of `span` in `req`'s head (empty if out of range).
pub fn text(req: &Request, span: Span) -> &str {
    let start = span.start as usize;
    req.head.get(start..start + span.len as usize).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_the_parsed_fields() {
        let sip = "INVITE sip:alice@contoso.com;opaque=app:voicemail SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\
            f: \"Zoe\" <sip:zoe@fabrikam.com>;tag=abc\r\n\
            To: sip:alice@contoso.com\r\n\
            Call-ID: 1@x\r\n\
            CSeq: 7 INVITE\r\n\r\n";
        let req = wire::Message::parse(sip.as_bytes().to_vec(), false, wire::DEFAULT_MAX_MESSAGE).expect("parses");
        let source = model::Source {
            addr: "[2001:db8::7]:5060".parse().expect("addr"),
            transport: model::Transport::Tcp,
            tls_peer_name: None,
            local: None,
        };
        let v = request_view(&req, &source).expect("view");
        assert_eq!(text(&v, v.method), "INVITE");
        assert_eq!(text(&v, v.request_uri), "sip:alice@contoso.com;opaque=app:voicemail");
        assert_eq!(text(&v, v.from_uri), "sip:zoe@fabrikam.com");
        assert_eq!(v.from_tag.map(|t| text(&v, t)), Some("abc"));
        assert_eq!(text(&v, v.to_uri), "sip:alice@contoso.com");
        assert_eq!(v.to_tag, None);
        assert_eq!(text(&v, v.call_id), "1@x");
        assert_eq!(v.cseq, 7);
        assert_eq!(v.source.address, IpAddress::Ipv6((0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)));
    }
}

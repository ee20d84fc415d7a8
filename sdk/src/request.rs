//! The request a policy routes: the head as the router received it, with typed
//! accessors that parse what they are asked for, once, on first use.

use std::cell::OnceCell;

use crate::bindings::exum::policy::types as wit;
use exum_address::{UriRef, addr_spec};

use crate::{Source, Uri, host, parse_uri};

/// A request to route. Fields are parsed from the head on first use and kept.
#[derive(Debug)]
pub struct Request {
    wire: wit::Request,
    request_uri: OnceCell<Uri>,
    from: OnceCell<Uri>,
    to: OnceCell<Uri>,
    headers: OnceCell<Vec<(String, String)>>,
    from_address: OnceCell<String>,
    request_uri_address: OnceCell<String>,
}

impl Request {
    /// Wraps the contract's request record.
    pub fn from_wire(wire: wit::Request) -> Request {
        Request {
            wire,
            request_uri: OnceCell::new(),
            from: OnceCell::new(),
            to: OnceCell::new(),
            headers: OnceCell::new(),
            from_address: OnceCell::new(),
            request_uri_address: OnceCell::new(),
        }
    }

    fn span(&self, span: wit::Span) -> &str {
        let start = span.start as usize;
        self.wire.head.get(start..start.saturating_add(span.len as usize)).unwrap_or("")
    }

    /// The method (`INVITE`).
    pub fn method(&self) -> &str {
        self.span(self.wire.method)
    }

    /// The Request-URI as written.
    pub fn request_uri_text(&self) -> &str {
        self.span(self.wire.request_uri)
    }

    /// The Request-URI, parsed. (The router only hands over requests whose
    /// Request-URI it could parse; a URI this SDK cannot parse reads as empty.)
    pub fn request_uri(&self) -> &Uri {
        self.request_uri.get_or_init(|| parse_uri(self.request_uri_text()).unwrap_or_default())
    }

    /// The From header's URI.
    pub fn from(&self) -> &Uri {
        self.from.get_or_init(|| parse_uri(self.span(self.wire.from_uri)).unwrap_or_default())
    }

    /// The From header's tag.
    pub fn from_tag(&self) -> Option<&str> {
        self.wire.from_tag.map(|s| self.span(s))
    }

    /// The To header's URI.
    pub fn to(&self) -> &Uri {
        self.to.get_or_init(|| parse_uri(self.span(self.wire.to_uri)).unwrap_or_default())
    }

    /// The To header's tag (in-dialog requests only).
    pub fn to_tag(&self) -> Option<&str> {
        self.wire.to_tag.map(|s| self.span(s))
    }

    /// The Call-ID.
    pub fn call_id(&self) -> &str {
        self.span(self.wire.call_id)
    }

    /// The CSeq number.
    pub fn cseq(&self) -> u32 {
        self.wire.cseq
    }

    /// Where the request came from.
    pub fn source(&self) -> &Source {
        &self.wire.source
    }

    /// The head exactly as received: request line and header fields.
    pub fn head(&self) -> &str {
        &self.wire.head
    }

    /// Every header field in order: long names, folded lines joined.
    pub fn headers(&self) -> &[(String, String)] {
        self.headers.get_or_init(|| parse_headers(&self.wire.head))
    }

    /// The first value of header `name` (case-insensitive; compact forms match).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let name: &'a str = long_header_name(name);
        self.headers().iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the call must not be diverted ([MS-SIPRE] 2.2.10):
    /// `Ms-Sensitivity: normal-no-diversion` or `private-no-diversion`. Such
    /// a call is never rerouted to voice mail. (The router answers 400 to a
    /// request with another value or more than one of the header.)
    pub fn no_diversion(&self) -> bool {
        self.header("Ms-Sensitivity").is_some_and(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("normal-no-diversion") || v.eq_ignore_ascii_case("private-no-diversion")
        })
    }

    /// Whether the caller (From) and the called address (Request-URI) are the same
    /// user: a user calling their own mailbox.
    pub fn is_own_mailbox_call(&self) -> bool {
        self.from_address() == self.request_uri_address()
    }

    /// The caller's address: `from().address()`, computed once and without
    /// parsing the From URI into owned parts.
    pub fn from_address(&self) -> &str {
        self.from_address.get_or_init(|| match self.uri_ref(self.wire.from_uri) {
            Some(from) => from.address(),
            None => self.from().address(),
        })
    }

    /// The called address: `request_uri().address()`, computed once.
    pub fn request_uri_address(&self) -> &str {
        self.request_uri_address.get_or_init(|| self.request_uri().address())
    }

    /// The URI at `span`, parsed without allocating.
    fn uri_ref(&self, span: wit::Span) -> Option<UriRef<'_>> {
        addr_spec(self.span(span)).and_then(UriRef::parse).ok()
    }

    /// The tenant that owns the request.
    pub fn tenant(&self) -> String {
        host::settings().id
    }

    /// The contract's record, as the router sent it.
    pub fn wire(&self) -> &wit::Request {
        &self.wire
    }
}

/// Splits a head into header fields: the request line skipped, folded lines
/// joined, compact names expanded.
fn parse_headers(head: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in head.split('\n').skip(1) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            out.push((long_header_name(name.trim()).to_owned(), value.trim().to_owned()));
        }
    }
    out
}

/// The long name of a compact header form (`v` → `Via`), or the name itself.
pub(crate) fn long_header_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::invite;

    #[test]
    fn header_lookup_matches_compact_forms_and_folds() {
        let req = invite("sip:a@b.c").header("k", "100rel").header("Subject", "a\r\n  folded").build();
        assert_eq!(req.header("Supported"), Some("100rel"));
        assert_eq!(req.header("subject"), Some("a folded"));
        assert_eq!(req.header("Diversion"), None);
        assert_eq!(req.header("From").map(|f| f.starts_with("<sip:caller@example.com>")), Some(true));
    }

    #[test]
    fn addresses_are_those_of_the_parsed_uris_and_own_calls_compare_them() {
        let req =
            invite("sip:B%6Fb@Contoso.com;opaque=app:voicemail").from("\"Bob\" <sip:bob@CONTOSO.com:5060>").build();
        assert_eq!(req.from_address(), req.from().address());
        assert_eq!(req.from_address(), "sip:bob@contoso.com");
        assert_eq!(req.request_uri_address(), req.request_uri().address());
        assert!(req.is_own_mailbox_call());
        let other = invite("sip:bob@contoso.com").from("sips:bob@contoso.com").build();
        assert!(!other.is_own_mailbox_call(), "the scheme counts");
        let unparsable = invite("sip:bob@contoso.com").from("not a uri").build();
        assert_eq!(unparsable.from_address(), ":");
        assert!(!unparsable.is_own_mailbox_call());
    }

    #[test]
    fn parses_fields_from_spans() {
        let req = invite("sip:Alice@contoso.com;gruu;opaque=app:voicemail").from("sip:bob@contoso.com").build();
        assert_eq!(req.method(), "INVITE");
        assert_eq!(req.request_uri().address(), "sip:alice@contoso.com");
        assert!(req.request_uri().is_voicemail());
        assert_eq!(req.from().address(), "sip:bob@contoso.com");
        assert_eq!(req.from_tag(), Some("1928301774"));
        assert_eq!(req.to_tag(), None);
        assert_eq!(req.call_id(), "a84b4c76e66710@pc33.example.com");
    }
}

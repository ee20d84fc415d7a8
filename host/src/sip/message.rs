//! A SIP request parsed into its request line, header fields and body, with the
//! edits a forward applies. Compact header names are expanded, folded lines
//! joined. Used by the offline tools; the SIP plane's zero-copy wire layer builds
//! on the same rules.

use std::fmt::Write as _;
use std::ops::Range;

use super::uri::{NameAddr, Uri, UriError};

/// Why a message did not parse, or is not a request the router can route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not valid UTF-8 in the header section.
    #[error("the header section is not valid UTF-8")]
    NotUtf8,
    /// No empty line ending the header section.
    #[error("no empty line ends the header section")]
    Unterminated,
    /// The first line is not `METHOD URI SIP/2.0`.
    #[error("malformed request line `{0}`")]
    RequestLine(String),
    /// A response where a request was expected.
    #[error("a response, not a request")]
    Response,
    /// A header line without a colon or with an invalid name.
    #[error("malformed header line `{0}`")]
    HeaderLine(String),
    /// A header the router needs is missing.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header the router needs could not be parsed.
    #[error("invalid {header} header: {reason}")]
    Invalid {
        /// The header.
        header: &'static str,
        /// Why.
        reason: String,
    },
    /// The Request-URI could not be parsed.
    #[error("invalid Request-URI: {0}")]
    RequestUri(UriError),
}

/// A parsed SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The Request-URI as written.
    pub uri_text: String,
    /// The Request-URI, parsed.
    pub uri: Uri,
    /// The header fields in order: long names, folded lines joined.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The head as received: request line and header lines, without the empty
    /// line. Not changed by edits.
    pub head: String,
    /// Where the first From, To and Call-ID values lie in [`Self::head`].
    pub ranges: HeadRanges,
}

/// Byte ranges of header values in a request's head, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadRanges {
    /// The first From value.
    pub from: Range<usize>,
    /// The first To value.
    pub to: Range<usize>,
    /// The first Call-ID value.
    pub call_id: Range<usize>,
}

impl Request {
    /// Parses a request. Lines may end in CRLF or a bare LF.
    pub fn parse(bytes: &[u8]) -> Result<Request, ParseError> {
        let (head_len, body_start) = find_head_end(bytes).ok_or(ParseError::Unterminated)?;
        let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = logical_lines(head).into_iter();
        let (request_line, _) = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(uri_text), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::RequestLine(request_line));
        };
        if method.starts_with("SIP/") {
            return Err(ParseError::Response);
        }
        if !version.eq_ignore_ascii_case("SIP/2.0") || method.is_empty() || !method.bytes().all(is_token_byte) {
            return Err(ParseError::RequestLine(request_line));
        }
        let uri = Uri::parse(uri_text).map_err(ParseError::RequestUri)?;
        let mut headers = Vec::new();
        let mut ranges = HeadRanges::default();
        let (mut from, mut to, mut call_id) = (None, None, None);
        for (line, range) in lines {
            let (name, value) = line.split_once(':').ok_or_else(|| ParseError::HeaderLine(line.clone()))?;
            let name = name.trim_end();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::HeaderLine(line.clone()));
            }
            let name = long_name(name);
            let slot = match name.to_ascii_lowercase().as_str() {
                "from" => Some(&mut from),
                "to" => Some(&mut to),
                "call-id" => Some(&mut call_id),
                _ => None,
            };
            if let Some(slot) = slot
                && slot.is_none()
            {
                *slot = Some(range);
            }
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        ranges.from = from.unwrap_or_default();
        ranges.to = to.unwrap_or_default();
        ranges.call_id = call_id.unwrap_or_default();
        let request = Request {
            method: method.to_owned(),
            uri_text: uri_text.to_owned(),
            uri,
            headers,
            body: bytes[body_start..].to_vec(),
            head: head.to_owned(),
            ranges,
        };
        for required in ["From", "To", "Call-ID", "CSeq"] {
            request.header(required).ok_or(ParseError::Missing(required))?;
        }
        Ok(request)
    }

    /// The first value of header `name` (case-insensitive, long or compact name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = long_name(name);
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The From header, parsed.
    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.name_addr("From")
    }

    /// The To header, parsed.
    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.name_addr("To")
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Result<(u32, &str), ParseError> {
        let value = self.header("CSeq").ok_or(ParseError::Missing("CSeq"))?;
        let invalid = |reason: &str| ParseError::Invalid { header: "CSeq", reason: reason.to_owned() };
        let (number, method) =
            value.split_once(char::is_whitespace).ok_or_else(|| invalid("expected `number METHOD`"))?;
        let number = number.parse::<u32>().map_err(|_| invalid("the number is not a 32-bit unsigned integer"))?;
        Ok((number, method.trim()))
    }

    fn name_addr(&self, header: &'static str) -> Result<NameAddr, ParseError> {
        let value = self.header(header).ok_or(ParseError::Missing(header))?;
        Uri::parse_name_addr(value).map_err(|e| ParseError::Invalid { header, reason: e.to_string() })
    }

    /// Removes every field of header `name` (long or compact name).
    pub fn remove_header(&mut self, name: &str) {
        let name = long_name(name);
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Renders the request in wire form with a correct Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(1024);
        let _ = write!(out, "{} {} SIP/2.0\r\n", self.method, self.uri_text);
        for (name, value) in self.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("Content-Length")) {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Whether `b` may appear in a SIP token (RFC 3261 §25.1).
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// The long form of a compact header name (`v` → `Via`), or the name itself.
pub fn long_name(name: &str) -> &str {
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

/// The end of the header section: (length of the head without the blank line,
/// offset of the body).
fn find_head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes.get(i + 1) == Some(&b'\n') {
                return Some((i, i + 2));
            }
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                return Some((i, i + 3));
            }
        }
        i += 1;
    }
    None
}

/// Splits the head into logical lines, joining folded continuation lines; with
/// each line, the byte range of its value in `head` (after the colon, trimmed,
/// continuation lines included).
fn logical_lines(head: &str) -> Vec<(String, Range<usize>)> {
    let mut lines: Vec<(String, Range<usize>)> = Vec::new();
    let mut offset = 0;
    for raw in head.split('\n') {
        let start = offset;
        offset += raw.len() + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.starts_with([' ', '\t'])
            && let Some((last, range)) = lines.last_mut()
        {
            last.push(' ');
            last.push_str(raw.trim());
            range.end = start + raw.trim_end().len();
            continue;
        }
        let range = match raw.find(':') {
            Some(colon) => {
                let value = &raw[colon + 1..];
                let lead = value.len() - value.trim_start().len();
                let value_start = start + colon + 1 + lead;
                value_start..(value_start + value.trim().len()).max(value_start)
            }
            None => start..start,
        };
        lines.push((raw.to_owned(), range));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:alice@contoso.com;opaque=app:voicemail SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\n\
        f: \"Carol\" <sip:carol@fabrikam.com>;tag=1928301774\r\n\
        t: <sip:alice@contoso.com>\r\n\
        i: a84b4c76e66710@pc33.fabrikam.com\r\n\
        CSeq: 314159 INVITE\r\n\
        Subject: a folded\r\n  subject\r\n\
        l: 4\r\n\r\nv=0\n";

    #[test]
    fn parses_compact_and_folded_headers() {
        let r = Request::parse(INVITE.as_bytes()).expect("valid");
        assert_eq!(r.method, "INVITE");
        assert_eq!(r.header("Via"), Some("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds"));
        assert_eq!(r.header("subject"), Some("a folded subject"));
        assert_eq!(r.from().expect("from").tag(), Some("1928301774"));
        assert_eq!(r.cseq().expect("cseq"), (314159, "INVITE"));
        assert_eq!(r.body, b"v=0\n");
    }

    #[test]
    fn records_where_from_to_and_call_id_lie_in_the_head() {
        let r = Request::parse(INVITE.as_bytes()).expect("valid");
        assert_eq!(&r.head[r.ranges.from.clone()], "\"Carol\" <sip:carol@fabrikam.com>;tag=1928301774");
        assert_eq!(&r.head[r.ranges.to.clone()], "<sip:alice@contoso.com>");
        assert_eq!(&r.head[r.ranges.call_id.clone()], "a84b4c76e66710@pc33.fabrikam.com");
    }

    #[test]
    fn round_trips_with_recomputed_content_length() {
        let mut r = Request::parse(INVITE.as_bytes()).expect("valid");
        r.remove_header("Subject");
        let again = Request::parse(&r.to_bytes()).expect("re-parses");
        assert_eq!(again.header("Subject"), None);
        assert_eq!(again.header("Content-Length"), Some("4"));
        assert_eq!(again.body, r.body);
    }

    #[test]
    fn rejects_bad_input_precisely() {
        assert_eq!(Request::parse(b"INVITE sip:a@b SIP/2.0\r\n"), Err(ParseError::Unterminated));
        assert_eq!(Request::parse(b"SIP/2.0 200 OK\r\n\r\n"), Err(ParseError::Response));
        assert!(matches!(Request::parse(b"INVITE http://a SIP/2.0\r\n\r\n"), Err(ParseError::RequestUri(_))));
        assert_eq!(
            Request::parse(b"INVITE sip:a@b SIP/2.0\r\nFrom: <sip:c@d>\r\n\r\n"),
            Err(ParseError::Missing("To"))
        );
        assert!(matches!(
            Request::parse(b"INVITE sip:a@b SIP/2.0\r\nno colon\r\n\r\n"),
            Err(ParseError::HeaderLine(_))
        ));
    }
}

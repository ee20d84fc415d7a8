//! The wire layer: framing, a zero-copy index of the headers the proxy needs over
//! the received bytes, and in-place edits for forwarding that splice byte ranges
//! instead of re-serialising the message.
//!
//! Nothing here panics on any input: every index is checked, every number parsed
//! with overflow checks. The head must be UTF-8 (SIP is UTF-8); the body is bytes.

use std::fmt;
use std::ops::Range;

/// Default largest message accepted, in bytes.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// Most header fields in one message.
pub const MAX_HEADERS: usize = 256;

/// Why bytes are not a SIP message the router can handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than the configured limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// No empty line after the headers.
    #[error("no empty line ends the header section")]
    Unterminated,
    /// The head is not UTF-8.
    #[error("the header section is not valid UTF-8")]
    NotUtf8,
    /// A NUL byte in the head.
    #[error("NUL byte in the header section")]
    Nul,
    /// The start line is neither a request line nor a status line.
    #[error("malformed start line")]
    StartLine,
    /// Not SIP/2.0.
    #[error("unsupported SIP version")]
    Version,
    /// A header line without a colon or with an invalid name: its line number
    /// in the message (1 is the start line).
    #[error("malformed header line {0} (no header name and colon)")]
    HeaderLine(usize),
    /// More header fields than [`MAX_HEADERS`].
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// Content-Length missing on a stream, unparseable, repeated with other values, or
    /// larger than the bytes present.
    #[error("bad Content-Length: {0}")]
    ContentLength(&'static str),
}

/// A Max-Forwards value that is not a number from 0 to 255.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Max-Forwards is not a number from 0 to 255")]
pub struct BadMaxForwards;

/// The headers the proxy core looks at, by their long and compact names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    /// Via / v
    Via,
    /// Max-Forwards
    MaxForwards,
    /// CSeq
    CSeq,
    /// Call-ID / i
    CallId,
    /// From / f
    From,
    /// To / t
    To,
    /// Route
    Route,
    /// Record-Route
    RecordRoute,
    /// Content-Length / l
    ContentLength,
    /// Contact / m
    Contact,
    /// Proxy-Require
    ProxyRequire,
    /// Content-Type / c
    ContentType,
    /// Anything else.
    Other,
}

impl Name {
    /// Classifies a header name (case-insensitive, compact forms included).
    pub fn of(name: &[u8]) -> Name {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => Name::Via,
                b'i' => Name::CallId,
                b'f' => Name::From,
                b't' => Name::To,
                b'l' => Name::ContentLength,
                b'm' => Name::Contact,
                b'c' => Name::ContentType,
                _ => Name::Other,
            };
        }
        let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        match name.len() {
            3 if eq("via") => Name::Via,
            2 if eq("to") => Name::To,
            4 if eq("cseq") => Name::CSeq,
            4 if eq("from") => Name::From,
            5 if eq("route") => Name::Route,
            7 if eq("call-id") => Name::CallId,
            7 if eq("contact") => Name::Contact,
            12 if eq("max-forwards") => Name::MaxForwards,
            12 if eq("record-route") => Name::RecordRoute,
            12 if eq("content-type") => Name::ContentType,
            13 if eq("proxy-require") => Name::ProxyRequire,
            14 if eq("content-length") => Name::ContentLength,
            _ => Name::Other,
        }
    }
}

/// One header field: where its name, value and whole line lie in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// What it is.
    pub name: Name,
    /// The name as written.
    pub name_range: Range<usize>,
    /// The value, trimmed; spans continuation lines when folded.
    pub value: Range<usize>,
    /// The whole line(s), CRLF included: what a removal cuts.
    pub line: Range<usize>,
    /// Whether the value continues on folded lines.
    pub folded: bool,
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`.
    Request {
        /// The method.
        method: Range<usize>,
        /// The Request-URI.
        uri: Range<usize>,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: Range<usize>,
    },
}

/// A received message and its index.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    buf: Vec<u8>,
    /// The start line.
    pub start: StartLine,
    /// End of the start line (CRLF included): where header lines begin.
    pub headers_start: usize,
    /// The header fields in order.
    pub fields: Vec<Field>,
    /// Offset of the empty line that ends the head.
    pub head_end: usize,
    /// The body.
    pub body: Range<usize>,
}

/// A slice of a message head, which [`Message::parse`] validated as UTF-8 (and
/// `Message::buf` is never changed after): on every datagram and every header
/// read, checking again was 1-2% of the router's CPU under load
/// (docs/performance.md).
#[allow(unsafe_code)]
fn head_slice(bytes: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: the caller, `Message::text`, passes only sub-slices of the head,
    // validated as UTF-8 by `Message::parse` (the only writer of `buf`), that
    // start and end on character boundaries; such a slice is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("text", &String::from_utf8_lossy(&self.buf)).finish()
    }
}

/// The result of looking for one message at the start of a stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// `n` leading bytes are keep-alive CRLFs to discard.
    KeepAlive(usize),
    /// A whole message of `n` bytes is at the start of the buffer.
    Message(usize),
}

/// Looks for one message at the start of `buf` read from a stream (TCP, TLS):
/// the head up to the empty line, then Content-Length bytes of body.
pub fn frame_stream(buf: &[u8], max: usize) -> Result<Frame, WireError> {
    let crlfs = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    if crlfs > 0 {
        return Ok(Frame::KeepAlive(crlfs));
    }
    let Some((head_end, body_start)) = find_head_end(buf) else {
        if buf.len() > max {
            return Err(WireError::TooLarge(max));
        }
        return Ok(Frame::Incomplete);
    };
    let head = &buf[..head_end];
    let mut length: Option<usize> = None;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', head) {
        let line = &head[start..nl];
        start = nl + 1;
        // Content-Length is `l` or `content-length`: skip other lines fast.
        let Some(&first) = line.first() else { continue };
        if !matches!(first, b'l' | b'L' | b'c' | b'C') {
            continue;
        }
        let Some(colon) = memchr::memchr(b':', line) else { continue };
        if Name::of(trim(&line[..colon])) != Name::ContentLength {
            continue;
        }
        let value = parse_content_length(trim(&line[colon + 1..]))?;
        if length.is_some_and(|l| l != value) {
            return Err(WireError::ContentLength("repeated with different values"));
        }
        length = Some(value);
    }
    let length = length.ok_or(WireError::ContentLength("missing on a stream transport"))?;
    let total = body_start.checked_add(length).ok_or(WireError::ContentLength("too large"))?;
    if total > max {
        return Err(WireError::TooLarge(max));
    }
    if buf.len() < total {
        return Ok(Frame::Incomplete);
    }
    Ok(Frame::Message(total))
}

fn parse_content_length(value: &[u8]) -> Result<usize, WireError> {
    if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
        return Err(WireError::ContentLength("not a non-negative number below 10^9"));
    }
    Ok(value.iter().fold(0usize, |n, d| n * 10 + usize::from(d - b'0')))
}

/// (end of the head, start of the body): the head ends before an empty line
/// (CRLF CRLF, or bare LF LF).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // The empty line is the first LF followed by LF or CRLF; memchr's SIMD scan
    // finds the LFs.
    for nl in memchr::memchr_iter(b'\n', buf) {
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl + 1, nl + 2)),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some((nl + 1, nl + 3)),
            None => return None,
            _ => {}
        }
    }
    None
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn trim_range(buf: &[u8], r: Range<usize>) -> Range<usize> {
    let s = &buf[r.clone()];
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    r.start + start..r.start + end.max(start)
}

/// The line number (1 = the start line) of byte offset `pos`: error path only.
fn line_number(buf: &[u8], pos: usize) -> usize {
    buf[..pos.min(buf.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The bytes of a SIP token (RFC 3261 §25.1), as a table: looked up for every
/// byte of header names, methods and parameters.
const TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~');
        b += 1;
    }
    table
};

/// Whether `b` may appear in a SIP token (RFC 3261 §25.1).
pub fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

impl Message {
    /// Parses one message. For a datagram, `stream` is false: a missing
    /// Content-Length means the rest of the datagram is the body, and bytes past
    /// Content-Length are dropped.
    pub fn parse(buf: Vec<u8>, stream: bool, max: usize) -> Result<Message, WireError> {
        Message::parse_or_return(buf, stream, max).map_err(|(e, _)| e)
    }

    /// [`Self::parse`], giving the bytes back with the error (a transport
    /// passes them on, so that what can be read of them can still be answered).
    pub fn parse_or_return(buf: Vec<u8>, stream: bool, max: usize) -> Result<Message, (WireError, Vec<u8>)> {
        match index(&buf, stream, max) {
            Ok((start, headers_start, fields, head_end, body)) => {
                Ok(Message { start, headers_start, fields, head_end, body, buf })
            }
            Err(e) => Err((e, buf)),
        }
    }
}

/// The parts of a message found in `buf`: start line, where the headers start,
/// the header fields, where the head ends, the body.
type Parts = (StartLine, usize, Vec<Field>, usize, Range<usize>);

/// Whether every NUL of `head` is the escaped octet of a quoted-pair in a
/// quoted string of a header whose value is a name-addr (the display names of
/// From, To, Contact, Route, Record-Route, Reply-To and the like; RFC 3261
/// §25.1: `quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)`; RFC 4475
/// §3.1.1.2). Anywhere else a NUL is not SIP. One pass over the head, its
/// quoting carried over folded lines; called only when the head holds a NUL.
fn nuls_are_quoted_pairs(head: &[u8]) -> bool {
    const NAME_ADDR: [&[u8]; 14] = [
        b"from",
        b"f",
        b"to",
        b"t",
        b"contact",
        b"m",
        b"route",
        b"record-route",
        b"reply-to",
        b"p-asserted-identity",
        b"p-preferred-identity",
        b"referred-by",
        b"refer-to",
        b"diversion",
    ];
    let (mut quoted, mut escaped, mut name_addr) = (false, false, false);
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        if i == 0 {
            // The start line.
            if line.contains(&0) {
                return false;
            }
            continue;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            // A new header field: its name decides; no quote is open.
            let name = line.split(|&b| b == b':').next().unwrap_or(b"").trim_ascii();
            name_addr = NAME_ADDR.iter().any(|n| name.eq_ignore_ascii_case(n));
            (quoted, escaped) = (false, false);
        }
        for &b in line {
            if escaped {
                escaped = false;
            } else if b == 0 {
                return false;
            } else if quoted && b == b'\\' {
                escaped = name_addr;
            } else if b == b'"' {
                quoted = !quoted;
            }
        }
    }
    true
}

/// Frames and indexes one message (see [`Message::parse`]).
fn index(buf: &[u8], stream: bool, max: usize) -> Result<Parts, WireError> {
    {
        if buf.len() > max {
            return Err(WireError::TooLarge(max));
        }
        let (head_end, body_start) = find_head_end(buf).ok_or(WireError::Unterminated)?;
        let head = &buf[..head_end];
        if memchr::memchr(0, head).is_some() && !nuls_are_quoted_pairs(head) {
            return Err(WireError::Nul);
        }
        std::str::from_utf8(head).map_err(|_| WireError::NotUtf8)?;
        let first_end = memchr::memchr(b'\n', head).ok_or(WireError::StartLine)?;
        let line_end = if first_end > 0 && head[first_end - 1] == b'\r' { first_end - 1 } else { first_end };
        let start = parse_start_line(&buf[..line_end])?;
        let headers_start = first_end + 1;

        // A typical INVITE has 15-25 header fields: no regrowth for those.
        let mut fields: Vec<Field> = Vec::with_capacity(24);
        let mut pos = headers_start;
        while pos < head_end {
            let nl = memchr::memchr(b'\n', &head[pos..]).map_or(head_end, |o| pos + o);
            let line_end = if nl > pos && head[nl - 1] == b'\r' { nl - 1 } else { nl };
            let next = (nl + 1).min(head_end);
            if matches!(head[pos], b' ' | b'\t') {
                let field = fields.last_mut().ok_or_else(|| WireError::HeaderLine(line_number(buf, pos)))?;
                field.folded = true;
                let tail = trim_range(buf, pos..line_end);
                if tail.end > tail.start {
                    field.value.end = tail.end;
                    if field.value.start >= field.value.end {
                        field.value.start = tail.start;
                    }
                }
                field.line.end = next;
                pos = next;
                continue;
            }
            let colon = buf[pos..line_end]
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| WireError::HeaderLine(line_number(buf, pos)))?
                + pos;
            let name_range = trim_range(buf, pos..colon);
            if name_range.is_empty() || !buf[name_range.clone()].iter().all(|&b| is_token(b)) || name_range.start != pos
            {
                return Err(WireError::HeaderLine(line_number(buf, pos)));
            }
            if fields.len() == MAX_HEADERS {
                return Err(WireError::TooManyHeaders);
            }
            fields.push(Field {
                name: Name::of(&buf[name_range.clone()]),
                name_range,
                value: trim_range(buf, colon + 1..line_end),
                line: pos..next,
                folded: false,
            });
            pos = next;
        }

        let available = buf.len() - body_start;
        let mut length: Option<usize> = None;
        for f in fields.iter().filter(|f| f.name == Name::ContentLength) {
            let v = parse_content_length(&buf[f.value.clone()])?;
            if length.is_some_and(|l| l != v) {
                return Err(WireError::ContentLength("repeated with different values"));
            }
            length = Some(v);
        }
        let body_len = match length {
            Some(l) if l > available => {
                return Err(WireError::ContentLength("larger than the bytes received"));
            }
            Some(l) => l,
            None if stream => {
                return Err(WireError::ContentLength("missing on a stream transport"));
            }
            None => available,
        };
        Ok((start, headers_start, fields, head_end, body_start..body_start + body_len))
    }
}

impl Message {
    /// The bytes as received.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Text of a range of the head (empty if it is not in the head or does not
    /// start and end on character boundaries).
    pub fn text(&self, r: &Range<usize>) -> &str {
        // A UTF-8 continuation byte is 0b10xx_xxxx: a range of the validated head
        // whose first byte and the byte after it are not continuation bytes holds
        // whole characters.
        let boundary = |i: usize| i >= self.head_end || self.buf.get(i).is_none_or(|b| b & 0xC0 != 0x80);
        if r.start > r.end || r.end > self.head_end || !boundary(r.start) || !boundary(r.end) {
            return "";
        }
        head_slice(&self.buf[r.clone()])
    }

    /// The head: start line and header lines.
    pub fn head(&self) -> &str {
        self.text(&(0..self.head_end))
    }

    /// The method of a request (`None` for a response).
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(self.text(method)),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(self.text(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(self.text(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The value of a field; folded values are returned as written (with their
    /// line breaks), see [`Self::value_unfolded`].
    pub fn value(&self, f: &Field) -> &str {
        self.text(&f.value)
    }

    /// The value of a field with folded lines joined by one space.
    pub fn value_unfolded(&self, f: &Field) -> std::borrow::Cow<'_, str> {
        let v = self.value(f);
        if !f.folded {
            return v.into();
        }
        let mut out = String::with_capacity(v.len());
        for (i, part) in v.split('\n').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if i > 0 && !out.is_empty() {
                out.push(' ');
            }
            out.push_str(part);
        }
        out.into()
    }

    /// The fields called `name`, in order.
    pub fn fields_named(&self, name: Name) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(move |f| f.name == name)
    }

    /// The first value of header `name`.
    pub fn first(&self, name: Name) -> Option<&str> {
        self.fields_named(name).next().map(|f| self.value(f))
    }

    /// Every value of header `name`, comma-joined values split apart (outside
    /// quotes and angle brackets), in order.
    pub fn values(&self, name: Name) -> impl Iterator<Item = &str> {
        self.fields_named(name).flat_map(|f| split_commas(self.value(f)))
    }

    /// The values of the fields whose name is one of `names` (as written,
    /// case-insensitive: give a compact form too when it has one).
    pub fn values_named<'n>(&'n self, names: &'n [&'n str]) -> impl Iterator<Item = &'n str> + 'n {
        self.fields
            .iter()
            .filter(move |f| names.iter().any(|n| self.text(&f.name_range).eq_ignore_ascii_case(n)))
            .map(|f| self.value(f))
    }

    /// The first value of a header named `name` (any header, case-insensitive,
    /// compact forms of known headers matching).
    pub fn header(&self, name: &str) -> Option<&str> {
        let known = Name::of(name.as_bytes());
        self.fields
            .iter()
            .find(|f| {
                if known == Name::Other { self.text(&f.name_range).eq_ignore_ascii_case(name) } else { f.name == known }
            })
            .map(|f| self.value(f))
    }

    /// The top Via, parsed.
    pub fn top_via(&self) -> Option<Via<'_>> {
        self.values(Name::Via).next().and_then(Via::parse)
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.first(Name::CSeq)?;
        let (n, m) = v.split_once(|c: char| c.is_ascii_whitespace())?;
        let m = m.trim();
        if m.is_empty() || !m.bytes().all(is_token) {
            return None;
        }
        Some((n.parse().ok()?, m))
    }

    /// The Max-Forwards value: `Ok(None)` when absent, `Err` when not 0-255.
    pub fn max_forwards(&self) -> Result<Option<u8>, BadMaxForwards> {
        match self.first(Name::MaxForwards) {
            None => Ok(None),
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                // Leading zeros are legal (`0070`); the value is what counts.
                let digits = v.trim_start_matches('0');
                if digits.len() > 3 {
                    return Err(BadMaxForwards);
                }
                if digits.is_empty() { Ok(Some(0)) } else { digits.parse::<u8>().map(Some).map_err(|_| BadMaxForwards) }
            }
            Some(_) => Err(BadMaxForwards),
        }
    }

    /// The tag parameter of the To header.
    pub fn to_tag(&self) -> Option<&str> {
        self.first(Name::To).and_then(tag_of)
    }

    /// The tag parameter of the From header.
    pub fn from_tag(&self) -> Option<&str> {
        self.first(Name::From).and_then(tag_of)
    }

    /// Starts an edited copy for forwarding.
    pub fn edit(&self) -> Edit<'_> {
        Edit {
            msg: self,
            uri: None,
            via: None,
            max_forwards: None,
            remove: Vec::new(),
            pop_first: None,
            pop_routes: 0,
            pop_last_route: false,
            received: None,
            prepend: Vec::new(),
            add: Vec::new(),
            extra: 0,
        }
    }
}

/// A Via value with `received` (when the sent-by host is not the source address)
/// and the `rport` value (when the Via carries `rport`) set for `source`.
pub fn with_received(via: &str, source: std::net::SocketAddr) -> String {
    let Some(parsed) = Via::parse(via) else { return via.to_owned() };
    let host = parsed.host.trim_start_matches('[').trim_end_matches(']');
    let same_host = host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == source.ip());
    let mut parts = via.split(';');
    let mut out = parts.next().unwrap_or("").trim_end().to_owned();
    for p in parts {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
            continue;
        }
        out.push(';');
        out.push_str(p.trim());
    }
    if !same_host || parsed.rport {
        out.push_str(&format!(";received={}", source.ip()));
    }
    if parsed.rport {
        out.push_str(&format!(";rport={}", source.port()));
    }
    out
}

/// The `tag` parameter of a From or To value.
pub fn tag_of(value: &str) -> Option<&str> {
    let (_, tag) = exum_address::name_addr_spans(value)?;
    tag.map(|t| &value[t])
}

/// Splits comma-joined header values, not inside quotes or angle brackets;
/// empty items (an extraneous comma) are skipped.
pub fn split_commas(value: &str) -> impl Iterator<Item = &str> {
    comma_items(value).filter(|item| !item.is_empty())
}

/// Comma-joined header values split outside quotes and angle brackets, each
/// trimmed, empty ones included (validation refuses those). Scans bytes with
/// memchr: every byte it looks for is ASCII, so every cut is a character
/// boundary.
pub fn comma_items(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let b = s.as_bytes();
        let mut i = 0;
        let cut = loop {
            let Some(offset) = memchr::memchr3(b',', b'"', b'<', &b[i..]) else { break None };
            let at = i + offset;
            i = match b[at] {
                b',' => break Some(at),
                // A quoted string, with backslash escapes, to its closing quote.
                b'"' => {
                    let mut j = at + 1;
                    loop {
                        match memchr::memchr2(b'"', b'\\', &b[j..]) {
                            Some(o) if b[j + o] == b'\\' => j += o + 2,
                            Some(o) => break j + o + 1,
                            None => break b.len(),
                        }
                        if j >= b.len() {
                            break b.len();
                        }
                    }
                }
                // An angle-bracketed URI, to its `>`.
                _ => memchr::memchr(b'>', &b[at..]).map_or(b.len(), |o| at + o + 1),
            };
        };
        let (item, next) = match cut {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        rest = next;
        Some(item.trim())
    })
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, WireError> {
    let mut parts = line.split(|&b| b == b' ');
    let a = parts.next().ok_or(WireError::StartLine)?;
    let b = parts.next().ok_or(WireError::StartLine)?;
    if a.starts_with(b"SIP/") {
        if a != b"SIP/2.0" {
            return Err(WireError::Version);
        }
        if b.len() != 3 || !b.iter().all(u8::is_ascii_digit) {
            return Err(WireError::StartLine);
        }
        let code = b.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(WireError::StartLine);
        }
        // `SIP/2.0 ` and the code and its space: the reason phrase follows.
        let reason_start = (8 + 4).min(line.len());
        return Ok(StartLine::Response { code, reason: reason_start..line.len() });
    }
    let c = parts.next().ok_or(WireError::StartLine)?;
    if parts.next().is_some() || a.is_empty() || b.is_empty() || !a.iter().all(|&x| is_token(x)) {
        return Err(WireError::StartLine);
    }
    if c != b"SIP/2.0" {
        return Err(if c.starts_with(b"SIP/") { WireError::Version } else { WireError::StartLine });
    }
    Ok(StartLine::Request { method: 0..a.len(), uri: a.len() + 1..a.len() + 1 + b.len() })
}

/// A Via value, parsed without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The whole value.
    pub value: &'a str,
    /// `UDP`, `TCP`, `TLS`, ...
    pub transport: &'a str,
    /// The sent-by host (IPv6 with brackets).
    pub host: &'a str,
    /// The sent-by port.
    pub port: Option<u16>,
    /// The branch parameter.
    pub branch: Option<&'a str>,
    /// Whether `rport` is present (RFC 3581).
    pub rport: bool,
    /// The `received` parameter.
    pub received: Option<&'a str>,
}

impl<'a> Via<'a> {
    /// Parses `SIP/2.0/UDP host:port;branch=...`: any protocol version (a
    /// request of another version is still answered), white space and folded
    /// line breaks around the slashes, the sent-by and the parameters.
    pub fn parse(value: &'a str) -> Option<Via<'a>> {
        let mut p = value.splitn(3, '/');
        let (name, version, rest) = (p.next()?.trim(), p.next()?.trim(), p.next()?.trim_start());
        if !name.eq_ignore_ascii_case("SIP") || version.is_empty() {
            return None;
        }
        let (transport, rest) = rest.split_once(|c: char| c.is_ascii_whitespace())?;
        if transport.is_empty() || !transport.bytes().all(is_token) {
            return None;
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim(), &rest[i + 1..]),
            None => (rest.trim(), ""),
        };
        let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
            let end = v6.find(']')?;
            let port = v6[end + 1..].strip_prefix(':');
            (&sent_by[..end + 2], port)
        } else {
            match sent_by.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (sent_by, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.trim().parse::<u16>().ok()?),
            None => None,
        };
        if host.is_empty() {
            return None;
        }
        let mut via = Via { value, transport, host: host.trim(), port, branch: None, rport: false, received: None };
        for param in params.split(';') {
            let (n, v) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (param.trim(), None),
            };
            if n.eq_ignore_ascii_case("branch") {
                via.branch = v;
            } else if n.eq_ignore_ascii_case("rport") {
                via.rport = true;
            } else if n.eq_ignore_ascii_case("received") {
                via.received = v;
            }
        }
        Some(via)
    }
}

/// An edited copy of a message being built for forwarding: the edits are
/// recorded, then [`Edit::finish`] copies the untouched byte ranges once and
/// splices the changes in.
#[derive(Debug)]
pub struct Edit<'a> {
    msg: &'a Message,
    uri: Option<String>,
    via: Option<String>,
    max_forwards: Option<u8>,
    remove: Vec<usize>,
    pop_first: Option<Name>,
    /// Route values to remove from the top (the router's own).
    pop_routes: usize,
    pop_last_route: bool,
    received: Option<std::net::SocketAddr>,
    prepend: Vec<(String, String)>,
    add: Vec<(String, String)>,
    extra: usize,
}

impl Edit<'_> {
    /// Rewrites the Request-URI.
    pub fn request_uri(mut self, uri: &str) -> Self {
        self.extra += uri.len();
        self.uri = Some(uri.to_owned());
        self
    }

    /// Prepends a Via header field with this value.
    pub fn prepend_via(mut self, value: String) -> Self {
        self.extra += value.len() + 7;
        self.via = Some(value);
        self
    }

    /// Sets Max-Forwards (adds the header if absent).
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = Some(n);
        self.extra += 20;
        self
    }

    /// Removes every field named `name` (case-insensitive; compact forms of known
    /// headers match their long names).
    pub fn remove(mut self, name: &str) -> Self {
        let known = Name::of(name.as_bytes());
        for (i, f) in self.msg.fields.iter().enumerate() {
            let hit = if known == Name::Other {
                self.msg.text(&f.name_range).eq_ignore_ascii_case(name)
            } else {
                f.name == known
            };
            if hit && !self.remove.contains(&i) {
                self.remove.push(i);
            }
        }
        self
    }

    /// Removes the first Route value (the router's own, loose routing). A field
    /// with several comma-joined values loses only its first value.
    pub fn pop_route(self) -> Self {
        self.pop_routes(1)
    }

    /// Removes the first `n` Route values (the router's own: two when it
    /// record-routed twice, RFC 5658), across Route header fields.
    pub fn pop_routes(mut self, n: usize) -> Self {
        self.pop_routes = n;
        self
    }

    /// Removes the first Via value (the router's own, when relaying a response).
    pub fn pop_via(mut self) -> Self {
        self.pop_first = Some(Name::Via);
        self
    }

    /// Removes the last Route value (strict-route compatibility, RFC 3261 §16.4).
    pub fn pop_last_route(mut self) -> Self {
        self.pop_last_route = true;
        self
    }

    /// Records where the request really came from in its top Via (RFC 3261
    /// §18.2.1, RFC 3581): `received` when the sent-by host differs, and the
    /// `rport` value when the Via asks for it.
    pub fn received(mut self, source: std::net::SocketAddr) -> Self {
        self.received = Some(source);
        self.extra += 40;
        self
    }

    /// Adds a header field before the existing ones (after the new Via, if any):
    /// where Record-Route goes.
    pub fn prepend(mut self, name: &str, value: &str) -> Self {
        self.extra += name.len() + value.len() + 4;
        self.prepend.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header field after the existing ones.
    pub fn add(mut self, name: &str, value: &str) -> Self {
        self.extra += name.len() + value.len() + 4;
        self.add.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Builds the edited message.
    pub fn finish(self) -> Vec<u8> {
        let m = self.msg;
        let buf = &m.buf;
        let mut out = Vec::with_capacity(buf.len() + self.extra + 16);
        // Start line.
        match (&m.start, &self.uri) {
            (StartLine::Request { uri, .. }, Some(new)) => {
                out.extend_from_slice(&buf[..uri.start]);
                out.extend_from_slice(new.as_bytes());
                out.extend_from_slice(&buf[uri.end..m.headers_start]);
            }
            _ => out.extend_from_slice(&buf[..m.headers_start]),
        }
        if let Some(via) = &self.via {
            out.extend_from_slice(b"Via: ");
            out.extend_from_slice(via.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in &self.prepend {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let first_route = self.pop_first.and_then(|name| m.fields.iter().position(|f| f.name == name));
        let mut routes_to_pop = self.pop_routes;
        let last_route = if self.pop_last_route { m.fields.iter().rposition(|f| f.name == Name::Route) } else { None };
        let top_via = self.received.and_then(|_| m.fields.iter().position(|f| f.name == Name::Via));
        let mut wrote_max_forwards = false;
        for (i, f) in m.fields.iter().enumerate() {
            if self.remove.contains(&i) {
                continue;
            }
            if f.name == Name::MaxForwards
                && let Some(n) = self.max_forwards
            {
                if !wrote_max_forwards {
                    out.extend_from_slice(&buf[f.line.start..f.value.start]);
                    out.extend_from_slice(n.to_string().as_bytes());
                    out.extend_from_slice(&buf[f.value.end..f.line.end]);
                    wrote_max_forwards = true;
                }
                continue;
            }
            if f.name == Name::Route && routes_to_pop > 0 && Some(i) != last_route {
                let values: Vec<&str> = split_commas(m.value(f)).collect();
                let drop = routes_to_pop.min(values.len());
                routes_to_pop -= drop;
                if drop < values.len() {
                    out.extend_from_slice(&buf[f.line.start..f.value.start]);
                    out.extend_from_slice(values[drop..].join(", ").as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if Some(i) == first_route || Some(i) == last_route {
                // Keep the other values of the field, if any.
                let values: Vec<&str> = split_commas(m.value(f)).collect();
                let kept = if Some(i) == first_route {
                    &values[values.len().min(1)..]
                } else {
                    &values[..values.len().saturating_sub(1)]
                };
                if !kept.is_empty() {
                    out.extend_from_slice(&buf[f.line.start..f.value.start]);
                    out.extend_from_slice(kept.join(", ").as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                continue;
            }
            if Some(i) == top_via
                && let Some(source) = self.received
            {
                let mut values: Vec<String> = split_commas(m.value(f)).map(str::to_owned).collect();
                if let Some(first) = values.first_mut() {
                    *first = with_received(first, source);
                }
                out.extend_from_slice(&buf[f.line.start..f.value.start]);
                out.extend_from_slice(values.join(", ").as_bytes());
                out.extend_from_slice(b"\r\n");
                continue;
            }
            out.extend_from_slice(&buf[f.line.clone()]);
            if !buf[..f.line.end].ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        if let (Some(n), false) = (self.max_forwards, wrote_max_forwards) {
            out.extend_from_slice(format!("Max-Forwards: {n}\r\n").as_bytes());
        }
        if !m.fields.iter().any(|f| f.name == Name::ContentLength) {
            out.extend_from_slice(format!("Content-Length: {}\r\n", m.body.len()).as_bytes());
        }
        for (name, value) in &self.add {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&buf[m.body.clone()]);
        out
    }
}

#[cfg(test)]
mod tests;

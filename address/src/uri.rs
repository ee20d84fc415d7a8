//! SIP, SIPS and tel URIs: [`UriRef`], parsed without allocating as slices of the
//! text, for the router's hot path; [`Uri`], the owned form with parsed
//! parameters that policies edit and render back to text.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv6Addr;

use crate::normalize_number;

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme:` prefix: no `:` at all, or what precedes the first `:` is not a
    /// scheme name (a letter, then letters, digits, `+`, `-` or `.`).
    NoScheme,
    /// A scheme other than sip, sips or tel, lower-cased. A proxy answers 416
    /// (Unsupported URI Scheme) to a Request-URI with one (RFC 3261 §16.3 step 2).
    UnsupportedScheme(String),
    /// Empty host in a SIP URI, or empty number in a tel URI.
    NoHost,
    /// A port that is not digits for a number from 0 to 65535, or text after an IPv6
    /// reference that is not `:port`. Holds the text found where the port belongs.
    BadPort(String),
    /// An IPv6 reference without its closing `]`, or a name-addr whose `<` is
    /// never closed.
    Unterminated(char),
    /// A character that a URI cannot hold: whitespace, control characters, `<`,
    /// `>` or `"`.
    BadChar(char),
    /// A host with more than one `:`: an IPv6 address without the brackets that
    /// RFC 3261 requires (`sip:2001:db8::1` instead of `sip:[2001:db8::1]`), whose
    /// last group would otherwise be read as a port.
    UnbracketedIpv6,
    /// Brackets around something that is not an IPv6 address (`sip:[contoso.com]`).
    BadIpv6,
    /// Headers (`?name=value`) in a Request-URI, where RFC 3261 §19.1.1 (table 1)
    /// does not allow them; reported by [`UriRef::parse_request_uri`] only.
    HeadersNotAllowed,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::NoScheme => f.write_str("no URI scheme"),
            UriError::UnsupportedScheme(s) => write!(f, "unsupported URI scheme `{s}`"),
            UriError::NoHost => f.write_str("no host"),
            UriError::BadPort(p) => write!(f, "invalid port `{p}`"),
            UriError::Unterminated(c) => write!(f, "unterminated `{c}`"),
            UriError::BadChar(c) => write!(f, "invalid character {c:?} in URI"),
            UriError::UnbracketedIpv6 => f.write_str("IPv6 address without brackets"),
            UriError::BadIpv6 => f.write_str("invalid IPv6 reference"),
            UriError::HeadersNotAllowed => f.write_str("headers in a Request-URI"),
        }
    }
}

impl core::error::Error for UriError {}

/// The scheme of a URI this crate parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:` (RFC 3261).
    Sip,
    /// `sips:`, SIP over TLS on every hop (RFC 3261 §19.1).
    Sips,
    /// `tel:`, a telephone number (RFC 3966).
    Tel,
}

impl Scheme {
    /// The scheme in lower case, without the `:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }

    /// The scheme named `name` (case-insensitive), if it is one of the three.
    pub fn from_name(name: &str) -> Option<Scheme> {
        [Scheme::Sip, Scheme::Sips, Scheme::Tel].into_iter().find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A URI parsed without allocating: slices of the text, in the case they were
/// written in (the scheme excepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriRef<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// The user part without its password, or the number of a tel URI (with its
    /// visual separators, as written).
    pub user: Option<&'a str>,
    /// The password after the user part's first `:`, if any (`secret` in
    /// `sip:alice:secret@contoso.com`). Always `None` for tel.
    pub password: Option<&'a str>,
    /// The host; an IPv6 reference keeps its brackets. Empty for tel.
    pub host: &'a str,
    /// The port.
    pub port: Option<u16>,
    /// The parameters without the leading `;` (`transport=tls;lr`), empty if none;
    /// [`UriRef::params`] iterates over them.
    pub params: &'a str,
    /// The headers without the `?` (`subject=hi&priority=urgent`), escapes as
    /// written.
    pub headers: Option<&'a str>,
}

impl<'a> UriRef<'a> {
    /// Parses an addr-spec (`sip:alice@contoso.com;transport=tcp`), as found in
    /// Contact, Route and Refer-To values once their `<>` are removed. Leading and
    /// trailing whitespace is ignored.
    pub fn parse(text: &'a str) -> Result<UriRef<'a>, UriError> {
        let text = text.trim();
        if let Some(&b) = text.as_bytes().iter().find(|&&b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"')) {
            return Err(UriError::BadChar(char::from(b)));
        }
        let (scheme, rest) = text.split_once(':').ok_or(UriError::NoScheme)?;
        if !is_scheme_name(scheme) {
            return Err(UriError::NoScheme);
        }
        let scheme =
            Scheme::from_name(scheme).ok_or_else(|| UriError::UnsupportedScheme(scheme.to_ascii_lowercase()))?;
        let split_headers = |text: &'a str| match text.split_once('?') {
            Some((before, headers)) => (before, Some(headers)),
            None => (text, None),
        };
        if scheme == Scheme::Tel {
            // RFC 3966: no userinfo or host; parameters follow the number.
            let (rest, headers) = split_headers(rest);
            let (number, params) = rest.split_once(';').unwrap_or((rest, ""));
            if number.is_empty() {
                return Err(UriError::NoHost);
            }
            return Ok(UriRef { scheme, user: Some(number), password: None, host: "", port: None, params, headers });
        }
        // The userinfo ends at the `@`: a user part may hold `;` and `?` (RFC 3261
        // user-unreserved), parameters and headers may not hold `@`. So the `@` is
        // found first, then `;` and `?` after it. Text with several `@` is invalid
        // and read as closely to a valid URI as it can be: the last `@` before the
        // first `?` if there is one (a later `@` is in the headers), else the last
        // `@` of all (the `?` is in the user part).
        let before_question = rest.find('?').map_or(rest, |q| &rest[..q]);
        let (userinfo, hostpart) = match before_question.rfind('@').or_else(|| rest.rfind('@')) {
            Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = split_headers(hostpart);
        let (hostport, params) = hostpart.split_once(';').unwrap_or((hostpart, ""));
        let (user, password) = match userinfo.map(|u| u.split_once(':').ok_or(u)) {
            Some(Ok((user, password))) => (Some(user), Some(password)),
            Some(Err(user)) => (Some(user), None),
            None => (None, None),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(UriError::NoHost);
        }
        Ok(UriRef { scheme, user, password, host, port, params, headers })
    }

    /// Parses a Request-URI: [`UriRef::parse`], and
    /// [`UriError::HeadersNotAllowed`] when it carries headers (RFC 3261 §19.1.1).
    /// Errors of the URI itself come first, so a proxy answers 416, not 400, to
    /// `im:bob@b.com?x=y`.
    pub fn parse_request_uri(text: &'a str) -> Result<UriRef<'a>, UriError> {
        let uri = UriRef::parse(text)?;
        if uri.headers.is_some() {
            return Err(UriError::HeadersNotAllowed);
        }
        Ok(uri)
    }

    /// Whether the scheme is `sip` or `sips`.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The parameters in order, as `(name, value)` slices.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The value of parameter `name` (case-insensitive): `Some(Some(v))` for
    /// `;name=v`, `Some(None)` for a bare `;name`, `None` when absent. The first
    /// of several with that name.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// Whether parameter `name` is present, with or without a value.
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// The address of record, lower-cased: `scheme:user@host` (with the password,
    /// if any) without port, parameters or headers; `tel:number` for tel. The
    /// directory's key for SIP users and contacts. Escaped unreserved
    /// characters are decoded, as [`Uri::address`] does for the same URI.
    pub fn address(&self) -> String {
        let user_len = self.user.map_or(0, str::len) + self.password.map_or(0, |p| p.len() + 1);
        let mut out = String::with_capacity(self.scheme.as_str().len() + user_len + self.host.len() + 2);
        out.push_str(self.scheme.as_str());
        out.push(':');
        if let Some(user) = self.user {
            push_unescaped(&mut out, user);
            if let Some(password) = self.password {
                out.push(':');
                push_unescaped(&mut out, password);
            }
            if !self.host.is_empty() {
                out.push('@');
            }
        }
        out.push_str(self.host);
        out.make_ascii_lowercase();
        out
    }

    /// The E.164 number in the user part (`sip:+14255550100@contoso.com;user=phone`,
    /// `tel:+1-425-555-0100`), by [`normalize_number`], if it holds one.
    pub fn number(&self) -> Option<String> {
        self.user.and_then(normalize_number)
    }

    /// The number's directory key, its extension kept
    /// (`sip:+14255550100;ext=101@contoso.com;user=phone` → `+14255550100;ext=101`),
    /// by [`crate::number_key`].
    pub fn number_key(&self) -> Option<String> {
        let user = self.user?;
        match (self.scheme, self.param("ext")) {
            // A tel URI's extension is one of its parameters.
            (Scheme::Tel, Some(Some(ext))) => crate::number_key(&alloc::format!("{user};ext={ext}")),
            _ => crate::number_key(user),
        }
    }
}

/// The parameters of a URI or of a header value (`transport=tls;lr`, without the
/// leading `;`) as `(name, value)` pairs, trimmed, in order, empty ones skipped.
/// Names and values keep their case.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    rest: Option<&'a str>,
}

impl<'a> Params<'a> {
    /// The parameters in `text` (`gruu;opaque=app:voicemail`).
    pub fn new(text: &'a str) -> Params<'a> {
        Params { rest: Some(text) }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = self.rest?;
            let (piece, rest) = match text.split_once(';') {
                Some((piece, rest)) => (piece, Some(rest)),
                None => (text, None),
            };
            self.rest = rest;
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            return Some(match piece.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (piece, None),
            });
        }
    }
}

/// One URI parameter: `;name=value`, or `;name` without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The name, lower-cased (`opaque`, `transport`).
    pub name: String,
    /// The value as written, or `None` for a bare parameter such as `;gruu`.
    pub value: Option<String>,
}

/// A SIP, SIPS or tel URI, owned and editable. Headers are not kept: this is the
/// URI a request is routed to, rendered back by [`Display`](fmt::Display).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uri {
    /// The scheme, lower-cased: `sip`, `sips` or `tel` (empty if unparseable).
    pub scheme: String,
    /// The user part (`alice`, `+14255550100`) with its password if it has one
    /// (`alice:secret`), or the number of a tel URI.
    pub user: Option<String>,
    /// The host, lower-cased; an IPv6 reference keeps its brackets. Empty for tel.
    pub host: String,
    /// The port, if any.
    pub port: Option<u16>,
    /// The parameters in order.
    pub params: Vec<Param>,
}

impl Uri {
    /// Parses an addr-spec (`sip:alice@contoso.com;transport=tcp`) with
    /// [`UriRef::parse`]; headers are dropped.
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        UriRef::parse(text).map(Uri::from)
    }

    /// The value of parameter `name` (case-insensitive): `Some(Some(v))` for
    /// `;name=v`, `Some(None)` for a bare `;name`, `None` when absent.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|p| p.name.eq_ignore_ascii_case(name)).map(|p| p.value.as_deref())
    }

    /// Whether parameter `name` is present, with or without a value.
    pub fn has_param(&self, name: &str) -> bool {
        self.param(name).is_some()
    }

    /// Whether the URI asks for voice mail: it carries `opaque=app:voicemail`.
    pub fn is_voicemail(&self) -> bool {
        matches!(self.param("opaque"), Some(Some(v)) if v.eq_ignore_ascii_case("app:voicemail"))
    }

    /// The address of record without port or parameters, lower-cased:
    /// `sip:alice@contoso.com` for `sip:Alice@contoso.com:5060;gruu`.
    pub fn address(&self) -> String {
        let mut out = String::with_capacity(self.scheme.len() + self.host.len() + 24);
        out.push_str(&self.scheme);
        out.push(':');
        if let Some(user) = &self.user {
            push_unescaped(&mut out, user);
            if !self.host.is_empty() {
                out.push('@');
            }
        }
        out.push_str(&self.host);
        out.make_ascii_lowercase();
        out
    }

    /// The E.164 number in the user part (`sip:+14255550100@contoso.com;user=phone`,
    /// `tel:+14255550100`), if it holds one.
    pub fn number(&self) -> Option<String> {
        self.user.as_deref().and_then(normalize_number)
    }

    /// The number's directory key, its extension kept (see [`crate::number_key`]).
    pub fn number_key(&self) -> Option<String> {
        let user = self.user.as_deref()?;
        match self.param("ext") {
            Some(Some(ext)) if self.scheme.eq_ignore_ascii_case("tel") => {
                crate::number_key(&alloc::format!("{user};ext={ext}"))
            }
            _ => crate::number_key(user),
        }
    }

    /// Sets parameter `name` to `value`, replacing any existing one.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self.params.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
            Some(p) => p.value = value,
            None => self.params.push(Param { name: name.to_owned(), value }),
        }
    }
}

impl From<UriRef<'_>> for Uri {
    fn from(r: UriRef<'_>) -> Uri {
        let user = match (r.user, r.password) {
            (Some(user), Some(password)) => {
                let mut u = String::with_capacity(user.len() + password.len() + 1);
                u.push_str(user);
                u.push(':');
                u.push_str(password);
                Some(u)
            }
            (user, _) => user.map(str::to_owned),
        };
        Uri {
            scheme: r.scheme.as_str().to_owned(),
            user,
            host: r.host.to_ascii_lowercase(),
            port: r.port,
            params: r
                .params()
                .map(|(name, value)| Param { name: name.to_ascii_lowercase(), value: value.map(str::to_owned) })
                .collect(),
        }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if !self.host.is_empty() {
                f.write_str("@")?;
            }
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        Ok(())
    }
}

/// The address inside an IPv6 reference (`2001:db8::1` of `[2001:db8::1]`),
/// tolerating three colons before an embedded IPv4 address
/// (`2001:db8:::192.0.2.1`), which RFC 3261's ABNF allowed and RFC 5118 §4.10
/// asks implementations to accept as `2001:db8::192.0.2.1`.
pub fn ipv6_reference(inner: &str) -> Option<Ipv6Addr> {
    if let Ok(ip) = inner.parse::<Ipv6Addr>() {
        return Some(ip);
    }
    let (head, tail) = inner.split_once(":::")?;
    if tail.contains(':') || tail.parse::<core::net::Ipv4Addr>().is_err() {
        return None;
    }
    let mut fixed = String::with_capacity(inner.len());
    fixed.push_str(head);
    fixed.push_str("::");
    fixed.push_str(tail);
    fixed.parse().ok()
}

/// The IP address a URI's host names, if it is one: an IPv4 address, or an
/// IPv6 reference with or without its brackets (see [`ipv6_reference`]).
pub fn ip_literal(host: &str) -> Option<core::net::IpAddr> {
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match inner.parse::<core::net::IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) if inner.contains(':') => ipv6_reference(inner).map(core::net::IpAddr::V6),
        Err(_) => None,
    }
}

/// RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`.
fn is_scheme_name(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let end = inner.find(']').ok_or(UriError::Unterminated('['))?;
        if ipv6_reference(&inner[..end]).is_none() {
            return Err(UriError::BadIpv6);
        }
        let after = &inner[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(UriError::BadPort(after.to_owned())),
        };
        // `[` plus the address plus `]`.
        (&hostport[..end + 2], port)
    } else {
        match hostport.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(UriError::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| UriError::BadPort(p.to_owned()))?)
        }
        Some(p) => return Err(UriError::BadPort(p.to_owned())),
        None => None,
    };
    Ok((host, port))
}

/// Appends a user part with the escapes of unreserved characters decoded: in a
/// comparison, a character other than a reserved one is equivalent to its
/// `%HEX` encoding (RFC 3261 §19.1.4), so `b%6Fb` and `bob` are one user.
fn push_unescaped(out: &mut String, user: &str) {
    let bytes = user.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex))
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&c) {
                out.push(char::from(c));
                i += 3;
                continue;
            }
        }
        let len = user[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&user[i..i + len]);
        i += len;
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_escaped_unreserved_character_is_the_character_in_an_address() {
        let escaped = UriRef::parse("sip:b%6Fb@Contoso.com;opaque=app:voicemail").expect("valid");
        assert_eq!(escaped.address(), "sip:bob@contoso.com");
        assert_eq!(escaped.user, Some("b%6Fb"), "the URI itself keeps its escapes");
        let reserved = UriRef::parse("sip:a%3Bb%40c@contoso.com").expect("valid");
        assert_eq!(reserved.address(), "sip:a%3bb%40c@contoso.com", "reserved characters stay escaped");
        assert_eq!(Uri::parse("sip:%61lice@x.com").expect("valid").address(), "sip:alice@x.com");
        // The owned form's address is the same, password included.
        for text in ["sip:b%6Fb:p%61ss@Contoso.com", "sips:%41@x.com;gruu", "tel:+1-425-555-0100;ext=1"] {
            let r = UriRef::parse(text).expect("valid");
            assert_eq!(r.address(), Uri::from(r).address(), "{text}");
        }
    }
    use std::string::ToString;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_sip_uri_with_params() {
        let u = UriRef::parse("sip:alice@Contoso.com;gruu;opaque=app:voicemail").expect("valid");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!((u.user, u.password, u.host, u.port), (Some("alice"), None, "Contoso.com", None));
        assert_eq!(u.params, "gruu;opaque=app:voicemail");
        assert_eq!(u.param("OPAQUE"), Some(Some("app:voicemail")));
        assert_eq!(u.param("gruu"), Some(None));
        assert_eq!(u.param("lr"), None);
        assert_eq!(u.address(), "sip:alice@contoso.com");
        let owned = Uri::parse("sip:alice@Contoso.com;gruu;opaque=app:voicemail").expect("valid");
        assert_eq!(owned.host, "contoso.com");
        assert_eq!(owned.to_string(), "sip:alice@contoso.com;gruu;opaque=app:voicemail");
    }

    #[test]
    fn parses_gruu_voicemail_uri() {
        let uri = Uri::parse("sip:Alice@Contoso.com;gruu;opaque=app:voicemail").expect("valid");
        assert_eq!(uri.user.as_deref(), Some("Alice"));
        assert_eq!(uri.host, "contoso.com");
        assert!(uri.has_param("gruu"));
        assert!(uri.is_voicemail());
        assert_eq!(uri.address(), "sip:alice@contoso.com");
        assert_eq!(uri.to_string(), "sip:Alice@contoso.com;gruu;opaque=app:voicemail");
    }

    #[test]
    fn schemes_are_case_insensitive_and_rendered_lower_case() {
        let u = UriRef::parse("SIPS:Bob@B.com").expect("valid");
        assert_eq!(u.scheme, Scheme::Sips);
        assert!(u.is_sip());
        assert_eq!(u.address(), "sips:bob@b.com");
        assert_eq!(Uri::parse("TEL:+1").expect("valid").scheme, "tel");
        assert_eq!(Scheme::from_name("Tel"), Some(Scheme::Tel));
        assert_eq!(Scheme::Sips.to_string(), "sips");
    }

    #[test]
    fn parses_ipv6_and_ports() {
        let u = UriRef::parse("sip:[2001:db8::1]:5061;transport=tls").expect("valid");
        assert_eq!((u.host, u.port), ("[2001:db8::1]", Some(5061)));
        let u = UriRef::parse("sip:bob@[::ffff:192.0.2.1]").expect("IPv4-suffixed IPv6");
        assert_eq!((u.host, u.port), ("[::ffff:192.0.2.1]", None));
        let u = UriRef::parse("sip:bob@um1.contoso.com:0").expect("valid");
        assert_eq!(u.port, Some(0));
        assert_eq!(UriRef::parse("sip:um1.contoso.com:99999"), Err(UriError::BadPort("99999".into())));
        assert_eq!(UriRef::parse("sip:um1.contoso.com:"), Err(UriError::BadPort("".into())));
        assert_eq!(UriRef::parse("sip:um1.contoso.com:+5060"), Err(UriError::BadPort("+5060".into())));
        assert_eq!(UriRef::parse("sip:um1.contoso.com:50x"), Err(UriError::BadPort("50x".into())));
        assert_eq!(UriRef::parse("sip:[2001:db8::1"), Err(UriError::Unterminated('[')));
        assert_eq!(UriRef::parse("sip:[2001:db8::1]5061"), Err(UriError::BadPort("5061".into())));
        assert_eq!(UriRef::parse("sip:[2001:db8::1]:x"), Err(UriError::BadPort("x".into())));
    }

    #[test]
    fn refuses_ipv6_without_brackets_and_bad_references() {
        assert_eq!(UriRef::parse("sip:2001:db8::1"), Err(UriError::UnbracketedIpv6));
        assert_eq!(UriRef::parse("sip:alice@2001:db8::1:5060"), Err(UriError::UnbracketedIpv6));
        assert_eq!(UriRef::parse("sip:::1"), Err(UriError::UnbracketedIpv6));
        assert_eq!(UriRef::parse("sip:[contoso.com]"), Err(UriError::BadIpv6));
        assert_eq!(UriRef::parse("sip:[]"), Err(UriError::BadIpv6));
        assert_eq!(UriRef::parse("sip:[192.0.2.1]:5060"), Err(UriError::BadIpv6));
    }

    #[test]
    fn refuses_other_schemes_and_junk() {
        assert_eq!(UriRef::parse("http://x"), Err(UriError::UnsupportedScheme("http".into())));
        assert_eq!(UriRef::parse("MailTo:a@b"), Err(UriError::UnsupportedScheme("mailto".into())));
        assert_eq!(UriRef::parse("alice"), Err(UriError::NoScheme));
        assert_eq!(UriRef::parse(":alice"), Err(UriError::NoScheme));
        // Not a scheme name: a forgotten `sip:`, not an unsupported scheme (400, not 416).
        assert_eq!(UriRef::parse("alice@contoso.com:5060"), Err(UriError::NoScheme));
        assert_eq!(UriRef::parse("1sip:a@b"), Err(UriError::NoScheme));
        assert_eq!(UriRef::parse("sip:"), Err(UriError::NoHost));
        assert_eq!(UriRef::parse("sip:alice@"), Err(UriError::NoHost));
        assert_eq!(UriRef::parse("sip:alice@;lr"), Err(UriError::NoHost));
        assert_eq!(UriRef::parse("tel:"), Err(UriError::NoHost));
        assert_eq!(UriRef::parse("tel:;phone-context=x"), Err(UriError::NoHost));
        assert!(matches!(UriRef::parse("sip:a@b\r\nVia: x"), Err(UriError::BadChar('\r'))));
        assert_eq!(UriRef::parse("sip:a b@c"), Err(UriError::BadChar(' ')));
        assert_eq!(UriRef::parse("sip:a@b>"), Err(UriError::BadChar('>')));
        assert_eq!(UriRef::parse("sip:a\"@b"), Err(UriError::BadChar('"')));
        assert_eq!(UriRef::parse("sip:a@b\x7f"), Err(UriError::BadChar('\x7f')));
        assert_eq!(UriRef::parse("  sip:a@b  ").map(|u| u.host), Ok("b"));
    }

    #[test]
    fn parses_tel_uris() {
        let t = UriRef::parse("tel:+1-425-555-0100;ext=100;phone-context=x").expect("valid");
        assert_eq!((t.scheme, t.user, t.host, t.port), (Scheme::Tel, Some("+1-425-555-0100"), "", None));
        assert!(!t.is_sip());
        assert_eq!(t.param("ext"), Some(Some("100")));
        assert_eq!(t.number().as_deref(), Some("+14255550100"));
        assert_eq!(t.address(), "tel:+1-425-555-0100");
        let owned = Uri::parse("tel:+14255550100;ext=100").expect("valid");
        assert_eq!(owned.number().as_deref(), Some("+14255550100"));
        assert_eq!(owned.to_string(), "tel:+14255550100;ext=100");
    }

    #[test]
    fn user_parameters_and_passwords() {
        let u = UriRef::parse("sip:+14255550100;phone-context=dp1@contoso.com;user=phone").expect("valid");
        assert_eq!(u.user, Some("+14255550100;phone-context=dp1"));
        assert_eq!((u.host, u.params), ("contoso.com", "user=phone"));
        assert_eq!(u.number().as_deref(), Some("+14255550100"));
        let u = UriRef::parse("sip:alice:Secret@contoso.com:5060").expect("valid");
        assert_eq!((u.user, u.password, u.port), (Some("alice"), Some("Secret"), Some(5060)));
        assert_eq!(u.address(), "sip:alice:secret@contoso.com");
        let owned = Uri::from(u);
        assert_eq!(owned.user.as_deref(), Some("alice:Secret"));
        assert_eq!(owned.to_string(), "sip:alice:Secret@contoso.com:5060");
        assert_eq!(UriRef::parse("sip:alice:@b").map(|u| u.password), Ok(Some("")));
        assert_eq!(UriRef::parse("sip:contoso.com").map(|u| (u.user, u.host)), Ok((None, "contoso.com")));
    }

    #[test]
    fn headers_are_kept_apart_and_refused_in_a_request_uri() {
        let u = UriRef::parse("sip:bob@b.com;method=REFER?subject=hi&priority=urgent").expect("valid");
        assert_eq!((u.host, u.params, u.headers), ("b.com", "method=REFER", Some("subject=hi&priority=urgent")));
        let owned = Uri::from(u);
        assert_eq!(owned.to_string(), "sip:bob@b.com;method=REFER");
        assert_eq!(UriRef::parse_request_uri("sip:bob@b.com?subject=hi"), Err(UriError::HeadersNotAllowed));
        assert_eq!(UriRef::parse_request_uri("sip:bob@b.com?"), Err(UriError::HeadersNotAllowed));
        assert_eq!(UriRef::parse_request_uri("im:bob@b.com?x=y"), Err(UriError::UnsupportedScheme("im".into())));
        assert_eq!(UriRef::parse_request_uri("sip:bob@b.com;lr").map(|u| u.headers), Ok(None));
    }

    #[test]
    fn user_parts_may_hold_question_marks_and_semicolons() {
        // RFC 4475 §3.1.1.2 intmeth, as in tests/torture: routed, not refused for headers.
        let text = "sip:bob.(voice~mail)!*'&=+$,;?/x:pa$s&w=rd+,@contoso.com;transport=udp";
        let u = UriRef::parse_request_uri(text).expect("valid");
        assert_eq!((u.user, u.password), (Some("bob.(voice~mail)!*'&=+$,;?/x"), Some("pa$s&w=rd+,")));
        assert_eq!((u.host, u.params, u.headers), ("contoso.com", "transport=udp", None));
        let u = UriRef::parse("sip:a?b@host;lr?h=1").expect("valid");
        assert_eq!((u.user, u.host, u.params, u.headers), (Some("a?b"), "host", "lr", Some("h=1")));
        // Invalid: an unescaped `@` in a header. The `@` before the `?` ends the userinfo.
        let u = UriRef::parse("sip:bob@contoso.com?Replaces=abc@host").expect("read leniently");
        assert_eq!((u.user, u.host, u.headers), (Some("bob"), "contoso.com", Some("Replaces=abc@host")));
        // Invalid: an unescaped `@` in the user part. The last `@` ends it.
        let u = UriRef::parse("sip:alice@fabrikam.com@contoso.com").expect("read leniently");
        assert_eq!((u.user, u.host), (Some("alice@fabrikam.com"), "contoso.com"));
    }

    #[test]
    fn request_uris_of_the_torture_corpus() {
        // tests/torture: RFC 4475 and RFC 5118 Request-URIs, and what the router answers.
        for ok in [
            "sip:b%6Fb@contoso.com;opaque=app:voicemail",
            "sip:bob;mailbox=bob%40vm.contoso.com@contoso.com",
            "sip:bob@contoso.com;unknownparam",
            "sip:[2001:db8::10]",
            "sip:[2001:db8::10:5070]",
            "sip:[2001:db8::10]:5070",
            "sip:bob@[2001:db8::192.0.2.1]",
            // RFC 5118 §4.10: three colons before an embedded IPv4 address, tolerated.
            "sip:bob@[2001:db8:::192.0.2.1]",
        ] {
            assert!(UriRef::parse_request_uri(ok).is_ok(), "{ok}");
        }
        let three = UriRef::parse("sip:bob@[2001:db8:::192.0.2.1]:5070").expect("tolerated");
        assert_eq!((three.host, three.port), ("[2001:db8:::192.0.2.1]", Some(5070)));
        assert_eq!(ip_literal(three.host), "2001:db8::192.0.2.1".parse().ok());
        assert_eq!(ip_literal("192.0.2.1"), "192.0.2.1".parse().ok());
        assert_eq!(ip_literal("[2001:db8::1]"), "2001:db8::1".parse().ok());
        assert_eq!(ip_literal("contoso.com"), None);
        let u = UriRef::parse("sip:[2001:db8::10:5070]").expect("valid");
        assert_eq!((u.host, u.port), ("[2001:db8::10:5070]", None));
        for (bad, error) in [
            ("<sip:bob@contoso.com;opaque=app:voicemail>", UriError::BadChar('<')),
            (
                "sip:bob@contoso.com;opaque=app:voicemail?Route=%3Csip:pstn.fabrikam.com%3Blr%3E",
                UriError::HeadersNotAllowed,
            ),
            ("sip:2001:db8::10", UriError::UnbracketedIpv6),
            ("sip:bob@[2001:db8::::192.0.2.1]", UriError::BadIpv6),
            ("sip:bob@[2001:db8:::10]", UriError::BadIpv6),
            ("sip:bob@[192.0.2.1]", UriError::BadIpv6),
            ("im:bob@contoso.com", UriError::UnsupportedScheme("im".into())),
            (
                "exum-unrouted+scheme.v1:opaque/content;for=bob?x",
                UriError::UnsupportedScheme("exum-unrouted+scheme.v1".into()),
            ),
        ] {
            assert_eq!(UriRef::parse_request_uri(bad), Err(error), "{bad}");
        }
    }

    #[test]
    fn params_iterate_trimmed_and_skip_empty_ones() {
        let p: Vec<_> = Params::new(" lr ;; Transport = TLS ;;=x;maddr=").collect();
        assert_eq!(p, [("lr", None), ("Transport", Some("TLS")), ("", Some("x")), ("maddr", Some(""))]);
        assert_eq!(Params::new("").next(), None);
        assert_eq!(Params::new(" ; ").next(), None);
        let owned = Uri::parse("sip:a@b;;Transport=TLS;").expect("valid");
        assert_eq!(owned.params, [Param { name: "transport".into(), value: Some("TLS".into()) }]);
    }

    #[test]
    fn edits_params() {
        let mut u = Uri::parse("sip:alice@contoso.com:5060;transport=tcp;opaque=app:voicemail").expect("valid");
        u.port = None;
        u.set_param("TRANSPORT", Some("tls"));
        u.set_param("ms-destination", Some("exap.um.outlook.com"));
        u.set_param("lr", None);
        assert_eq!(
            u.to_string(),
            "sip:alice@contoso.com;transport=tls;opaque=app:voicemail;ms-destination=exap.um.outlook.com;lr"
        );
        assert_eq!(Uri::default().address(), ":");
        assert!(!Uri::default().is_voicemail());
    }

    #[test]
    fn errors_render_as_sentences() {
        assert_eq!(UriError::UnsupportedScheme("http".into()).to_string(), "unsupported URI scheme `http`");
        assert_eq!(UriError::BadPort("99999".into()).to_string(), "invalid port `99999`");
        assert_eq!(UriError::BadChar('\r').to_string(), "invalid character '\\r' in URI");
        assert_eq!(UriError::Unterminated('<').to_string(), "unterminated `<`");
    }

    fn token() -> impl Strategy<Value = String> {
        // RFC 3261 user-unreserved included: `;` and `?` too.
        "[a-zA-Z0-9][a-zA-Z0-9.+_;?&=$,/-]{0,10}"
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){0,3}",
            any::<[u16; 8]>().prop_map(|g| std::format!("[{}]", Ipv6Addr::from(g))),
            any::<[u8; 4]>().prop_map(|o| std::format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        ]
    }

    fn params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
        proptest::collection::vec(("[a-z][a-z0-9-]{0,8}", proptest::option::of("[a-zA-Z0-9:._-]{0,10}")), 0..4)
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = UriRef::parse(&text);
            let _ = UriRef::parse_request_uri(&text);
        }

        #[test]
        fn parse_never_panics_on_uri_like_text(text in "(sips?|tel|x):[a-z0-9@:;?=\\[\\]+.%&-]{0,40}") {
            if let Ok(u) = UriRef::parse(&text) {
                prop_assert!(u.host.is_empty() == (u.scheme == Scheme::Tel));
                let _ = (u.address(), u.number(), Uri::from(u).to_string());
            }
        }

        #[test]
        fn generated_uris_parse_to_their_parts(
            secure in any::<bool>(),
            user in proptest::option::of(token()),
            password in proptest::option::of("[a-z0-9]{0,6}"),
            host in host(),
            port in proptest::option::of(any::<u16>()),
            params in params(),
            headers in proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
        ) {
            let scheme = if secure { Scheme::Sips } else { Scheme::Sip };
            let password = password.filter(|_| user.is_some());
            let mut text = std::format!("{scheme}:");
            if let Some(user) = &user {
                text.push_str(user);
                if let Some(password) = &password {
                    text.push(':');
                    text.push_str(password);
                }
                text.push('@');
            }
            text.push_str(&host);
            if let Some(port) = port {
                text.push_str(&std::format!(":{port}"));
            }
            for (name, value) in &params {
                text.push(';');
                text.push_str(name);
                if let Some(value) = value {
                    text.push('=');
                    text.push_str(value);
                }
            }
            if let Some(headers) = &headers {
                text.push('?');
                text.push_str(headers);
            }
            let u = UriRef::parse(&text).map_err(|e| TestCaseError::fail(std::format!("{text}: {e}")))?;
            prop_assert_eq!(u.scheme, scheme);
            prop_assert_eq!(u.user, user.as_deref());
            prop_assert_eq!(u.password, password.as_deref());
            prop_assert_eq!(u.host, host.as_str());
            prop_assert_eq!(u.port, port);
            prop_assert_eq!(u.headers, headers.as_deref());
            let parsed: Vec<_> = u.params().map(|(n, v)| (n.to_owned(), v.map(str::to_owned))).collect();
            prop_assert_eq!(&parsed, &params);
            prop_assert_eq!(UriRef::parse_request_uri(&text).is_err(), headers.is_some());
            // The owned form renders back to what it parsed, less the headers.
            let owned = Uri::from(u);
            let rendered = owned.to_string();
            let without_headers = text[..text.len() - headers.as_ref().map_or(0, |h| h.len() + 1)].to_ascii_lowercase();
            prop_assert_eq!(rendered.to_ascii_lowercase(), without_headers);
            prop_assert_eq!(Uri::parse(&rendered), Ok(owned));
        }
    }
}

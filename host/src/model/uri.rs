//! SIP, SIPS and tel URIs: parsing (including IPv6 references and name-addr forms)
//! and rendering.

use std::fmt;

/// Why a URI did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` prefix.
    #[error("no URI scheme")]
    NoScheme,
    /// A scheme other than sip, sips or tel.
    #[error("unsupported URI scheme `{0}`")]
    UnsupportedScheme(String),
    /// Empty host in a SIP URI, or empty number in a tel URI.
    #[error("no host")]
    NoHost,
    /// A port that is not a number from 0 to 65535.
    #[error("invalid port `{0}`")]
    BadPort(String),
    /// An IPv6 reference without its closing bracket, or an unclosed `<`.
    #[error("unterminated `{0}`")]
    Unterminated(char),
    /// A character that a URI cannot hold (whitespace, control characters, `<>"`).
    #[error("invalid character {0:?} in URI")]
    BadChar(char),
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// `sip`, `sips` or `tel`, lower-cased.
    pub scheme: String,
    /// The user part, or the number of a tel URI.
    pub user: Option<String>,
    /// The host, lower-cased; IPv6 references keep their brackets. Empty for tel.
    pub host: String,
    /// The port, if any.
    pub port: Option<u16>,
    /// Parameters in order; names lower-cased.
    pub params: Vec<(String, Option<String>)>,
    /// Headers (`?name=value&...`), kept verbatim without the `?`.
    pub headers: Option<String>,
}

/// A URI parsed without allocating: slices of the text. Scheme and host keep the
/// case they were written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriRef<'a> {
    /// `sip`, `sips` or `tel`, as written.
    pub scheme: &'a str,
    /// The user part, or the number of a tel URI.
    pub user: Option<&'a str>,
    /// The host (IPv6 references with brackets); empty for tel.
    pub host: &'a str,
    /// The port.
    pub port: Option<u16>,
    /// The parameters without the leading `;` (`transport=tls;lr`), empty if none.
    pub params: &'a str,
    /// The headers without the `?`.
    pub headers: Option<&'a str>,
}

impl<'a> UriRef<'a> {
    /// Parses an addr-spec (`sip:alice@contoso.com;transport=tcp`).
    pub fn parse(text: &'a str) -> Result<UriRef<'a>, UriError> {
        let text = text.trim();
        if let Some(&b) = text.as_bytes().iter().find(|&&b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"')) {
            return Err(UriError::BadChar(char::from(b)));
        }
        let (scheme, rest) = text.split_once(':').ok_or(UriError::NoScheme)?;
        if !(scheme.eq_ignore_ascii_case("sip")
            || scheme.eq_ignore_ascii_case("sips")
            || scheme.eq_ignore_ascii_case("tel"))
        {
            return Err(UriError::UnsupportedScheme(scheme.to_ascii_lowercase()));
        }
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        // The user part may hold ';' (user parameters), so split params after '@'.
        let at = rest.rfind('@').map_or(0, |i| i + 1);
        let (main, params) = match rest[at..].find(';') {
            Some(i) => (&rest[..at + i], &rest[at + i + 1..]),
            None => (rest, ""),
        };
        if scheme.eq_ignore_ascii_case("tel") {
            if main.is_empty() {
                return Err(UriError::NoHost);
            }
            return Ok(UriRef { scheme, user: Some(main), host: "", port: None, params, headers });
        }
        let (user, hostport) = match main.rfind('@') {
            Some(i) => (Some(&main[..i]), &main[i + 1..]),
            None => (None, main),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(UriError::NoHost);
        }
        Ok(UriRef { scheme, user, host, port, params, headers })
    }

    /// Whether the scheme is `sip` or `sips`.
    pub fn is_sip(&self) -> bool {
        !self.scheme.eq_ignore_ascii_case("tel")
    }

    /// The address of record, lower-cased: `scheme:user@host`.
    pub fn address(&self) -> String {
        let mut out = String::with_capacity(self.scheme.len() + self.host.len() + self.user.map_or(0, str::len) + 2);
        out.push_str(self.scheme);
        out.push(':');
        if let Some(user) = self.user {
            out.push_str(user);
            if !self.host.is_empty() {
                out.push('@');
            }
        }
        out.push_str(self.host);
        out.make_ascii_lowercase();
        out
    }
}

impl Uri {
    /// Parses an addr-spec (`sip:alice@contoso.com;transport=tcp`).
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let r = UriRef::parse(text)?;
        Ok(Uri {
            scheme: r.scheme.to_ascii_lowercase(),
            user: r.user.map(str::to_owned),
            host: r.host.to_ascii_lowercase(),
            port: r.port,
            params: parse_params(r.params),
            headers: r.headers.map(str::to_owned),
        })
    }

    /// Parses a name-addr or addr-spec as found in From, To, Contact, Route and
    /// Diversion: `"Alice" <sip:alice@contoso.com>;tag=1`. Returns the URI, the
    /// display name (unquoted) and the header parameters after the URI.
    pub fn parse_name_addr(text: &str) -> Result<NameAddr, UriError> {
        let text = text.trim();
        if let Some(lt) = find_unquoted(text, '<') {
            let close = text[lt..].find('>').ok_or(UriError::Unterminated('<'))? + lt;
            let display = text[..lt].trim();
            let display = display.strip_prefix('"').and_then(|d| d.strip_suffix('"')).unwrap_or(display);
            let uri = Uri::parse(&text[lt + 1..close])?;
            let params = text[close + 1..].trim_start().strip_prefix(';').map(parse_params).unwrap_or_default();
            return Ok(NameAddr { uri, display_name: (!display.is_empty()).then(|| display.to_owned()), params });
        }
        // addr-spec form: parameters after the URI belong to the header, not the URI.
        let (uri_text, params) = match text.find(';') {
            Some(i) => (&text[..i], parse_params(&text[i + 1..])),
            None => (text, Vec::new()),
        };
        Ok(NameAddr { uri: Uri::parse(uri_text)?, display_name: None, params })
    }

    /// The value of parameter `name`: `Some(Some(v))`, `Some(None)` for a bare one.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref())
    }

    /// The address of record: `scheme:user@host`, lower-cased, without port or
    /// parameters. The directory's key for users and contacts.
    pub fn address(&self) -> String {
        let mut out = format!("{}:", self.scheme);
        if let Some(user) = &self.user {
            out.push_str(user);
            if !self.host.is_empty() {
                out.push('@');
            }
        }
        out.push_str(&self.host);
        out.make_ascii_lowercase();
        out
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
        for (name, value) in &self.params {
            write!(f, ";{name}")?;
            if let Some(v) = value {
                write!(f, "={v}")?;
            }
        }
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// A name-addr: URI, display name and the header's own parameters (`tag`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The URI.
    pub uri: Uri,
    /// The display name without quotes.
    pub display_name: Option<String>,
    /// Header parameters after the URI (`tag=...`), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == "tag").and_then(|(_, v)| v.as_deref())
    }
}

/// Where the URI and the `tag` value lie in a name-addr header value (From, To),
/// as byte ranges of `value`. `None` if the value has an unclosed `<`.
pub fn name_addr_spans(value: &str) -> Option<(std::ops::Range<usize>, Option<std::ops::Range<usize>>)> {
    let (uri, params_start) = match find_unquoted(value, '<') {
        Some(lt) => {
            let close = value[lt..].find('>')? + lt;
            (lt + 1..close, close + 1)
        }
        None => {
            let start = value.len() - value.trim_start().len();
            let end = value.find(';').unwrap_or(value.len());
            (start..value[..end].trim_end().len().max(start), end)
        }
    };
    let mut tag = None;
    let mut offset = params_start;
    for param in value[params_start.min(value.len())..].split(';') {
        let here = offset;
        offset += param.len() + 1;
        if let Some((name, v)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("tag")
        {
            let lead = v.len() - v.trim_start().len();
            let start = here + name.len() + 1 + lead;
            tag = Some(start..start + v.trim().len());
        }
    }
    Some((uri, tag))
}

fn parse_params(text: &str) -> Vec<(String, Option<String>)> {
    text.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
            None => (p.to_ascii_lowercase(), None),
        })
        .collect()
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport.find(']').ok_or(UriError::Unterminated('['))?;
        let rest = &hostport[end + 1..];
        (&hostport[..=end], if rest.is_empty() { None } else { Some(rest.strip_prefix(':').unwrap_or(rest)) })
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().map_err(|_| UriError::BadPort(p.to_owned()))?),
        None => None,
    };
    Ok((host, port))
}

fn find_unquoted(text: &str, needle: char) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == needle && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// Normalises a number to E.164 (`+14255550100`); the form the directory keys numbers by.
pub fn normalize_number(number: &str) -> Option<String> {
    let number = number.trim();
    let number = number.strip_prefix("tel:").unwrap_or(number);
    let number = number.split(';').next().unwrap_or(number);
    let digits = if let Some(rest) = number.strip_prefix('+') { rest } else { number.strip_prefix("00")? };
    let mut out = String::with_capacity(16);
    out.push('+');
    for c in digits.chars() {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (2..=16).contains(&out.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sip_uri_with_params() {
        let u = Uri::parse("sip:alice@Contoso.com;gruu;opaque=app:voicemail").expect("valid");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, "contoso.com");
        assert_eq!(u.param("opaque"), Some(Some("app:voicemail")));
        assert_eq!(u.param("gruu"), Some(None));
        assert_eq!(u.to_string(), "sip:alice@contoso.com;gruu;opaque=app:voicemail");
    }

    #[test]
    fn parses_ipv6_and_ports() {
        let u = Uri::parse("sip:[2001:db8::1]:5061;transport=tls").expect("valid");
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(Uri::parse("sip:um1.contoso.com:99999"), Err(UriError::BadPort("99999".into())));
        assert_eq!(Uri::parse("sip:[2001:db8::1"), Err(UriError::Unterminated('[')));
    }

    #[test]
    fn refuses_other_schemes_and_junk() {
        assert_eq!(Uri::parse("http://x"), Err(UriError::UnsupportedScheme("http".into())));
        assert_eq!(Uri::parse("alice"), Err(UriError::NoScheme));
        assert_eq!(Uri::parse("sip:"), Err(UriError::NoHost));
        assert!(matches!(Uri::parse("sip:a@b\r\nVia: x"), Err(UriError::BadChar(_))));
    }

    #[test]
    fn parses_name_addr_forms() {
        let n = Uri::parse_name_addr("\"Bob <B>\" <sip:bob@contoso.com>;tag=9fx").expect("valid");
        assert_eq!(n.display_name.as_deref(), Some("Bob <B>"));
        assert_eq!(n.tag(), Some("9fx"));
        let n = Uri::parse_name_addr("sip:bob@contoso.com;tag=1").expect("valid");
        assert_eq!(n.tag(), Some("1"));
        assert!(n.uri.params.is_empty());
        assert_eq!(Uri::parse_name_addr("<sip:bob@contoso.com"), Err(UriError::Unterminated('<')));
    }
}

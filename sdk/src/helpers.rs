//! Helpers for the chores every policy has: URIs and their parameters, numbers,
//! header lookup, building decisions, hosted voice-mail policy resolution.

use std::fmt;

use crate::{
    Decision, Forward, Header, HostedVoicemailPolicy, Param, PolicyScope, Redirect, Reject,
    Request, Target, Transport, Uri, host,
};

impl Uri {
    /// The value of parameter `name` (case-insensitive): `Some(Some(v))` for
    /// `;name=v`, `Some(None)` for a bare `;name`, `None` when absent.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
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
        let mut out = String::with_capacity(self.host.len() + 24);
        out.push_str(&self.scheme);
        out.push(':');
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

    /// The E.164 number in the user part (`sip:+14255550100@contoso.com;user=phone`,
    /// `tel:+14255550100`), if it holds one.
    pub fn number(&self) -> Option<String> {
        self.user.as_deref().and_then(normalize_number)
    }

    /// Sets parameter `name` to `value`, replacing any existing one.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .params
            .iter_mut()
            .find(|p| p.name.eq_ignore_ascii_case(name))
        {
            Some(p) => p.value = value,
            None => self.params.push(Param {
                name: name.to_owned(),
                value,
            }),
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

/// Parses a `sip:`, `sips:` or `tel:` URI, with or without angle brackets
/// (`<sip:alice@contoso.com>;tag=1` yields the URI inside the brackets). Returns
/// `None` for anything else.
pub fn parse_uri(text: &str) -> Option<Uri> {
    let text = text.trim();
    let text = match text.find('<') {
        Some(start) => {
            let rest = &text[start + 1..];
            &rest[..rest.find('>')?]
        }
        None => text,
    };
    let (scheme, rest) = text.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "sip" | "sips" | "tel") {
        return None;
    }
    let (main, params) = match rest.find(';') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let main = main.split('?').next().unwrap_or(main);
    let params: Vec<Param> = params
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => Param {
                name: n.trim().to_ascii_lowercase(),
                value: Some(v.trim().to_owned()),
            },
            None => Param {
                name: p.trim().to_ascii_lowercase(),
                value: None,
            },
        })
        .collect();
    if scheme == "tel" {
        if main.is_empty() {
            return None;
        }
        return Some(Uri {
            scheme,
            user: Some(main.to_owned()),
            host: String::new(),
            port: None,
            params,
        });
    }
    let (user, hostport) = match main.rfind('@') {
        Some(i) => (Some(main[..i].to_owned()), &main[i + 1..]),
        None => (None, main),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let end = v6.find(']')?;
        let port = v6[end + 1..].strip_prefix(':').map(str::parse::<u16>);
        (format!("[{}]", &v6[..end]), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.parse::<u16>())),
            None => (hostport.to_owned(), None),
        }
    };
    let port = match port {
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => return None,
        None => None,
    };
    if host.is_empty() {
        return None;
    }
    Some(Uri {
        scheme,
        user,
        host: host.to_ascii_lowercase(),
        port,
        params,
    })
}

/// Normalises a telephone number to E.164 (`+14255550100`): accepts `tel:` URIs,
/// drops parameters such as `;ext=100` and the visual separators `-.() `, and turns
/// a leading international `00` into `+`. Returns `None` when what is left is not
/// `+` and 1 to 15 digits (a local or private number has no E.164 form).
pub fn normalize_number(number: &str) -> Option<String> {
    let number = number.trim();
    let number = number.strip_prefix("tel:").unwrap_or(number);
    let number = number.split(';').next().unwrap_or(number);
    let mut out = String::with_capacity(16);
    let mut chars = number.chars().peekable();
    if number.starts_with("00") {
        chars.next();
        chars.next();
        out.push('+');
    } else if chars.peek() == Some(&'+') {
        chars.next();
        out.push('+');
    } else {
        return None;
    }
    for c in chars {
        match c {
            '0'..='9' => out.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (2..=16).contains(&out.len()).then_some(out)
}

/// An `ms-diagnostics` header: `ms-diagnostics: 15030;reason="..."`.
pub fn ms_diagnostics(code: u32, reason: &str) -> Header {
    Header {
        name: "ms-diagnostics".to_owned(),
        value: format!("{code};reason=\"{reason}\""),
    }
}

/// Resolves the hosted voice-mail policy that applies to a user or contact: the
/// granted one, else the site's, else the tenant's global policy.
pub fn resolve_hosted_policy(
    granted: Option<&str>,
    site: Option<&str>,
) -> Option<HostedVoicemailPolicy> {
    granted
        .and_then(|name| host::lookup_hosted_voicemail_policy(&PolicyScope::Named(name.to_owned())))
        .or_else(|| {
            site.and_then(|s| {
                host::lookup_hosted_voicemail_policy(&PolicyScope::Site(s.to_owned()))
            })
        })
        .or_else(|| host::lookup_hosted_voicemail_policy(&PolicyScope::Global))
}

/// The long name of a compact header form (`v` → `Via`), or the name itself.
pub(crate) fn long_header_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'o' => "Event",
        b'u' => "Allow-Events",
        b'a' => "Accept-Contact",
        b'j' => "Reject-Contact",
        b'd' => "Request-Disposition",
        b'x' => "Session-Expires",
        _ => name,
    }
}

impl Request {
    /// The first value of header `name` (case-insensitive; compact forms match).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every value of header `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let name: &'a str = long_header_name(name);
        self.headers
            .iter()
            .filter(move |h| long_header_name(&h.name).eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Whether the caller (From) and the called address (Request-URI) are the same
    /// user: a user calling their own mailbox.
    pub fn is_own_mailbox_call(&self) -> bool {
        self.from.address() == self.request_uri.address()
    }
}

impl Target {
    /// A target with the router's default transport and timeout.
    pub fn new(uri: &str) -> Self {
        Target {
            uri: uri.to_owned(),
            transport: None,
            timeout_ms: None,
        }
    }

    /// Sets how long to wait for this target before trying the next, in ms.
    pub fn with_timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.timeout_ms = Some(timeout_ms);
        self
    }

    /// Sets the transport.
    pub fn with_transport(mut self, transport: Transport) -> Self {
        self.transport = Some(transport);
        self
    }
}

impl Forward {
    /// Forward to `targets`, in order, with no other change.
    pub fn to(targets: Vec<Target>) -> Self {
        Forward {
            targets,
            request_uri: None,
            add_headers: Vec::new(),
            remove_headers: Vec::new(),
        }
    }

    /// Rewrites the Request-URI of the forwarded request.
    pub fn with_request_uri(mut self, uri: impl ToString) -> Self {
        self.request_uri = Some(uri.to_string());
        self
    }

    /// Adds a header field to the forwarded request.
    pub fn add_header(mut self, name: &str, value: &str) -> Self {
        self.add_headers.push(Header {
            name: name.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// Removes every field of header `name` from the forwarded request.
    pub fn remove_header(mut self, name: &str) -> Self {
        self.remove_headers.push(name.to_owned());
        self
    }
}

impl Reject {
    /// A rejection with `code` and `reason` (empty for the standard phrase).
    pub fn new(code: u16, reason: &str) -> Self {
        Reject {
            code,
            reason: reason.to_owned(),
            headers: Vec::new(),
        }
    }

    /// Adds a header field to the response.
    pub fn with_header(mut self, header: Header) -> Self {
        self.headers.push(header);
        self
    }
}

impl Redirect {
    /// A redirection with `code` (3xx) to `contacts`.
    pub fn new(code: u16, contacts: Vec<String>) -> Self {
        Redirect {
            code,
            contacts,
            headers: Vec::new(),
        }
    }
}

impl Decision {
    /// Reject with `code` and `reason`.
    pub fn reject(code: u16, reason: &str) -> Self {
        Decision::Reject(Reject::new(code, reason))
    }

    /// Reject with `code`, `reason` and an `ms-diagnostics` header.
    pub fn reject_with_diagnostics(
        code: u16,
        reason: &str,
        diag_code: u32,
        diag_reason: &str,
    ) -> Self {
        Decision::Reject(
            Reject::new(code, reason).with_header(ms_diagnostics(diag_code, diag_reason)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gruu_voicemail_uri() {
        let uri = parse_uri("sip:Alice@Contoso.com;gruu;opaque=app:voicemail").expect("valid");
        assert_eq!(uri.user.as_deref(), Some("Alice"));
        assert_eq!(uri.host, "contoso.com");
        assert!(uri.has_param("gruu"));
        assert!(uri.is_voicemail());
        assert_eq!(uri.address(), "sip:alice@contoso.com");
        assert_eq!(
            uri.to_string(),
            "sip:Alice@contoso.com;gruu;opaque=app:voicemail"
        );
    }

    #[test]
    fn parses_name_addr_ipv6_and_tel() {
        let uri =
            parse_uri("\"Bob\" <sip:bob@[2001:db8::1]:5070;transport=tcp>;tag=9").expect("valid");
        assert_eq!(uri.host, "[2001:db8::1]");
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.param("transport"), Some(Some("tcp")));
        let tel = parse_uri("tel:+14255550100;ext=100").expect("valid");
        assert_eq!(tel.number().as_deref(), Some("+14255550100"));
        assert!(parse_uri("http://example.com").is_none());
        assert!(parse_uri("sip:alice@host:99999").is_none());
    }

    #[test]
    fn normalizes_numbers() {
        assert_eq!(
            normalize_number("+1 (425) 555-0100").as_deref(),
            Some("+14255550100")
        );
        assert_eq!(
            normalize_number("tel:+14255550100;ext=100").as_deref(),
            Some("+14255550100")
        );
        assert_eq!(
            normalize_number("0044 20 7946 0000").as_deref(),
            Some("+442079460000")
        );
        assert_eq!(normalize_number("5550100"), None);
        assert_eq!(normalize_number("+1425555010x"), None);
        assert_eq!(normalize_number("+"), None);
        assert_eq!(normalize_number("+1234567890123456"), None);
    }

    #[test]
    fn header_lookup_matches_compact_forms() {
        let req = crate::testing::invite("sip:a@b.c")
            .header("k", "100rel")
            .header("Diversion", "<sip:x@b.c>")
            .build();
        assert_eq!(req.header("Supported"), Some("100rel"));
        assert_eq!(req.header("diversion"), Some("<sip:x@b.c>"));
        assert_eq!(req.header("Subject"), None);
    }
}

//! SIP, SIPS and tel URIs as policies see them: parsed, with their parameters,
//! rendered back to text.

use std::fmt;

use crate::normalize_number;

/// One URI parameter: `;name=value`, or `;name` without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The name, lower-cased (`opaque`, `transport`).
    pub name: String,
    /// The value as written, or `None` for a bare parameter such as `;gruu`.
    pub value: Option<String>,
}

/// A SIP, SIPS or tel URI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uri {
    /// The scheme, lower-cased: `sip`, `sips` or `tel` (empty if unparseable).
    pub scheme: String,
    /// The user part (`alice`, `+14255550100`), or the number of a tel URI.
    pub user: Option<String>,
    /// The host, lower-cased; an IPv6 reference keeps its brackets. Empty for tel.
    pub host: String,
    /// The port, if any.
    pub port: Option<u16>,
    /// The parameters in order.
    pub params: Vec<Param>,
}

impl Uri {
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
        match self.params.iter_mut().find(|p| p.name.eq_ignore_ascii_case(name)) {
            Some(p) => p.value = value,
            None => self.params.push(Param { name: name.to_owned(), value }),
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
    let rest = rest.split('?').next().unwrap_or(rest);
    let at = rest.rfind('@').map_or(0, |i| i + 1);
    let (main, params) = match rest[at..].find(';') {
        Some(i) => (&rest[..at + i], &rest[at + i + 1..]),
        None => (rest, ""),
    };
    let params: Vec<Param> = params
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => Param { name: n.trim().to_ascii_lowercase(), value: Some(v.trim().to_owned()) },
            None => Param { name: p.trim().to_ascii_lowercase(), value: None },
        })
        .collect();
    if scheme == "tel" {
        if main.is_empty() {
            return None;
        }
        return Some(Uri { scheme, user: Some(main.to_owned()), host: String::new(), port: None, params });
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
    Some(Uri { scheme, user, host: host.to_ascii_lowercase(), port, params })
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
        assert_eq!(uri.to_string(), "sip:Alice@contoso.com;gruu;opaque=app:voicemail");
    }

    #[test]
    fn parses_name_addr_ipv6_and_tel() {
        let uri = parse_uri("\"Bob\" <sip:bob@[2001:db8::1]:5070;transport=tcp>;tag=9").expect("valid");
        assert_eq!(uri.host, "[2001:db8::1]");
        assert_eq!(uri.port, Some(5070));
        assert_eq!(uri.param("transport"), Some(Some("tcp")));
        let tel = parse_uri("tel:+14255550100;ext=100").expect("valid");
        assert_eq!(tel.number().as_deref(), Some("+14255550100"));
        assert!(parse_uri("http://example.com").is_none());
        assert!(parse_uri("sip:alice@host:99999").is_none());
    }
}

//! The grammar of the header values the proxy checks before it routes (RFC 3261
//! §25.1): name-addr and addr-spec forms (From, To, Contact, Route), Via and
//! Content-Type. Each check returns the problem in a few words, for the
//! Warning of a 400. Linear white space may include folded line breaks.

use super::wire::{comma_items, is_token};

/// Whether `c` is linear white space (folded line breaks included).
fn is_lws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_lws)
}

fn all_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Checks each of comma-separated values (outside quotes and angle brackets)
/// with `check`; an empty one (an extraneous comma) is an error too.
pub fn check_list(value: &str, check: fn(&str) -> Result<(), &'static str>) -> Result<(), &'static str> {
    for item in comma_items(value) {
        if item.is_empty() {
            return Err("an empty value between commas");
        }
        check(item)?;
    }
    Ok(())
}

/// The length of the quoted string at the start of `s` (quotes included).
fn quoted_len(s: &str) -> Result<usize, &'static str> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Ok(i + 1),
            _ => {}
        }
    }
    Err("unterminated quoted string")
}

/// Checks generic parameters: `*( ";" token [ "=" ( token / host / quoted-string ) ] )`.
pub fn check_params(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let skip_lws = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        i
    };
    let mut i = 0;
    loop {
        i = skip_lws(i);
        if i == b.len() {
            return Ok(());
        }
        if b[i] != b';' {
            return Err("text after the value");
        }
        i = skip_lws(i + 1);
        let name = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if i == name {
            return Err("an empty or malformed parameter");
        }
        i = skip_lws(i);
        if i < b.len() && b[i] == b'=' {
            i = skip_lws(i + 1);
            if i < b.len() && b[i] == b'"' {
                i += quoted_len(&s[i..])?;
            } else {
                // token, or a host (IPv6 references with brackets and colons).
                let value = i;
                while i < b.len() && (is_token(b[i]) || b"[]:".contains(&b[i])) {
                    i += 1;
                }
                if i == value {
                    return Err("a malformed parameter value");
                }
            }
        }
    }
}

/// Checks the URI of a name-addr or addr-spec: a scheme, then no white space,
/// quotes or angle brackets.
fn check_uri(uri: &str) -> Result<(), &'static str> {
    match uri.split_once(':') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.is_empty()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && !uri.contains(|c: char| is_lws(c) || c == '"' || c == '<' || c == '>') =>
        {
            Ok(())
        }
        _ => Err("no URI"),
    }
}

/// Checks one From, To, Contact, Route or Record-Route value:
/// `( name-addr / addr-spec ) *( ";" param )`, where a display name is tokens
/// separated by white space or one quoted string.
pub fn check_name_addr(value: &str) -> Result<(), &'static str> {
    let s = trim(value);
    let (uri, rest) = if s.starts_with('"') {
        let n = quoted_len(s)?;
        let after = trim(&s[n..]);
        let inner = after.strip_prefix('<').ok_or("a quoted display name without <URI>")?;
        let end = inner.find('>').ok_or("unterminated <")?;
        (&inner[..end], &inner[end + 1..])
    } else if let Some(lt) = s.find('<') {
        let display = trim(&s[..lt]);
        if !display.split(is_lws).filter(|w| !w.is_empty()).all(all_token) {
            return Err("a display name with characters that must be quoted");
        }
        let inner = &s[lt + 1..];
        let end = inner.find('>').ok_or("unterminated <")?;
        (&inner[..end], &inner[end + 1..])
    } else {
        if s.contains('>') {
            return Err("> without <");
        }
        // An addr-spec without brackets: its parameters are the header's.
        let end = s.find(';').unwrap_or(s.len());
        let uri = trim(&s[..end]);
        if uri.contains(['?', ',']) {
            return Err("an addr-spec with a comma or headers must be in <>");
        }
        (uri, &s[end..])
    };
    // LAQUOT and RAQUOT allow white space outside the brackets only.
    check_uri(uri)?;
    if rest.contains('<') {
        return Err("two addresses in one value");
    }
    check_params(rest)
}

/// Checks one Via value: `protocol / version / transport sent-by *( ";" param )`,
/// white space allowed around the slashes.
pub fn check_via(value: &str) -> Result<(), &'static str> {
    let mut parts = value.splitn(3, '/');
    let (name, version, rest) = (trim(parts.next().unwrap_or("")), parts.next(), parts.next());
    let (Some(version), Some(rest)) = (version, rest) else { return Err("no sent-protocol") };
    if !all_token(name) || !all_token(trim(version)) {
        return Err("a malformed sent-protocol");
    }
    let rest = trim(rest);
    let end = rest.find(is_lws).ok_or("no sent-by")?;
    if !all_token(&rest[..end]) {
        return Err("a malformed transport");
    }
    let rest = trim(&rest[end..]);
    let end = rest.find(';').unwrap_or(rest.len());
    let sent_by = trim(&rest[..end]);
    let host = if let Some(v6) = sent_by.strip_prefix('[') {
        let close = v6.find(']').ok_or("unterminated IPv6 reference in sent-by")?;
        let port = &v6[close + 1..];
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())) {
            return Err("a malformed sent-by port");
        }
        &v6[..close]
    } else {
        let (host, port) = sent_by.rsplit_once(':').unwrap_or((sent_by, ""));
        if host.contains(':') {
            return Err("an IPv6 sent-by without brackets");
        }
        if !port.is_empty() && trim(port).parse::<u16>().is_err() {
            return Err("a malformed sent-by port");
        }
        host
    };
    // A host name, an IPv4 address or an IPv6 reference; token characters are
    // let through (host names with `_` are common, scope ids carry `%`).
    let host = trim(host);
    if host.is_empty() || !host.bytes().all(|b| is_token(b) || b == b':') {
        return Err("a malformed sent-by host");
    }
    check_params(&rest[end..])
}

/// Checks a Content-Type value: `type "/" subtype *( ";" param )`.
pub fn check_content_type(value: &str) -> Result<(), &'static str> {
    let s = trim(value);
    let end = s.find(';').unwrap_or(s.len());
    let (kind, sub) = s[..end].split_once('/').ok_or("a media type without /")?;
    if !all_token(trim(kind)) || !all_token(trim(sub)) {
        return Err("a malformed media type");
    }
    check_params(&s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        for ok in [
            "<sip:a@b>",
            "sip:a@b;tag=1",
            "Alice <sip:a@b>;tag=x",
            "\"Bell, Alexander\" <sip:a@b>;tag=43",
            "  \"esc \\\" quote\"\r\n <sip:a@b> ; tag = 9",
            "Two Words <tel:+1234>",
            "<sip:[2001:db8::1]:5060;lr>",
            "<sip:a@b>;received=[2001:db8::9]",
        ] {
            assert_eq!(check_name_addr(ok), Ok(()), "{ok}");
        }
        for bad in [
            "Bell, Alexander <sip:a@b>",
            "J@n <sip:a@b>",
            "\"open <sip:a@b>",
            "<sip:a@b",
            "<sip:a@b>;;tag=1",
            "<sip:a@b>;tag=1;",
            "\"Alice\" < sip:a@b >;tag=1",
            "sip:a@b?x=y",
            "<sip:a@b> <sip:c@d>",
            "plain text",
            "<>",
        ] {
            assert!(check_name_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_refuse_empty_items() {
        assert_eq!(check_list("<sip:a@b>, \"x,y\" <sip:c@d>", check_name_addr), Ok(()));
        assert!(check_list("<sip:a@b>,,<sip:c@d>", check_name_addr).is_err());
        assert!(check_list("<sip:a@b>,", check_name_addr).is_err());
        assert!(check_list("<sip:a@b>, nonsense", check_name_addr).is_err());
    }

    #[test]
    fn via_forms() {
        for ok in [
            "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1",
            "SIP  /   2.0  /\r\n  UDP   host.example.com ; branch = z9hG4bK1;rport",
            "SIP/2.0/TCP [2001:db8::1]:5061;branch=x;received=[2001:db8::2]",
            "SIP/2.0/UDP host",
        ] {
            assert_eq!(check_via(ok), Ok(()), "{ok}");
        }
        for bad in [
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP 2001:db8::1;branch=x",
            "SIP/2.0/UDP host;;branch=x",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;branch=x;",
        ] {
            assert!(check_via(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(check_content_type("application/sdp"), Ok(()));
        assert_eq!(check_content_type("multipart/mixed ; boundary=\"x y\""), Ok(()));
        for bad in ["application", "application/", "<application/sdp>", "app/sdp;"] {
            assert!(check_content_type(bad).is_err(), "{bad}");
        }
    }
}

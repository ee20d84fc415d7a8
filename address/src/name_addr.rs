//! Header values that hold an address (From, To, Contact, Route, Diversion): a
//! name-addr (`"Alice" <sip:alice@contoso.com>;tag=1`) or a bare addr-spec
//! (`sip:alice@contoso.com;tag=1`), RFC 3261 §20.10. In the bare form every `;`
//! parameter belongs to the header, not to the URI.

use core::ops::Range;

use crate::uri::{Params, UriError, UriRef};

/// A name-addr or addr-spec header value, parsed without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddrRef<'a> {
    /// The display name without its quotes (escapes such as `\"` as written), if
    /// there is one.
    pub display_name: Option<&'a str>,
    /// The URI.
    pub uri: UriRef<'a>,
    /// The header's own parameters after the URI (`tag=9fx;reason=no-answer`),
    /// without the leading `;`, empty if none.
    pub params: &'a str,
}

impl<'a> NameAddrRef<'a> {
    /// Parses a From, To, Contact or Route value. In the name-addr form only
    /// whitespace and `;` parameters may follow the `>`.
    pub fn parse(text: &'a str) -> Result<NameAddrRef<'a>, UriError> {
        let text = text.trim();
        let Some(lt) = find_unquoted(text, '<') else {
            let (uri, params) = text.split_once(';').unwrap_or((text, ""));
            return Ok(NameAddrRef { display_name: None, uri: UriRef::parse(uri)?, params });
        };
        let close = text[lt..].find('>').ok_or(UriError::Unterminated('<'))? + lt;
        let display = text[..lt].trim();
        let display = display.strip_prefix('"').and_then(|d| d.strip_suffix('"')).unwrap_or(display);
        let after = text[close + 1..].trim_start();
        let params = match after.strip_prefix(';') {
            Some(params) => params,
            None => match after.chars().next() {
                Some(c) => return Err(UriError::BadChar(c)),
                None => "",
            },
        };
        Ok(NameAddrRef {
            display_name: (!display.is_empty()).then_some(display),
            uri: UriRef::parse(&text[lt + 1..close])?,
            params,
        })
    }

    /// The header parameters in order, as `(name, value)` slices.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The value of header parameter `name` (case-insensitive): `Some(Some(v))`
    /// for `;name=v`, `Some(None)` for a bare `;name`, `None` when absent.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The `tag` parameter's value (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

/// Where the URI and the `tag` value lie in a name-addr or addr-spec header value
/// (From, To), as byte ranges of `value`; the first `tag` if there are several.
/// `None` if the value has an unclosed `<`. Nothing is checked beyond that: the
/// URI range may not hold a valid URI.
pub fn name_addr_spans(value: &str) -> Option<(Range<usize>, Option<Range<usize>>)> {
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
    let mut offset = params_start;
    for param in value[params_start..].split(';') {
        let here = offset;
        offset += param.len() + 1;
        if let Some((name, v)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("tag")
        {
            let lead = v.len() - v.trim_start().len();
            let start = here + name.len() + 1 + lead;
            return Some((uri, Some(start..start + v.trim().len())));
        }
    }
    Some((uri, None))
}

/// The addr-spec of a header value or configured address: the text between `<`
/// and `>` when it has them (`"Bob" <sip:bob@b.com>;tag=1` gives `sip:bob@b.com`),
/// else the whole text, trimmed, taken as a bare URI whose `;` parameters are its
/// own (`sip:bob@b.com;transport=tls`), as a Request-URI or a configured next hop.
pub fn addr_spec(text: &str) -> Result<&str, UriError> {
    let text = text.trim();
    match find_unquoted(text, '<') {
        Some(lt) => {
            let close = text[lt..].find('>').ok_or(UriError::Unterminated('<'))? + lt;
            Ok(&text[lt + 1..close])
        }
        None => Ok(text),
    }
}

/// The first `needle` outside a quoted string (`"..."`, with `\` escapes).
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::uri::Scheme;

    #[test]
    fn parses_name_addr_forms() {
        let n = NameAddrRef::parse("\"Bob <B>\" <sip:bob@contoso.com>;tag=9fx").expect("valid");
        assert_eq!(n.display_name, Some("Bob <B>"));
        assert_eq!((n.uri.host, n.tag()), ("contoso.com", Some("9fx")));
        let n = NameAddrRef::parse("Bob <sip:bob@contoso.com;transport=tcp> ; TAG = 1 ;reason=x").expect("valid");
        assert_eq!(n.display_name, Some("Bob"));
        assert_eq!(n.uri.param("transport"), Some(Some("tcp")));
        assert_eq!((n.tag(), n.param("reason")), (Some("1"), Some(Some("x"))));
        let n = NameAddrRef::parse("sip:bob@contoso.com;tag=1").expect("valid");
        assert_eq!((n.display_name, n.tag(), n.uri.params), (None, Some("1"), ""));
        let n = NameAddrRef::parse("<tel:+14255550100>").expect("valid");
        assert_eq!((n.uri.scheme, n.tag(), n.params), (Scheme::Tel, None, ""));
        let n = NameAddrRef::parse("\"\" <sip:a@b>").expect("valid");
        assert_eq!(n.display_name, None);
        let n = NameAddrRef::parse(r#""Say \"hi\" <x>" <sip:a@b>"#).expect("valid");
        assert_eq!(n.display_name, Some(r#"Say \"hi\" <x>"#));
    }

    #[test]
    fn refuses_broken_name_addrs() {
        assert_eq!(NameAddrRef::parse("<sip:bob@contoso.com"), Err(UriError::Unterminated('<')));
        assert_eq!(NameAddrRef::parse("<sip:bob@contoso.com>x"), Err(UriError::BadChar('x')));
        assert_eq!(NameAddrRef::parse("<http://x>"), Err(UriError::UnsupportedScheme("http".into())));
        assert_eq!(NameAddrRef::parse("\"Bob <sip:a@b>"), Err(UriError::BadChar('"')));
    }

    #[test]
    fn spans_of_name_addr_and_addr_spec() {
        let v = "\"Bob\" <sip:bob@b.com;lr>;tag=9fx";
        let (uri, tag) = name_addr_spans(v).expect("closed");
        assert_eq!((&v[uri], tag.map(|t| &v[t])), ("sip:bob@b.com;lr", Some("9fx")));
        let v = "  sip:bob@b.com ; Tag = 12 ;x";
        let (uri, tag) = name_addr_spans(v).expect("closed");
        assert_eq!((&v[uri], tag.map(|t| &v[t])), ("sip:bob@b.com", Some("12")));
        let v = "<sip:a@b>;tag=1;tag=2";
        let (_, tag) = name_addr_spans(v).expect("closed");
        assert_eq!(tag.map(|t| &v[t]), Some("1"));
        let v = "<sip:a@b>;tagx=1;tag";
        assert_eq!(name_addr_spans(v).map(|(_, t)| t), Some(None));
        assert_eq!(name_addr_spans("<sip:a@b"), None);
        assert_eq!(name_addr_spans(""), Some((0..0, None)));
        assert_eq!(name_addr_spans("   "), Some((3..3, None)));
    }

    #[test]
    fn addr_spec_takes_the_bracketed_uri_or_the_whole_text() {
        assert_eq!(addr_spec(" \"A <b>\" <sip:a@b;lr>;tag=1 "), Ok("sip:a@b;lr"));
        assert_eq!(addr_spec(" sip:a@b;transport=tls "), Ok("sip:a@b;transport=tls"));
        assert_eq!(addr_spec("<sip:a@b"), Err(UriError::Unterminated('<')));
    }

    proptest! {
        #[test]
        fn spans_are_in_bounds_and_on_char_boundaries(value in "\\PC{0,60}") {
            if let Some((uri, tag)) = name_addr_spans(&value) {
                prop_assert!(value.get(uri.clone()).is_some(), "uri {uri:?} of {value:?}");
                if let Some(tag) = tag {
                    prop_assert!(value.get(tag.clone()).is_some(), "tag {tag:?} of {value:?}");
                }
            }
            let _ = NameAddrRef::parse(&value);
            let _ = addr_spec(&value);
        }

        #[test]
        fn spans_agree_with_the_parse(
            display in proptest::option::of("[A-Za-z ]{1,8}"),
            user in "[a-z0-9]{1,8}",
            tag in proptest::option::of("[a-zA-Z0-9]{1,8}"),
        ) {
            let mut value = match &display {
                Some(d) => std::format!("\"{d}\" <sip:{user}@b.com;lr>"),
                None => std::format!("<sip:{user}@b.com;lr>"),
            };
            if let Some(tag) = &tag {
                value.push_str(&std::format!(";tag={tag}"));
            }
            let (uri, span) = name_addr_spans(&value).expect("closed");
            let parsed = NameAddrRef::parse(&value).expect("valid");
            prop_assert_eq!(UriRef::parse(&value[uri]), Ok(parsed.uri));
            prop_assert_eq!(span.map(|t| &value[t]), parsed.tag());
            prop_assert_eq!(parsed.tag(), tag.as_deref());
        }
    }
}

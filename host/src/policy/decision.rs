//! What the router accepts from a policy. A decision is policy output, so it is
//! checked like network input: sizes bounded, URIs parsed, header fields free of
//! line breaks, and headers that are the router's own left alone.

use super::bindings::exum::policy::types::{Decision, Header};
use crate::model::uri::UriRef;
use crate::model::wire::{Name, is_token};

/// Most targets in one forward.
pub const MAX_TARGETS: usize = 16;
/// Most contacts in one redirect.
pub const MAX_CONTACTS: usize = 16;
/// Most header fields added, removed or attached.
pub const MAX_HEADERS: usize = 32;
/// Longest header value, URI or name accepted, in bytes.
pub const MAX_VALUE: usize = 4096;
/// Longest reason phrase.
pub const MAX_REASON: usize = 128;

/// Checks a decision. `Standard` is always valid.
pub fn validate(decision: &Decision) -> Result<(), String> {
    match decision {
        Decision::Forward(f) => {
            if f.targets.is_empty() {
                return Err("forward without targets".into());
            }
            if f.targets.len() > MAX_TARGETS {
                return Err(format!("{} targets; at most {MAX_TARGETS}", f.targets.len()));
            }
            for (i, t) in f.targets.iter().enumerate() {
                sip_uri(&t.uri).map_err(|e| format!("target {i}: {e}"))?;
                if let Some(ms) = t.timeout_ms
                    && !(100..=120_000).contains(&ms)
                {
                    return Err(format!("target {i}: timeout {ms} ms is not 100 to 120000"));
                }
            }
            if let Some(r) = &f.request_uri {
                uri(r).map_err(|e| format!("request-uri: {e}"))?;
            }
            headers(&f.add_headers)?;
            if f.remove_headers.len() > MAX_HEADERS {
                return Err(format!("{} header removals; at most {MAX_HEADERS}", f.remove_headers.len()));
            }
            for name in &f.remove_headers {
                header_name(name)?;
            }
            Ok(())
        }
        Decision::Reject(r) => {
            if !(400..=699).contains(&r.code) {
                return Err(format!("reject code {} is not 400 to 699", r.code));
            }
            reason(&r.reason)?;
            headers(&r.headers)
        }
        Decision::Redirect(r) => {
            if !(300..=399).contains(&r.code) {
                return Err(format!("redirect code {} is not 300 to 399", r.code));
            }
            if r.contacts.is_empty() || r.contacts.len() > MAX_CONTACTS {
                return Err(format!("{} contacts; 1 to {MAX_CONTACTS} expected", r.contacts.len()));
            }
            for (i, c) in r.contacts.iter().enumerate() {
                uri(c).map_err(|e| format!("contact {i}: {e}"))?;
            }
            headers(&r.headers)
        }
        Decision::Standard => Ok(()),
    }
}

fn uri(text: &str) -> Result<UriRef<'_>, String> {
    if text.len() > MAX_VALUE {
        return Err(format!("URI of {} bytes; at most {MAX_VALUE}", text.len()));
    }
    UriRef::parse(text).map_err(|e| format!("`{}`: {e}", truncate(text)))
}

fn sip_uri(text: &str) -> Result<UriRef<'_>, String> {
    let u = uri(text)?;
    if !u.is_sip() {
        return Err(format!("`{}`: a next hop must be a sip: or sips: URI", truncate(text)));
    }
    Ok(u)
}

fn headers(list: &[Header]) -> Result<(), String> {
    if list.len() > MAX_HEADERS {
        return Err(format!("{} header fields; at most {MAX_HEADERS}", list.len()));
    }
    for h in list {
        header_name(&h.name)?;
        if h.value.len() > MAX_VALUE {
            return Err(format!("header {}: value of {} bytes; at most {MAX_VALUE}", h.name, h.value.len()));
        }
        if h.value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("header {}: value holds a line break or NUL", h.name));
        }
    }
    Ok(())
}

fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(is_token) {
        return Err(format!("`{}` is not a header name", truncate(name)));
    }
    // The router's own: Via, Route, Record-Route, Max-Forwards, Content-Length,
    // Call-ID, CSeq, From and To (long or compact names).
    let owned = !matches!(Name::of(name.as_bytes()), Name::Other | Name::Contact | Name::ProxyRequire);
    if owned {
        return Err(format!("{name} is the router's to write"));
    }
    Ok(())
}

fn reason(text: &str) -> Result<(), String> {
    if text.len() > MAX_REASON {
        return Err(format!("reason phrase of {} bytes; at most {MAX_REASON}", text.len()));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err("reason phrase holds a control character".into());
    }
    Ok(())
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bindings::exum::policy::types::{Forward, Reject, Target};

    fn forward(targets: usize, header: (&str, &str)) -> Decision {
        Decision::Forward(Forward {
            targets: (0..targets)
                .map(|i| Target { uri: format!("sip:um{i}.contoso.com"), transport: None, timeout_ms: None })
                .collect(),
            request_uri: None,
            add_headers: vec![Header { name: header.0.into(), value: header.1.into() }],
            remove_headers: vec![],
        })
    }

    #[test]
    fn accepts_a_plain_forward_and_reject() {
        assert_eq!(validate(&forward(2, ("Diversion", "<sip:a@b>;reason=no-answer"))), Ok(()));
        assert_eq!(validate(&Decision::Reject(Reject { code: 480, reason: String::new(), headers: vec![] })), Ok(()));
    }

    #[test]
    fn refuses_oversized_or_injected_output() {
        assert!(validate(&forward(0, ("X", "y"))).is_err());
        assert!(validate(&forward(MAX_TARGETS + 1, ("X", "y"))).is_err());
        assert!(validate(&forward(1, ("X", "a\r\nVia: evil"))).expect_err("CRLF").contains("line break"));
        assert!(validate(&forward(1, ("Via", "x"))).expect_err("router header").contains("router's"));
        assert!(validate(&forward(1, ("v", "x"))).is_err(), "compact form of Via");
        assert!(validate(&forward(1, ("X", &"a".repeat(MAX_VALUE + 1)))).is_err());
        assert!(validate(&Decision::Reject(Reject { code: 200, reason: String::new(), headers: vec![] })).is_err());
    }
}

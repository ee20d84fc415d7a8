//! SIP, SIPS and tel URIs as policies see them: the owned [`Uri`] of
//! `exum-address` (the router parses with the same code), and [`parse_uri`], which
//! also takes the URI out of a name-addr.

use exum_address::{Uri, addr_spec};

/// Parses a `sip:`, `sips:` or `tel:` URI, with or without angle brackets
/// (`<sip:alice@contoso.com>;tag=1` yields the URI inside the brackets). Returns
/// `None` for anything else.
pub fn parse_uri(text: &str) -> Option<Uri> {
    addr_spec(text).and_then(Uri::parse).ok()
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

    #[test]
    fn display_names_may_hold_angle_brackets() {
        let uri = parse_uri("\"Bob <B>\" <sip:bob@contoso.com>;tag=1").expect("valid");
        assert_eq!(uri.address(), "sip:bob@contoso.com");
        assert!(parse_uri("<sip:bob@contoso.com").is_none());
    }

    #[test]
    fn refuses_what_the_router_refuses() {
        assert!(parse_uri("sip:2001:db8::1").is_none());
        assert!(parse_uri("sip:[2001:db8::1]junk").is_none());
        assert!(parse_uri("sip:a b@c").is_none());
        // Headers are accepted and dropped.
        assert_eq!(parse_uri("sip:a@b;lr?subject=x").map(|u| u.to_string()).as_deref(), Some("sip:a@b;lr"));
    }
}

//! SIP, SIPS and tel URIs, name-addr values and E.164 numbers: the router uses
//! `exum-address`, the one implementation it shares with the policy SDK (so a
//! policy and the router always agree on what a URI or a number is).

pub use exum_address::{
    NameAddrRef, Param, Params, Scheme, Uri, UriError, UriRef, addr_spec, extension, name_addr_spans, normalize_number,
    number_key,
};

/// The URI inside a Route or Contact value (`"A <x>" <sip:x;lr>;param` →
/// `sip:x;lr`; a bare `sip:x;param` → `sip:x`, its parameters the header's).
pub fn route_uri(value: &str) -> String {
    match name_addr_spans(value) {
        Some((uri, _)) => value[uri].trim().to_owned(),
        None => value.split(';').next().unwrap_or(value).trim().to_owned(),
    }
}

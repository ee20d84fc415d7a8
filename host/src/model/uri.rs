//! SIP, SIPS and tel URIs, name-addr values and E.164 numbers: the router uses
//! `exum-address`, the one implementation it shares with the policy SDK (so a
//! policy and the router always agree on what a URI or a number is).

pub use exum_address::{
    NameAddrRef, Param, Params, Scheme, Uri, UriError, UriRef, addr_spec, extension, name_addr_spans, normalize_number,
    number_key,
};

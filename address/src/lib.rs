//! Addresses as SIP carries them: SIP, SIPS and tel URIs, name-addr header values
//! and E.164 numbers. One implementation for the router (`exum-router`), which
//! parses every received request with it, and for the policy SDK
//! (`exum-policy-sdk`), which is compiled into tenants' WebAssembly policies: hence
//! `no_std` with `alloc`, and no dependencies.
//!
//! # Layout
//!
//! - [`uri`]: the allocation-free parse of an addr-spec into a [`UriRef`] borrowing
//!   the text, the [`UriError`] that says why one did not parse, the [`Params`]
//!   iterator, and the owned, editable [`Uri`] that policies work with;
//! - [`name_addr`]: From, To, Contact and Route values (`"Bob" <sip:bob@b.com>;tag=1`):
//!   [`NameAddrRef`], [`name_addr_spans`] and [`addr_spec`];
//! - [`number`]: [`normalize_number`], the E.164 form used as a directory key;
//! - [`status`]: [`reason_phrase`], the standard phrase of a status code.
//!
//! # Example
//!
//! ```
//! use exum_address::{NameAddrRef, Scheme, UriError, UriRef, normalize_number};
//!
//! let ruri = UriRef::parse_request_uri("sip:Alice@Contoso.com:5061;transport=tls").expect("valid");
//! assert_eq!((ruri.scheme, ruri.host, ruri.port), (Scheme::Sip, "Contoso.com", Some(5061)));
//! assert_eq!(ruri.param("transport"), Some(Some("tls")));
//! assert_eq!(ruri.address(), "sip:alice@contoso.com");
//! assert_eq!(UriRef::parse("sip:2001:db8::1"), Err(UriError::UnbracketedIpv6));
//!
//! let from = NameAddrRef::parse("\"Bob\" <tel:+1-425-555-0100>;tag=9fx").expect("valid");
//! assert_eq!((from.display_name, from.tag()), (Some("Bob"), Some("9fx")));
//! assert_eq!(from.uri.number().as_deref(), Some("+14255550100"));
//! assert_eq!(normalize_number("0044 20 7946 0000").as_deref(), Some("+442079460000"));
//! ```
//!
//! # Behaviour
//!
//! The parser follows RFC 3261 §19.1 and RFC 3966 where it matters to a proxy
//! (§16.3: the parts it routes on must be well formed) and stays lenient elsewhere:
//!
//! - the scheme must be a scheme name (RFC 3986 §3.1); a well-formed one other than
//!   `sip`, `sips` or `tel` is [`UriError::UnsupportedScheme`] (a proxy's 416);
//! - whitespace, control characters and `<>"` are refused anywhere in a URI;
//! - an IPv6 host must be a bracketed IPv6 address (`sip:[2001:db8::1]:5061`): a
//!   host with several `:` is [`UriError::UnbracketedIpv6`], brackets around
//!   anything else [`UriError::BadIpv6`];
//! - a port is 1 or more digits for a number up to 65535, after a `:`;
//! - the userinfo's first `:` starts a password (`sip:alice:secret@b.com`), which
//!   [`UriRef::address`] and [`Uri::user`] keep: URIs with different passwords are
//!   different (RFC 3261 §19.1.4);
//! - the userinfo ends at its `@`, so a user part may hold `;` and `?` (RFC 4475
//!   §3.1.1.2); parameters start at the first `;` after the host and headers at
//!   the first `?` after it; a Request-URI may not carry headers
//!   ([`UriRef::parse_request_uri`], RFC 3261 §19.1.1);
//! - escapes (`%41`) are kept as written, not decoded, and user, host and
//!   parameter characters are not checked beyond the above.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod name_addr;
pub mod number;
pub mod status;
pub mod uri;

pub use name_addr::{NameAddrRef, addr_spec, name_addr_spans};
pub use number::{extension, normalize_number, number_key};
pub use status::reason_phrase;
pub use uri::{Param, Params, Scheme, Uri, UriError, UriRef, ip_literal, ipv6_reference};

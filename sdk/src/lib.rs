//! Write exum-router routing policies in Rust.
//!
//! A policy is a crate of type `cdylib` that implements [`Policy`] and names its type
//! in [`export_policy!`]. Built for `wasm32-unknown-unknown` and turned into a
//! component (`exum-router` documents the two commands), it runs inside the router's
//! sandbox; built natively, the same crate is unit-tested with plain `cargo test`
//! against the in-memory [`testing::TestHost`].
//!
//! # Example
//!
//! A policy that sends a pilot group of users to hosted voice mail and leaves every
//! other call to the router's standard algorithm:
//!
//! ```
//! use exum_policy_sdk::{Decision, Failure, Forward, Policy, Request, Target, host};
//!
//! pub struct Pilot;
//!
//! impl Policy for Pilot {
//!     fn route(req: &Request) -> Decision {
//!         let pilots = ["sip:alice@contoso.com"];
//!         if req.request_uri().is_voicemail() && pilots.contains(&req.request_uri().address().as_str()) {
//!             let edge = host::settings().edge.unwrap_or_else(|| "sip:exap.um.outlook.com;transport=tls".into());
//!             return Decision::Forward(Forward::to(vec![Target::new(&edge)]));
//!         }
//!         Decision::Standard
//!     }
//!
//!     // `init` and `on_failure` have default bodies: accept any config, and let
//!     // the standard algorithm handle a failed forward.
//! }
//!
//! exum_policy_sdk::export_policy!(Pilot);
//!
//! // A native unit test of the policy:
//! use exum_policy_sdk::testing::{TestHost, invite};
//!
//! TestHost::new("contoso").edge("sip:edge.contoso.com:5061;transport=tls").install();
//! let req = invite("sip:alice@contoso.com;opaque=app:voicemail").from("sip:bob@contoso.com").build();
//! match Pilot::route(&req) {
//!     Decision::Forward(f) => assert_eq!(f.targets[0].uri, "sip:edge.contoso.com:5061;transport=tls"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! let other = invite("sip:carol@contoso.com;opaque=app:voicemail").build();
//! assert_eq!(Pilot::route(&other), Decision::Standard);
//! ```
//!
//! # What is here
//!
//! - the contract's types ([`Request`], [`Decision`], [`User`], ...), generated from
//!   the WIT files in `sdk/wit/`, the same files the router reads;
//! - [`host`]: the router's imports (directory, health, clock, log), answering from
//!   the calling tenant's data;
//! - [`Request`]: the request as received, its fields parsed on first use;
//! - helpers for the chores of every policy: [`Uri`] parameters and addresses,
//!   [`normalize_number`] for E.164, [`Request::header`], decision builders,
//!   [`ms_diagnostics`], [`resolve_hosted_policy`];
//! - [`standard`]: the router's standard algorithm as functions, for policies
//!   that take its decision and adjust it (a target first, a header more);
//! - [`routing`]: building blocks of the standard algorithm (hosted rewrite,
//!   Diversion, dial plans) for policies that route some calls their own way;
//! - [`testing`]: the in-memory stand-in for the router, for native tests.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod helpers;
pub mod host;
mod request;
pub mod routing;
pub mod standard;
pub mod testing;
mod uri;

#[doc(inline)]
pub use exum_address::{Param, Uri, normalize_number, reason_phrase};
pub use helpers::{ms_diagnostics, resolve_hosted_policy};
pub use request::Request;
pub use uri::parse_uri;

/// The bindings generated from `sdk/wit/`. Policies use the re-exports at the
/// crate root; this module is public for [`export_policy!`].
#[doc(hidden)]
#[allow(unsafe_code, clippy::all, missing_docs)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "exum:policy/policy@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "exum_policy_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::exum::policy::clock::Datetime;
pub use bindings::exum::policy::directory::{
    ContactKind, DialPlan, DialPlanOf, HostedRoute, HostedVoicemailPolicy, PolicyScope, Rerouting, TenantSettings,
    UmContact, UmServer, User, Voicemail,
};
pub use bindings::exum::policy::log::Level;
pub use bindings::exum::policy::types::{
    Attempt, Decision, Failure, Forward, Header, IpAddress, Outcome, Redirect, Reject, Source, Target, Transport,
};

/// A routing policy. Implement it on a unit struct and export it with
/// [`export_policy!`]; override only what you need.
pub trait Policy {
    /// Called once per instance with the tenant's `policy_config` string before any
    /// other call. An error refuses this version of the policy.
    fn init(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }

    /// Decide where a new request goes.
    fn route(req: &Request) -> Decision;

    /// Every target of a forward failed: decide what happens next. The default lets
    /// the router's standard algorithm decide (voice-mail rerouting or 480).
    fn on_failure(req: &Request, failure: &Failure) -> Decision {
        let _ = (req, failure);
        Decision::Standard
    }
}

/// Exports a [`Policy`] implementation as the component's `handler`, with a
/// manifest: the crate's name, version and authors (from `Cargo.toml`), and the
/// limits it asks for, if given (each at most the operator's cap for the
/// tenant; a version asking for more is refused).
///
/// ```ignore
/// exum_policy_sdk::export_policy!(MyPolicy);
/// // or, asking for a 2 ms deadline and 8 MiB of memory:
/// exum_policy_sdk::export_policy!(MyPolicy, deadline_ms = 2, memory_mib = 8);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        $crate::export_policy!($policy, deadline_ms = 0, memory_mib = 0);
    };
    ($policy:ty, deadline_ms = $deadline:literal, memory_mib = $memory:literal) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            struct ExumPolicyExport;
            impl $crate::bindings::exports::exum::policy::handler::Guest for ExumPolicyExport {
                fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                    <$policy as $crate::Policy>::init(&config)
                }
                fn route(req: $crate::bindings::exum::policy::types::Request) -> $crate::Decision {
                    <$policy as $crate::Policy>::route(&$crate::Request::from_wire(req))
                }
                fn on_failure(
                    req: $crate::bindings::exum::policy::types::Request,
                    failure: $crate::Failure,
                ) -> $crate::Decision {
                    <$policy as $crate::Policy>::on_failure(&$crate::Request::from_wire(req), &failure)
                }
            }
    $crate::bindings::export!(ExumPolicyExport with_types_in $crate::bindings);

            /// The manifest the router reads (section `exum-policy-manifest`).
            const MANIFEST: &str = concat!(
                "{\"name\":\"",
                env!("CARGO_PKG_NAME"),
                "\",\"version\":\"",
                env!("CARGO_PKG_VERSION"),
                "\",\"author\":\"",
                env!("CARGO_PKG_AUTHORS"),
                "\",\"deadline_ms\":",
                $deadline,
                ",\"memory_mib\":",
                $memory,
                "}"
            );
            #[used]
            #[unsafe(link_section = "exum-policy-manifest")]
            static MANIFEST_SECTION: [u8; MANIFEST.len()] = $crate::manifest_bytes(MANIFEST);
        };
    };
}

/// The bytes of a manifest, for [`export_policy!`]'s custom section.
#[doc(hidden)]
pub const fn manifest_bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

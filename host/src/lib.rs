//! exum-router: a SIP router for voice-mail-bound calls (Lync / Exchange Unified
//! Messaging), with a sandboxed WebAssembly routing policy per tenant.
//!
//! # Layout
//!
//! Lower layers never import higher ones (docs/architecture.md draws them;
//! `tests/layers.rs` checks it from the sources):
//!
//! - [`model`]: the SIP model: wire layer (framing, header index, forwarding
//!   edits), URIs, header grammar, status codes, transports. Depends on nothing
//!   else in the router.
//! - [`control`]: the control plane's data: router configuration, directory,
//!   target health, access lists, joined into the tenants, and the live
//!   tenant set that reloads and the directory sources swap.
//! - [`metrics`]: the router's counters (Prometheus), the only set of them;
//!   [`spans`]: the spans of work outside a request.
//! - [`pki`]: certificates, keys and CA roots from PEM files, and TLS client
//!   set-up, for the SIP plane and the directory's clients alike.
//! - [`policy`]: the policy plane: the wasmtime engine, the registry of tenants'
//!   policy versions, limits, host functions, decision validation, fallbacks;
//!   version history, shadow and canary candidates, decision records and
//!   replay, manifests and signatures.
//! - [`telemetry`]: OpenTelemetry traces over OTLP, W3C trace context in SIP.
//! - [`hep`]: HEPv3 capture of SIP messages and decisions to Homer or sngrep.
//! - [`sip`]: the proxy side of the SIP plane: transports, resolution,
//!   transactions, the proxy core and its error type, probes.
//! - [`db`]: the directory and policy versions in PostgreSQL, and the follower
//!   that applies their changes to the live tenant set. The SIP plane and the
//!   two directory sources share a layer and use none of each other.
//! - [`ldap`]: a tenant's users and contacts from its LDAP (Active Directory)
//!   server, laid over its other data and kept in sync.
//! - [`server`]: `serve`, wiring the planes together; [`admin`], the admin
//!   HTTP API, its status page and its client; [`watch`], the file watcher
//!   behind hot reload; [`logging`].
//! - [`tools`]: the offline tools `check`, `componentize`, `simulate`,
//!   `replay`, `sign` and `keygen`; [`scaffold`]: `new` and `build`, a
//!   tenant's policy project in Rust, JavaScript, TypeScript or Python;
//!   [`cli`]: the command line, a file per subcommand.

#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod control;
pub mod db;
pub mod hep;
pub mod ldap;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pki;
pub mod policy;
pub mod release;
pub mod scaffold;
pub mod server;
pub mod sip;
pub mod spans;
pub mod telemetry;
pub mod tools;
pub mod watch;

//! exum-router: a SIP router for voice-mail-bound calls (Lync / Exchange Unified
//! Messaging), with a sandboxed WebAssembly routing policy per tenant.
//!
//! # Layout
//!
//! - [`sip`]: the SIP plane: wire layer, transports, transactions and the proxy
//!   core, health probes (no Wasm in here).
//! - [`policy`]: the policy plane: the wasmtime engine, the registry of tenants'
//!   policy versions, limits, host functions, decision validation, fallbacks.
//! - [`control`]: the control plane's data: router configuration, directory,
//!   target health.
//! - [`server`]: `serve`, wiring the planes together.
//! - [`tools`]: the offline tools `check`, `componentize` and `simulate`.

#![deny(unsafe_code)]

pub mod control;
pub mod policy;
pub mod server;
pub mod sip;
pub mod tools;

//! exum-router: a SIP router for voice-mail-bound calls (Lync / Exchange Unified
//! Messaging), with a sandboxed WebAssembly routing policy per tenant.
//!
//! # Layout
//!
//! - [`sip`]: the SIP plane: URIs, messages (no Wasm in here).
//! - [`policy`]: the policy plane: the wasmtime engine, the registry of tenants'
//!   policy versions, limits, host functions, decision validation, fallbacks.
//! - [`control`]: the control plane's data: router configuration, directory,
//!   target health.
//! - [`tools`]: the offline tools `check` and `simulate`.

#![deny(unsafe_code)]

pub mod control;
pub mod policy;
pub mod sip;
pub mod tools;

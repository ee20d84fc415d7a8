//! The policy plane: one wasmtime engine, a registry of every tenant's policy
//! version, instance pools, per-call limits, the host functions policies may
//! call, decision validation and fallbacks. It takes a request view and gives a
//! decision; it knows nothing of sockets.

pub mod backlog;
mod bindings;
pub mod candidate;
pub mod compile;
pub mod deadline;
pub mod decision;
pub mod engine;
pub mod history;
pub mod host_api;
pub mod manifest;
pub mod record;
pub mod registry;
pub mod replay;
pub mod shared_cache;
pub mod version;
pub mod view;
pub mod wasi;

/// The contract's types, generated from `sdk/wit/` (the same files the SDK uses).
pub mod contract {
    pub use super::bindings::exum::policy::directory::{ContactKind, PolicyScope, Voicemail};
    pub use super::bindings::exum::policy::types::*;
}

pub use engine::{CONTRACT, LoadError, PolicyEngine, hex_sha256};

impl From<contract::Transport> for crate::model::Transport {
    fn from(t: contract::Transport) -> Self {
        match t {
            contract::Transport::Udp => crate::model::Transport::Udp,
            contract::Transport::Tcp => crate::model::Transport::Tcp,
            contract::Transport::Tls => crate::model::Transport::Tls,
        }
    }
}
pub use registry::{
    CandidateSource, DatabaseCandidate, DatabaseVersion, DecidedBy, LifecycleError, PolicyRegistry, Role, RollbackSink,
    STANDARD_COMPONENT, StartError, TenantPolicy, Verdict,
};
pub use version::{Fault, FaultKind, PolicyVersion};

pub use crate::model::call_id_fraction;

#[cfg(test)]
mod tests {
    use super::call_id_fraction;

    #[test]
    fn a_call_id_falls_at_the_same_place_on_every_router() {
        // Values fixed by the definition; a change here splits a fleet.
        assert_eq!(call_id_fraction("", ""), 0.9576734252420561);
        assert_eq!(call_id_fraction("canary", "a84b4c76e66710@pc33.contoso.com"), 0.5937153541758142);
    }
}

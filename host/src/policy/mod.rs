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

/// Where a Call-ID falls in `[0, 1)` for the draw named `salt`: whether a
/// canary takes a call, whether its decision is recorded. Part of the
/// fleet's contract: every router, of any version and on any platform, puts a
/// Call-ID at the same place, so a call is never split between versions by
/// which router it reached. FNV-1a (64 bits) over the salt and the Call-ID's
/// bytes, mixed by SplitMix64's finaliser, its top 53 bits as the fraction
/// (docs/policy-plane.md).
pub fn call_id_fraction(salt: &str, call_id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in salt.as_bytes().iter().chain(call_id.as_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

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

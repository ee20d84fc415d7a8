//! The standard Exchange UM routing policy: the SDK's [`exum_policy_sdk::standard`]
//! algorithm (steps 2-6 of the router's `docs/exum-routing.md`; steps 1 and 7
//! are the router's), as a policy component.
//!
//! The router embeds this component and uses it for every tenant without a policy
//! of its own, for a tenant policy's `standard` decision, and as the default
//! fallback when a tenant's policy faults. A policy that wants the standard
//! decision with a change calls `exum_policy_sdk::standard::route` itself; it
//! does not depend on this crate.

use exum_policy_sdk::{Decision, Failure, Policy, Request};

pub use exum_policy_sdk::standard::{all_targets_failed, diagnostics, is_voicemail_bound, on_failure, route};

/// The standard policy.
pub struct Standard;

impl Policy for Standard {
    fn route(req: &Request) -> Decision {
        route(req)
    }

    fn on_failure(req: &Request, failure: &Failure) -> Decision {
        on_failure(req, failure)
    }
}

exum_policy_sdk::export_policy!(Standard);

#[cfg(test)]
mod tests;

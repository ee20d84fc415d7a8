//! The offline tools, one file each: `check` a component against the contract,
//! `componentize` a Rust policy, `simulate` a SIP request through its tenant's
//! policy, `replay` recorded calls, `sign` and `keygen`. None needs a network.

use crate::control::ConfigError;
use crate::policy::LoadError;

/// Why a tool could not do its job. Each is a clear message and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file (or `-` for standard input).
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The component is not a valid policy.
    #[error("{path}: {source}")]
    Policy {
        /// The file.
        path: String,
        /// Why.
        source: LoadError,
    },
    /// The configuration or directory is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The SIP request does not parse.
    #[error("{path}: not a SIP request the router can route: {reason}")]
    Sip {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No tenant owns the Request-URI's domain.
    #[error("no tenant owns the domain `{0}` of the Request-URI (the router answers 404)")]
    UnknownTenant(String),
    /// The tenant's policy file could not be installed.
    #[error("tenant {tenant}: {reason}")]
    TenantPolicy {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// The engine could not start.
    #[error("the policy engine could not start: {0}")]
    Engine(String),
    /// A signing key is unusable.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        reason: String,
    },
}

mod check;
mod componentize;
mod replay;
mod sign;
mod simulate;

pub use check::{check, check_running};
pub use componentize::componentize;
pub use replay::{ReplayOptions, ReplayReport, replay};
pub use sign::{keygen, sign};
pub use simulate::{SimulateOptions, Simulator, simulate};

//! What the router configuration says about the policy plane, as plain data:
//! where decision records go, which signing keys a tenant trusts, when a
//! canary is rolled back, how many versions are kept, the largest component.
//! The policy plane acts on them (`policy/record.rs`, `policy/manifest.rs`,
//! `policy/candidate.rs`, `policy/history.rs`, `policy/engine.rs`); the
//! configuration only holds them, so `control/` needs nothing of `policy/`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Versions kept per tenant, unless configured.
pub const DEFAULT_HISTORY_KEEP: usize = 10;

/// Largest component accepted, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Where decision records are written, and how much is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSettings {
    /// The folder: `<dir>/<tenant>/decisions.jsonl` (and `.1.jsonl`, the older
    /// half of the ring), `<dir>/policies/<hash>.wasm`.
    pub dir: PathBuf,
    /// Most bytes of records kept per tenant (two files of half as much).
    pub max_bytes_per_tenant: u64,
}

/// When a canary is rolled back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanaryRule {
    /// Rolled back when its fault rate exceeds the serving version's by more than this (0 to 1).
    pub fault_margin: f64,
    /// Rolled back when its share of failed calls exceeds the serving version's by more than this.
    pub failure_margin: f64,
    /// Decisions (for faults) or calls (for failures) it must have made before it is judged.
    pub min_calls: u64,
}

impl Default for CanaryRule {
    fn default() -> Self {
        CanaryRule { fault_margin: 0.02, failure_margin: 0.05, min_calls: 50 }
    }
}

/// What a tenant requires of signatures (`Trust::check`, in
/// `policy/manifest.rs`, verifies a component against it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trust {
    /// Ed25519 public keys (32 bytes each) whose signatures the tenant accepts.
    pub keys: Vec<[u8; 32]>,
    /// Whether an unsigned component is refused.
    pub required: bool,
}

impl Trust {
    /// Parses base64 public keys; the error names the bad one.
    pub fn new(keys: &[String], required: bool) -> Result<Trust, String> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let raw = BASE64.decode(k.trim()).map_err(|e| format!("trusted_keys[{i}]: not base64: {e}"))?;
                <[u8; 32]>::try_from(raw.as_slice())
                    .map_err(|_| format!("trusted_keys[{i}]: {} bytes; an Ed25519 public key is 32", raw.len()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if required && keys.is_empty() {
            return Err("required = true needs at least one trusted key".into());
        }
        Ok(Trust { keys, required })
    }
}

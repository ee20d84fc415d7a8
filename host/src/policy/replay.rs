//! Replay: a recorded policy call run again, on the recorded policy or another,
//! with every import answered from the record and the clock the record's. The
//! same record gives the same output every time; a policy that asks for
//! something the record does not hold gets [`ReplayError::NotRecorded`].

use std::sync::Arc;
use std::time::Duration;

use super::engine::{LoadError, PolicyEngine};
use super::host_api::Imports;
use super::record::{DecisionRecord, Export, Output};
use super::version::{Code, PolicyCall, PolicyVersion};
use crate::control::Tenant;
use crate::control::config::Limits;
use crate::control::health::HealthTable;

/// Limits of a replayed call: generous, replay is not the request path.
const REPLAY_LIMITS: Limits = Limits {
    deadline: Duration::from_secs(5),
    runtime_deadline: Duration::from_secs(5),
    memory_bytes: 256 << 20,
    quarantine_after: u32::MAX,
    component_bytes: super::engine::MAX_COMPONENT_BYTES,
};

/// Why a record could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The component does not load.
    #[error("the policy does not load: {0}")]
    Load(#[from] LoadError),
    /// The policy asked for an import the record does not hold.
    #[error("the policy asked for {0}, which the record does not hold (it differs from the recorded policy here)")]
    NotRecorded(String),
    /// An `on-failure` record without its failure.
    #[error("an on-failure record without its attempts")]
    NoFailure,
}

/// What a replay gave, and how it compares with the record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Replayed {
    /// The output of the replayed call.
    pub output: Output,
    /// Whether it is byte for byte the recorded output (as JSON).
    pub same: bool,
    /// Where it differs from the recorded output (JSON paths), if it does.
    pub differences: Vec<String>,
}

/// Replays `record` on the component `bytes` (`init` given `init_config`).
pub fn replay(
    engine: &Arc<PolicyEngine>,
    record: &DecisionRecord,
    bytes: &[u8],
    init_config: &str,
) -> Result<Replayed, ReplayError> {
    let compiled = engine.compile(bytes)?;
    let mut tenant = Tenant::empty(&record.tenant);
    tenant.config.utc_offset_minutes = record.clock.utc_offset_minutes;
    let tenant = Arc::new(tenant);
    let version = PolicyVersion::load(
        engine.clone(),
        Arc::new(HealthTable::default()),
        Code::Ready(compiled),
        record.policy.name.clone(),
        record.policy.version,
        init_config.to_owned(),
        REPLAY_LIMITS,
        &tenant,
        false,
    )?;
    let call = match record.export {
        Export::Route => PolicyCall::Route(&record.request),
        Export::OnFailure => {
            PolicyCall::OnFailure(&record.request, record.failure.as_ref().ok_or(ReplayError::NoFailure)?)
        }
    };
    let imports = Imports::Replay { calls: record.imports.clone().into(), clock: record.clock, missed: None };
    let (result, imports) = version.call_with(&tenant, call, imports);
    if let Imports::Replay { missed: Some(what), .. } = imports {
        return Err(ReplayError::NotRecorded(what));
    }
    let output = match result {
        Ok(d) => Output::Decision(d),
        Err(fault) => Output::Fault(fault.to_string()),
    };
    let (was, now) = (json(&record.output), json(&output));
    let mut differences = Vec::new();
    diff("", &was, &now, &mut differences);
    // Byte for byte: the two outputs as the record writes them.
    let same = serde_json::to_string(&record.output).ok() == serde_json::to_string(&output).ok();
    Ok(Replayed { same, output, differences })
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::to_value(output).unwrap_or(serde_json::Value::Null)
}

/// The JSON paths where `a` and `b` differ, with both values.
pub fn diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).collect();
            keys.sort();
            for k in keys {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                diff(&format!("{path}/{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}/{i}"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{}: {a} -> {b}", if path.is_empty() { "/" } else { path })),
        _ => {}
    }
}

//! Tenant → policy. Each tenant has a [`TenantPolicy`]: its own version (or none,
//! for the standard policy), its fallback, and its fault record. Deciding a
//! request goes through here: the policy's decision is validated; a fault costs
//! that one decision, which the fallback makes; repeated faults quarantine the
//! version until a new one is installed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::backlog::{Backlog, Readiness, Source};
use super::bindings::exum::policy::types::{Decision, Failure, Reject, Request};
use super::candidate::{CanaryRule, Candidate, Divergence, Lane, Mode as CandidateMode};
use super::decision::validate;
use super::engine::{LoadError, MAX_COMPONENT_BYTES, PolicyEngine};
use super::history::{Entry as HistoryEntry, History, Pin, State as HistoryState};
use super::host_api::{self, Imports};
use super::record::{self, DecisionRecord, Export, Output, Recorder, SampleRecords};
use super::version::{Code, Fault, PolicyCall, PolicyVersion};
use crate::control::config::{Fallback, Lifecycle, Limits, PolicySource, RouterConfig};
use crate::control::health::HealthTable;
use crate::control::{Tenant, Tenants};
use crate::metrics::{InfoLabels, Metrics, TenantCounters, TenantLabel, VersionKind};
use crate::model::status::reason_phrase;

/// The standard policy component, built from `policies/standard` and embedded.
pub static STANDARD_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exum_policy_standard.component.wasm"));

/// Who made a decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum DecidedBy {
    /// The tenant's own policy.
    Policy {
        /// Its name.
        name: String,
        /// Its version number.
        version: u64,
    },
    /// The tenant's canary candidate, for its share of calls.
    Canary {
        /// Its name.
        name: String,
        /// Its version number.
        version: u64,
    },
    /// The standard policy: the tenant has none of its own, or its policy answered
    /// `standard`.
    Standard,
    /// The tenant's fallback, because its policy faulted or is quarantined.
    Fallback {
        /// Why.
        reason: String,
    },
    /// Nothing could decide (the standard policy itself failed): 500.
    Internal,
}

/// Which version of a tenant decides a call: the serving one, or the canary.
/// A call's `on-failure` goes to the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The serving version (or the standard policy).
    #[default]
    Serving,
    /// The canary candidate.
    Canary,
}

/// A decision and how it was made.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// The decision; never `standard`.
    pub decision: Decision,
    /// Who made it.
    pub decided_by: DecidedBy,
    /// Time spent deciding, policy calls included.
    #[serde(skip)]
    pub elapsed: Duration,
    /// Which version decided (the call's `on-failure` goes to it too).
    #[serde(skip)]
    pub role: Role,
}

/// A tenant's current policy, its fallback and its fault record.
#[derive(Debug)]
pub struct TenantPolicy {
    /// The tenant.
    pub tenant_id: String,
    /// The tenant's own policy version, or `None` for the standard policy.
    pub own: Option<Arc<PolicyVersion>>,
    /// Why the tenant's policy file is not in use, if it failed to load.
    pub load_error: Option<String>,
    /// A shadow or canary candidate beside it.
    pub candidate: Option<Arc<Candidate>>,
    /// Why the last reload of the tenant's policy failed while this version
    /// kept serving (state "last good after a failed reload").
    reload_error: Mutex<Option<String>>,
    fallback: Fallback,
    quarantine_after: u32,
    standard: Arc<PolicyVersion>,
    consecutive_faults: AtomicU32,
    quarantined: AtomicBool,
    /// Where faults and quarantines are counted.
    metrics: Arc<Metrics>,
    /// The tenant's per-decision counters (decisions, latency, fallbacks).
    counters: TenantCounters,
    /// The serving version's counters (`exum_policy_version_*{role="serving"}`).
    pub serving: Lane,
    /// Where its calls are recorded and the share recorded, when it records.
    records: Option<(Arc<Recorder>, f64)>,
    /// Where shadow copies of requests go.
    shadow: Option<ShadowQueue>,
    /// Where a canary's rollback is written down.
    history: Arc<History>,
    /// Told of a rollback of the fleet's candidate (to write it in the database).
    rollbacks: Option<RollbackSink>,
}

/// Where a router reports that it rolled back a candidate from the directory
/// database: tenant, version id, reason.
pub type RollbackSink = tokio::sync::mpsc::UnboundedSender<(String, i64, String)>;

/// A tenant's candidate in the directory database.
#[derive(Debug, Clone)]
pub struct DatabaseCandidate {
    /// Its version id.
    pub version_id: i64,
    /// The component.
    pub bytes: Arc<[u8]>,
    /// Shadow or canary.
    pub mode: CandidateMode,
    /// A canary's rule.
    pub rule: CanaryRule,
    /// Why the fleet rolled it back, if it did.
    pub rolled_back: Option<String>,
}

impl TenantPolicy {
    /// Whether the tenant's policy is quarantined (the fallback decides everything).
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Relaxed)
    }

    /// Why the last reload failed, if it did (this version kept serving).
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error.lock().map_or(None, |e| e.clone())
    }

    /// The tenant's state: `standard`, `active`, `compiling` (installed at
    /// start-up, compiling in the background: the fallback decides),
    /// `quarantined`, or `last_good_after_failed_reload`.
    pub fn state(&self) -> &'static str {
        match (&self.own, self.is_quarantined(), self.reload_error().is_some()) {
            (None, ..) => "standard",
            (Some(v), ..) if v.readiness() != Readiness::Ready => "compiling",
            (Some(_), true, _) => "quarantined",
            (Some(_), false, true) => "last_good_after_failed_reload",
            (Some(_), false, false) => "active",
        }
    }

    /// Why the tenant's calls are decided by its fallback now, if they are:
    /// its own version still `compiling` (installed at start-up), `refused`
    /// (it did not compile) or `quarantined`.
    pub fn fallback_reason(&self) -> Option<&'static str> {
        let own = self.own.as_ref()?;
        match own.readiness() {
            Readiness::Ready if self.is_quarantined() => Some("quarantined"),
            Readiness::Ready => None,
            Readiness::Compiling => Some("compiling"),
            _ => Some("refused"),
        }
    }

    /// Decides where a new request goes: the canary for its share of calls,
    /// else the serving version (a shadow gets a copy, off the request path).
    pub fn route(&self, tenant: &Arc<Tenant>, req: &Request) -> Verdict {
        let recorder = self.recorder_for(req);
        let run = |v: &PolicyVersion| self.run(v, tenant, PolicyCall::Route(req), recorder);
        if let Some(c) = &self.candidate {
            if c.takes(super::view::text(req, req.call_id)) {
                return self.decide(Role::Canary, run);
            }
            if c.shadows()
                && let Some(queue) = &self.shadow
            {
                queue.offer(ShadowJob {
                    candidate: c.clone(),
                    serving: self.own.clone(),
                    standard: self.standard.clone(),
                    tenant: tenant.clone(),
                    request: req.clone(),
                });
            }
        }
        self.decide(Role::Serving, run)
    }

    /// Decides what happens when every target of a forward failed, on the
    /// serving version.
    pub fn on_failure(&self, tenant: &Arc<Tenant>, req: &Request, failure: &Failure) -> Verdict {
        self.on_failure_as(tenant, req, failure, Role::Serving)
    }

    /// Decides what happens when every target of a forward failed, on the
    /// version that routed the call (`role`).
    pub fn on_failure_as(&self, tenant: &Arc<Tenant>, req: &Request, failure: &Failure, role: Role) -> Verdict {
        let recorder = self.recorder_for(req);
        self.decide(role, |v| self.run(v, tenant, PolicyCall::OnFailure(req, failure), recorder))
    }

    /// A call decided by `role` ended with `code` upstream: counted for the
    /// version, and a canary is judged.
    pub fn call_ended(&self, role: Role, code: u16) {
        match (role, &self.candidate) {
            (Role::Canary, Some(c)) => {
                c.lane.call_ended(code);
                self.judge(c);
            }
            _ => self.serving.call_ended(code),
        }
    }

    /// Rolls a canary back when its counters say so.
    fn judge(&self, c: &Candidate) {
        let Some(reason) = c.judge(&self.serving) else { return };
        if c.roll_back(reason.clone()) {
            if let (Some(sink), Some(version_id)) = (&self.rollbacks, c.origin) {
                let _ = sink.send((self.tenant_id.clone(), version_id, reason.clone()));
            }
            self.metrics.canary_rollbacks.get_or_create(&TenantLabel { tenant: self.tenant_id.clone() }).inc();
            self.history.set_state(&self.tenant_id, c.version.version, HistoryState::RolledBack, Some(reason.clone()));
            tracing::warn!(candidate = c.version.version, %reason, "canary rolled back; the serving version takes every call");
        }
    }

    /// The recorder, when this request's calls are recorded.
    fn recorder_for(&self, req: &Request) -> Option<&Recorder> {
        let (recorder, share) = self.records.as_ref()?;
        record::sampled(super::view::text(req, req.call_id), *share).then_some(&**recorder)
    }

    /// One call of `version`, recorded when `recorder` is given.
    fn run(
        &self,
        version: &PolicyVersion,
        tenant: &Arc<Tenant>,
        call: PolicyCall<'_>,
        recorder: Option<&Recorder>,
    ) -> Result<Decision, Fault> {
        let Some(recorder) = recorder else {
            return version.call_with(tenant, call, Imports::Live).0;
        };
        let (result, record) = recorded_call(&self.tenant_id, version, tenant, call);
        recorder.submit(record);
        result
    }

    fn decide(&self, role: Role, call: impl Fn(&PolicyVersion) -> Result<Decision, Fault>) -> Verdict {
        let start = Instant::now();
        let (own, lane) = match (role, &self.candidate) {
            (Role::Canary, Some(c)) => (Some(&c.version), &c.lane),
            _ => (self.own.as_ref(), &self.serving),
        };
        let (decision, decided_by) = match own {
            None => self.standard(&call, DecidedBy::Standard),
            Some(_) if role == Role::Serving && self.is_quarantined() => self.fallback(&call, "quarantined".to_owned()),
            // Installed at start-up and not compiled yet: it goes first in the
            // backlog, and the fallback decides meanwhile (not a fault).
            Some(own) if own.readiness() != Readiness::Ready => {
                if let Some(p) = own.pending() {
                    p.demand(own);
                }
                let reason = if own.readiness() == Readiness::Compiling { "compiling" } else { "refused" };
                self.fallback(&call, reason.to_owned())
            }
            Some(own) => match call(own).and_then(|d| validate(&d).map(|()| d).map_err(Fault::InvalidDecision)) {
                Ok(Decision::Standard) => {
                    self.consecutive_faults.store(0, Ordering::Relaxed);
                    self.standard(&call, DecidedBy::Standard)
                }
                Ok(d) => {
                    self.consecutive_faults.store(0, Ordering::Relaxed);
                    let (name, version) = (own.name.clone(), own.version);
                    let by = match role {
                        Role::Serving => DecidedBy::Policy { name, version },
                        Role::Canary => DecidedBy::Canary { name, version },
                    };
                    (d, by)
                }
                Err(fault) => {
                    lane.faults.inc();
                    match (role, &self.candidate) {
                        (Role::Canary, Some(c)) => {
                            tracing::warn!(candidate = own.version, fault = %fault.kind(), detail = %fault, "canary fault");
                            lane.decisions.inc();
                            self.judge(c);
                            return self.verdict(start, role, self.fallback(&call, fault.kind().as_str().to_owned()));
                        }
                        _ => self.record_fault(own, &fault),
                    }
                    self.fallback(&call, fault.kind().as_str().to_owned())
                }
            },
        };
        lane.decisions.inc();
        self.verdict(start, role, (decision, decided_by))
    }

    fn verdict(&self, start: Instant, role: Role, (decision, decided_by): (Decision, DecidedBy)) -> Verdict {
        let elapsed = start.elapsed();
        // In the order of `metrics::DECISION_KINDS`.
        let kind = match &decision {
            Decision::Forward(_) => 0,
            Decision::Reject(_) => 1,
            Decision::Redirect(_) => 2,
            Decision::Standard => 3,
        };
        self.counters.decisions[kind].inc();
        self.counters.latency.observe(elapsed.as_secs_f64());
        self.counters.buckets.observe(elapsed.as_secs_f64());
        Verdict { decision, decided_by, elapsed, role }
    }

    fn record_fault(&self, own: &PolicyVersion, fault: &Fault) {
        let kind = fault.kind();
        let n = self.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        Metrics::tenant_kind(&self.metrics.faults, &self.tenant_id, kind.as_str());
        tracing::warn!(policy = %own.name, version = own.version, fault = %kind, consecutive = n, detail = %fault, "policy fault");
        if n >= self.quarantine_after && !self.quarantined.swap(true, Ordering::Relaxed) {
            self.metrics.quarantines.get_or_create(&TenantLabel { tenant: self.tenant_id.clone() }).inc();
            tracing::warn!(policy = %own.name, version = own.version, consecutive = n, "policy quarantined; the fallback decides until a new version is installed");
        }
    }

    fn fallback(
        &self,
        call: &impl Fn(&PolicyVersion) -> Result<Decision, Fault>,
        reason: String,
    ) -> (Decision, DecidedBy) {
        self.counters.fallbacks.inc();
        match self.fallback {
            Fallback::Standard => {
                let (d, by) = self.standard(call, DecidedBy::Fallback { reason });
                (d, by)
            }
            Fallback::Reject(code) => (
                Decision::Reject(Reject { code, reason: reason_phrase(code).to_owned(), headers: Vec::new() }),
                DecidedBy::Fallback { reason },
            ),
        }
    }

    fn standard(
        &self,
        call: &impl Fn(&PolicyVersion) -> Result<Decision, Fault>,
        by: DecidedBy,
    ) -> (Decision, DecidedBy) {
        match call(&self.standard) {
            Ok(d) if d != Decision::Standard && validate(&d).is_ok() => (d, by),
            other => {
                tracing::error!(outcome = ?other, "the standard policy failed");
                let internal = Reject { code: 500, reason: reason_phrase(500).to_owned(), headers: Vec::new() };
                (Decision::Reject(internal), DecidedBy::Internal)
            }
        }
    }
}

/// One call of `version`, recorded: its result and its record.
fn recorded_call(
    tenant_id: &str,
    version: &PolicyVersion,
    tenant: &Arc<Tenant>,
    call: PolicyCall<'_>,
) -> (Result<Decision, Fault>, DecisionRecord) {
    let (result, imports) = version.call_with(tenant, call, Imports::recording());
    let calls = match imports {
        Imports::Recording(calls) => calls,
        _ => Vec::new(),
    };
    let (export, failure) = match call {
        PolicyCall::Route(_) => (Export::Route, None),
        PolicyCall::OnFailure(_, f) => (Export::OnFailure, Some(f)),
    };
    let output = match &result {
        Ok(d) => Output::Decision(d.clone()),
        Err(f) => Output::Fault(f.to_string()),
    };
    let record = DecisionRecord::new(
        tenant_id,
        version.recorded(),
        export,
        call.request(),
        failure,
        host_api::now(tenant),
        calls,
        output,
    );
    (result, record)
}

/// A copy of a request for a shadow candidate.
struct ShadowJob {
    candidate: Arc<Candidate>,
    serving: Option<Arc<PolicyVersion>>,
    standard: Arc<PolicyVersion>,
    tenant: Arc<Tenant>,
    request: Request,
}

/// Copies waiting for the shadow thread; beyond, copies are dropped (counted
/// on their candidate): the request path never waits for a shadow.
const SHADOW_QUEUE: usize = 1024;

/// The queue to the shadow thread.
#[derive(Clone)]
struct ShadowQueue(std::sync::mpsc::SyncSender<ShadowJob>);

impl std::fmt::Debug for ShadowQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShadowQueue")
    }
}

impl ShadowQueue {
    /// Starts the shadow thread (at a lower scheduling priority than the
    /// router's own threads).
    fn start() -> std::io::Result<ShadowQueue> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ShadowJob>(SHADOW_QUEUE);
        std::thread::Builder::new().name("policy-shadow".into()).spawn(move || {
            // Linux: the nice value of this thread alone.
            let _ = rustix::process::setpriority_process(None, 10);
            while let Ok(job) = rx.recv() {
                shadow(job);
            }
        })?;
        Ok(ShadowQueue(tx))
    }

    fn offer(&self, job: ShadowJob) {
        if let Err(std::sync::mpsc::TrySendError::Full(job) | std::sync::mpsc::TrySendError::Disconnected(job)) =
            self.0.try_send(job)
        {
            job.candidate.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Decides a shadow copy with the serving version and the candidate, each
/// recorded, and compares their final decisions (a `standard` answer resolved
/// by the standard policy). The candidate's faults count against it alone.
fn shadow(job: ShadowJob) {
    let ShadowJob { candidate, serving, standard, tenant, request } = job;
    let id = tenant.config.id.clone();
    let call = PolicyCall::Route(&request);
    let finals = |result: &Result<Decision, Fault>| -> Output {
        match result {
            Ok(Decision::Standard) => match standard.call_with(&tenant, call, Imports::Live).0 {
                Ok(d) => Output::Decision(d),
                Err(f) => Output::Fault(f.to_string()),
            },
            Ok(d) => match validate(d) {
                Ok(()) => Output::Decision(d.clone()),
                Err(e) => Output::Fault(Fault::InvalidDecision(e).to_string()),
            },
            Err(f) => Output::Fault(f.to_string()),
        }
    };
    let (s_result, s_record) = recorded_call(&id, serving.as_deref().unwrap_or(&standard), &tenant, call);
    let (c_result, c_record) = recorded_call(&id, &candidate.version, &tenant, call);
    let (s_final, c_final) = (finals(&s_result), finals(&c_result));
    candidate.lane.decisions.inc();
    if matches!(c_final, Output::Fault(_)) {
        candidate.lane.faults.inc();
    }
    candidate.compared(&s_final, &c_final, || SampleRecords { serving: s_record, candidate: c_record });
}

/// The limits a version runs with: the tenant's caps, tightened to what its
/// manifest asks for; asking for more than a cap is refused.
/// Compiles `bytes` with Cranelift on a thread of its own (at a low priority,
/// in a compile slot) and gives the result to `version`, which was loaded with
/// the quick tier's code, if it is still alive then.
fn optimize_later(engine: &Arc<PolicyEngine>, version: &Arc<PolicyVersion>, bytes: &[u8]) {
    let (engine, weak, bytes, name) = (engine.clone(), Arc::downgrade(version), bytes.to_vec(), version.name.clone());
    // The version waits for it: a version dropped before abandons its compile.
    let waiter = super::compile::Waiter::new();
    let flag = waiter.flag();
    let _ = version.optimizing.set(waiter);
    let spawned = std::thread::Builder::new().name("policy-optimize".into()).spawn(move || {
        let _ = rustix::process::setpriority_process(None, 10);
        let compiled = super::compile::on_behalf_of(flag, || {
            super::compile::deferrable(|| engine.compile_optimized_in_background(&bytes))
        });
        match compiled {
            Err(LoadError::Abandoned) => {}
            Ok(compiled) => {
                if let Some(version) = weak.upgrade() {
                    version.upgrade(compiled);
                    tracing::info!(policy = %name, hash = %version.hash, "policy now runs its optimised code");
                }
            }
            Err(e) => {
                tracing::warn!(policy = %name, error = %e, "optimised compile failed; the quick code keeps serving")
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread for the optimised compile; the quick code keeps serving");
    }
}

/// Refuses before compiling a component whose memory at start is already
/// more than its calls may use (it could never be instantiated).
fn declared_within(bytes: &[u8], limits: Limits) -> Result<(), LoadError> {
    if bytes.len() > limits.component_bytes {
        return Err(LoadError::TooLargeForTenant(bytes.len(), limits.component_bytes));
    }
    if !super::engine::is_component(bytes) {
        return Ok(());
    }
    let shape = super::engine::shape(bytes)?;
    if shape.memory_bytes > limits.memory_bytes as u64 {
        return Err(LoadError::TooMuchCode(format!(
            "its linear memory is {} MiB at start; its calls may use {} MiB (memory_mib)",
            shape.memory_bytes.div_ceil(1 << 20),
            limits.memory_bytes >> 20
        )));
    }
    Ok(())
}

/// Whether `bytes` is a component that embeds a language runtime (it
/// imports WASI): its calls run under `runtime_deadline_ms`.
fn embeds_runtime(bytes: &[u8]) -> bool {
    super::engine::is_component(bytes) && super::engine::shape(bytes).is_ok_and(|s| s.runtime)
}

fn granted(caps: Limits, manifest: Option<&super::manifest::Manifest>, runtime: bool) -> Result<Limits, String> {
    let Some(m) = manifest else { return Ok(caps) };
    let mut limits = caps;
    if m.deadline_ms > 0 {
        let asked = Duration::from_millis(m.deadline_ms);
        let (cap, key) =
            if runtime { (caps.runtime_deadline, "runtime_deadline_ms") } else { (caps.deadline, "deadline_ms") };
        if asked > cap {
            return Err(format!(
                "asks for a deadline of {} ms; the tenant's cap is {} ms ({key})",
                m.deadline_ms,
                cap.as_millis()
            ));
        }
        limits.deadline = asked;
        limits.runtime_deadline = asked;
    }
    if m.memory_mib > 0 {
        let asked = usize::try_from(m.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        if asked > caps.memory_bytes {
            return Err(format!(
                "asks for {} MiB of memory; the tenant's cap is {} MiB",
                m.memory_mib,
                caps.memory_bytes >> 20
            ));
        }
        limits.memory_bytes = asked;
    }
    Ok(limits)
}

/// Where a candidate's component comes from.
#[derive(Debug)]
pub enum CandidateSource {
    /// These bytes (uploaded), named `source`.
    Bytes {
        /// The component.
        bytes: Vec<u8>,
        /// What to call it in the history.
        source: String,
    },
    /// A version in the tenant's history.
    Kept(u64),
}

/// Why a lifecycle action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The history holds no such version (or no longer its component).
    #[error("no version {0} in the tenant's history")]
    NoSuchVersion(u64),
    /// Nothing served before the current version.
    #[error("no earlier version to roll back to")]
    NoPrevious,
    /// The tenant has no candidate.
    #[error("the tenant has no candidate")]
    NoCandidate,
    /// The candidate was rolled back.
    #[error("the candidate was rolled back ({0}); start it again to promote it")]
    RolledBack(String),
    /// The component does not load.
    #[error("{0}")]
    Refused(String),
    /// A wrong parameter.
    #[error("{0}")]
    Invalid(String),
    /// The tenant's active version comes from the directory database.
    #[error("the tenant's policy versions are in the directory database: activate one there")]
    Database,
}

/// Why a tenant's policy file could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The component was refused.
    #[error("{}: {source}", path.display())]
    Load {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: LoadError,
    },
}

/// Reads a policy file: its size is checked from its metadata before anything
/// is read, and at most [`MAX_COMPONENT_BYTES`] + 1 bytes are read (a file that
/// grows in between is refused too), so a huge or sparse file costs no memory.
fn read_component(path: &Path) -> Result<Vec<u8>, InstallError> {
    use std::io::Read as _;
    let read_error = |source| InstallError::Read { path: path.to_path_buf(), source };
    let too_large = |len: u64| InstallError::Load {
        path: path.to_path_buf(),
        source: LoadError::TooLarge(usize::try_from(len).unwrap_or(usize::MAX)),
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    if len > MAX_COMPONENT_BYTES as u64 {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_COMPONENT_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The limits of the embedded standard policy. It is the router's own code,
/// known to finish in microseconds: its deadline (CPU time, as every policy's,
/// see [`super::deadline`]) is a safety net against a bug, not a tenant's budget.
const STANDARD_LIMITS: Limits = Limits {
    deadline: Duration::from_secs(1),
    runtime_deadline: Duration::from_secs(1),
    memory_bytes: 16 << 20,
    quarantine_after: u32::MAX,
    component_bytes: MAX_COMPONENT_BYTES,
};

/// Why the policy plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The wasmtime engine could not be created.
    #[error("starting the policy engine: {0}")]
    Engine(String),
    /// The disk cache of compiled policies cannot be used.
    #[error("policy_cache {}: {source}", dir.display())]
    Cache {
        /// The configured directory.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The fleet's shared cache of compiled artifacts cannot be used.
    #[error(transparent)]
    SharedCache(#[from] super::shared_cache::SharedCacheError),
    /// The embedded standard policy does not load.
    #[error("loading the standard policy: {0}")]
    Standard(LoadError),
    /// The folder of decision records cannot be used.
    #[error("records.dir {}: {source}", dir.display())]
    Records {
        /// The configured folder.
        dir: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A tenant's active policy version in the directory database: it wins over
/// the watched directory's file and the configured policy.
#[derive(Debug, Clone)]
pub struct DatabaseVersion {
    /// Its id in `exum.policy_versions`.
    pub version_id: i64,
    /// The component.
    pub bytes: Arc<[u8]>,
}

/// Every tenant's policy, and the standard one.
#[derive(Debug)]
pub struct PolicyRegistry {
    /// Active versions from the directory database, by tenant id.
    database: RwLock<HashMap<String, DatabaseVersion>>,
    engine: Arc<PolicyEngine>,
    health: Arc<HealthTable>,
    standard: Arc<PolicyVersion>,
    tenants: RwLock<HashMap<String, Arc<TenantPolicy>>>,
    /// Every tenant's versions, kept across restarts with a `policy_cache`.
    history: Arc<History>,
    /// How candidates run.
    lifecycle: RwLock<Lifecycle>,
    /// The shadow thread's queue (started with the first shadow).
    shadow: std::sync::OnceLock<Option<ShadowQueue>>,
    /// The watched policy directory, if any.
    policy_dir: RwLock<Option<std::path::PathBuf>>,
    /// Counts installs and refused reloads, so callers can await a change.
    changes: tokio::sync::watch::Sender<u64>,
    /// Where decisions, faults and reloads are counted.
    metrics: Arc<Metrics>,
    /// Whether loading a version instantiates it and runs `init` right away
    /// (reloads) or at its first call (start-up).
    eager: AtomicBool,
    /// Where decision records go, when `[records]` is configured.
    recorder: RwLock<Option<Arc<Recorder>>>,
    /// The `exum_policy_info` labels set per tenant (removed on a change).
    info: Mutex<HashMap<String, Vec<InfoLabels>>>,
    /// The candidates from the directory database applied, by tenant:
    /// version id and whether rolled back.
    database_candidates: RwLock<HashMap<String, (i64, bool)>>,
    /// Where rollbacks of the database's candidates are reported.
    rollback_sink: RwLock<Option<RollbackSink>>,
    /// Versions installed at start-up compile here, when the router starts
    /// with a backlog ([`Self::for_serving`]).
    backlog: Option<Arc<Backlog>>,
    /// Per tenant: held while its file is reloaded or an operator pins a
    /// version, so a reload the watcher started before a rollback cannot
    /// install the file over the version just pinned.
    swaps: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Drop for PolicyRegistry {
    fn drop(&mut self) {
        if let Some(b) = &self.backlog {
            b.stop();
        }
    }
}

impl PolicyRegistry {
    /// The registry a router runs with: the engine (with the configured disk
    /// cache of compiled policies), the watched policy directory, and every
    /// tenant's policy installed (a tenant's file in the policy directory wins
    /// over its configured policy). `serve` and `simulate` both start here.
    pub fn for_deployment(
        config: &RouterConfig,
        tenants: &Tenants,
        health: Arc<HealthTable>,
        metrics: Arc<Metrics>,
    ) -> Result<PolicyRegistry, StartError> {
        Self::for_deployment_with(config, tenants, health, metrics, HashMap::new())
    }

    /// [`Self::for_deployment`] with the active versions of the directory
    /// database, by tenant id.
    pub fn for_deployment_with(
        config: &RouterConfig,
        tenants: &Tenants,
        health: Arc<HealthTable>,
        metrics: Arc<Metrics>,
        database: HashMap<String, DatabaseVersion>,
    ) -> Result<PolicyRegistry, StartError> {
        let registry = Self::prepared(config, health, metrics, database)?;
        registry.install_all(tenants);
        Ok(registry)
    }

    /// The registry a router serves with: as [`Self::for_deployment_with`],
    /// but the policies that are not in the disk cache compile in the
    /// background. The start waits for them up to `policy_start_wait`; those
    /// left compile after (the same threads at a lower priority, the first
    /// called first), their tenants' calls decided by the fallback meanwhile.
    pub fn for_serving(
        config: &RouterConfig,
        tenants: &Tenants,
        health: Arc<HealthTable>,
        metrics: Arc<Metrics>,
        database: HashMap<String, DatabaseVersion>,
    ) -> Result<Arc<PolicyRegistry>, StartError> {
        let mut registry = Self::prepared(config, health, metrics, database)?;
        let backlog = Backlog::new(
            registry.engine.clone(),
            registry.metrics.policy_compile_backlog.clone(),
            registry.metrics.policy_optimize_backlog.clone(),
        );
        registry.backlog = Some(backlog.clone());
        let registry = Arc::new(registry);
        let weak = Arc::downgrade(&registry);
        backlog.on_failed(Box::new(move |tenant, version, error| {
            if let Some(r) = weak.upgrade() {
                r.compile_failed(tenant, version, error);
            }
        }));
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        backlog.start(workers).map_err(|e| StartError::Engine(format!("starting the compiler threads: {e}")))?;
        let start = Instant::now();
        registry.install_all(tenants);
        let left = backlog.wait(config.policy_start_wait);
        backlog.serving();
        if left > 0 {
            tracing::warn!(
                left,
                waited_ms = start.elapsed().as_millis() as u64,
                "policies still compiling in the background; their tenants' calls go to the fallback until each is compiled"
            );
        }
        Ok(registry)
    }

    /// The tenant's swap lock (see `swaps`).
    fn swap_lock(&self, tenant: &str) -> Arc<Mutex<()>> {
        self.swaps.lock().unwrap_or_else(|e| e.into_inner()).entry(tenant.to_owned()).or_default().clone()
    }

    /// A version compiled in the background did not compile: refused, the
    /// standard policy serves the tenant (as a file refused at start-up).
    fn compile_failed(&self, tenant: &Arc<Tenant>, version: &Arc<PolicyVersion>, error: &LoadError) {
        let id = &tenant.config.id;
        let serving = self.current(id).is_some_and(|p| p.own.as_ref().is_some_and(|o| Arc::ptr_eq(o, version)));
        self.history.set_state(id, version.version, HistoryState::Refused, Some(error.to_string()));
        if serving {
            self.install(tenant, None, Some(format!("{}: {error}", version.name)));
        }
    }

    /// The registry with its engine, caches, history, lifecycle settings,
    /// recorder and database versions, and no tenant installed.
    fn prepared(
        config: &RouterConfig,
        health: Arc<HealthTable>,
        metrics: Arc<Metrics>,
        database: HashMap<String, DatabaseVersion>,
    ) -> Result<PolicyRegistry, StartError> {
        let engine = PolicyEngine::counting_into(
            metrics.policy_compilations.clone(),
            metrics.policy_disk_hits.clone(),
            metrics.policy_compiles_abandoned.clone(),
        )
        .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        engine.set_compile_settings(config.compile);
        let engine = Arc::new(engine);
        if let Some(dir) = &config.policy_cache {
            engine.set_disk_cache(dir.clone()).map_err(|source| StartError::Cache { dir: dir.clone(), source })?;
        }
        if let (Some(shared), Some(own)) = (&config.shared_cache, &config.policy_cache) {
            match super::shared_cache::SharedCache::open(&shared.dir, &shared.key_file) {
                Ok(mut cache) => {
                    // The router's own cache is mapped without a tag: it may
                    // be neither the shared folder nor in it, nor hold it.
                    let (a, b) = (std::fs::canonicalize(&shared.dir), std::fs::canonicalize(own));
                    if let (Ok(a), Ok(b)) = (a, b)
                        && (a.starts_with(&b) || b.starts_with(&a))
                    {
                        return Err(StartError::SharedCache(super::shared_cache::SharedCacheError::Overlaps {
                            shared: shared.dir.clone(),
                            own: own.clone(),
                        }));
                    }
                    cache.hits = metrics.policy_shared_cache_hits.clone();
                    cache.refused = metrics.policy_shared_cache_refused.clone();
                    engine.set_shared_cache(Some(Arc::new(cache)));
                }
                // The folder is an optimisation: unreachable, the router
                // compiles on its own.
                Err(e @ super::shared_cache::SharedCacheError::Dir { .. }) => {
                    tracing::warn!(error = %e, "the fleet's shared cache cannot be used; compiling without it")
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut registry = PolicyRegistry::new(engine, health, metrics).map_err(StartError::Standard)?;
        if let Some(dir) = &config.policy_cache {
            let dir = dir.join("history");
            let history = History::new(Some(dir.clone()), config.lifecycle.history)
                .map_err(|source| StartError::Cache { dir, source })?;
            registry.history = Arc::new(history);
        }
        *registry.lifecycle.write().unwrap_or_else(|e| e.into_inner()) = config.lifecycle;
        registry.set_policy_dir(config.policy_dir.clone());
        if let Some(settings) = &config.records {
            let m = registry.metrics.clone();
            let recorder = Recorder::start(settings.clone(), m.records_written.clone(), m.records_dropped.clone())
                .map_err(|source| StartError::Records { dir: settings.dir.clone(), source })?;
            registry.set_recorder(Some(recorder));
        }
        *registry.database.write().unwrap_or_else(|e| e.into_inner()) = database;
        Ok(registry)
    }

    /// Creates the registry with the embedded standard policy and no tenants.
    pub fn new(
        engine: Arc<PolicyEngine>,
        health: Arc<HealthTable>,
        metrics: Arc<Metrics>,
    ) -> Result<PolicyRegistry, LoadError> {
        let compiled = engine.compile(STANDARD_COMPONENT)?;
        let placeholder = Arc::new(Tenant::empty("standard"));
        let standard = PolicyVersion::load(
            engine.clone(),
            health.clone(),
            Code::Ready(compiled),
            "standard".into(),
            0,
            String::new(),
            STANDARD_LIMITS,
            &placeholder,
            true,
        )?;
        let standard = Arc::new(standard);
        engine.set_standard(&standard);
        Ok(PolicyRegistry {
            database: RwLock::new(HashMap::new()),
            engine,
            health,
            standard,
            tenants: RwLock::new(HashMap::new()),
            history: Arc::new(
                History::new(None, super::history::DEFAULT_KEEP).map_err(|e| LoadError::InitFault(e.to_string()))?,
            ),
            lifecycle: RwLock::new(Lifecycle::default()),
            shadow: std::sync::OnceLock::new(),
            policy_dir: RwLock::new(None),
            changes: tokio::sync::watch::channel(0).0,
            metrics,
            eager: AtomicBool::new(true),
            recorder: RwLock::new(None),
            info: Mutex::new(HashMap::new()),
            database_candidates: RwLock::new(HashMap::new()),
            rollback_sink: RwLock::new(None),
            backlog: None,
            swaps: Mutex::new(HashMap::new()),
        })
    }

    /// Installs every tenant's configured policy at start-up, lazily: compiled
    /// (or taken from the caches) now, instantiated at its first call.
    pub fn install_all(&self, tenants: &Tenants) {
        self.eager.store(false, Ordering::Relaxed);
        for tenant in tenants.iter() {
            crate::spans::tenant(&tenant.config.id).in_scope(|| self.install_configured(tenant));
        }
        self.eager.store(true, Ordering::Relaxed);
    }

    /// Installs the policy `tenant`'s configuration names. A tenant whose file
    /// cannot be installed serves with the standard policy and keeps the error in
    /// [`TenantPolicy::load_error`].
    pub fn install_configured(&self, tenant: &Arc<Tenant>) -> Arc<TenantPolicy> {
        if let Some(v) = self.database_version(&tenant.config.id) {
            let source = || Source::Bytes(v.bytes.clone());
            return match self.load_bytes_from(tenant, &v.bytes, format!("database version {}", v.version_id), source) {
                Ok(own) => self.install(tenant, Some(own), None),
                Err(e) => {
                    tracing::warn!(version = v.version_id, error = %e, "policy not installed, the standard policy serves");
                    self.install(tenant, None, Some(format!("database version {}: {e}", v.version_id)))
                }
            };
        }
        if let Some(own) = self.pinned(tenant) {
            return self.install(tenant, Some(own), None);
        }
        let dir_file = self.policy_dir_file(&tenant.config.id).filter(|p| p.is_file());
        let result = match (dir_file, &tenant.config.policy) {
            (Some(path), _) => self.load_file(tenant, &path).map(Some),
            (None, PolicySource::Standard) => Ok(None),
            (None, PolicySource::File(path)) => self.load_file(tenant, path).map(Some),
        };
        match result {
            Ok(own) => self.install(tenant, own, None),
            Err(e) => {
                tracing::warn!(error = %e, "policy not installed, the standard policy serves");
                self.install(tenant, None, Some(e.to_string()))
            }
        }
    }

    /// The hash of the file the tenant's policy comes from (the watched
    /// directory's, else the configured one), if any and readable.
    fn file_hash(&self, tenant: &Tenant) -> Option<String> {
        let dir_file = self.policy_dir_file(&tenant.config.id).filter(|p| p.is_file());
        let path = match (dir_file, &tenant.config.policy) {
            (Some(p), _) => p,
            (None, PolicySource::File(p)) => p.clone(),
            (None, PolicySource::Standard) => return None,
        };
        read_component(&path).ok().map(|b| super::engine::hex_sha256(&b))
    }

    /// The version an operator pinned, when it still applies (the tenant's
    /// file is the one it was pinned over); a pin over another file ends.
    fn pinned(&self, tenant: &Arc<Tenant>) -> Option<Arc<PolicyVersion>> {
        let id = &tenant.config.id;
        let pin = self.history.pin(id)?;
        if pin.over_file != self.file_hash(tenant) {
            tracing::info!(version = pin.number, "the policy file changed since version was pinned; the file serves");
            self.history.set_pin(id, None);
            return None;
        }
        let (entry, bytes) = self.history.get(id, pin.number)?;
        match self.load_bytes(tenant, &bytes, entry.source) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(version = pin.number, error = %e, "the pinned version does not load; the file serves");
                None
            }
        }
    }

    /// A tenant's versions, newest first (`GET /tenants/{id}/policy/history`).
    pub fn history(&self, tenant_id: &str) -> Vec<HistoryEntry> {
        self.history.entries(tenant_id)
    }

    /// How candidates run unless told otherwise.
    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves kept version `number` (or the one serving before the current
    /// one) again, pinned over the tenant's file until that file changes.
    pub fn rollback_to(&self, tenant: &Arc<Tenant>, number: Option<u64>) -> Result<Arc<TenantPolicy>, LifecycleError> {
        let id = &tenant.config.id;
        if self.database_version(id).is_some() {
            return Err(LifecycleError::Database);
        }
        let number = match number {
            Some(n) => n,
            None => self.history.previous(id).ok_or(LifecycleError::NoPrevious)?,
        };
        let (entry, bytes) = self.history.get(id, number).ok_or(LifecycleError::NoSuchVersion(number))?;
        let lock = self.swap_lock(id);
        let _swap = lock.lock().unwrap_or_else(|e| e.into_inner());
        let version =
            self.load_bytes(tenant, &bytes, entry.source).map_err(|e| LifecycleError::Refused(e.to_string()))?;
        self.history.set_pin(id, Some(Pin { number, over_file: self.file_hash(tenant) }));
        let policy = self.install(tenant, Some(version), None);
        Metrics::tenant_kind(&self.metrics.reloads, id, "ok");
        tracing::info!(version = number, "policy rolled back");
        Ok(policy)
    }

    /// Reports rollbacks of the directory database's candidates to `sink`.
    pub fn set_rollback_sink(&self, sink: Option<RollbackSink>) {
        *self.rollback_sink.write().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// The candidate from the directory database applied for `tenant`:
    /// version id and whether rolled back.
    pub fn database_candidate(&self, tenant: &str) -> Option<(i64, bool)> {
        self.database_candidates.read().unwrap_or_else(|e| e.into_inner()).get(tenant).copied()
    }

    /// The directory database says `tenant`'s candidate is `candidate`:
    /// started (compiled once, through the disk cache), rolled back, or ended.
    pub fn apply_database_candidate(&self, tenant: &Arc<Tenant>, candidate: Option<DatabaseCandidate>) {
        let id = &tenant.config.id;
        let key = candidate.as_ref().map(|c| (c.version_id, c.rolled_back.is_some()));
        if self.database_candidate(id) == key {
            return;
        }
        match &key {
            Some(k) => self.database_candidates.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), *k),
            None => self.database_candidates.write().unwrap_or_else(|e| e.into_inner()).remove(id),
        };
        let current = self.get(tenant);
        let Some(c) = candidate else {
            if current.candidate.is_some() {
                let _ = self.abandon(tenant);
            }
            return;
        };
        let running = current.candidate.as_ref().filter(|k| k.origin == Some(c.version_id));
        let started = match running {
            Some(k) => Some(k.clone()),
            None => {
                let source = CandidateSource::Bytes {
                    bytes: c.bytes.to_vec(),
                    source: format!("database version {}", c.version_id),
                };
                match self.start_candidate_from(tenant, source, c.mode, c.rule, Some(c.version_id)) {
                    Ok(p) => p.candidate.clone(),
                    Err(e) => {
                        tracing::warn!(version = c.version_id, error = %e, "the database's candidate is refused here");
                        None
                    }
                }
            }
        };
        if let (Some(reason), Some(k)) = (c.rolled_back, started)
            && k.roll_back(reason.clone())
        {
            self.history.set_state(id, k.version.version, HistoryState::RolledBack, Some(reason.clone()));
            let current = self.get(tenant);
            self.set_info(id, current.own.as_deref(), None);
            tracing::info!(version = c.version_id, %reason, "the fleet's canary was rolled back");
        }
    }

    /// Starts a candidate beside the serving version: `bytes` (named
    /// `source`), or kept version `from`.
    pub fn start_candidate(
        &self,
        tenant: &Arc<Tenant>,
        component: CandidateSource,
        mode: CandidateMode,
        rule: CanaryRule,
    ) -> Result<Arc<TenantPolicy>, LifecycleError> {
        self.start_candidate_from(tenant, component, mode, rule, None)
    }

    fn start_candidate_from(
        &self,
        tenant: &Arc<Tenant>,
        component: CandidateSource,
        mode: CandidateMode,
        rule: CanaryRule,
        origin: Option<i64>,
    ) -> Result<Arc<TenantPolicy>, LifecycleError> {
        let id = &tenant.config.id;
        if let CandidateMode::Canary { share } = mode
            && !(0.0..=1.0).contains(&share)
        {
            return Err(LifecycleError::Invalid(format!("share {share}: 0 to 1")));
        }
        let (bytes, source) = match component {
            CandidateSource::Bytes { bytes, source } => (Arc::<[u8]>::from(bytes), source),
            CandidateSource::Kept(n) => {
                let (entry, bytes) = self.history.get(id, n).ok_or(LifecycleError::NoSuchVersion(n))?;
                (bytes, entry.source)
            }
        };
        let version = self.load_bytes(tenant, &bytes, source).map_err(|e| LifecycleError::Refused(e.to_string()))?;
        let current = self.get(tenant);
        if current.own.as_ref().is_some_and(|o| o.hash == version.hash) {
            return Err(LifecycleError::Invalid(format!("version {} is the serving version", version.version)));
        }
        if let Some(old) = &current.candidate
            && old.roll_back("replaced by another candidate".into())
        {
            self.history.set_state(id, old.version.version, HistoryState::RolledBack, Some("replaced".into()));
        }
        let lifecycle = self.lifecycle();
        let role = mode.as_str();
        let lane = self.metrics.lane(id, version.version, role);
        let divergences = Divergence::ALL.map(|k| {
            let labels = VersionKind {
                tenant: id.clone(),
                version: version.version.to_string(),
                role: role.to_owned(),
                kind: k.as_str().to_owned(),
            };
            self.metrics.shadow_divergences.get_or_create(&labels).clone()
        });
        self.history.set_state(id, version.version, HistoryState::Candidate, None);
        let mut candidate = Candidate::new(version.clone(), mode, rule, lifecycle.shadow_samples, lane, divergences);
        candidate.origin = origin;
        tracing::info!(candidate = version.version, mode = role, "candidate started");
        Ok(self.install_with(tenant, current.own.clone(), current.load_error.clone(), Some(Arc::new(candidate))))
    }

    /// The candidate becomes the serving version (pinned over the tenant's
    /// file until that file changes).
    pub fn promote(&self, tenant: &Arc<Tenant>) -> Result<Arc<TenantPolicy>, LifecycleError> {
        let id = &tenant.config.id;
        let current = self.get(tenant);
        let c = current.candidate.clone().ok_or(LifecycleError::NoCandidate)?;
        if let Some(reason) = c.rollback_reason() {
            return Err(LifecycleError::RolledBack(reason));
        }
        let lock = self.swap_lock(id);
        let _swap = lock.lock().unwrap_or_else(|e| e.into_inner());
        self.history.set_pin(id, Some(Pin { number: c.version.version, over_file: self.file_hash(tenant) }));
        let policy = self.install_with(tenant, Some(c.version.clone()), None, None);
        Metrics::tenant_kind(&self.metrics.reloads, id, "ok");
        tracing::info!(version = c.version.version, "candidate promoted");
        Ok(policy)
    }

    /// Ends the tenant's candidate.
    pub fn abandon(&self, tenant: &Arc<Tenant>) -> Result<Arc<TenantPolicy>, LifecycleError> {
        let current = self.get(tenant);
        let c = current.candidate.clone().ok_or(LifecycleError::NoCandidate)?;
        if c.roll_back("abandoned".into()) {
            self.history.set_state(
                &tenant.config.id,
                c.version.version,
                HistoryState::RolledBack,
                Some("abandoned".into()),
            );
        }
        tracing::info!(candidate = c.version.version, "candidate abandoned");
        Ok(self.install_with(tenant, current.own.clone(), current.load_error.clone(), None))
    }

    /// The tenant's active version in the directory database, if any.
    pub fn database_version(&self, tenant: &str) -> Option<DatabaseVersion> {
        self.database.read().unwrap_or_else(|e| e.into_inner()).get(tenant).cloned()
    }

    /// The directory database says the tenant's active version is `version`
    /// (`None`: none, its configured policy serves): compiled (through the
    /// disk cache) and installed. A version that does not load leaves the
    /// current one serving, with the reason on it.
    pub fn apply_database_version(&self, tenant: &Arc<Tenant>, version: Option<DatabaseVersion>) -> Result<(), String> {
        let id = &tenant.config.id;
        let current = self.database_version(id);
        if current.as_ref().map(|v| v.version_id) == version.as_ref().map(|v| v.version_id) {
            return Ok(());
        }
        let Some(v) = version else {
            self.database.write().unwrap_or_else(|e| e.into_inner()).remove(id);
            tracing::info!("no active policy version in the database; the configured policy serves");
            self.install_configured(tenant);
            return Ok(());
        };
        match self.load_bytes(tenant, &v.bytes, format!("database version {}", v.version_id)) {
            Ok(own) => {
                // Installed first: whoever sees the database's version as
                // this tenant's sees it serving.
                self.install(tenant, Some(own), None);
                self.database.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), v.clone());
                Metrics::tenant_kind(&self.metrics.reloads, id, "ok");
                tracing::info!(version = v.version_id, "policy version activated");
                Ok(())
            }
            Err(e) => {
                let why = format!("database version {}: {e}", v.version_id);
                let current = self.get(tenant);
                tracing::warn!(error = %why, "activation refused, the previous version keeps serving");
                *current.reload_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
                Metrics::tenant_kind(&self.metrics.reloads, id, "failed");
                self.changes.send_modify(|n| *n += 1);
                Err(why)
            }
        }
    }

    /// Where decisions, faults and reloads are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The engine (for its caches).
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// Sets the watched policy directory (before [`Self::install_all`]).
    pub fn set_policy_dir(&self, dir: Option<std::path::PathBuf>) {
        *self.policy_dir.write().unwrap_or_else(|e| e.into_inner()) = dir;
    }

    fn policy_dir_file(&self, tenant: &str) -> Option<std::path::PathBuf> {
        self.policy_dir.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|d| d.join(format!("{tenant}.wasm")))
    }

    /// A tenant's policy file changed: compile and install it as a new version.
    /// A file that does not load leaves the current version serving and records
    /// why on it.
    pub fn reload_file(&self, tenant: &Arc<Tenant>, path: &Path) -> Result<Arc<TenantPolicy>, InstallError> {
        // The same bytes again (one write seen as several events) are no new
        // version; nor is the file a pinned version was pinned over.
        let lock = self.swap_lock(&tenant.config.id);
        let _swap = lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.get(tenant);
        if let Ok(bytes) = read_component(path) {
            let hash = super::engine::hex_sha256(&bytes);
            if current.own.as_ref().is_some_and(|own| own.hash == hash) {
                return Ok(current);
            }
            match self.history.pin(&tenant.config.id) {
                Some(pin) if pin.over_file.as_deref() == Some(hash.as_str()) => return Ok(current),
                Some(_) => self.history.set_pin(&tenant.config.id, None),
                None => {}
            }
        }
        match self.load_file(tenant, path) {
            Ok(version) => {
                let policy = self.install(tenant, Some(version.clone()), None);
                Metrics::tenant_kind(&self.metrics.reloads, &tenant.config.id, "ok");
                tracing::info!(policy = %version.name, version = version.version, "policy replaced");
                Ok(policy)
            }
            Err(e) => {
                let current = self.get(tenant);
                tracing::warn!(serving = ?current.own.as_ref().map(|v| v.version), error = %e, "reload refused, the previous version keeps serving");
                *current.reload_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Metrics::tenant_kind(&self.metrics.reloads, &tenant.config.id, "failed");
                self.changes.send_modify(|n| *n += 1);
                Err(e)
            }
        }
    }

    /// Reloads a tenant's policy from where its configuration says (the watched
    /// directory's file, else its configured file): a file that does not load
    /// leaves the current version serving; the error is returned.
    pub fn reload_configured(&self, tenant: &Arc<Tenant>) -> Result<Arc<TenantPolicy>, InstallError> {
        let dir_file = self.policy_dir_file(&tenant.config.id).filter(|p| p.is_file());
        let path = match (dir_file, &tenant.config.policy) {
            (Some(path), _) => path,
            (None, PolicySource::File(path)) => path.clone(),
            (None, PolicySource::Standard) => return Ok(self.install(tenant, None, None)),
        };
        self.reload_file(tenant, &path)
    }

    /// A tenant's policy file was removed: back to its configured policy.
    pub fn file_removed(&self, tenant: &Arc<Tenant>) -> Arc<TenantPolicy> {
        tracing::info!("policy file removed; back to the configured policy");
        self.install_configured(tenant)
    }

    /// Every installed tenant policy, by tenant id.
    pub fn all(&self) -> Vec<Arc<TenantPolicy>> {
        let mut all: Vec<_> = self.tenants.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        all
    }

    /// Forgets a tenant that left the configuration.
    pub fn remove(&self, tenant_id: &str) {
        self.tenants.write().unwrap_or_else(|e| e.into_inner()).remove(tenant_id);
    }

    /// Compiles and loads a policy file for `tenant` as a new version.
    pub fn load_file(&self, tenant: &Arc<Tenant>, path: &Path) -> Result<Arc<PolicyVersion>, InstallError> {
        let bytes = read_component(path)?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        self.load_bytes_from(tenant, &bytes, name, || Source::File(path.to_path_buf()))
            .map_err(|source| InstallError::Load { path: path.to_path_buf(), source })
    }

    /// Whether `bytes` would be accepted as a version of `tenant`: signed as
    /// it requires, its manifest within its caps, and compiled against the
    /// contract (nothing is installed).
    pub fn admissible(&self, tenant: &Tenant, bytes: &[u8]) -> Result<(), LoadError> {
        tenant.config.signing.check(bytes).map_err(LoadError::Signature)?;
        let manifest = super::manifest::manifest(bytes).map_err(LoadError::Manifest)?;
        let limits =
            granted(tenant.config.limits, manifest.as_ref(), embeds_runtime(bytes)).map_err(LoadError::Manifest)?;
        declared_within(bytes, limits)?;
        self.engine.compile(bytes).map(|_| ())
    }

    /// Compiles and loads component `bytes` for `tenant` as a new version.
    pub fn load_bytes(
        &self,
        tenant: &Arc<Tenant>,
        bytes: &[u8],
        name: String,
    ) -> Result<Arc<PolicyVersion>, LoadError> {
        self.load_bytes_from(tenant, bytes, name, || Source::Bytes(bytes.into()))
    }

    /// [`Self::load_bytes`], knowing where the bytes can be read again if the
    /// version is compiled in the background.
    fn load_bytes_from(
        &self,
        tenant: &Arc<Tenant>,
        bytes: &[u8],
        name: String,
        source: impl FnOnce() -> Source,
    ) -> Result<Arc<PolicyVersion>, LoadError> {
        let eager = self.eager.load(Ordering::Relaxed);
        let hash = super::engine::hex_sha256(bytes);
        if tenant.config.record_decisions > 0.0
            && let Some(recorder) = self.recorder()
        {
            recorder.keep_component(&hash, bytes);
        }
        let id = &tenant.config.id;
        let mut quick = false;
        let refused = |e: LoadError| {
            self.history.refused(id, &hash, bytes.len(), &name, &e.to_string());
            e
        };
        // Who vouches for it, and what it asks for, before any compiling.
        let signer = tenant.config.signing.check(bytes).map_err(|e| refused(LoadError::Signature(e)))?;
        let manifest = super::manifest::manifest(bytes).map_err(|e| refused(LoadError::Manifest(e)))?;
        let limits = granted(tenant.config.limits, manifest.as_ref(), embeds_runtime(bytes))
            .map_err(|e| refused(LoadError::Manifest(e)))?;
        declared_within(bytes, limits).map_err(refused)?;
        // At start-up, a component already in the disk cache is loaded at its
        // first call: an idle tenant costs no code in memory.
        // Not in the cache, with a backlog: compiled in the background.
        let code = if !eager && self.engine.has_artifact(&hash) {
            Code::Deferred { hash: hash.clone(), size: bytes.len() }
        } else if !eager && let Some(backlog) = &self.backlog {
            if !super::engine::is_component(bytes) {
                // Refused now, as without a backlog.
                return Err(refused(
                    self.engine
                        .compile(bytes)
                        .err()
                        .unwrap_or_else(|| LoadError::NotAComponent("not a WebAssembly component".into())),
                ));
            }
            Code::Background { hash: hash.clone(), size: bytes.len(), pending: backlog.pending(tenant, source()) }
        } else if self.engine.wants_quick_tier(bytes) {
            // A runtime's worth of code not compiled before: served from
            // Winch's code in about a second, Cranelift's replacing it when
            // compiled (in the background, at a low priority).
            quick = true;
            Code::Ready(self.engine.compile_quick(bytes).map_err(refused)?)
        } else {
            Code::Ready(self.engine.compile(bytes).map_err(refused)?)
        };
        let version = self.history.number_for(id, &hash, bytes, &name);
        let c = &tenant.config;
        let mut v = PolicyVersion::load(
            self.engine.clone(),
            self.health.clone(),
            code,
            name.clone(),
            version,
            c.policy_config.clone(),
            limits,
            tenant,
            eager,
        )
        .map_err(refused)?;
        self.history.set_manifest(id, version, manifest.as_ref().map(super::manifest::Manifest::label));
        v.manifest = manifest;
        v.signer = signer;
        tracing::info!(policy = %v.name, version, hash = %v.hash, manifest = ?v.manifest.as_ref().map(super::manifest::Manifest::label), quick_tier = quick, "policy loaded");
        let v = Arc::new(v);
        if quick {
            optimize_later(&self.engine, &v, bytes);
        }
        Ok(v)
    }

    /// Makes `own` (or the standard policy, for `None`) the tenant's policy,
    /// keeping its candidate. A new version starts with a clean fault record.
    pub fn install(
        &self,
        tenant: &Tenant,
        own: Option<Arc<PolicyVersion>>,
        load_error: Option<String>,
    ) -> Arc<TenantPolicy> {
        let candidate = self.current(&tenant.config.id).and_then(|p| p.candidate.clone());
        self.install_with(tenant, own, load_error, candidate)
    }

    /// [`Self::install`] with `candidate` beside it.
    fn install_with(
        &self,
        tenant: &Tenant,
        own: Option<Arc<PolicyVersion>>,
        load_error: Option<String>,
        candidate: Option<Arc<Candidate>>,
    ) -> Arc<TenantPolicy> {
        let c = &tenant.config;
        // Candidates of the serving version itself are over.
        let candidate = candidate.filter(|k| own.as_ref().is_none_or(|o| o.hash != k.version.hash));
        let number = own.as_ref().map_or(0, |v| v.version);
        if let Some(v) = &own {
            self.history.set_state(&c.id, v.version, HistoryState::Serving, None);
        }
        self.set_info(&c.id, own.as_deref(), candidate.as_deref());
        let shadow = candidate.as_ref().filter(|k| k.mode == CandidateMode::Shadow).and_then(|_| self.shadow_queue());
        let policy = Arc::new(TenantPolicy {
            tenant_id: c.id.clone(),
            own,
            load_error,
            candidate,
            serving: self.metrics.lane(&c.id, number, "serving"),
            shadow,
            history: self.history.clone(),
            rollbacks: self.rollback_sink.read().unwrap_or_else(|e| e.into_inner()).clone(),
            reload_error: Mutex::new(None),
            fallback: c.fallback,
            quarantine_after: c.limits.quarantine_after,
            standard: self.standard.clone(),
            consecutive_faults: AtomicU32::new(0),
            quarantined: AtomicBool::new(false),
            metrics: self.metrics.clone(),
            counters: self.metrics.tenant_counters(&c.id),
            records: self.records_of(tenant),
        });
        self.tenants.write().unwrap_or_else(|e| e.into_inner()).insert(c.id.clone(), policy.clone());
        // A version installed before it was compiled joins the backlog now
        // that it serves (a failure then refuses it where it serves).
        if let (Some(own), Some(backlog)) = (&policy.own, &self.backlog)
            && own.readiness() == Readiness::Compiling
        {
            backlog.queue(own);
        }
        self.changes.send_modify(|n| *n += 1);
        policy
    }

    /// The tenant's installed policy, if any (without installing one).
    pub fn current(&self, tenant_id: &str) -> Option<Arc<TenantPolicy>> {
        self.tenants.read().unwrap_or_else(|e| e.into_inner()).get(tenant_id).cloned()
    }

    /// Sets `exum_policy_info` for what serves the tenant and its candidate.
    fn set_info(&self, tenant: &str, own: Option<&PolicyVersion>, candidate: Option<&Candidate>) {
        let info = &self.metrics.policy_info;
        let mut previous = self.info.lock().unwrap_or_else(|e| e.into_inner());
        for labels in previous.remove(tenant).unwrap_or_default() {
            info.remove(&labels);
        }
        let serving = own.unwrap_or(&self.standard);
        let mut set = vec![InfoLabels {
            tenant: tenant.to_owned(),
            role: "serving".into(),
            version: serving.version.to_string(),
            hash: serving.hash.clone(),
            name: serving.manifest.as_ref().map_or_else(|| serving.name.clone(), |m| m.label()),
        }];
        if let Some(c) = candidate.filter(|c| !c.is_rolled_back()) {
            set.push(InfoLabels {
                tenant: tenant.to_owned(),
                role: c.mode.as_str().into(),
                version: c.version.version.to_string(),
                hash: c.version.hash.clone(),
                name: c.version.manifest.as_ref().map_or_else(|| c.version.name.clone(), |m| m.label()),
            });
        }
        for labels in &set {
            info.get_or_create(labels).set(1);
        }
        previous.insert(tenant.to_owned(), set);
    }

    /// The shadow thread's queue, started the first time.
    fn shadow_queue(&self) -> Option<ShadowQueue> {
        self.shadow
            .get_or_init(|| match ShadowQueue::start() {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the shadow thread; shadows get no requests");
                    None
                }
            })
            .clone()
    }

    /// Records decisions of the tenants that ask for it into `recorder`.
    pub fn set_recorder(&self, recorder: Option<Arc<Recorder>>) {
        if let Some(r) = &recorder {
            r.keep_component(&self.standard.hash, STANDARD_COMPONENT);
        }
        *self.recorder.write().unwrap_or_else(|e| e.into_inner()) = recorder;
    }

    /// The recorder of decision records, if any.
    pub fn recorder(&self) -> Option<Arc<Recorder>> {
        self.recorder.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where `tenant`'s calls are recorded, and the share, if it records.
    fn records_of(&self, tenant: &Tenant) -> Option<(Arc<Recorder>, f64)> {
        let share = tenant.config.record_decisions;
        if share <= 0.0 {
            return None;
        }
        let recorder = self.recorder();
        if recorder.is_none() {
            tracing::warn!("record_decisions is set but the router has no [records] section; nothing is recorded");
        }
        Some((recorder?, share))
    }

    /// A receiver that sees every install and every refused reload.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The tenant's current policy; the standard one for a tenant never installed.
    pub fn get(&self, tenant: &Tenant) -> Arc<TenantPolicy> {
        if let Some(p) = self.tenants.read().unwrap_or_else(|e| e.into_inner()).get(&tenant.config.id) {
            return p.clone();
        }
        self.install(tenant, None, None)
    }

    /// The standard policy's version.
    pub fn standard(&self) -> &Arc<PolicyVersion> {
        &self.standard
    }

    /// Target health, shared with the probes.
    pub fn health(&self) -> &Arc<HealthTable> {
        &self.health
    }
}

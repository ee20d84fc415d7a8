//! Tenant → policy. Each tenant has a [`TenantPolicy`]: its own version (or none,
//! for the standard policy), its fallback, and its fault record. Deciding a
//! request goes through here: the policy's decision is validated; a fault costs
//! that one decision, which the fallback makes; repeated faults quarantine the
//! version until a new one is installed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::bindings::exum::policy::types::{Decision, Failure, Reject, Request};
use super::decision::validate;
use super::engine::{LoadError, MAX_COMPONENT_BYTES, PolicyEngine};
use super::host_api::{self, Imports};
use super::record::{self, DecisionRecord, Export, Output, Recorder};
use super::version::{Code, Fault, PolicyCall, PolicyVersion};
use crate::control::config::{Fallback, Limits, PolicySource, RouterConfig};
use crate::control::health::HealthTable;
use crate::control::{Tenant, Tenants};
use crate::metrics::{Metrics, TenantCounters, TenantLabel};
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
    /// Where its calls are recorded and the share recorded, when it records.
    records: Option<(Arc<Recorder>, f64)>,
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

    /// The tenant's state: `standard`, `active`, `quarantined`, or
    /// `last_good_after_failed_reload`.
    pub fn state(&self) -> &'static str {
        match (&self.own, self.is_quarantined(), self.reload_error().is_some()) {
            (None, ..) => "standard",
            (Some(_), true, _) => "quarantined",
            (Some(_), false, true) => "last_good_after_failed_reload",
            (Some(_), false, false) => "active",
        }
    }

    /// Decides where a new request goes.
    pub fn route(&self, tenant: &Arc<Tenant>, req: &Request) -> Verdict {
        let recorder = self.recorder_for(req);
        self.decide(|v| self.run(v, tenant, PolicyCall::Route(req), recorder))
    }

    /// Decides what happens when every target of a forward failed.
    pub fn on_failure(&self, tenant: &Arc<Tenant>, req: &Request, failure: &Failure) -> Verdict {
        let recorder = self.recorder_for(req);
        self.decide(|v| self.run(v, tenant, PolicyCall::OnFailure(req, failure), recorder))
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
        let (result, imports) = version.call_with(tenant, call, Imports::recording());
        let Imports::Recording(calls) = imports else { return result };
        let (export, failure) = match call {
            PolicyCall::Route(_) => (Export::Route, None),
            PolicyCall::OnFailure(_, f) => (Export::OnFailure, Some(f)),
        };
        let output = match &result {
            Ok(d) => Output::Decision(d.clone()),
            Err(f) => Output::Fault(f.to_string()),
        };
        recorder.submit(DecisionRecord::new(
            &self.tenant_id,
            version.recorded(),
            export,
            call.request(),
            failure,
            host_api::now(tenant),
            calls,
            output,
        ));
        result
    }

    fn decide(&self, call: impl Fn(&PolicyVersion) -> Result<Decision, Fault>) -> Verdict {
        let start = Instant::now();
        let (decision, decided_by) = match &self.own {
            None => self.standard(&call, DecidedBy::Standard),
            Some(_) if self.is_quarantined() => self.fallback(&call, "quarantined".to_owned()),
            Some(own) => match call(own).and_then(|d| validate(&d).map(|()| d).map_err(Fault::InvalidDecision)) {
                Ok(Decision::Standard) => {
                    self.consecutive_faults.store(0, Ordering::Relaxed);
                    self.standard(&call, DecidedBy::Standard)
                }
                Ok(d) => {
                    self.consecutive_faults.store(0, Ordering::Relaxed);
                    (d, DecidedBy::Policy { name: own.name.clone(), version: own.version })
                }
                Err(fault) => {
                    self.record_fault(own, &fault);
                    self.fallback(&call, fault.kind().as_str().to_owned())
                }
            },
        };
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
        Verdict { decision, decided_by, elapsed }
    }

    fn record_fault(&self, own: &PolicyVersion, fault: &Fault) {
        let kind = fault.kind();
        let n = self.consecutive_faults.fetch_add(1, Ordering::Relaxed) + 1;
        Metrics::tenant_kind(&self.metrics.faults, &self.tenant_id, kind.as_str());
        tracing::warn!(tenant = %self.tenant_id, policy = %own.name, version = own.version, fault = %kind, consecutive = n, detail = %fault, "policy fault");
        if n >= self.quarantine_after && !self.quarantined.swap(true, Ordering::Relaxed) {
            self.metrics.quarantines.get_or_create(&TenantLabel { tenant: self.tenant_id.clone() }).inc();
            tracing::warn!(tenant = %self.tenant_id, policy = %own.name, version = own.version, consecutive = n, "policy quarantined; the fallback decides until a new version is installed");
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
                tracing::error!(tenant = %self.tenant_id, outcome = ?other, "the standard policy failed");
                let internal = Reject { code: 500, reason: reason_phrase(500).to_owned(), headers: Vec::new() };
                (Decision::Reject(internal), DecidedBy::Internal)
            }
        }
    }
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
const STANDARD_LIMITS: Limits =
    Limits { deadline: Duration::from_secs(1), memory_bytes: 16 << 20, quarantine_after: u32::MAX };

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
    next_version: AtomicU64,
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
        let engine = PolicyEngine::counting_into(metrics.policy_compilations.clone(), metrics.policy_disk_hits.clone())
            .map_err(|e| StartError::Engine(format!("{e:#}")))?;
        let engine = Arc::new(engine);
        if let Some(dir) = &config.policy_cache {
            engine.set_disk_cache(dir.clone()).map_err(|source| StartError::Cache { dir: dir.clone(), source })?;
        }
        let registry = PolicyRegistry::new(engine, health, metrics).map_err(StartError::Standard)?;
        registry.set_policy_dir(config.policy_dir.clone());
        if let Some(settings) = &config.records {
            let m = registry.metrics.clone();
            let recorder = Recorder::start(settings.clone(), m.records_written.clone(), m.records_dropped.clone())
                .map_err(|source| StartError::Records { dir: settings.dir.clone(), source })?;
            registry.set_recorder(Some(recorder));
        }
        *registry.database.write().unwrap_or_else(|e| e.into_inner()) = database;
        registry.install_all(tenants);
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
        Ok(PolicyRegistry {
            database: RwLock::new(HashMap::new()),
            engine,
            health,
            standard: Arc::new(standard),
            tenants: RwLock::new(HashMap::new()),
            next_version: AtomicU64::new(1),
            policy_dir: RwLock::new(None),
            changes: tokio::sync::watch::channel(0).0,
            metrics,
            eager: AtomicBool::new(true),
            recorder: RwLock::new(None),
        })
    }

    /// Installs every tenant's configured policy at start-up, lazily: compiled
    /// (or taken from the caches) now, instantiated at its first call.
    pub fn install_all(&self, tenants: &Tenants) {
        self.eager.store(false, Ordering::Relaxed);
        for tenant in tenants.iter() {
            self.install_configured(tenant);
        }
        self.eager.store(true, Ordering::Relaxed);
    }

    /// Installs the policy `tenant`'s configuration names. A tenant whose file
    /// cannot be installed serves with the standard policy and keeps the error in
    /// [`TenantPolicy::load_error`].
    pub fn install_configured(&self, tenant: &Arc<Tenant>) -> Arc<TenantPolicy> {
        if let Some(v) = self.database_version(&tenant.config.id) {
            return match self.load_bytes(tenant, &v.bytes, format!("database version {}", v.version_id)) {
                Ok(own) => self.install(tenant, Some(own), None),
                Err(e) => {
                    tracing::warn!(tenant = %tenant.config.id, version = v.version_id, error = %e, "policy not installed, the standard policy serves");
                    self.install(tenant, None, Some(format!("database version {}: {e}", v.version_id)))
                }
            };
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
                tracing::warn!(tenant = %tenant.config.id, error = %e, "policy not installed, the standard policy serves");
                self.install(tenant, None, Some(e.to_string()))
            }
        }
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
            tracing::info!(tenant = %id, "no active policy version in the database; the configured policy serves");
            self.install_configured(tenant);
            return Ok(());
        };
        match self.load_bytes(tenant, &v.bytes, format!("database version {}", v.version_id)) {
            Ok(own) => {
                self.database.write().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), v.clone());
                self.install(tenant, Some(own), None);
                Metrics::tenant_kind(&self.metrics.reloads, id, "ok");
                tracing::info!(tenant = %id, version = v.version_id, "policy version activated");
                Ok(())
            }
            Err(e) => {
                let why = format!("database version {}: {e}", v.version_id);
                let current = self.get(tenant);
                tracing::warn!(tenant = %id, error = %why, "activation refused, the previous version keeps serving");
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
        // The same bytes again (one write seen as several events) are no new version.
        let current = self.get(tenant);
        if let (Some(own), Ok(bytes)) = (&current.own, read_component(path))
            && own.hash == super::engine::hex_sha256(&bytes)
        {
            return Ok(current);
        }
        match self.load_file(tenant, path) {
            Ok(version) => {
                let policy = self.install(tenant, Some(version.clone()), None);
                Metrics::tenant_kind(&self.metrics.reloads, &tenant.config.id, "ok");
                tracing::info!(tenant = %tenant.config.id, policy = %version.name, version = version.version, "policy replaced");
                Ok(policy)
            }
            Err(e) => {
                let current = self.get(tenant);
                tracing::warn!(tenant = %tenant.config.id, serving = ?current.own.as_ref().map(|v| v.version), error = %e, "reload refused, the previous version keeps serving");
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
    pub fn reload_configured(&self, tenant: &Arc<Tenant>) -> Result<Arc<TenantPolicy>, String> {
        let dir_file = self.policy_dir_file(&tenant.config.id).filter(|p| p.is_file());
        let path = match (dir_file, &tenant.config.policy) {
            (Some(path), _) => path,
            (None, PolicySource::File(path)) => path.clone(),
            (None, PolicySource::Standard) => return Ok(self.install(tenant, None, None)),
        };
        self.reload_file(tenant, &path).map_err(|e| e.to_string())
    }

    /// A tenant's policy file was removed: back to its configured policy.
    pub fn file_removed(&self, tenant: &Arc<Tenant>) -> Arc<TenantPolicy> {
        tracing::info!(tenant = %tenant.config.id, "policy file removed; back to the configured policy");
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
        self.load_bytes(tenant, &bytes, name).map_err(|source| InstallError::Load { path: path.to_path_buf(), source })
    }

    /// Compiles and loads component `bytes` for `tenant` as a new version.
    pub fn load_bytes(
        &self,
        tenant: &Arc<Tenant>,
        bytes: &[u8],
        name: String,
    ) -> Result<Arc<PolicyVersion>, LoadError> {
        let eager = self.eager.load(Ordering::Relaxed);
        let hash = super::engine::hex_sha256(bytes);
        if tenant.config.record_decisions > 0.0
            && let Some(recorder) = self.recorder()
        {
            recorder.keep_component(&hash, bytes);
        }
        // At start-up, a component already in the disk cache is loaded at its
        // first call: an idle tenant costs no code in memory.
        let code = if !eager && self.engine.has_artifact(&hash) {
            Code::Deferred { hash, size: bytes.len() }
        } else {
            Code::Ready(self.engine.compile(bytes)?)
        };
        let version = self.next_version.fetch_add(1, Ordering::Relaxed);
        let c = &tenant.config;
        let v = PolicyVersion::load(
            self.engine.clone(),
            self.health.clone(),
            code,
            name,
            version,
            c.policy_config.clone(),
            c.limits,
            tenant,
            eager,
        )?;
        tracing::info!(tenant = %c.id, policy = %v.name, version, hash = %v.hash, "policy loaded");
        Ok(Arc::new(v))
    }

    /// Makes `own` (or the standard policy, for `None`) the tenant's policy. A
    /// new version starts with a clean fault record.
    pub fn install(
        &self,
        tenant: &Tenant,
        own: Option<Arc<PolicyVersion>>,
        load_error: Option<String>,
    ) -> Arc<TenantPolicy> {
        let c = &tenant.config;
        let policy = Arc::new(TenantPolicy {
            tenant_id: c.id.clone(),
            own,
            load_error,
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
        self.changes.send_modify(|n| *n += 1);
        policy
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
            tracing::warn!(tenant = %tenant.config.id, "record_decisions is set but the router has no [records] section; nothing is recorded");
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

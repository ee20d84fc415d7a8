//! One version of one policy: the compiled component, its `init` config and
//! limits, and a pool of initialised instances reused from call to call. Calls
//! run under the limits; a fault is classified and the instance discarded.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use wasmtime::Store;
use wasmtime::Trap;

use super::backlog::{Pending, Readiness};
use super::bindings::Policy;
use super::bindings::exum::policy::types::{Decision, Failure, Request};
use super::deadline::{CallClock, FIRST_DEADLINE};
use super::engine::{CompiledPolicy, LoadError, PolicyEngine};
use super::host_api::{Imports, LimitHit, StoreState};
use crate::control::Tenant;
use crate::control::config::Limits;
use crate::control::health::HealthTable;

/// Most idle instances kept per version.
pub const POOL_CAPACITY: usize = 32;

/// What went wrong in a policy call. Never the policy's own decision: a policy
/// that rejects a call has not faulted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The call ran past its deadline (epoch interruption).
    #[error("deadline exceeded")]
    Deadline,
    /// The instance tried to grow its memory (or a table) beyond the limit.
    #[error("memory limit exceeded: {0}")]
    Memory(String),
    /// The wasm stack overflowed (deep recursion).
    #[error("stack overflow")]
    StackOverflow,
    /// The policy panicked (an `unreachable` trap).
    #[error("panic (unreachable executed)")]
    Panic,
    /// Another trap.
    #[error("trap: {0}")]
    Trap(String),
    /// The policy returned a decision the router refuses.
    #[error("invalid decision: {0}")]
    InvalidDecision(String),
    /// A new instance could not be created or initialised.
    #[error("instantiation failed: {0}")]
    Instantiate(String),
}

/// The kinds of [`Fault`], for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// [`Fault::Deadline`].
    Deadline,
    /// [`Fault::Memory`].
    Memory,
    /// [`Fault::StackOverflow`].
    StackOverflow,
    /// [`Fault::Panic`].
    Panic,
    /// [`Fault::Trap`].
    Trap,
    /// [`Fault::InvalidDecision`].
    InvalidDecision,
    /// [`Fault::Instantiate`].
    Instantiate,
}

impl FaultKind {
    /// Every kind, in a fixed order (the index of the counters).
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Deadline,
        FaultKind::Memory,
        FaultKind::StackOverflow,
        FaultKind::Panic,
        FaultKind::Trap,
        FaultKind::InvalidDecision,
        FaultKind::Instantiate,
    ];

    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::StackOverflow => "stack_overflow",
            FaultKind::Panic => "panic",
            FaultKind::Trap => "trap",
            FaultKind::InvalidDecision => "invalid_decision",
            FaultKind::Instantiate => "instantiate",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Fault {
    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Deadline => FaultKind::Deadline,
            Fault::Memory(_) => FaultKind::Memory,
            Fault::StackOverflow => FaultKind::StackOverflow,
            Fault::Panic => FaultKind::Panic,
            Fault::Trap(_) => FaultKind::Trap,
            Fault::InvalidDecision(_) => FaultKind::InvalidDecision,
            Fault::Instantiate(_) => FaultKind::Instantiate,
        }
    }

    fn classify(err: &wasmtime::Error, hit: Option<LimitHit>) -> Fault {
        if hit.is_some() {
            return Fault::Memory(format!("{err:#}"));
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Fault::Deadline,
            Some(Trap::StackOverflow) => Fault::StackOverflow,
            Some(Trap::UnreachableCodeReached) => Fault::Panic,
            Some(trap) => Fault::Trap(trap.to_string()),
            None => Fault::Trap(format!("{err:#}")),
        }
    }
}

/// An initialised instance and its store.
struct PooledInstance {
    store: Store<StoreState>,
    bindings: Policy,
    /// Made from the optimised code that replaced the quick tier's.
    optimized: bool,
}

/// One loaded version of a policy.
pub struct PolicyVersion {
    /// The policy's name: its file name, or `standard`.
    pub name: String,
    /// A number that grows with each version loaded for the tenant (1 = first).
    pub version: u64,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// What the component says of itself, if it has a manifest.
    pub manifest: Option<super::manifest::Manifest>,
    /// The public key that signed it (base64), if signed and checked.
    pub signer: Option<String>,
    /// The compiled component, once loaded (at load, or at the first call for a
    /// version deferred at start-up).
    code: std::sync::OnceLock<CompiledPolicy>,
    /// Cranelift's code, when `code` is the quick tier's (Winch) and its
    /// optimised compile has finished: new instances are made from it, and
    /// instances of the quick code leave the pool.
    optimized: std::sync::OnceLock<CompiledPolicy>,
    /// Waits for the optimised compile while the version lives: dropped with
    /// it, the compile is abandoned.
    pub(crate) optimizing: std::sync::OnceLock<super::compile::Waiter>,
    /// Its compilation in the background, for a version installed at start-up
    /// before it was compiled.
    pending: Option<Arc<Pending>>,
    /// The string given to `init`.
    pub init_config: String,
    /// Limits of its calls.
    pub limits: Limits,
    engine: Arc<PolicyEngine>,
    /// Keeps its compiled artifact in the disk cache while it lives.
    _pin: super::engine::ArtifactPin,
    health: Arc<HealthTable>,
    log_tag: Arc<str>,
    /// Idle initialised instances. A `Mutex<Vec<_>>`: held only to push or pop.
    pool: Mutex<Vec<PooledInstance>>,
}

impl fmt::Debug for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyVersion")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl PolicyVersion {
    /// Loads a compiled policy. With `eager`, instantiates it once and runs
    /// `init` under the limits, so a version whose `init` fails or faults is
    /// refused here, not at its first call (the instance goes to the pool);
    /// without, the first call instantiates (start-up of many tenants: an idle
    /// tenant costs no instance).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        engine: Arc<PolicyEngine>,
        health: Arc<HealthTable>,
        code: Code,
        name: String,
        version: u64,
        init_config: String,
        limits: Limits,
        tenant: &Arc<Tenant>,
        eager: bool,
    ) -> Result<PolicyVersion, LoadError> {
        let log_tag: Arc<str> = format!("{}/{name}@{version}", tenant.config.id).into();
        let (hash, size, ready, pending) = match code {
            Code::Ready(c) => (c.hash.clone(), c.size, Some(c), None),
            Code::Deferred { hash, size } => (hash, size, None, None),
            Code::Background { hash, size, pending } => (hash, size, None, Some(pending)),
        };
        let cell = std::sync::OnceLock::new();
        if let Some(c) = ready {
            let _ = cell.set(c);
        }
        let pin = engine.pin(&hash);
        let v = PolicyVersion {
            name,
            version,
            loaded_at: SystemTime::now(),
            hash,
            size,
            manifest: None,
            signer: None,
            code: cell,
            optimized: std::sync::OnceLock::new(),
            optimizing: std::sync::OnceLock::new(),
            pending,
            init_config,
            limits,
            _pin: pin,
            engine,
            health,
            log_tag,
            pool: Mutex::new(Vec::new()),
        };
        if !eager || v.pending.is_some() {
            return Ok(v);
        }
        let instance = v.instantiate(tenant).map_err(|e| match e {
            InstantiateError::Init(msg) => LoadError::Init(msg),
            other => LoadError::InitFault(other.fault().to_string()),
        })?;
        v.release(instance);
        Ok(v)
    }

    /// Calls `route`.
    pub fn route(&self, tenant: &Arc<Tenant>, req: &Request) -> Result<Decision, Fault> {
        self.call(tenant, Imports::Live, req, |b, s| b.exum_policy_handler().call_route(s, req)).0
    }

    /// Calls `on-failure`.
    pub fn on_failure(&self, tenant: &Arc<Tenant>, req: &Request, failure: &Failure) -> Result<Decision, Fault> {
        self.call(tenant, Imports::Live, req, |b, s| b.exum_policy_handler().call_on_failure(s, req, failure)).0
    }

    /// Calls `route` or `on-failure` with the imports answering as `imports`
    /// says (recording, or from a record); gives them back after the call.
    pub fn call_with(
        &self,
        tenant: &Arc<Tenant>,
        call: PolicyCall<'_>,
        imports: Imports,
    ) -> (Result<Decision, Fault>, Imports) {
        match call {
            PolicyCall::Route(req) => {
                self.call(tenant, imports, req, |b, s| b.exum_policy_handler().call_route(s, req))
            }
            PolicyCall::OnFailure(req, failure) => {
                self.call(tenant, imports, req, |b, s| b.exum_policy_handler().call_on_failure(s, req, failure))
            }
        }
    }

    /// Calls `route` on a new instance, created and initialised for this call and
    /// dropped after it: what every call would cost without the pool. For
    /// measuring the pool's worth (see `docs/performance.md`).
    pub fn route_on_fresh_instance(&self, tenant: &Arc<Tenant>, req: &Request) -> Result<Decision, Fault> {
        self.route_fresh(tenant, req).map(|(decision, _)| decision)
    }

    /// The linear memory of a new instance once initialised and after one
    /// `route(req)`, in bytes (what each pooled instance holds; for
    /// measurements).
    pub fn instance_memory(&self, tenant: &Arc<Tenant>, req: &Request) -> Result<usize, Fault> {
        self.route_fresh(tenant, req).map(|(_, memory)| memory)
    }

    /// `route(req)` on a new instance: the decision and the instance's linear
    /// memory after it.
    fn route_fresh(&self, tenant: &Arc<Tenant>, req: &Request) -> Result<(Decision, usize), Fault> {
        let mut instance = self.instantiate(tenant).map_err(InstantiateError::fault)?;
        instance.store.data_mut().call = CallClock::start();
        instance.store.set_epoch_deadline(FIRST_DEADLINE);
        let _in_progress = self.code_engine().call_started();
        let bindings = &instance.bindings;
        let store = &mut instance.store;
        let uses_wasi = self.loaded_code().is_some_and(|c| c.uses_wasi);
        let call = move || bindings.exum_policy_handler().call_route(store, req);
        let routed = if uses_wasi { super::wasi::outside_async(call) } else { call() };
        let decision = routed.map_err(|e| Fault::classify(&e, instance.store.data().limiter.hit))?;
        Ok((decision, instance.store.data().limiter.peak))
    }

    /// How decision records name this version.
    pub fn recorded(&self) -> super::record::RecordedPolicy {
        super::record::RecordedPolicy {
            name: self.name.clone(),
            version: self.version,
            hash: self.hash.clone(),
            init_config: self.init_config.clone(),
        }
    }

    /// Whether the compiled code is loaded (deferred versions load at their
    /// first call).
    pub fn is_loaded(&self) -> bool {
        self.code.get().is_some()
    }

    /// Its compilation in the background, if it was installed before it was
    /// compiled.
    pub fn pending(&self) -> Option<&Arc<Pending>> {
        self.pending.as_ref()
    }

    /// Whether it can be called: compiled, still compiling, or refused.
    pub fn readiness(&self) -> Readiness<'_> {
        self.pending.as_ref().map_or(Readiness::Ready, |p| p.readiness())
    }

    /// Gives it the code compiled in the background (without a disk cache).
    pub(crate) fn set_code(&self, code: CompiledPolicy) {
        let _ = self.code.set(code);
    }

    /// The code new instances are made from, if loaded: the optimised code
    /// once there, else the first.
    fn loaded_code(&self) -> Option<&CompiledPolicy> {
        self.optimized.get().or_else(|| self.code.get())
    }

    /// The engine running this version's current code (the router's, or
    /// its quick tier).
    fn code_engine(&self) -> &PolicyEngine {
        self.loaded_code().map_or(&self.engine, |c| self.engine.of(c))
    }

    /// Replaces the quick tier's code with Cranelift's: new instances are made
    /// from it, and those of the quick code leave the pool.
    pub(crate) fn upgrade(&self, optimized: CompiledPolicy) {
        if self.optimized.set(optimized).is_ok()
            && let Ok(mut pool) = self.pool.lock()
        {
            pool.clear();
        }
    }

    /// Cranelift's code, compiled in the background after the quick tier's
    /// served first: taken if the version runs the quick code now (a version
    /// not loaded yet maps Cranelift's artifact at its first call).
    pub(crate) fn optimized(&self, code: CompiledPolicy) {
        if self.code.get().is_some_and(|c| c.compiler != code.compiler) {
            self.upgrade(code);
        }
    }

    /// The compiler of the code new instances are made from, once loaded.
    pub fn compiler(&self) -> Option<super::engine::Compiler> {
        self.loaded_code().map(|c| c.compiler)
    }

    fn code(&self) -> Result<&CompiledPolicy, Fault> {
        if let Some(c) = self.loaded_code() {
            return Ok(c);
        }
        match self.readiness() {
            Readiness::Ready => {}
            Readiness::Compiling => return Err(Fault::Instantiate("still compiling".into())),
            Readiness::Failed(e) => return Err(Fault::Instantiate(format!("did not compile: {e}"))),
        }
        // Cranelift's artifact, else the quick tier's (a version compiled
        // at start-up, by the backlog, whose optimised compile has not
        // finished yet); if the one chosen went meanwhile (the optimised
        // compile replacing the quick artifact), the other.
        let quick = self
            .pending
            .as_ref()
            .and_then(|_| self.engine.quick())
            .filter(|q| !self.engine.has_artifact(&self.hash) && q.has_artifact(&self.hash));
        let c = match quick {
            Some(q) => {
                q.load_artifact(&self.hash, self.size).or_else(|_| self.engine.load_artifact(&self.hash, self.size))
            }
            None => self.engine.load_artifact(&self.hash, self.size).or_else(|e| {
                match self.pending.as_ref().and_then(|_| self.engine.quick()) {
                    Some(q) => q.load_artifact(&self.hash, self.size),
                    None => Err(e),
                }
            }),
        }
        .map_err(|e| Fault::Instantiate(e.to_string()))?;
        let _ = self.code.set(c);
        // Cranelift's compile may have finished while the quick code was
        // mapped (it upgrades only versions loaded when it finishes).
        if self.code.get().is_some_and(|c| c.compiler != self.engine.compiler())
            && self.optimized.get().is_none()
            && self.engine.has_artifact(&self.hash)
            && let Ok(optimized) = self.engine.load_artifact(&self.hash, self.size)
        {
            self.upgrade(optimized);
        }
        self.loaded_code().ok_or_else(|| Fault::Instantiate("the compiled code vanished".into()))
    }

    /// Idle instances in the pool.
    pub fn pooled(&self) -> usize {
        self.pool.lock().map_or(0, |p| p.len())
    }

    fn call(
        &self,
        tenant: &Arc<Tenant>,
        imports: Imports,
        req: &Request,
        f: impl FnOnce(&Policy, &mut Store<StoreState>) -> wasmtime::Result<Decision> + Send,
    ) -> (Result<Decision, Fault>, Imports) {
        let replaying = matches!(imports, Imports::Replay { .. });
        // A replay runs on an instance of its own.
        // `init` runs with live imports (on a replay, of an empty tenant): a
        // record holds the imports of the call only.
        let mut instance = match self.acquire().filter(|_| !replaying) {
            Some(i) => i,
            None => match self.instantiate(tenant) {
                Ok(i) => i,
                Err(e) => return (Err(e.fault()), imports),
            },
        };
        let store = &mut instance.store;
        {
            let data = store.data_mut();
            if !Arc::ptr_eq(&data.tenant, tenant) {
                data.tenant = tenant.clone();
            }
            data.limiter.hit = None;
            data.log_budget = super::host_api::LOG_BUDGET_PER_CALL;
            data.imports = imports;
        }
        // The call's seed, once: its random bytes and its round-robin order.
        let seed = super::wasi::seed_of(super::view::text(req, req.call_id));
        let uses_wasi = self.loaded_code().is_some_and(|c| c.uses_wasi);
        if uses_wasi {
            let data = store.data_mut();
            let wall = match &data.imports {
                Imports::Replay { clock, .. } => clock.unix_seconds,
                _ => super::host_api::now(&data.tenant).unix_seconds,
            };
            data.wasi.call.start(seed, wall);
        }
        store.data_mut().call = CallClock::start();
        store.data_mut().call_seed = seed;
        store.set_epoch_deadline(FIRST_DEADLINE);
        let in_progress = self.code_engine().call_started();
        let bindings = &instance.bindings;
        let result = if uses_wasi { super::wasi::outside_async(|| f(bindings, store)) } else { f(bindings, store) };
        drop(in_progress);
        if uses_wasi {
            let data = instance.store.data_mut();
            data.log_output();
            // The wall clock WASI answered is the policy clock: recorded as a
            // `now` when the policy read it, so a replay answers the same.
            if data.wasi.call.wall_read()
                && let Imports::Recording(calls) = &mut data.imports
                && !calls.iter().any(|c| c.ask == super::record::Ask::Now)
            {
                let now = super::bindings::exum::policy::clock::Datetime {
                    unix_seconds: data.wasi.call.wall_seconds(),
                    utc_offset_minutes: data.tenant.config.utc_offset_minutes,
                };
                calls.push(super::record::ImportCall {
                    ask: super::record::Ask::Now,
                    answer: super::record::Answer::Now(now),
                });
            }
        }
        match result {
            Ok(decision) => {
                let imports = std::mem::take(&mut instance.store.data_mut().imports);
                if !replaying {
                    self.release(instance);
                }
                (Ok(decision), imports)
            }
            // The instance may be in any state after a trap: drop it.
            Err(e) => {
                let fault = Fault::classify(&e, instance.store.data().limiter.hit);
                (Err(fault), std::mem::take(&mut instance.store.data_mut().imports))
            }
        }
    }

    fn acquire(&self) -> Option<PooledInstance> {
        self.pool.lock().ok()?.pop()
    }

    fn release(&self, instance: PooledInstance) {
        // An instance of the quick tier's code is not kept once the optimised
        // code is there.
        if !instance.optimized && self.optimized.get().is_some() {
            return;
        }
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL_CAPACITY
        {
            pool.push(instance);
        }
    }

    /// A new instance, initialised (`init` runs with live imports).
    fn instantiate(&self, tenant: &Arc<Tenant>) -> Result<PooledInstance, InstantiateError> {
        match self.instantiate_warmed(tenant, true) {
            // The instance may be in any state after a fault: a new one, cold.
            Err(InstantiateError::Cold) => self.instantiate_warmed(tenant, false),
            other => other,
        }
    }

    /// A new instance, initialised, and warmed when `warm` and it embeds a runtime.
    fn instantiate_warmed(&self, tenant: &Arc<Tenant>, warm: bool) -> Result<PooledInstance, InstantiateError> {
        let mut state =
            StoreState::new(tenant.clone(), self.health.clone(), self.limits.memory_bytes, self.log_tag.clone());
        state.standard = self.engine.standard();
        let code = self.code().map_err(InstantiateError::Fault)?;
        let optimized = self.optimized.get().is_some_and(|o| std::ptr::eq(o, code));
        let mut store = Store::new(code.pre.instance_pre().engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|mut ctx| {
            let budget = ctx.data().budget;
            Ok(ctx.data_mut().call.on_deadline(budget))
        });
        store.data_mut().call = CallClock::start();
        store.set_epoch_deadline(FIRST_DEADLINE);
        // Instantiation and `init` run the policy's code under the deadline too.
        let _in_progress = self.engine.of(code).call_started();
        let init_config = &self.init_config;
        let call_budget = call_budget(&self.limits, code);
        let start = move |mut store: Store<StoreState>| {
            let bindings = match code.pre.instantiate(&mut store) {
                Ok(b) => b,
                Err(e) => return Err(InstantiateError::Fault(Fault::classify(&e, store.data().limiter.hit))),
            };
            let init = bindings.exum_policy_handler().call_init(&mut store, init_config);
            if code.uses_wasi {
                store.data_mut().log_output();
            }
            match init {
                Ok(Ok(())) => {}
                Ok(Err(msg)) => return Err(InstantiateError::Init(msg)),
                Err(e) => return Err(InstantiateError::Fault(Fault::classify(&e, store.data().limiter.hit))),
            }
            if warm && code.uses_wasi && !warm_up(&bindings, &mut store) {
                // The instance may be in any state after a fault: a new one,
                // cold, for the call.
                return Err(InstantiateError::Cold);
            }
            // Its calls run under the tenant's deadline.
            store.data_mut().budget = call_budget;
            Ok(PooledInstance { store, bindings, optimized })
        };
        if code.uses_wasi {
            let wall = super::host_api::now(tenant).unix_seconds;
            store.data_mut().wasi.call.start(super::wasi::seed_of(""), wall);
            super::wasi::outside_async(|| start(store))
        } else {
            start(store)
        }
    }
}

/// How many times slower the quick tier's code (Winch) runs a language
/// runtime's work than the optimised code, at the worst: its calls get this
/// many times the budget until the optimised code serves (seconds after a
/// load). Measured: a garbage collection that takes a few ms of CPU from
/// Cranelift's code took up to 74 ms from Winch's on a busy 2-core machine.
pub const QUICK_TIER_SLOWDOWN: u32 = 4;

/// The CPU budget of a call to an instance of `code`: the tenant's deadline,
/// its runtime deadline for a language runtime's component, times
/// [`QUICK_TIER_SLOWDOWN`] for the quick tier's code.
fn call_budget(limits: &Limits, code: &CompiledPolicy) -> std::time::Duration {
    let budget = if code.uses_wasi { limits.runtime_deadline } else { limits.deadline };
    match code.compiler {
        super::engine::Compiler::Winch => budget * QUICK_TIER_SLOWDOWN,
        super::engine::Compiler::Cranelift => budget,
    }
}

/// The Call-ID of the warm-up call (its random bytes are seeded from it).
pub const WARM_UP_CALL_ID: &str = "exum-warm-up";

/// Warms a new instance of a language runtime's component with one `route`
/// of a synthetic INVITE, under the instance's creation budget, its decision
/// and its log discarded. JavaScript and Python engines compile a function's
/// code at its first call and touch heap pages their snapshot left cold: a
/// first decision measured here took milliseconds of CPU against tens of
/// microseconds for the next. Warmed, no tenant's call pays for that, and the
/// first decision after a load meets the deadline the thousandth does.
/// Whether the instance is still usable.
fn warm_up(bindings: &Policy, store: &mut Store<StoreState>) -> bool {
    let domain = store.data().tenant.config.domains.first().cloned().unwrap_or_else(|| "invalid".into());
    let req = warm_up_request(&domain);
    let data = store.data_mut();
    let log_budget = std::mem::replace(&mut data.log_budget, 0);
    let wall = data.wasi.call.wall_seconds();
    data.wasi.call.start(super::wasi::seed_of(WARM_UP_CALL_ID), wall);
    let ok = bindings.exum_policy_handler().call_route(&mut *store, &req).is_ok();
    let data = store.data_mut();
    let _ = data.wasi.call.take_output();
    data.log_budget = log_budget;
    ok
}

impl PolicyVersion {
    /// Whether the engine answers: one `route` of the warm-up INVITE for
    /// `tenant`, its decision discarded (the service manager's watchdog).
    pub fn answers(&self, tenant: &Arc<Tenant>) -> bool {
        let domain = tenant.config.domains.first().cloned().unwrap_or_else(|| "invalid".into());
        self.route(tenant, &warm_up_request(&domain)).is_ok()
    }
}

/// An INVITE to a voice-mail box that no directory holds, as a client sends it.
fn warm_up_request(domain: &str) -> Request {
    use super::bindings::exum::policy::types::{IpAddress, Source, Span, Transport};
    let mut head = String::with_capacity(320);
    let span = |head: &mut String, text: &str| {
        let start = head.len() as u32;
        head.push_str(text);
        Span { start, len: text.len() as u32 }
    };
    let uri = format!("sip:{WARM_UP_CALL_ID}@{domain}");
    let method = span(&mut head, "INVITE");
    head.push(' ');
    let request_uri = span(&mut head, &format!("{uri};opaque=app:voicemail"));
    head.push_str(
        " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-exum-warm-up\r\nMax-Forwards: 70\r\nFrom: <",
    );
    let from_uri = span(&mut head, &uri);
    head.push_str(">;tag=");
    let from_tag = span(&mut head, "warm-up");
    head.push_str("\r\nTo: <");
    let to_uri = span(&mut head, &uri);
    head.push_str(">\r\nCall-ID: ");
    let call_id = span(&mut head, WARM_UP_CALL_ID);
    head.push_str("\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n");
    Request {
        head,
        method,
        request_uri,
        from_uri,
        from_tag: Some(from_tag),
        to_uri,
        to_tag: None,
        call_id,
        cseq: 1,
        source: Source {
            address: IpAddress::Ipv4((127, 0, 0, 1)),
            port: 5060,
            transport: Transport::Udp,
            tls_peer_name: None,
        },
    }
}

/// Which export a call is for, with its arguments.
#[derive(Debug, Clone, Copy)]
pub enum PolicyCall<'a> {
    /// `route(req)`.
    Route(&'a Request),
    /// `on-failure(req, failure)`.
    OnFailure(&'a Request, &'a Failure),
}

impl PolicyCall<'_> {
    /// The request.
    pub fn request(&self) -> &Request {
        match self {
            PolicyCall::Route(r) | PolicyCall::OnFailure(r, _) => r,
        }
    }
}

/// The code of a version being loaded.
#[derive(Debug)]
pub enum Code {
    /// Compiled and checked.
    Ready(CompiledPolicy),
    /// In the disk cache, loaded at the first call.
    Deferred {
        /// The component's hash.
        hash: String,
        /// Its size in bytes.
        size: usize,
    },
    /// Compiled in the background (then loaded at the first call).
    Background {
        /// The component's hash.
        hash: String,
        /// Its size in bytes.
        size: usize,
        /// Its place in the backlog.
        pending: Arc<Pending>,
    },
}

enum InstantiateError {
    Init(String),
    Fault(Fault),
    /// The warm-up call faulted: the instance is made again, not warmed.
    Cold,
}

impl InstantiateError {
    fn fault(self) -> Fault {
        match self {
            InstantiateError::Init(msg) => Fault::Instantiate(format!("init: {msg}")),
            InstantiateError::Fault(f) => f,
            InstantiateError::Cold => Fault::Instantiate("the warm-up call faulted".into()),
        }
    }
}

//! Policies compiled in the background at start-up. A start with many policies
//! not yet in the disk cache (a new machine, a new router version) would
//! otherwise serve nothing until every one is compiled (about 50 ms each). With
//! a backlog, the start installs every tenant at once with its version *pending*
//! and waits a bounded time while worker threads (one per core, each compiling
//! one component on its own) compile; what is left compiles after the router
//! listens, on the same threads at a lower priority, a tenant that receives a
//! call first (its calls decided by the tenant's fallback meanwhile).
//! A compiled version goes to the disk cache and its code leaves memory: it is
//! mapped again at its first call, as a warm start does.
//!
//! Two tiers: a version is first compiled with Winch (the quick tier: about
//! five times faster to compile, code about a third slower), which is enough
//! for its tenant to decide with its own policy; once every version waiting
//! has its quick code, the same workers compile each with Cranelift (as
//! deferrable compiles, leaving a compile slot free), in the order their quick
//! code was made, and the optimised code replaces
//! the quick one (new instances are made from it; the quick artifact leaves
//! the disk cache). A component Winch cannot compile is compiled by Cranelift
//! in its first turn.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

use super::engine::{LoadError, PolicyEngine, hex_sha256};
use super::version::PolicyVersion;
use crate::control::Tenant;

/// Where a pending version's bytes are read from when its turn comes (not held
/// in memory meanwhile when they are in a file: 10,000 components are about
/// 1 GB).
#[derive(Debug, Clone)]
pub enum Source {
    /// A policy file, read again and checked against the version's hash.
    File(PathBuf),
    /// Bytes held elsewhere already (a database version).
    Bytes(Arc<[u8]>),
}

const QUEUED: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

/// A version's compilation in the background.
pub struct Pending {
    source: Source,
    state: AtomicU8,
    error: OnceLock<String>,
    demanded: AtomicBool,
    /// In the queue already.
    queued: AtomicBool,
    /// In the optimise queue already (a demanded version is compiled from
    /// whichever of its two entries comes first; the other finds it done).
    optimize_queued: AtomicBool,
    tenant: Arc<Tenant>,
    backlog: Arc<Backlog>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("source", &self.source).field("state", &self.state).finish_non_exhaustive()
    }
}

/// Whether a version can be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness<'a> {
    /// Compiled (in memory or in the disk cache).
    Ready,
    /// Waiting for its turn, or being compiled.
    Compiling,
    /// Its compilation failed: the version is refused.
    Failed(&'a str),
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A version replaced before its turn no longer waits.
        if self.state.load(Ordering::Acquire) == QUEUED {
            self.backlog.waiting.dec();
        }
    }
}

impl Pending {
    /// Leaves the queued state for `state` (once).
    fn finish(&self, state: u8) {
        if self.state.compare_exchange(QUEUED, state, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.backlog.waiting.dec();
        }
    }

    /// Whether the version is compiled.
    pub fn readiness(&self) -> Readiness<'_> {
        match self.state.load(Ordering::Acquire) {
            DONE => Readiness::Ready,
            FAILED => Readiness::Failed(self.error.get().map_or("compilation failed", String::as_str)),
            _ => Readiness::Compiling,
        }
    }

    /// A call came for the version: it goes before every version nobody has
    /// called yet (once; later calls change nothing).
    pub fn demand(&self, version: &Arc<PolicyVersion>) {
        if self.demanded.swap(true, Ordering::Relaxed) || self.state.load(Ordering::Acquire) != QUEUED {
            return;
        }
        self.backlog.push(Job { version: Arc::downgrade(version), tenant: self.tenant.clone() }, true);
    }
}

struct Job {
    version: Weak<PolicyVersion>,
    tenant: Arc<Tenant>,
}

/// Which of its two compiles a job is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// The first: quick code, so that the tenant decides with its own policy.
    First,
    /// Cranelift's code replacing the quick tier's.
    Optimize,
}

#[derive(Default)]
struct Queues {
    /// Versions a call came for, first called first.
    demanded: VecDeque<Job>,
    /// The others, in the order installed.
    queued: VecDeque<Job>,
    /// Versions serving quick code, waiting for Cranelift's, in the order
    /// their quick code was made.
    optimize: VecDeque<Job>,
    /// First-tier jobs being compiled now.
    busy: usize,
    /// The router serves: the workers yield to the threads carrying calls.
    serving: bool,
    /// The registry is gone: every worker stops.
    stopped: bool,
}

/// What the registry does with a version whose compilation failed.
pub type OnFailed = Box<dyn Fn(&Arc<Tenant>, &Arc<PolicyVersion>, &LoadError) + Send + Sync>;

/// The queue of versions to compile, and its workers.
pub struct Backlog {
    engine: Arc<PolicyEngine>,
    queues: Mutex<Queues>,
    changed: Condvar,
    /// Versions waiting or being compiled (`exum_policy_compile_backlog`).
    waiting: Gauge,
    /// Versions serving quick code until Cranelift's replaces it
    /// (`exum_policy_optimize_backlog`).
    optimizing: Gauge,
    on_failed: OnceLock<OnFailed>,
}

impl std::fmt::Debug for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backlog").field("waiting", &self.waiting.get()).finish_non_exhaustive()
    }
}

impl Backlog {
    /// An empty backlog compiling with `engine`, counting versions waiting
    /// for their first compile into `waiting` and those serving quick code
    /// into `optimizing`.
    pub fn new(engine: Arc<PolicyEngine>, waiting: Gauge, optimizing: Gauge) -> Arc<Backlog> {
        Arc::new(Backlog {
            engine,
            queues: Mutex::new(Queues::default()),
            changed: Condvar::new(),
            waiting,
            optimizing,
            on_failed: OnceLock::new(),
        })
    }

    /// Sets what happens to a version that fails to compile.
    pub fn on_failed(&self, f: OnFailed) {
        let _ = self.on_failed.set(f);
    }

    /// A pending compilation of `source` for `tenant`; queued by [`Self::queue`]
    /// once its version is installed.
    pub fn pending(self: &Arc<Self>, tenant: &Arc<Tenant>, source: Source) -> Arc<Pending> {
        self.waiting.inc();
        Arc::new(Pending {
            source,
            state: AtomicU8::new(QUEUED),
            error: OnceLock::new(),
            demanded: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            optimize_queued: AtomicBool::new(false),
            tenant: tenant.clone(),
            backlog: self.clone(),
        })
    }

    /// Queues `version` (whose code is pending) behind the others, once.
    pub fn queue(&self, version: &Arc<PolicyVersion>) {
        let Some(pending) = version.pending() else { return };
        if pending.queued.swap(true, Ordering::Relaxed) {
            return;
        }
        self.push(Job { version: Arc::downgrade(version), tenant: pending.tenant.clone() }, false);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job, demanded: bool) {
        let mut q = self.lock();
        if demanded {
            q.demanded.push_back(job);
        } else {
            q.queued.push_back(job);
        }
        drop(q);
        self.changed.notify_one();
    }

    fn push_optimize(&self, job: Job) {
        let mut q = self.lock();
        if q.stopped {
            return;
        }
        self.optimizing.inc();
        q.optimize.push_back(job);
        drop(q);
        self.changed.notify_one();
    }

    /// Starts `workers` threads (at least one).
    pub fn start(self: &Arc<Self>, workers: usize) -> std::io::Result<()> {
        for index in 0..workers.max(1) {
            let backlog = self.clone();
            std::thread::Builder::new().name(format!("policy-compile-{index}")).spawn(move || backlog.work())?;
        }
        Ok(())
    }

    /// Waits until every queued version has its first code or `limit`
    /// passed; the number of versions still waiting.
    pub fn wait(&self, limit: Duration) -> usize {
        let until = Instant::now() + limit;
        let mut q = self.lock();
        loop {
            let left = q.demanded.len() + q.queued.len() + q.busy;
            let now = Instant::now();
            if left == 0 || now >= until {
                return left;
            }
            q = self.changed.wait_timeout(q, until - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The router serves: the workers go on at a lower priority than the
    /// threads that carry calls.
    pub fn serving(&self) {
        self.lock().serving = true;
        self.changed.notify_all();
    }

    /// Stops every worker (the jobs left are dropped).
    pub fn stop(&self) {
        let mut q = self.lock();
        q.stopped = true;
        let left = q.optimize.len();
        q.optimize.clear();
        drop(q);
        self.optimizing.dec_by(left as i64);
        self.changed.notify_all();
    }

    fn work(&self) {
        let mut reniced = false;
        loop {
            let (job, tier) = {
                let mut q = self.lock();
                loop {
                    if q.stopped {
                        return;
                    }
                    if let Some(job) = q.demanded.pop_front().or_else(|| q.queued.pop_front()) {
                        q.busy += 1;
                        break (job, Tier::First);
                    }
                    if let Some(job) = q.optimize.pop_front() {
                        break (job, Tier::Optimize);
                    }
                    q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            if !reniced && self.lock().serving {
                // Linux: the nice value of this thread alone.
                let _ = rustix::process::setpriority_process(None, 10);
                reniced = true;
            }
            match tier {
                Tier::First => {
                    self.compile(job);
                    self.lock().busy -= 1;
                }
                Tier::Optimize => {
                    self.optimize(job);
                    self.optimizing.dec();
                }
            }
            self.changed.notify_all();
        }
    }

    /// Compiles a job's version unless it is compiled already or gone: with
    /// Winch when the engine has a quick tier (Cranelift's code follows, see
    /// [`Self::optimize`]), else with the engine's compiler.
    fn compile(&self, job: Job) {
        let Some(version) = job.version.upgrade() else {
            // Replaced before its turn: nothing serves it any more.
            return;
        };
        let Some(pending) = version.pending() else { return };
        if pending.state.load(Ordering::Acquire) != QUEUED {
            // A demanded job's second entry.
            return;
        }
        let quick = self.engine.quick();
        let hash = &version.hash;
        // Compiled already (the same component for another tenant, an
        // earlier start, or another router of the fleet): nothing to read.
        let result = if self.engine.has_or_fetches_artifact(hash) {
            Ok((None, false))
        } else if quick.is_some_and(|q| q.has_artifact(hash)) {
            Ok((None, true))
        } else {
            self.bytes(&pending.source, hash).and_then(|b| match quick {
                Some(q) => match q.compile_in_background(&b) {
                    Ok(code) => Ok((Some(code), true)),
                    Err(LoadError::Abandoned) => Err(LoadError::Abandoned),
                    // What Winch cannot compile, Cranelift may: its verdict stands.
                    Err(e) => {
                        tracing::debug!(policy = %version.name, error = %e, "no quick code; compiling with Cranelift");
                        self.engine.compile_in_background(&b).map(|c| (Some(c), false))
                    }
                },
                None => self.engine.compile_in_background(&b).map(|c| (Some(c), false)),
            })
        };
        match result {
            Ok((code, quick)) => {
                // With a disk cache the code leaves memory: it is mapped again
                // at the version's first call.
                if let Some(code) = code.filter(|_| !self.engine.has_disk_cache()) {
                    version.set_code(code);
                }
                // Counted as waiting for Cranelift before it stops being
                // counted as waiting: the backlogs never both read 0 between.
                if quick && !pending.optimize_queued.swap(true, Ordering::AcqRel) {
                    self.push_optimize(Job { version: job.version.clone(), tenant: job.tenant.clone() });
                }
                pending.finish(DONE);
            }
            Err(e) => {
                let _ = pending.error.set(e.to_string());
                pending.finish(FAILED);
                tracing::warn!(tenant = %job.tenant.config.id, policy = %version.name, error = %e, "policy refused: it did not compile");
                if let Some(f) = self.on_failed.get() {
                    f(&job.tenant, &version, &e);
                }
            }
        }
    }

    /// Compiles a version serving quick code with Cranelift, leaving a slot
    /// to compiles someone waits for; a version loaded already runs the
    /// optimised code from then on, and the quick artifact leaves the disk
    /// cache once Cranelift's is there. The compile is abandoned if the
    /// version is dropped meanwhile (replaced: nothing would run the code).
    fn optimize(&self, job: Job) {
        let Some(version) = job.version.upgrade() else { return };
        let Some(pending) = version.pending() else { return };
        let (hash, size, name) = (version.hash.clone(), version.size, version.name.clone());
        let compiled = if !self.engine.has_or_fetches_artifact(&hash) {
            let flag = version.optimizing.get_or_init(super::compile::Waiter::new).flag();
            let bytes = self.bytes(&pending.source, &hash);
            // Not held while compiling: a version replaced meanwhile drops
            // its waiter, which abandons the compile.
            drop(version);
            bytes
                .and_then(|b| {
                    super::compile::on_behalf_of(flag, || {
                        super::compile::deferrable(|| self.engine.compile_in_background(&b))
                    })
                })
                .map(Some)
        } else if version.is_loaded() {
            self.engine.load_artifact(&hash, size).map(Some)
        } else {
            // Not loaded: its first call maps Cranelift's artifact.
            Ok(None)
        };
        let Some(version) = job.version.upgrade() else { return };
        match compiled {
            Ok(code) => {
                let on_disk = self.engine.has_artifact(&hash);
                if let Some(code) = code {
                    if on_disk || version.is_loaded() {
                        version.optimized(code);
                    } else {
                        // Not written to the disk cache (a full disk): kept
                        // in memory rather than lost.
                        version.set_code(code);
                    }
                }
                // The quick artifact goes only once Cranelift's can replace it.
                if on_disk && let Some(quick) = self.engine.quick() {
                    quick.remove_artifact(&hash);
                }
                tracing::debug!(tenant = %job.tenant.config.id, policy = %name, "policy now runs its optimised code");
            }
            Err(LoadError::Abandoned) => {}
            Err(e) => {
                tracing::warn!(tenant = %job.tenant.config.id, policy = %name, error = %e, "optimised compile failed; the quick code keeps serving")
            }
        }
    }

    fn bytes(&self, source: &Source, hash: &str) -> Result<Arc<[u8]>, LoadError> {
        match source {
            Source::Bytes(b) => Ok(b.clone()),
            Source::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| LoadError::NotAComponent(format!("reading {}: {e}", path.display())))?;
                if hex_sha256(&bytes) != hash {
                    return Err(LoadError::NotAComponent(format!(
                        "{} changed while waiting to be compiled; its new content is loaded as a new version",
                        path.display()
                    )));
                }
                Ok(bytes.into())
            }
        }
    }
}

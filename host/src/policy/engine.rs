//! The one wasmtime [`Engine`] of the router: its configuration, the epoch ticker
//! that enforces call deadlines, the linker with the contract's imports, and
//! compiling a component after checking it against the contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::PolicyPre;
use super::host_api::{self, MAX_TABLE_ELEMENTS, StoreState};

/// What to do about a policy that imports WASI.
pub const WASI_HINT: &str = "a policy may import WASI 0.2 cli, clocks, filesystem, io, random and sockets (answered by the router's sandbox: no files, no network, the policy clock, output to the policy log), nothing else of WASI; a Rust policy is built for wasm32-unknown-unknown and needs none of it";

/// The contract version this router speaks.
pub const CONTRACT: &str = crate::release::CONTRACT;
/// The interfaces a policy may import.
pub const ALLOWED_IMPORTS: [&str; 6] = [
    "exum:policy/types@0.1.0",
    "exum:policy/directory@0.1.0",
    "exum:policy/health@0.1.0",
    "exum:policy/clock@0.1.0",
    "exum:policy/log@0.1.0",
    "exum:policy/standard@0.1.0",
];
/// Whether a component may import `name`: one of the contract's interfaces,
/// or a WASI 0.2 interface the router's sandbox answers (`wasi.rs`).
pub fn is_allowed_import(name: &str) -> bool {
    ALLOWED_IMPORTS.contains(&name) || super::wasi::is_allowed(name)
}

/// The interface a policy must export.
pub const REQUIRED_EXPORT: &str = "exum:policy/handler@0.1.0";
/// How often the epoch advances while a policy call is in progress: the
/// granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// How often it advances while no call is in progress (most of the time: a
/// decision takes microseconds). A call that starts then sees its first tick
/// this late at most, so a runaway call uses its budget or this much CPU,
/// whichever is more (calls are charged their exact CPU time: see
/// `deadline.rs`); the ticker's wake-ups, 1,000 a second at [`EPOCH_TICK`]
/// whatever the load, fall to 200 (docs/performance.md).
pub const IDLE_EPOCH_TICK: Duration = Duration::from_millis(5);
pub use crate::control::policy_settings::MAX_COMPONENT_BYTES;

/// Why a component cannot be used as a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a WebAssembly component (a core module, or not Wasm).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// More code than a policy may have ([`MAX_FUNCTIONS`], [`MAX_CODE_BYTES`]),
    /// found before compiling it.
    #[error("{0}")]
    TooMuchCode(String),
    /// Larger than [`MAX_COMPONENT_BYTES`].
    #[error("component is {0} bytes; the limit is {MAX_COMPONENT_BYTES}")]
    TooLarge(usize),
    /// Larger than the tenant's `component_mib`.
    #[error("component is {0} bytes; the tenant's limit is {1} (component_mib)")]
    TooLargeForTenant(usize, usize),
    /// It imports interfaces outside the contract.
    #[error("imports {} outside the contract {CONTRACT} (a policy may import only {})", .0.join(", "), ALLOWED_IMPORTS.join(", "))]
    ForeignImports(Vec<String>),
    /// It imports WASI the router does not offer.
    #[error("imports WASI the router does not offer: {}; {WASI_HINT}", .0.join(", "))]
    Wasi(Vec<String>),
    /// It does not export the contract's handler.
    #[error("does not export {REQUIRED_EXPORT} (it exports: {})", if .0.is_empty() { "nothing".to_owned() } else { .0.join(", ") })]
    MissingExport(Vec<String>),
    /// It names the contract's interfaces but with other types or functions.
    #[error("does not match the contract {CONTRACT}: {0}")]
    ContractMismatch(String),
    /// Its `init` returned an error.
    #[error("init refused its configuration: {0}")]
    Init(String),
    /// Its `init` (or instantiation) trapped or ran out of a limit.
    #[error("init faulted: {0}")]
    InitFault(String),
    /// Its signature is missing, untrusted or wrong for the tenant.
    #[error("signature: {0}")]
    Signature(String),
    /// Its manifest is unreadable or asks for more than the tenant's caps.
    #[error("manifest: {0}")]
    Manifest(String),
    /// Compiling it failed for another reason than the component (the
    /// compiler process could not run).
    #[error("compiling: {0}")]
    Compile(String),
    /// Its compile was given up: nobody waited for it any more.
    #[error("compile abandoned: nobody waits for it any more")]
    Abandoned,
}

/// A component compiled and checked against the contract, ready to instantiate.
#[derive(Clone)]
pub struct CompiledPolicy {
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// The interfaces it imports.
    pub imports: Vec<String>,
    /// What it exports.
    pub exports: Vec<String>,
    /// Bytes of its compiled code in memory.
    pub code_bytes: usize,
    /// Whether it imports WASI (its calls run where WASI may block).
    pub uses_wasi: bool,
    /// The compiler of its code: Cranelift, or Winch for the quick tier of a
    /// large component (`PolicyEngine::quick`).
    pub compiler: Compiler,
    pub(crate) pre: PolicyPre<StoreState>,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy").field("hash", &self.hash).field("size", &self.size).finish_non_exhaustive()
    }
}

/// Bytes of compiled code the in-memory cache of compiled components keeps
/// at most (those of versions in service stay in memory with their versions
/// whatever it holds).
pub const COMPILED_CACHE_BYTES: usize = 128 << 20;

/// Compiled components by content hash, least recently used out first once
/// their code passes [`COMPILED_CACHE_BYTES`].
struct CompiledCache {
    entries: std::collections::HashMap<String, (CompiledPolicy, u64)>,
    bytes: usize,
    clock: u64,
    budget: usize,
}

impl Default for CompiledCache {
    fn default() -> Self {
        CompiledCache { entries: std::collections::HashMap::new(), bytes: 0, clock: 0, budget: COMPILED_CACHE_BYTES }
    }
}

impl CompiledCache {
    fn get(&mut self, hash: &str) -> Option<CompiledPolicy> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(hash).map(|(c, used)| {
            *used = clock;
            c.clone()
        })
    }

    fn insert(&mut self, compiled: CompiledPolicy) {
        self.clock += 1;
        self.bytes += compiled.code_bytes;
        if let Some((old, _)) = self.entries.insert(compiled.hash.clone(), (compiled, self.clock)) {
            self.bytes -= old.code_bytes;
        }
        while self.bytes > self.budget && self.entries.len() > 1 {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(h, _)| h.clone()) else {
                break;
            };
            if let Some((c, _)) = self.entries.remove(&oldest) {
                self.bytes -= c.code_bytes;
            }
        }
    }
}

/// The engine, its linker and its epoch ticker.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    /// Advances the epoch while the engine lives (stopped when dropped).
    ticker: Ticker,
    /// Compiled components by content hash: a version seen before (a rollback,
    /// the same policy for many tenants) is not compiled again.
    compiled: std::sync::Mutex<CompiledCache>,
    /// Compile slots, limits and the child processes that compile.
    compiles: super::compile::Compiles,
    /// Hashes of versions in service, whose artifacts the disk cache keeps.
    pins: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// The bytes of artifacts in the disk cache, kept as they are written and
    /// removed (shared with the quick tier, which writes to the same folder):
    /// the folder is read only when they pass the budget.
    tally: Arc<CacheTally>,
    /// The same configuration without parallel compilation, for compiling in
    /// the background (created at its first use).
    serial: std::sync::OnceLock<Option<Engine>>,
    compiler: Compiler,
    /// Where precompiled artifacts are kept across restarts, if anywhere.
    disk_cache: std::sync::RwLock<Option<std::path::PathBuf>>,
    /// Artifacts shared by the fleet (`[compile] shared_cache`), taken into
    /// the disk cache before use; Cranelift's only.
    shared: std::sync::RwLock<Option<Arc<super::shared_cache::SharedCache>>>,
    /// The engine's compatibility fingerprint, part of every artifact's key.
    fingerprint: String,
    /// Components compiled from scratch (`exum_policy_compilations_total` when
    /// the engine counts into the router's metrics).
    pub compilations: Counter,
    /// Components taken from the disk cache (`exum_policy_disk_cache_hits_total`).
    pub disk_hits: Counter,
    /// The standard policy, which the `standard` import runs.
    standard: std::sync::RwLock<std::sync::Weak<super::version::PolicyVersion>>,
    /// The quick tier (Winch), created at its first use, for a Cranelift
    /// engine: see [`Self::wants_quick_tier`].
    quick: std::sync::OnceLock<Option<Arc<PolicyEngine>>>,
}

/// The bytes of the disk cache's artifacts, and from which total the folder
/// is read again to trim it.
#[derive(Debug, Default)]
struct CacheTally {
    bytes: std::sync::atomic::AtomicU64,
    next_trim: std::sync::atomic::AtomicU64,
}

/// Code bytes from which a component is served first from Winch's code while
/// Cranelift compiles it (interpreters: 8 to 12 MiB of code compile in 5 to 6 s
/// with Cranelift, 1 to 1.2 s with Winch; a Rust policy, 0.1 MiB, in 50 ms).
pub const QUICK_TIER_CODE_BYTES: u64 = 1 << 20;

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Counts a policy call in progress until the guard is dropped: the epoch
    /// ticks every [`EPOCH_TICK`] while one is.
    pub(crate) fn call_started(&self) -> CallInProgress<'_> {
        self.ticker.calls.fetch_add(1, Ordering::Relaxed);
        CallInProgress(&self.ticker.calls)
    }

    /// Creates the engine and starts its epoch ticker thread; it counts into
    /// counters of its own.
    pub fn new() -> wasmtime::Result<PolicyEngine> {
        PolicyEngine::counting_into(Counter::default(), Counter::default(), Counter::default())
    }

    /// [`Self::new`], counting compilations, disk-cache hits and abandoned
    /// compiles into the router's metrics.
    pub fn counting_into(
        compilations: Counter,
        disk_hits: Counter,
        abandoned: Counter,
    ) -> wasmtime::Result<PolicyEngine> {
        PolicyEngine::build(Compiler::Cranelift, compilations, disk_hits, abandoned)
    }

    /// [`Self::new`] with another compiler (for measuring them).
    pub fn with_compiler(compiler: Compiler) -> wasmtime::Result<PolicyEngine> {
        PolicyEngine::build(compiler, Counter::default(), Counter::default(), Counter::default())
    }

    fn build(
        compiler: Compiler,
        compilations: Counter,
        disk_hits: Counter,
        abandoned: Counter,
    ) -> wasmtime::Result<PolicyEngine> {
        let engine = Engine::new(&config(true, compiler))?;
        let mut linker = Linker::new(&engine);
        host_api::add_to_linker(&mut linker)?;
        let ticker = Ticker::start(engine.clone());
        let fingerprint = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            format!("{:016x}", h.finish())
        };
        Ok(PolicyEngine {
            engine,
            linker,
            ticker,
            compiled: std::sync::Mutex::new(CompiledCache::default()),
            compiles: super::compile::Compiles::new(compilations.clone(), abandoned),
            pins: Arc::default(),
            tally: Arc::default(),
            serial: std::sync::OnceLock::new(),
            compiler,
            disk_cache: std::sync::RwLock::new(None),
            shared: std::sync::RwLock::new(None),
            fingerprint,
            compilations,
            disk_hits,
            standard: std::sync::RwLock::new(std::sync::Weak::new()),
            quick: std::sync::OnceLock::new(),
        })
    }

    /// The quick tier: an engine compiling with Winch (about five times
    /// faster to compile, slower code), sharing this engine's counters, disk
    /// cache, pins and compile settings; `None` for an engine that is not
    /// Cranelift's or when it cannot be created.
    pub(crate) fn quick(&self) -> Option<&Arc<PolicyEngine>> {
        if self.compiler != Compiler::Cranelift {
            return None;
        }
        self.quick
            .get_or_init(|| {
                let mut quick = PolicyEngine::build(
                    Compiler::Winch,
                    self.compilations.clone(),
                    self.disk_hits.clone(),
                    self.compiles.abandoned.clone(),
                )
                .map_err(|e| tracing::warn!(error = format!("{e:#}"), "no quick compile tier"))
                .ok()?;
                quick.pins = self.pins.clone();
                quick.tally = self.tally.clone();
                quick.compiles.set_settings(self.compiles.settings());
                if let Some(dir) = self.disk_cache.read().unwrap_or_else(|e| e.into_inner()).clone() {
                    let _ = quick.set_disk_cache(dir);
                }
                Some(Arc::new(quick))
            })
            .as_ref()
    }

    /// Whether `bytes` should be served from the quick tier first: a
    /// component with at least [`QUICK_TIER_CODE_BYTES`] of code whose
    /// Cranelift code is neither in memory nor in the disk cache.
    pub fn wants_quick_tier(&self, bytes: &[u8]) -> bool {
        if self.compiler != Compiler::Cranelift || !is_component(bytes) {
            return false;
        }
        if !shape(bytes).is_ok_and(|s| s.code_bytes >= QUICK_TIER_CODE_BYTES) {
            return false;
        }
        let hash = hex_sha256(bytes);
        let in_memory = self.compiled.lock().is_ok_and(|c| c.entries.contains_key(&hash));
        !in_memory && !self.has_or_fetches_artifact(&hash)
    }

    /// Compiles `bytes` with Winch: the quick tier's code.
    pub fn compile_quick(&self, bytes: &[u8]) -> Result<CompiledPolicy, LoadError> {
        match self.quick() {
            Some(quick) => quick.compile(bytes),
            None => self.compile(bytes),
        }
    }

    /// Compiles `bytes` on one core at a low priority and keeps the result in
    /// the in-memory cache (and the disk cache): the optimised code that
    /// replaces a quick tier's.
    pub fn compile_optimized_in_background(&self, bytes: &[u8]) -> Result<CompiledPolicy, LoadError> {
        let compiled = self.compile_in_background(bytes)?;
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(compiled.clone());
        }
        Ok(compiled)
    }

    /// The compiler of this engine's code.
    pub(crate) fn compiler(&self) -> Compiler {
        self.compiler
    }

    /// The engine whose code `code` is (this one, or its quick tier).
    pub(crate) fn of(&self, code: &CompiledPolicy) -> &PolicyEngine {
        match (code.compiler == self.compiler, self.quick.get()) {
            (false, Some(Some(quick))) if quick.compiler == code.compiler => quick,
            _ => self,
        }
    }

    /// Keeps precompiled artifacts in `dir` (created if missing), keyed by the
    /// component's hash and the engine's fingerprint, so a restart does not
    /// compile again. The directory must be writable by the router alone: an
    /// artifact there is machine code the router will run.
    pub fn set_disk_cache(&self, dir: std::path::PathBuf) -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let bytes = std::fs::read_dir(&dir)?
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .sum();
        self.tally.bytes.store(bytes, Ordering::Relaxed);
        self.tally.next_trim.store(0, Ordering::Relaxed);
        *self.disk_cache.write().unwrap_or_else(|e| e.into_inner()) = Some(dir);
        Ok(())
    }

    /// Shares compiled artifacts with the fleet through `shared` (with a
    /// disk cache only: a shared artifact is copied there before use).
    pub fn set_shared_cache(&self, shared: Option<Arc<super::shared_cache::SharedCache>>) {
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = shared;
    }

    /// Whether the disk cache holds the artifact of `hash`, taking it from
    /// the fleet's shared cache if it is there and its tag matches.
    pub fn has_or_fetches_artifact(&self, hash: &str) -> bool {
        if self.has_artifact(hash) {
            return true;
        }
        let shared = self.shared.read().unwrap_or_else(|e| e.into_inner()).clone();
        match (shared, self.artifact_path(hash)) {
            (Some(shared), Some(local)) => {
                let fetched = shared.fetch(hash, &self.fingerprint, &local);
                if let Some(meta) = std::fs::metadata(&local).ok().filter(|_| fetched) {
                    self.tally.bytes.fetch_add(meta.len(), Ordering::Relaxed);
                }
                fetched
            }
            _ => false,
        }
    }

    /// Bytes of compiled code the in-memory cache keeps ([`COMPILED_CACHE_BYTES`]
    /// unless set; for tests).
    #[doc(hidden)]
    pub fn set_compiled_cache_bytes(&self, bytes: usize) {
        if let Ok(mut c) = self.compiled.lock() {
            c.budget = bytes;
        }
    }

    /// How compiles run from now on (`[compile]`).
    pub fn set_compile_settings(&self, settings: crate::control::config::CompileSettings) {
        self.compiles.set_settings(settings);
        // Another budget: the next write looks again.
        self.tally.next_trim.store(0, Ordering::Relaxed);
        if let Some(Some(quick)) = self.quick.get() {
            quick.compiles.set_settings(settings);
        }
    }

    /// Makes `standard` the policy the `standard` import runs.
    pub(crate) fn set_standard(&self, standard: &Arc<super::version::PolicyVersion>) {
        *self.standard.write().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(standard);
    }

    /// The policy the `standard` import runs.
    pub(crate) fn standard(&self) -> std::sync::Weak<super::version::PolicyVersion> {
        self.standard.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps the artifact of `hash` in the disk cache while the pin lives (a
    /// version in service: a restart, or its first call, needs it).
    pub fn pin(&self, hash: &str) -> ArtifactPin {
        *self.pins.lock().unwrap_or_else(|e| e.into_inner()).entry(hash.to_owned()).or_default() += 1;
        ArtifactPin { pins: self.pins.clone(), hash: hash.to_owned() }
    }

    fn artifact_path(&self, hash: &str) -> Option<std::path::PathBuf> {
        let dir = self.disk_cache.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(dir.join(format!("{hash}-{}.cwasm", self.fingerprint)))
    }

    /// A component from the disk cache, if there (its modification time set
    /// to now: the cache removes the least recently used first).
    #[allow(unsafe_code)]
    fn read_artifact(&self, hash: &str) -> Option<Component> {
        let path = self.artifact_path(hash)?;
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `write_artifact` from
        // `Component::serialize` of this engine configuration (the fingerprint
        // is in its name), in a directory only the router writes (documented
        // for `policy_cache`).
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(c) => {
                self.disk_hits.inc();
                if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(std::time::SystemTime::now());
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = format!("{e:#}"), "ignoring an unusable precompiled artifact");
                None
            }
        }
    }

    fn write_artifact(&self, hash: &str, bytes: &[u8]) {
        let Some(path) = self.artifact_path(hash) else { return };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(path = %path.display(), "could not write a precompiled artifact");
            return;
        }
        if let Some(shared) = self.shared.read().unwrap_or_else(|e| e.into_inner()).clone() {
            shared.publish(hash, &self.fingerprint, bytes);
        }
        let len = bytes.len() as u64;
        let total = self.tally.bytes.fetch_add(len, Ordering::Relaxed) + len;
        let budget = self.compiles.settings().cache_max_bytes;
        if total > budget.max(self.tally.next_trim.load(Ordering::Relaxed)) {
            self.trim_disk_cache(hash);
        }
    }

    /// Removes the least recently used artifacts until the cache's artifacts
    /// fit `[compile] cache_max_mib`, never `keep` (just written) nor those of
    /// versions in service (of either compile tier); artifacts of another
    /// engine fingerprint (an older router, the other tier) go first; leftovers
    /// of writes cut short an hour old go too.
    /// (Reading the folder: only when the tally passes the budget, and, while
    /// the artifacts in service alone pass it, once per eighth of the budget
    /// grown since.)
    fn trim_disk_cache(&self, keep: &str) {
        let Some(dir) = self.disk_cache.read().unwrap_or_else(|e| e.into_inner()).clone() else { return };
        let budget = self.compiles.settings().cache_max_bytes;
        let Ok(read) = std::fs::read_dir(&dir) else { return };
        let mut files: Vec<(bool, std::time::SystemTime, u64, std::path::PathBuf, String)> = Vec::new();
        let mut total = 0u64;
        let stale = std::time::SystemTime::now() - Duration::from_secs(3600);
        for entry in read.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            if name.ends_with(".tmp") {
                if modified < stale {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let Some(stem) = name.strip_suffix(".cwasm") else { continue };
            let Some((hash, fingerprint)) = stem.split_once('-') else { continue };
            total += meta.len();
            files.push((fingerprint == self.fingerprint, modified, meta.len(), path.clone(), hash.to_owned()));
        }
        let settle = |total: u64| {
            self.tally.bytes.store(total, Ordering::Relaxed);
            let next = if total > budget { total + budget / 8 } else { 0 };
            self.tally.next_trim.store(next, Ordering::Relaxed);
        };
        if total <= budget {
            settle(total);
            return;
        }
        // Other fingerprints first, then the oldest.
        files.sort_by_key(|(ours, modified, ..)| (*ours, *modified));
        let pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        for (ours, _, len, path, hash) in files {
            if total <= budget {
                break;
            }
            // A version in service keeps its artifacts, whichever tier's
            // (the quick tier's engine shares this cache and its pins).
            if (ours && hash == keep) || pins.contains_key(&hash) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                tracing::debug!(path = %path.display(), "removed a compiled artifact (policy cache over its budget)");
            }
        }
        settle(total);
        if total > budget {
            tracing::warn!(
                dir = %dir.display(),
                mib = total >> 20,
                budget_mib = budget >> 20,
                "the compiled artifacts of the versions in service alone pass [compile] cache_max_mib"
            );
        }
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` and checks it against the contract; a component with the
    /// same content hash compiled before comes from the cache.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledPolicy, LoadError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge(bytes.len()));
        }
        let hash = hex_sha256(bytes);
        if let Some(hit) = self.compiled.lock().ok().and_then(|mut c| c.get(&hash)) {
            return Ok(hit);
        }
        let compiled = self.compile_uncached(bytes, hash, false)?;
        if let Ok(mut cache) = self.compiled.lock() {
            cache.insert(compiled.clone());
        }
        Ok(compiled)
    }

    /// Compiles `bytes` (or takes it from the disk cache), checks it against
    /// the contract, and only then keeps its artifact on disk: a refused
    /// component leaves nothing behind. `background` compiles on one core at
    /// a low priority (an engine of the same configuration without parallel
    /// compilation; the artifacts are the same).
    fn compile_uncached(&self, bytes: &[u8], hash: String, background: bool) -> Result<CompiledPolicy, LoadError> {
        if !is_component(bytes) {
            let what = if bytes.starts_with(b"\0asm") { "a core WebAssembly module" } else { "not WebAssembly" };
            return Err(LoadError::NotAComponent(format!(
                "{what}; build the policy for wasm32-unknown-unknown and turn it into a component"
            )));
        }
        precheck(bytes)?;
        self.has_or_fetches_artifact(&hash);
        if let Some(c) = self.read_artifact(&hash) {
            return self.checked(c, hash, bytes.len());
        }
        let serial = match background {
            true => self.serial.get_or_init(|| Engine::new(&config(false, self.compiler)).ok()).as_ref(),
            false => None,
        };
        let unusable = |e: wasmtime::Error| LoadError::NotAComponent(format!("{e:#}"));
        // In this process: the component on the router's engine (and its
        // artifact when kept on disk), or the artifact of the serial engine.
        let here = || -> Result<(Option<Component>, Option<Vec<u8>>), LoadError> {
            match serial {
                Some(serial) => {
                    Component::new(serial, bytes).and_then(|c| c.serialize()).map(|a| (None, Some(a))).map_err(unusable)
                }
                None => {
                    let c = Component::new(&self.engine, bytes).map_err(unusable)?;
                    let a = if self.has_disk_cache() { Some(c.serialize().map_err(unusable)?) } else { None };
                    Ok((Some(c), a))
                }
            }
        };
        let (artifact, component) = match self.compiles.compile(bytes, self.compiler, background, here)? {
            super::compile::Compiled::Here((Some(c), a)) => (a, c),
            super::compile::Compiled::Here((None, Some(a))) => self.deserialized(a)?,
            super::compile::Compiled::Here((None, None)) => return Err(LoadError::Compile("no compiled code".into())),
            super::compile::Compiled::Artifact(a) => self.deserialized(a)?,
        };
        let checked = self.checked(component, hash, bytes.len())?;
        if let Some(a) = artifact {
            self.write_artifact(&checked.hash, &a);
        }
        Ok(checked)
    }

    /// The artifact produced just now, on the router's engine.
    #[allow(unsafe_code)]
    fn deserialized(&self, artifact: Vec<u8>) -> Result<(Option<Vec<u8>>, Component), LoadError> {
        // SAFETY: the artifact was produced just now by an engine of this
        // configuration, in this process or in a child process of the same
        // executable (parallel compilation does not change the code);
        // deserializing checks the configuration again.
        let c = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        Ok((Some(artifact), c))
    }

    /// Compiles `bytes` on one core at a low priority, checks it against the
    /// contract and writes it to the disk cache; bypasses the in-memory cache.
    pub fn compile_in_background(&self, bytes: &[u8]) -> Result<CompiledPolicy, LoadError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge(bytes.len()));
        }
        self.compile_uncached(bytes, hex_sha256(bytes), true)
    }

    /// Whether compiled artifacts are kept on disk.
    pub fn has_disk_cache(&self) -> bool {
        self.disk_cache.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Removes the artifact of `hash` from the disk cache (the quick tier's,
    /// once Cranelift's is there).
    pub(crate) fn remove_artifact(&self, hash: &str) {
        if let Some(path) = self.artifact_path(hash)
            && let Ok(meta) = std::fs::metadata(&path)
            && std::fs::remove_file(&path).is_ok()
        {
            let _ = self
                .tally
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(meta.len())));
        }
    }

    /// Whether the disk cache holds the artifact of the component with `hash`.
    pub fn has_artifact(&self, hash: &str) -> bool {
        self.artifact_path(hash).is_some_and(|p| p.is_file())
    }

    /// The component with `hash` from the disk cache, checked against the contract.
    pub fn load_artifact(&self, hash: &str, size: usize) -> Result<CompiledPolicy, LoadError> {
        let component = self.read_artifact(hash).ok_or_else(|| {
            LoadError::NotAComponent(format!("no precompiled artifact for {hash} in the policy cache"))
        })?;
        self.checked(component, hash.to_owned(), size)
    }

    /// Checks a component against the contract and prepares its instantiation.
    fn checked(&self, component: Component, hash: String, size: usize) -> Result<CompiledPolicy, LoadError> {
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .filter(|(_, item)| !matches!(item.ty, ComponentItem::Type(_)))
            .map(|(name, _)| name.to_owned())
            .collect();
        let foreign: Vec<String> = imports.iter().filter(|i| !is_allowed_import(i)).cloned().collect();
        if foreign.iter().any(|i| i.starts_with("wasi:")) {
            return Err(LoadError::Wasi(foreign));
        }
        if !foreign.is_empty() {
            return Err(LoadError::ForeignImports(foreign));
        }
        if !exports.iter().any(|e| e == REQUIRED_EXPORT) {
            return Err(LoadError::MissingExport(exports));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PolicyPre::new)
            .map_err(|e| LoadError::ContractMismatch(format!("{e:#}")))?;
        let uses_wasi = imports.iter().any(|i| i.starts_with("wasi:"));
        let code_bytes = {
            let r = component.image_range();
            (r.end as usize).saturating_sub(r.start as usize)
        };
        Ok(CompiledPolicy { hash, size, imports, exports, code_bytes, uses_wasi, compiler: self.compiler, pre })
    }
}

/// Which compiler turns components into machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compiler {
    /// Cranelift, optimising (the router's).
    Cranelift,
    /// Winch, wasmtime's baseline compiler: compiles faster, runs slower.
    Winch,
}

impl Compiler {
    /// Its name on the compiler process's command line.
    pub fn name(self) -> &'static str {
        match self {
            Compiler::Cranelift => "cranelift",
            Compiler::Winch => "winch",
        }
    }
}

/// Keeps a version's artifact in the disk cache while it lives
/// ([`PolicyEngine::pin`]).
pub struct ArtifactPin {
    pins: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    hash: String,
}

impl std::fmt::Debug for ArtifactPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArtifactPin").field(&self.hash).finish()
    }
}

impl Drop for ArtifactPin {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = pins.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.hash);
            }
        }
    }
}

/// The engine's configuration; `parallel` compiles a component's functions
/// on every core (the artifacts are the same either way).
pub(crate) fn config(parallel: bool, compiler: Compiler) -> Config {
    let mut config = Config::new();
    config.strategy(match compiler {
        Compiler::Cranelift => wasmtime::Strategy::Cranelift,
        Compiler::Winch => wasmtime::Strategy::Winch,
    });
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.max_wasm_stack(512 << 10);
    config.parallel_compilation(parallel);
    // `perf` can name the policies' compiled functions when asked
    // (`EXUM_POLICY_PROFILER=perfmap` writes /tmp/perf-<pid>.map).
    if std::env::var_os("EXUM_POLICY_PROFILER").is_some_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

/// Most functions the modules of one policy may define together. Compiling
/// costs memory per function (a component of 990,000 empty functions took
/// 6.2 GB to compile); the standard policy has about a thousand.
pub const MAX_FUNCTIONS: u64 = 50_000;

/// Most bytes of function bodies one policy may have.
pub const MAX_CODE_BYTES: u64 = 12 << 20;

/// What a component declares, read without compiling it ([`shape`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Functions with a body, in all its modules.
    pub functions: u64,
    /// Bytes of function bodies, in all its modules.
    pub code_bytes: u64,
    /// The largest initial size of a linear memory it defines, in bytes.
    pub memory_bytes: u64,
    /// Whether it imports WASI: a language runtime's component.
    pub runtime: bool,
}

/// Checks what costs nothing to read before the compiler runs: the functions
/// and code the component's modules hold ([`MAX_FUNCTIONS`],
/// [`MAX_CODE_BYTES`]), the memories and tables they define (as many and as
/// large as an instance may have), and the interfaces the component imports
/// (a component that imports outside the contract is refused before it is
/// compiled, not after). The parser only walks the sections.
pub fn precheck(bytes: &[u8]) -> Result<(), LoadError> {
    shape(bytes).map(|_| ())
}

/// [`precheck`], and what the component declares.
pub fn shape(bytes: &[u8]) -> Result<Shape, LoadError> {
    use wasmparser::Payload;
    let mut shape = Shape::default();
    let mut depth = 0u32;
    let mut foreign: Vec<String> = Vec::new();
    let too_much = |what: String| Err(LoadError::TooMuchCode(what));
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::NotAComponent(e.to_string()))?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CodeSectionStart { count, size, .. } => {
                shape.functions += u64::from(count);
                shape.code_bytes += u64::from(size);
                if shape.functions > MAX_FUNCTIONS {
                    return too_much(format!(
                        "{} functions or more; a policy may have {MAX_FUNCTIONS}",
                        shape.functions
                    ));
                }
                if shape.code_bytes > MAX_CODE_BYTES {
                    return too_much(format!(
                        "{} bytes of code or more; a policy may have {MAX_CODE_BYTES}",
                        shape.code_bytes
                    ));
                }
            }
            Payload::MemorySection(reader) => {
                if reader.count() > MAX_MEMORIES {
                    return too_much(format!(
                        "a module defines {} memories; a policy may have {MAX_MEMORIES}",
                        reader.count()
                    ));
                }
                for memory in reader {
                    let memory = memory.map_err(|e| LoadError::NotAComponent(e.to_string()))?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    shape.memory_bytes = shape.memory_bytes.max(memory.initial.saturating_mul(page));
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let table = table.map_err(|e| LoadError::NotAComponent(e.to_string()))?;
                    if table.ty.initial > MAX_TABLE_ELEMENTS as u64 {
                        return too_much(format!(
                            "a table of {} elements at start; a policy may have {MAX_TABLE_ELEMENTS}",
                            table.ty.initial
                        ));
                    }
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| LoadError::NotAComponent(e.to_string()))?;
                    let name = import.name.name;
                    if !is_allowed_import(name) {
                        foreign.push(name.to_owned());
                    }
                    shape.runtime |= name.starts_with("wasi:");
                }
            }
            _ => {}
        }
    }
    if foreign.iter().any(|i| i.starts_with("wasi:")) {
        return Err(LoadError::Wasi(foreign));
    }
    if !foreign.is_empty() {
        return Err(LoadError::ForeignImports(foreign));
    }
    Ok(shape)
}

/// Most memories one module of a policy may define (an instance may have 4).
const MAX_MEMORIES: u32 = 4;

/// Whether `bytes` start with the component binary preamble (layer 1).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [1, 0]
}

pub use crate::control::checked_file::hex_sha256;

/// Advances the engine's epoch on its own thread, until dropped: every
/// [`EPOCH_TICK`] while a call is in progress, else every [`IDLE_EPOCH_TICK`].
/// A call's deadline is a number of ticks beyond the current epoch.
struct Ticker {
    stop: Arc<AtomicBool>,
    /// Policy calls in progress (see [`PolicyEngine::call_started`]): whether
    /// the next tick is due in [`EPOCH_TICK`] or [`IDLE_EPOCH_TICK`].
    calls: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicUsize::new(0));
        let (flag, in_progress) = (stop.clone(), calls.clone());
        let thread = std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let busy = in_progress.load(Ordering::Relaxed) > 0;
                    std::thread::sleep(if busy { EPOCH_TICK } else { IDLE_EPOCH_TICK });
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread: the process cannot enforce policy deadlines without it");
        Ticker { stop, calls, thread: Some(thread) }
    }
}

/// A policy call in progress, counted while it lives (see [`Ticker`]).
pub(crate) struct CallInProgress<'a>(&'a AtomicUsize);

impl Drop for CallInProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Appends `n` as unsigned LEB128 (for the component builders below).
#[doc(hidden)]
pub fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            break;
        }
    }
}

fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(content.len() as u64, out);
    out.extend_from_slice(content);
}

/// A component of one core module whose functions (type `[] -> []`) have
/// the given bodies (locals and code, without the size): for tests and
/// benchmarks of what compiles cost.
#[doc(hidden)]
pub fn component_of_bodies(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    let mut funcs = Vec::new();
    leb(bodies.len() as u64, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, bodies.len()));
    section(3, &funcs, &mut module);
    let mut code = Vec::new();
    leb(bodies.len() as u64, &mut code);
    for body in bodies {
        leb(body.len() as u64, &mut code);
        code.extend_from_slice(body);
    }
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

/// A component holding one core module of `functions` empty functions: the
/// shape of a compile bomb (for tests: it is not a policy).
#[doc(hidden)]
pub fn component_with_functions(functions: u32) -> Vec<u8> {
    component_of_bodies(&vec![vec![0, 0x0b]; functions as usize])
}

/// A component holding one function of about `bytes` bytes of blocks nested
/// a thousand deep, each left by a branch: far within the limits of
/// [`precheck`], but a compile takes about 270 times its size in memory (for
/// tests and benchmarks: it is not a policy).
#[doc(hidden)]
pub fn component_with_nested_blocks(bytes: usize) -> Vec<u8> {
    let mut pattern = Vec::new();
    for _ in 0..1_000 {
        pattern.extend_from_slice(&[0x02, 0x40]);
    }
    for _ in 0..1_000 {
        pattern.extend_from_slice(&[0x41, 0, 0x0d, 0, 0x0b]);
    }
    let mut body = vec![0u8];
    while body.len() + pattern.len() < bytes {
        body.extend_from_slice(&pattern);
    }
    body.push(0x0b);
    component_of_bodies(&[body])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compile_bomb_is_refused_before_the_compiler_runs() {
        let bomb = component_with_functions(MAX_FUNCTIONS as u32 + 1);
        assert!(is_component(&bomb));
        match precheck(&bomb) {
            Err(LoadError::TooMuchCode(why)) => assert!(why.contains("50001 functions"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(precheck(&component_with_functions(10)).is_ok());
        let engine = PolicyEngine::new().expect("engine");
        assert!(matches!(engine.compile(&bomb), Err(LoadError::TooMuchCode(_))));
        assert_eq!(engine.compilations.get(), 0, "nothing was compiled");
        assert!(precheck(crate::policy::STANDARD_COMPONENT).is_ok(), "the standard policy is well within");
    }

    #[test]
    fn a_call_is_counted_in_progress_until_it_returns_or_unwinds() {
        let engine = PolicyEngine::new().expect("engine");
        let in_progress = || engine.ticker.calls.load(Ordering::Relaxed);
        {
            let _a = engine.call_started();
            let _b = engine.call_started();
            assert_eq!(in_progress(), 2);
        }
        assert_eq!(in_progress(), 0);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _call = engine.call_started();
            panic!("a host error in the middle of a call");
        }));
        assert!(unwound.is_err());
        assert_eq!(in_progress(), 0, "released when the call unwinds");
    }

    /// The standard policy with a custom section naming `n`: another
    /// component (another hash) with the same code.
    fn variant(n: usize) -> Vec<u8> {
        let mut v = crate::policy::STANDARD_COMPONENT.to_vec();
        let mut content = Vec::new();
        leb(7, &mut content);
        content.extend_from_slice(b"variant");
        content.extend_from_slice(&n.to_le_bytes());
        section(0, &content, &mut v);
        v
    }

    /// The compiled artifacts in `dir`: (hash, bytes).
    fn artifacts(dir: &std::path::Path) -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = std::fs::read_dir(dir)
            .expect("read the cache")
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let hash = name.strip_suffix(".cwasm")?.split('-').next()?.to_owned();
                Some((hash, e.metadata().ok()?.len()))
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn the_disk_cache_stays_within_its_budget_and_keeps_the_artifacts_in_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = PolicyEngine::new().expect("engine");
        engine.set_disk_cache(dir.path().to_owned()).expect("cache");
        let first = engine.compile(&variant(0)).expect("compiles");
        let one = artifacts(dir.path())[0].1;
        let budget = one * 5 / 2;
        let settings = crate::control::config::CompileSettings { cache_max_bytes: budget, ..Default::default() };
        engine.set_compile_settings(settings);
        // The first is in service (its version pins it): kept, though the oldest.
        let pin = engine.pin(&first.hash);
        let hashes: Vec<String> = (1..=4).map(|i| engine.compile(&variant(i)).expect("compiles").hash).collect();
        let left = artifacts(dir.path());
        assert!(left.iter().map(|(_, n)| n).sum::<u64>() <= budget, "{left:?}");
        let kept: Vec<&str> = left.iter().map(|(h, _)| h.as_str()).collect();
        assert!(kept.contains(&first.hash.as_str()), "the pinned artifact stays: {kept:?}");
        assert!(kept.contains(&hashes[3].as_str()), "the newest stays: {kept:?}");
        assert_eq!(kept.len(), 2, "the least recently used others went: {kept:?}");
        // Unpinned, the first goes next.
        drop(pin);
        let newest = engine.compile(&variant(5)).expect("compiles").hash;
        let kept: Vec<String> = artifacts(dir.path()).into_iter().map(|(h, _)| h).collect();
        assert!(!kept.contains(&first.hash) && kept.contains(&newest) && kept.contains(&hashes[3]), "{kept:?}");
    }

    #[test]
    fn the_quick_tier_never_removes_the_artifact_of_a_version_in_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = PolicyEngine::new().expect("engine");
        engine.set_disk_cache(dir.path().to_owned()).expect("cache");
        let served = engine.compile(&variant(0)).expect("compiles");
        let _pin = engine.pin(&served.hash);
        let settings = crate::control::config::CompileSettings { cache_max_bytes: 1, ..Default::default() };
        engine.set_compile_settings(settings);
        // The quick tier writes its own artifacts to the same folder, over budget.
        let quick = engine.compile_quick(&variant(1)).expect("compiles with Winch");
        assert_eq!(quick.compiler, Compiler::Winch);
        let kept: Vec<String> = artifacts(dir.path()).into_iter().map(|(h, _)| h).collect();
        assert!(kept.contains(&served.hash), "the version in service keeps its artifact: {kept:?}");
    }

    #[test]
    fn a_refused_component_leaves_no_artifact_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = PolicyEngine::new().expect("engine");
        engine.set_disk_cache(dir.path().to_owned()).expect("cache");
        assert!(matches!(engine.compile(&component_with_functions(10)), Err(LoadError::MissingExport(_))));
        assert_eq!(engine.compilations.get(), 1, "compiled (it passes the checks before compiling)");
        assert!(artifacts(dir.path()).is_empty());
    }

    #[test]
    fn the_memory_cache_of_compiled_components_is_bounded_by_bytes() {
        let engine = PolicyEngine::new().expect("engine");
        let first = engine.compile(&variant(0)).expect("compiles");
        assert!(first.code_bytes > 0);
        engine.set_compiled_cache_bytes(first.code_bytes * 3 / 2);
        engine.compile(&variant(1)).expect("compiles");
        let compiled = engine.compilations.get();
        engine.compile(&variant(1)).expect("compiles");
        assert_eq!(engine.compilations.get(), compiled, "the newest is kept");
        engine.compile(&variant(0)).expect("compiles");
        assert_eq!(engine.compilations.get(), compiled + 1, "the oldest was let go: compiled again");
    }

    #[test]
    fn a_component_declaring_more_than_an_instance_may_have_is_refused_before_compiling() {
        let standard = shape(crate::policy::STANDARD_COMPONENT).expect("the standard policy");
        assert!(
            standard.functions > 0 && standard.memory_bytes > 0 && standard.memory_bytes <= 16 << 20,
            "{standard:?}"
        );
        // A module with a table of 20,001 elements at start.
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        let mut table = vec![1, 0x70, 0];
        leb(20_001, &mut table);
        section(4, &table, &mut module);
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        section(1, &module, &mut component);
        match precheck(&component) {
            Err(LoadError::TooMuchCode(why)) => assert!(why.contains("20001 elements"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

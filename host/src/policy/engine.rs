//! The one wasmtime [`Engine`] of the router: its configuration, the epoch ticker
//! that enforces call deadlines, the linker with the contract's imports, and
//! compiling a component after checking it against the contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::PolicyPre;
use super::host_api::{self, StoreState};

/// What to do about a policy that imports WASI.
pub const WASI_HINT: &str = "build for wasm32-unknown-unknown (not wasm32-wasip1 or wasip2) and keep std::fs, std::net, std::env, std::time::SystemTime and println! out of the policy; the router's imports (exum_policy_sdk::host) give the time and the log";

/// The contract version this router speaks.
pub const CONTRACT: &str = "exum:policy@0.1.0";
/// The interfaces a policy may import.
pub const ALLOWED_IMPORTS: [&str; 5] = [
    "exum:policy/types@0.1.0",
    "exum:policy/directory@0.1.0",
    "exum:policy/health@0.1.0",
    "exum:policy/clock@0.1.0",
    "exum:policy/log@0.1.0",
];
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
/// Largest component accepted, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 16 << 20;

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
    /// It imports interfaces outside the contract.
    #[error("imports {} outside the contract {CONTRACT} (a policy may import only {})", .0.join(", "), ALLOWED_IMPORTS.join(", "))]
    ForeignImports(Vec<String>),
    /// It imports WASI, which policies do not have.
    #[error("policies have no WASI: it imports {}; {WASI_HINT}", .0.join(", "))]
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
    pub(crate) pre: PolicyPre<StoreState>,
}

impl std::fmt::Debug for CompiledPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPolicy").field("hash", &self.hash).field("size", &self.size).finish_non_exhaustive()
    }
}

/// Most compiled components kept in memory by content hash.
pub const COMPILED_CACHE_CAPACITY: usize = 256;

/// The engine, its linker and its epoch ticker.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<StoreState>,
    /// Advances the epoch while the engine lives (stopped when dropped).
    ticker: Ticker,
    /// Compiled components by content hash: a version seen before (a rollback,
    /// the same policy for many tenants) is not compiled again.
    compiled: std::sync::Mutex<std::collections::HashMap<String, CompiledPolicy>>,
    /// The same configuration without parallel compilation, for compiling in
    /// the background (created at its first use).
    serial: std::sync::OnceLock<Option<Engine>>,
    compiler: Compiler,
    /// Where precompiled artifacts are kept across restarts, if anywhere.
    disk_cache: std::sync::RwLock<Option<std::path::PathBuf>>,
    /// The engine's compatibility fingerprint, part of every artifact's key.
    fingerprint: String,
    /// Components compiled from scratch (`exum_policy_compilations_total` when
    /// the engine counts into the router's metrics).
    pub compilations: Counter,
    /// Components taken from the disk cache (`exum_policy_disk_cache_hits_total`).
    pub disk_hits: Counter,
}

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
        PolicyEngine::counting_into(Counter::default(), Counter::default())
    }

    /// [`Self::new`], counting compilations and disk-cache hits into the
    /// router's metrics.
    pub fn counting_into(compilations: Counter, disk_hits: Counter) -> wasmtime::Result<PolicyEngine> {
        PolicyEngine::build(Compiler::Cranelift, compilations, disk_hits)
    }

    /// [`Self::new`] with another compiler (for measuring them).
    pub fn with_compiler(compiler: Compiler) -> wasmtime::Result<PolicyEngine> {
        PolicyEngine::build(compiler, Counter::default(), Counter::default())
    }

    fn build(compiler: Compiler, compilations: Counter, disk_hits: Counter) -> wasmtime::Result<PolicyEngine> {
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
            compiled: std::sync::Mutex::new(std::collections::HashMap::new()),
            serial: std::sync::OnceLock::new(),
            compiler,
            disk_cache: std::sync::RwLock::new(None),
            fingerprint,
            compilations,
            disk_hits,
        })
    }

    /// Keeps precompiled artifacts in `dir` (created if missing), keyed by the
    /// component's hash and the engine's fingerprint, so a restart does not
    /// compile again. The directory must be writable by the router alone: an
    /// artifact there is machine code the router will run.
    pub fn set_disk_cache(&self, dir: std::path::PathBuf) -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        *self.disk_cache.write().unwrap_or_else(|e| e.into_inner()) = Some(dir);
        Ok(())
    }

    fn artifact_path(&self, hash: &str) -> Option<std::path::PathBuf> {
        let dir = self.disk_cache.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some(dir.join(format!("{hash}-{}.cwasm", self.fingerprint)))
    }

    /// A component from the disk cache, if there.
    #[allow(unsafe_code)]
    fn read_artifact(&self, hash: &str) -> Option<Component> {
        let path = self.artifact_path(hash)?;
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `to_disk` from `Component::serialize`
        // of this engine configuration (the fingerprint is in its name), in a
        // directory only the router writes (documented for `policy_cache`).
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(c) => {
                self.disk_hits.inc();
                Some(c)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = format!("{e:#}"), "ignoring an unusable precompiled artifact");
                None
            }
        }
    }

    fn to_disk(&self, hash: &str, component: &Component) {
        if self.artifact_path(hash).is_none() {
            return;
        }
        if let Ok(bytes) = component.serialize() {
            self.write_artifact(hash, &bytes);
        }
    }

    fn write_artifact(&self, hash: &str, bytes: &[u8]) {
        let Some(path) = self.artifact_path(hash) else { return };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
            tracing::warn!(path = %path.display(), "could not write a precompiled artifact");
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
        if let Some(hit) = self.compiled.lock().ok().and_then(|c| c.get(&hash).cloned()) {
            return Ok(hit);
        }
        let compiled = self.compile_uncached(bytes, hash)?;
        if let Ok(mut cache) = self.compiled.lock() {
            if cache.len() >= COMPILED_CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(compiled.hash.clone(), compiled.clone());
        }
        Ok(compiled)
    }

    fn compile_uncached(&self, bytes: &[u8], hash: String) -> Result<CompiledPolicy, LoadError> {
        if !is_component(bytes) {
            let what = if bytes.starts_with(b"\0asm") { "a core WebAssembly module" } else { "not WebAssembly" };
            return Err(LoadError::NotAComponent(format!(
                "{what}; build the policy for wasm32-unknown-unknown and turn it into a component"
            )));
        }
        precheck(bytes)?;
        let component = match self.read_artifact(&hash) {
            Some(c) => c,
            None => {
                self.compilations.inc();
                let c = Component::new(&self.engine, bytes).map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
                self.to_disk(&hash, &c);
                c
            }
        };
        self.checked(component, hash, bytes.len())
    }

    /// Compiles `bytes` on the calling thread alone (an engine of the same
    /// configuration without parallel compilation, so a background thread at a
    /// low priority does all the work), checks it against the contract and
    /// writes it to the disk cache; bypasses the in-memory cache.
    #[allow(unsafe_code)]
    pub fn compile_in_background(&self, bytes: &[u8]) -> Result<CompiledPolicy, LoadError> {
        if bytes.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge(bytes.len()));
        }
        let hash = hex_sha256(bytes);
        if !is_component(bytes) {
            return self.compile_uncached(bytes, hash);
        }
        precheck(bytes)?;
        if let Some(c) = self.read_artifact(&hash) {
            return self.checked(c, hash, bytes.len());
        }
        let serial = match self.serial.get_or_init(|| Engine::new(&config(false, self.compiler)).ok()) {
            Some(e) => e,
            None => return self.compile_uncached(bytes, hash),
        };
        self.compilations.inc();
        let artifact = Component::new(serial, bytes)
            .and_then(|c| c.serialize())
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        // SAFETY: the artifact was produced just now by an engine of this
        // configuration (parallel compilation does not change the code).
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| LoadError::NotAComponent(format!("{e:#}")))?;
        let checked = self.checked(component, hash, bytes.len())?;
        self.write_artifact(&checked.hash, &artifact);
        Ok(checked)
    }

    /// Whether compiled artifacts are kept on disk.
    pub fn has_disk_cache(&self) -> bool {
        self.disk_cache.read().unwrap_or_else(|e| e.into_inner()).is_some()
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
        let foreign: Vec<String> = imports.iter().filter(|i| !ALLOWED_IMPORTS.contains(&i.as_str())).cloned().collect();
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
        Ok(CompiledPolicy { hash, size, imports, exports, pre })
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

/// The engine's configuration; `parallel` compiles a component's functions
/// on every core (the artifacts are the same either way).
fn config(parallel: bool, compiler: Compiler) -> Config {
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

/// Checks what costs nothing to read before the compiler runs: the functions
/// and code the component's modules hold ([`MAX_FUNCTIONS`],
/// [`MAX_CODE_BYTES`]) and the interfaces the component imports (a
/// component that imports outside the contract is refused before it is
/// compiled, not after). The parser only walks the sections.
pub fn precheck(bytes: &[u8]) -> Result<(), LoadError> {
    use wasmparser::Payload;
    let (mut functions, mut code, mut depth) = (0u64, 0u64, 0u32);
    let mut foreign: Vec<String> = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::NotAComponent(e.to_string()))?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CodeSectionStart { count, size, .. } => {
                functions += u64::from(count);
                code += u64::from(size);
                if functions > MAX_FUNCTIONS {
                    return Err(LoadError::TooMuchCode(format!(
                        "{functions} functions or more; a policy may have {MAX_FUNCTIONS}"
                    )));
                }
                if code > MAX_CODE_BYTES {
                    return Err(LoadError::TooMuchCode(format!(
                        "{code} bytes of code or more; a policy may have {MAX_CODE_BYTES}"
                    )));
                }
            }
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| LoadError::NotAComponent(e.to_string()))?;
                    let name = import.name.name;
                    if !ALLOWED_IMPORTS.contains(&name) {
                        foreign.push(name.to_owned());
                    }
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
    Ok(())
}

/// Whether `bytes` start with the component binary preamble (layer 1).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[6..8] == [1, 0]
}

/// SHA-256 of `bytes`, hex: the content hash policies are known by.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

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

/// A component holding one core module of `functions` empty functions: the
/// shape of a compile bomb (for tests: it is not a policy).
#[doc(hidden)]
pub fn component_with_functions(functions: u32) -> Vec<u8> {
    fn leb(mut n: u64, out: &mut Vec<u8>) {
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
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut module);
    let mut funcs = Vec::new();
    leb(u64::from(functions), &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, functions as usize));
    section(3, &funcs, &mut module);
    let mut code = Vec::new();
    leb(u64::from(functions), &mut code);
    for _ in 0..functions {
        code.extend_from_slice(&[2, 0, 0x0b]);
    }
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
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
}

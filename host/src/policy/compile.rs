//! Compiling policies under limits. What a compile costs depends on the shape
//! of the code more than on its size: a 7 MB function of nested blocks takes
//! 1.9 GB and 9 s to compile, 50,000 empty functions 0.3 GB
//! (`cargo run --release -p exum-bench --bin compile-cost`). Beyond the cheap
//! checks of [`super::engine::precheck`], every compile from scratch
//!
//! - takes one of `[compile] workers` slots first (the start-up backlog, the
//!   admin API and the watcher share them), so compiles at once are bounded;
//! - when the router runs as its binary ([`compile_in_children`]), happens in
//!   a child process (`exum-router compile-worker`) whose data is capped at
//!   `memory_mib` and CPU at `cpu_s`: a compile past either is refused and the
//!   router's own memory never grew for it; the artifact comes back on the
//!   child's standard output;
//! - is given up when nobody waits for it any more (an admin request whose
//!   connection was cut, see [`on_behalf_of`]): waiting for a slot ends, a
//!   child is killed (`exum_policy_compiles_abandoned_total`).
//!
//! Embedded uses (the library in tests, tools) compile in the process, in the
//! same slots, without the memory cap.

use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use super::engine::{Compiler, LoadError, MAX_COMPONENT_BYTES};
use crate::control::config::CompileSettings;

/// The hidden command of the router's binary that compiles one component.
pub const WORKER_COMMAND: &str = "compile-worker";

/// How often a compile in progress looks whether it was abandoned.
const ABANDON_CHECK: Duration = Duration::from_millis(20);

/// The executable whose [`WORKER_COMMAND`] compiles, when set.
static WORKER: OnceLock<PathBuf> = OnceLock::new();

/// Compiles from now on in child processes of `exe` (the router's own binary),
/// under the memory and CPU caps of `[compile]`.
pub fn compile_in_children(exe: PathBuf) {
    let _ = WORKER.set(exe);
}

/// Set once whoever waits for a compile has gone.
#[derive(Debug, Clone, Default)]
pub struct Abandoned(Arc<AtomicBool>);

impl Abandoned {
    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Someone waiting for compiles: when dropped (an admin request's future
/// dropped with its connection), the compiles made on its behalf give up.
#[derive(Debug, Default)]
pub struct Waiter(Abandoned);

impl Waiter {
    /// A new waiter.
    pub fn new() -> Waiter {
        Waiter::default()
    }

    /// The flag to hand to the thread that compiles ([`on_behalf_of`]).
    pub fn flag(&self) -> Abandoned {
        self.0.clone()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.0.store(true, Ordering::Release);
    }
}

thread_local! {
    static ON_BEHALF_OF: RefCell<Option<Abandoned>> = const { RefCell::new(None) };
    static DEFERRABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` on this thread as work that may wait: its compiles (the
/// optimised code that replaces a quick tier's, while the quick code serves)
/// leave one compile slot to compiles someone waits for.
pub fn deferrable<R>(f: impl FnOnce() -> R) -> R {
    let previous = DEFERRABLE.replace(true);
    let r = f();
    DEFERRABLE.set(previous);
    r
}

/// Runs `f` on this thread for the waiter whose flag is `abandoned`: the
/// compiles `f` makes give up once it is set.
pub fn on_behalf_of<R>(abandoned: Abandoned, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Abandoned>);
    impl Drop for Restore {
        fn drop(&mut self) {
            ON_BEHALF_OF.set(self.0.take());
        }
    }
    let _restore = Restore(ON_BEHALF_OF.replace(Some(abandoned)));
    f()
}

fn abandoned() -> bool {
    ON_BEHALF_OF.with_borrow(|a| a.as_ref().is_some_and(Abandoned::is_set))
}

/// The compile slots and settings of one engine.
#[derive(Debug, Default)]
pub(crate) struct Compiles {
    settings: Mutex<CompileSettings>,
    /// Compiles in progress: all, and those that may wait (optimised code
    /// replacing a quick tier's).
    busy: Mutex<(usize, usize)>,
    freed: Condvar,
    /// Compiles started (in this process or in a child).
    compilations: Counter,
    /// Compiles given up because nobody waited for them.
    pub abandoned: Counter,
}

/// A compile slot, given back when dropped.
struct Slot<'a>(&'a Compiles, bool);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|e| e.into_inner());
        busy.0 = busy.0.saturating_sub(1);
        if self.1 {
            busy.1 = busy.1.saturating_sub(1);
        }
        self.0.freed.notify_all();
    }
}

/// What a compile from scratch produced.
pub(crate) enum Compiled<T> {
    /// Compiled in this process.
    Here(T),
    /// The serialized artifact, compiled by a child process.
    Artifact(Vec<u8>),
}

impl Compiles {
    pub(crate) fn new(compilations: Counter, abandoned: Counter) -> Compiles {
        Compiles { compilations, abandoned, ..Compiles::default() }
    }

    pub(crate) fn settings(&self) -> CompileSettings {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_settings(&self, settings: CompileSettings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = settings;
        self.freed.notify_all();
    }

    fn give_up(&self) -> LoadError {
        self.abandoned.inc();
        LoadError::Abandoned
    }

    /// Waits for a free slot (or until the waiter has gone).
    /// A compile that may wait (see [`deferrable`]) takes at most all slots
    /// but one, so a policy a tenant is waiting for is never queued behind
    /// them.
    fn slot(&self) -> Result<Slot<'_>, LoadError> {
        let deferrable = DEFERRABLE.get();
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if abandoned() {
                return Err(self.give_up());
            }
            let workers = self.settings().workers;
            if busy.0 < workers && (!deferrable || busy.1 < workers.saturating_sub(1).max(1)) {
                busy.0 += 1;
                if deferrable {
                    busy.1 += 1;
                }
                return Ok(Slot(self, deferrable));
            }
            busy = self.freed.wait_timeout(busy, ABANDON_CHECK).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Compiles `bytes` in a slot: in a child process when the router runs as
    /// its binary, else with `here`. `background` compiles on one core at a
    /// low priority.
    pub(crate) fn compile<T>(
        &self,
        bytes: &[u8],
        compiler: Compiler,
        background: bool,
        here: impl FnOnce() -> Result<T, LoadError>,
    ) -> Result<Compiled<T>, LoadError> {
        let _slot = self.slot()?;
        self.compilations.inc();
        match WORKER.get() {
            None => here().map(Compiled::Here),
            Some(exe) => self.in_child(exe, bytes, compiler, background).map(Compiled::Artifact),
        }
    }

    fn in_child(&self, exe: &Path, bytes: &[u8], compiler: Compiler, background: bool) -> Result<Vec<u8>, LoadError> {
        let settings = self.settings();
        let mut command = Command::new(exe);
        command
            .arg(WORKER_COMMAND)
            .args(["--memory-mib", &settings.memory_mib.to_string(), "--cpu-s", &settings.cpu_s.to_string()])
            .args(["--compiler", compiler.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if background {
            command.arg("--background");
        }
        let mut child = command.spawn().map_err(|e| {
            LoadError::Compile(format!("cannot start the compiler process {} {WORKER_COMMAND}: {e}", exe.display()))
        })?;
        let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(LoadError::Compile("the compiler process has no pipes".into()));
        };
        let input = bytes.to_vec();
        // The child reads all of its input before it writes: feed it from a
        // thread of its own while this one reads (a broken pipe means the
        // child ended, and its status says why).
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.take(64 << 10).read_to_string(&mut text);
            text
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut artifact = Vec::new();
            let read = stdout.read_to_end(&mut artifact).map(|_| artifact);
            let _ = done_tx.send(read);
        });
        let artifact = loop {
            match done_rx.recv_timeout(ABANDON_CHECK) {
                Ok(read) => break read,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if abandoned() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = feeder.join();
                    return Err(self.give_up());
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(std::io::Error::other("the reader of the compiler's output ended"));
                }
            }
        };
        let status = child.wait();
        let _ = feeder.join();
        let errors = errors.join().unwrap_or_default();
        let status = status.map_err(|e| LoadError::Compile(format!("the compiler process: {e}")))?;
        if status.success() {
            return artifact.map_err(|e| LoadError::Compile(format!("reading the compiled code: {e}")));
        }
        Err(why_it_failed(status, &errors, settings))
    }
}

/// Why a compiler process failed: past its memory or CPU cap, or the
/// compiler's own message (a component wasmtime cannot compile).
fn why_it_failed(status: std::process::ExitStatus, errors: &str, settings: CompileSettings) -> LoadError {
    use std::os::unix::process::ExitStatusExt as _;
    const SIGABRT: i32 = 6;
    const SIGKILL: i32 = 9;
    const SIGXCPU: i32 = 24;
    let out_of_memory = errors.contains("memory allocation of") || errors.contains("out of memory");
    match status.signal() {
        _ if out_of_memory => LoadError::TooMuchCode(format!(
            "compiling it needs more than [compile] memory_mib ({} MiB)",
            settings.memory_mib
        )),
        Some(SIGXCPU | SIGKILL) => LoadError::TooMuchCode(format!(
            "compiling it needs more than [compile] cpu_s ({} s of CPU)",
            settings.cpu_s
        )),
        Some(SIGABRT) => LoadError::TooMuchCode(format!(
            "the compiler stopped (most likely past [compile] memory_mib, {} MiB)",
            settings.memory_mib
        )),
        Some(signal) => LoadError::Compile(format!("the compiler process ended with signal {signal}")),
        None => {
            let last = errors.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message");
            LoadError::NotAComponent(last.trim().to_owned())
        }
    }
}

/// The child's side ([`WORKER_COMMAND`]): caps its own data segment and CPU,
/// reads a component from standard input, compiles it with the engine
/// configuration the router uses and writes the serialized artifact to
/// standard output. Exit status 2 with a message on standard error when the
/// component does not compile.
pub fn worker(memory_mib: u64, cpu_s: u64, compiler: &str, background: bool) -> ExitCode {
    use rustix::process::{Resource, Rlimit, Signal, set_parent_process_death_signal, setpriority_process, setrlimit};
    let fail = |what: String| {
        eprintln!("{what}");
        ExitCode::from(2)
    };
    // A router that dies takes its compiles with it.
    let _ = set_parent_process_death_signal(Some(Signal::KILL));
    let bytes = memory_mib.saturating_mul(1 << 20);
    if let Err(e) = setrlimit(Resource::Data, Rlimit { current: Some(bytes), maximum: Some(bytes) }) {
        return fail(format!("cannot cap the compiler's memory: {e}"));
    }
    // The soft limit sends SIGXCPU; the hard one, a little later, SIGKILL.
    if let Err(e) = setrlimit(Resource::Cpu, Rlimit { current: Some(cpu_s), maximum: Some(cpu_s + 5) }) {
        return fail(format!("cannot cap the compiler's CPU: {e}"));
    }
    if background {
        let _ = setpriority_process(None, 10);
    }
    let compiler = match compiler {
        "cranelift" => Compiler::Cranelift,
        "winch" => Compiler::Winch,
        other => return fail(format!("unknown compiler {other}")),
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().take(MAX_COMPONENT_BYTES as u64 + 1).read_to_end(&mut input) {
        return fail(format!("reading the component: {e}"));
    }
    if input.len() > MAX_COMPONENT_BYTES {
        return fail(LoadError::TooLarge(input.len()).to_string());
    }
    let engine = match wasmtime::Engine::new(&super::engine::config(!background, compiler)) {
        Ok(e) => e,
        Err(e) => return fail(format!("{e:#}")),
    };
    let artifact = match wasmtime::component::Component::new(&engine, &input).and_then(|c| c.serialize()) {
        Ok(a) => a,
        Err(e) => return fail(format!("{e:#}")),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(&artifact).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("writing the compiled code: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{Sender, channel};
    use std::thread::JoinHandle;

    use super::*;

    fn compiles(workers: usize) -> Arc<Compiles> {
        let compiles = Arc::new(Compiles::new(Counter::default(), Counter::default()));
        compiles.set_settings(CompileSettings { workers, ..Default::default() });
        compiles
    }

    /// A compile (deferrable or not) that holds its slot until told: the
    /// thread, and the sender that releases it. Returns once it holds it.
    fn holding(
        compiles: &Arc<Compiles>,
        deferrable_one: bool,
    ) -> (JoinHandle<Result<Compiled<()>, LoadError>>, Sender<()>) {
        let (started_tx, started_rx) = channel();
        let (release_tx, release_rx) = channel::<()>();
        let compiles = compiles.clone();
        let holder = std::thread::spawn(move || {
            let compile = || {
                compiles.compile(b"", Compiler::Cranelift, deferrable_one, || {
                    started_tx.send(()).expect("send");
                    release_rx.recv().expect("released");
                    Ok(())
                })
            };
            if deferrable_one { deferrable(compile) } else { compile() }
        });
        started_rx.recv().expect("the compile holds a slot");
        (holder, release_tx)
    }

    /// A compile on a thread of its own, run `as_deferrable` and for `waiter`'s
    /// flag when given, that records whether it ran.
    fn compile_on_a_thread(
        compiles: &Arc<Compiles>,
        as_deferrable: bool,
        flag: Option<Abandoned>,
    ) -> (JoinHandle<Result<Compiled<()>, LoadError>>, Arc<AtomicBool>) {
        let (compiles, ran) = (compiles.clone(), Arc::new(AtomicBool::new(false)));
        let ran_in = ran.clone();
        let handle = std::thread::spawn(move || {
            let compile = || {
                compiles.compile(b"", Compiler::Cranelift, as_deferrable, || {
                    ran_in.store(true, Ordering::SeqCst);
                    Ok(())
                })
            };
            let compile = || if as_deferrable { deferrable(compile) } else { compile() };
            match flag {
                Some(flag) => on_behalf_of(flag, compile),
                None => compile(),
            }
        });
        (handle, ran)
    }

    #[test]
    fn compiles_wait_for_a_slot_and_give_up_when_nobody_waits() {
        let compiles = compiles(1);
        let (holder, release) = holding(&compiles, false);
        let waiter = Waiter::new();
        let (abandoned, ran) = compile_on_a_thread(&compiles, false, Some(waiter.flag()));
        drop(waiter);
        assert!(matches!(abandoned.join().expect("joins"), Err(LoadError::Abandoned)));
        assert!(!ran.load(Ordering::SeqCst), "an abandoned compile never ran");
        assert_eq!(compiles.abandoned.get(), 1);
        // One that is waited for runs once the slot is free.
        let (next, ran) = compile_on_a_thread(&compiles, false, None);
        release.send(()).expect("release");
        assert!(holder.join().expect("joins").is_ok());
        assert!(matches!(next.join().expect("joins"), Ok(Compiled::Here(()))));
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn deferrable_compiles_leave_a_slot_to_those_someone_waits_for() {
        let compiles = compiles(2);
        // A deferrable compile holds one of the two slots.
        let (holder, release) = holding(&compiles, true);
        // A second deferrable one waits; a compile someone waits for does not.
        let (second, second_ran) = compile_on_a_thread(&compiles, true, None);
        let waited_for = compiles.compile(b"", Compiler::Cranelift, false, || Ok(1));
        assert!(matches!(waited_for, Ok(Compiled::Here(1))));
        assert!(!second_ran.load(Ordering::SeqCst), "the second deferrable compile waits for the first");
        release.send(()).expect("release");
        assert!(holder.join().expect("joins").is_ok());
        assert!(second.join().expect("joins").is_ok());
        assert!(second_ran.load(Ordering::SeqCst));
    }
}

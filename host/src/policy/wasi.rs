//! The WASI 0.2 a policy may import, for the runtimes of other languages
//! (componentize-py's CPython imports it; componentize-js can leave it out).
//! Every interface is there, with nothing of the host behind it:
//!
//! - no preopened directories (every file call fails), no sockets (TCP, UDP and
//!   name lookups denied), an empty environment and no arguments, an empty
//!   standard input;
//! - standard output and error go to the policy log, under the `log` import's
//!   budget: at most [`MAX_OUTPUT_PER_CALL`] bytes a call, then up to
//!   `LOG_BUDGET_PER_CALL` lines of it logged after the call;
//! - `exit` ends the call with a trap (a fault, as any trap);
//! - the wall clock is the policy clock (`clock.now`, the call's second,
//!   recorded in decision records whenever the policy read it); the monotonic
//!   clock starts at zero every call and advances 1 µs a read;
//! - random bytes (the secure and the insecure generator alike) come from a
//!   generator seeded every call from the Call-ID.
//!
//! So a decision depends only on the request, the imports' answers and the
//! clock: a record replays exactly, whatever the language.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Bytes of standard output and error one call may leave; more are dropped.
pub const MAX_OUTPUT_PER_CALL: usize = 16 << 10;

/// Most random bytes one WASI call may ask for.
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// The WASI interfaces (any 0.2.x) a policy may import.
pub const INTERFACES: [&str; 27] = [
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// Whether `import` (`wasi:io/streams@0.2.9`) is a WASI interface a policy may
/// import: one of [`INTERFACES`] at a 0.2 version.
pub fn is_allowed(import: &str) -> bool {
    let Some((interface, version)) = import.split_once('@') else { return false };
    let mut parts = version.split('.');
    let compatible = parts.next() == Some("0")
        && parts.next() == Some("2")
        && parts.next().is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none();
    compatible && INTERFACES.contains(&interface)
}

/// What one call's WASI answers from, shared by the store's clocks, random
/// generator and output streams.
#[derive(Debug, Default)]
struct State {
    rng: u64,
    wall_seconds: i64,
    wall_read: bool,
    monotonic: u64,
    out: Vec<u8>,
    dropped: usize,
}

/// The WASI state of one store, set anew before every call.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallWasi(Arc<Mutex<State>>);

impl CallWasi {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A call begins: its random generator seeded with `seed`, its wall clock
    /// at `wall_seconds`, its monotonic clock at zero, no output.
    pub(crate) fn start(&self, seed: u64, wall_seconds: i64) {
        self.with(|s| {
            *s = State { rng: seed, wall_seconds, ..State::default() };
        });
    }

    /// The call's wall clock, in Unix seconds.
    pub(crate) fn wall_seconds(&self) -> i64 {
        self.with(|s| s.wall_seconds)
    }

    /// Whether the call read the wall clock.
    pub(crate) fn wall_read(&self) -> bool {
        self.with(|s| s.wall_read)
    }

    /// What the call wrote to standard output and error, and how many bytes
    /// beyond [`MAX_OUTPUT_PER_CALL`] were dropped.
    pub(crate) fn take_output(&self) -> (Vec<u8>, usize) {
        self.with(|s| (std::mem::take(&mut s.out), std::mem::take(&mut s.dropped)))
    }
}

/// The seed of a call's random generator: FNV-1a of its Call-ID (the same in
/// every process and on replay).
pub(crate) fn seed_of(call_id: &str) -> u64 {
    call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// SplitMix64: one step.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Random bytes from the call's generator.
struct CallRng(CallWasi);

impl rand::TryRng for CallRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.0.with(|s| next(&mut s.rng)) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.0.with(|s| next(&mut s.rng)))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.0.with(|s| {
            for chunk in dest.chunks_mut(8) {
                chunk.copy_from_slice(&next(&mut s.rng).to_le_bytes()[..chunk.len()]);
            }
        });
        Ok(())
    }
}

/// The policy clock, to the second.
struct Wall(CallWasi);

impl HostWallClock for Wall {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        self.0.with(|s| {
            s.wall_read = true;
            Duration::from_secs(u64::try_from(s.wall_seconds).unwrap_or(0))
        })
    }
}

/// A monotonic clock that starts at zero every call and advances 1 µs a read.
struct Monotonic(CallWasi);

impl HostMonotonicClock for Monotonic {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.0.with(|s| {
            s.monotonic += 1_000;
            s.monotonic
        })
    }
}

/// Standard output or error: kept for the policy log.
struct Output(CallWasi);

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the WASI 0.2 stream below is used.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(OutputPipe(self.0.clone()))
    }
}

/// The WASI 0.2 stream of [`Output`]: always ready, never blocks.
struct OutputPipe(CallWasi);

#[async_trait::async_trait]
impl Pollable for OutputPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.with(|s| {
            let room = MAX_OUTPUT_PER_CALL.saturating_sub(s.out.len());
            let kept = bytes.len().min(room);
            s.out.extend_from_slice(&bytes[..kept]);
            s.dropped += bytes.len() - kept;
        });
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

/// The WASI context of a store whose calls answer from `call`.
pub(crate) fn context(call: &CallWasi) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(Output(call.clone()))
        .stderr(Output(call.clone()))
        .wall_clock(Wall(call.clone()))
        .monotonic_clock(Monotonic(call.clone()))
        .secure_random(CallRng(call.clone()))
        .insecure_random(CallRng(call.clone()))
        .insecure_random_seed(0)
        .max_random_size(MAX_RANDOM_BYTES)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// A store's WASI: its context and its resource table.
pub(crate) struct StoreWasi {
    pub(crate) ctx: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) call: CallWasi,
}

impl StoreWasi {
    pub(crate) fn new() -> StoreWasi {
        let call = CallWasi::default();
        StoreWasi { ctx: context(&call), table: ResourceTable::new(), call }
    }
}

/// Runs `f`, a call into a policy that imports WASI, where the WASI
/// implementation may block on its own runtime: outside the async context of
/// a Tokio worker thread (`block_in_place` on a multi-threaded runtime, a
/// thread of its own on a current-thread one), directly elsewhere.
pub(crate) fn outside_async<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| match s.spawn(f).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_0_2_imports_of_the_listed_interfaces_are_allowed_and_nothing_else() {
        for ok in ["wasi:io/streams@0.2.0", "wasi:cli/stdout@0.2.9", "wasi:sockets/tcp@0.2.12"] {
            assert!(is_allowed(ok), "{ok}");
        }
        for refused in [
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:io/streams@0.3.0",
            "wasi:io/streams@0.2",
            "wasi:io/streams@0.2.x",
            "wasi:io/streams",
            "wasi:keyvalue/store@0.2.0",
        ] {
            assert!(!is_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn a_calls_random_bytes_and_clocks_depend_on_its_call_id_and_clock_only() {
        use rand::TryRng as _;
        let call = CallWasi::default();
        let mut rng = CallRng(call.clone());
        let draw = |rng: &mut CallRng| {
            let mut bytes = [0u8; 20];
            rng.try_fill_bytes(&mut bytes).expect("infallible");
            bytes
        };
        call.start(seed_of("a@x"), 1_700_000_000);
        let first = draw(&mut rng);
        assert!(!call.wall_read());
        assert_eq!(Wall(call.clone()).now(), Duration::from_secs(1_700_000_000));
        assert!(call.wall_read());
        assert_eq!((Monotonic(call.clone()).now(), Monotonic(call.clone()).now()), (1_000, 2_000));
        call.start(seed_of("a@x"), 1_700_000_000);
        assert_eq!(draw(&mut rng), first, "the same Call-ID, the same bytes");
        assert_eq!(Monotonic(call.clone()).now(), 1_000, "from zero every call");
        call.start(seed_of("b@x"), 1_700_000_000);
        assert_ne!(draw(&mut rng), first);
    }

    #[test]
    fn output_beyond_the_budget_is_dropped_and_counted() {
        let call = CallWasi::default();
        let mut pipe = OutputPipe(call.clone());
        pipe.write(Bytes::from(vec![b'x'; MAX_OUTPUT_PER_CALL - 1])).expect("write");
        pipe.write(Bytes::from_static(b"abc")).expect("write");
        let (out, dropped) = call.take_output();
        assert_eq!((out.len(), dropped), (MAX_OUTPUT_PER_CALL, 2));
        assert_eq!(call.take_output(), (Vec::new(), 0));
    }
}

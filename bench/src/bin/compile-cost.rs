//! What the largest components the load-time checks let through cost to
//! compile: wall time and peak memory of one compile with the router's engine,
//! for shapes at the limits of `engine::precheck` (many small functions, one
//! function as large as WebAssembly allows, many locals). Each shape runs in a
//! process of its own so its peak memory is its own. Prints a Markdown table.
//!
//! `cargo run --release -p exum-bench --bin compile-cost`

use std::time::Instant;

use exum_router::policy::engine::{
    MAX_FUNCTIONS, PolicyEngine, component_of_bodies as component_of, component_with_functions,
    component_with_nested_blocks, leb,
};

/// A body of `len` bytes or a little less: `locals` i64 locals, then the
/// repeated `pattern`, then `end`.
fn body(locals: u32, pattern: &[u8], len: usize) -> Vec<u8> {
    let mut b = Vec::new();
    if locals == 0 {
        b.push(0);
    } else {
        b.push(1);
        leb(u64::from(locals), &mut b);
        b.push(0x7e);
    }
    while b.len() + pattern.len() < len {
        b.extend_from_slice(pattern);
    }
    b.push(0x0b);
    b
}

const FUNCTION_MAX: usize = 7_654_321;

fn shape(name: &str) -> Vec<u8> {
    match name {
        "functions" => component_with_functions(MAX_FUNCTIONS as u32),
        // i32.const 1; drop
        "one-giant-function" => component_of(&[body(0, &[0x41, 1, 0x1a], FUNCTION_MAX)]),
        // local.get a; local.get b; i64.add; local.set c over 50,000 locals
        "many-locals" => {
            let mut pattern = Vec::new();
            for i in 0..2_000u64 {
                for op in [(0x20, i * 7 % 50_000), (0x20, i * 13 % 50_000)] {
                    pattern.push(op.0);
                    leb(op.1, &mut pattern);
                }
                pattern.push(0x7c);
                pattern.push(0x21);
                leb(i * 17 % 50_000, &mut pattern);
            }
            component_of(&[body(50_000, &pattern, FUNCTION_MAX)])
        }
        // nested blocks: block ... br_if 0 ... end, 1,000 deep, repeated
        "branches" => component_with_nested_blocks(FUNCTION_MAX),
        "code-budget" => {
            let bodies: Vec<Vec<u8>> = (0..12).map(|_| body(0, &[0x41, 1, 0x1a], 1 << 20)).collect();
            component_of(&bodies)
        }
        other => panic!("unknown shape {other}"),
    }
}

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// An in-memory store for Cranelift's incremental compilation cache.
#[derive(Debug, Default)]
struct MemoryStore(std::sync::Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>);

impl wasmtime::CacheStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.0.lock().ok()?.get(key).cloned().map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.0.lock().map(|mut m| m.insert(key.to_vec(), value)).is_ok()
    }
}

/// `--incremental A B`: compiles B alone, then A and B on an engine sharing
/// one incremental cache: what compiling B costs when A's functions (the same
/// language runtime) were compiled before.
fn incremental(a: &str, b: &str) {
    let (a, b) = (std::fs::read(a).expect("A"), std::fs::read(b).expect("B"));
    let engine = |store: Option<std::sync::Arc<MemoryStore>>| {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true).cranelift_opt_level(wasmtime::OptLevel::Speed);
        if let Some(store) = store {
            config.enable_incremental_compilation(store).expect("incremental");
        }
        wasmtime::Engine::new(&config).expect("engine")
    };
    let time = |engine: &wasmtime::Engine, bytes: &[u8]| {
        let start = Instant::now();
        wasmtime::component::Component::new(engine, bytes).expect("compiles");
        start.elapsed().as_secs_f64()
    };
    let alone = time(&engine(None), &b);
    let store = std::sync::Arc::new(MemoryStore::default());
    let shared = engine(Some(store.clone()));
    let first = time(&shared, &a);
    let entries = store.0.lock().map(|m| (m.len(), m.values().map(Vec::len).sum::<usize>())).unwrap_or_default();
    let second = time(&shared, &b);
    let again = time(&shared, &b);
    println!("| B alone s | A with an empty cache s | B after A s | B again s | cache entries after A | cache MiB |");
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {alone:.2} | {first:.2} | {second:.2} | {again:.2} | {} | {:.1} |",
        entries.0,
        entries.1 as f64 / 1048576.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--incremental") {
        incremental(&args[2], &args[3]);
        return;
    }
    if let Some(name) = args.get(2).filter(|_| args[1] == "--shape") {
        let bytes = shape(name);
        let engine = PolicyEngine::new().expect("engine");
        let before = peak_kib();
        let start = Instant::now();
        let outcome = match engine.compile(&bytes) {
            Ok(_) => "compiled".to_owned(),
            Err(e) => e.to_string().chars().take(80).collect(),
        };
        let elapsed = start.elapsed();
        println!(
            "| {name} | {:.1} | {:.2} | {} | {} | {} |",
            bytes.len() as f64 / 1048576.0,
            elapsed.as_secs_f64(),
            before / 1024,
            peak_kib() / 1024,
            outcome
        );
        return;
    }
    println!("| shape | MiB | compile s | RSS before MiB | peak RSS MiB | outcome |");
    println!("|---|---:|---:|---:|---:|---|");
    let shapes = ["functions", "code-budget", "one-giant-function", "many-locals", "branches"];
    for name in args.get(1).map_or(shapes.to_vec(), |s| s.split(',').collect()) {
        let out = std::process::Command::new(&args[0]).args(["--shape", name]).output().expect("run");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            println!(
                "| {name} | | | | | failed: {} |",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
            );
        }
    }
}

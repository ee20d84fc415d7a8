//! Cranelift against Winch (wasmtime's baseline compiler) for policies: the
//! time to compile a component on one core (as the background compiler of a
//! cold start does), the size of its artifact, and the latency of a decision
//! of the example deployment through the engine with each compiler's code.
//! Prints a Markdown table.
//!
//! `cargo run --release -p exum-bench --bin compilers [components] [calls]`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use exum_bench::{CALLS, EnginePlane};
use exum_router::policy::STANDARD_COMPONENT;
use exum_router::policy::engine::{Compiler, PolicyEngine};
use exum_router_tests::{component_variant, components};

fn p50(mut samples: Vec<Duration>) -> f64 {
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let pilot = std::fs::read(components::PILOT_GROUP).expect("pilot-group");
    println!(
        "| compiler | pilot-group compile p50 ms | standard compile p50 ms | artifact KiB | decision p50 µs ({}) |",
        CALLS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    );
    println!("|---|---:|---:|---:|---|");
    for compiler in [Compiler::Cranelift, Compiler::Winch] {
        let engine = PolicyEngine::with_compiler(compiler).expect("engine");
        let cache = tempfile::tempdir().expect("tempdir");
        engine.set_disk_cache(cache.path().to_owned()).expect("cache");
        let mut pilot_times = Vec::new();
        let mut standard_times = Vec::new();
        for i in 0..n {
            let bytes = component_variant(&pilot, i + 1);
            let start = Instant::now();
            black_box(engine.compile_in_background(&bytes).expect("compiles"));
            pilot_times.push(start.elapsed());
            let bytes = component_variant(STANDARD_COMPONENT, i + 1);
            let start = Instant::now();
            black_box(engine.compile_in_background(&bytes).expect("compiles"));
            standard_times.push(start.elapsed());
        }
        // The artifacts' mean size (pilot-group and standard variants).
        let files: Vec<u64> = std::fs::read_dir(cache.path())
            .expect("cache")
            .flatten()
            .filter_map(|e| e.metadata().ok().map(|m| m.len()))
            .collect();
        let size = files.iter().sum::<u64>() as usize / files.len().max(1);
        let plane = EnginePlane::deployment_with(Arc::new(engine));
        let mut latencies = Vec::new();
        for (_, ruri) in CALLS {
            let (tenant, policy, req) = plane.call(ruri);
            for _ in 0..calls / 10 {
                black_box(policy.route(&tenant, &req));
            }
            let mut samples = Vec::with_capacity(calls);
            for _ in 0..calls {
                let start = Instant::now();
                black_box(policy.route(&tenant, black_box(&req)));
                samples.push(start.elapsed());
            }
            latencies.push(format!("{:.2}", p50(samples) * 1e3));
        }
        println!(
            "| {compiler:?} | {:.1} | {:.1} | {} | {} |",
            p50(pilot_times),
            p50(standard_times),
            size / 1024,
            latencies.join(" / ")
        );
    }
}

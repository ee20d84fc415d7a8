//! Policies in JavaScript and Python beside the Rust standard policy, per
//! language: the component's size, its compile time with Cranelift and with
//! Winch (the router's engine, every core), the time to create and
//! initialise an instance (what the pool saves every call), the linear memory
//! of an instance, and the decision latency through the engine with pooled
//! instances, from Winch's code (the quick tier a new large component serves
//! from first) and from Cranelift's. The JavaScript and Python policies are the test probes
//! (`tests/polyglot/`): a directory lookup, then the standard decision for a
//! user (`bob`) or a 404 for nobody. Prints a Markdown table.
//!
//! `cargo run --release -p exum-bench --bin polyglot [calls]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use exum_bench::EnginePlane;
use exum_router::control::Tenant;
use exum_router::control::config::{Limits, PolicySource};
use exum_router::policy::engine::{Compiler, PolicyEngine};
use exum_router_tests::{components, polyglot};

fn percentile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort_unstable();
    samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1e6
}

fn compile_ms(compiler: Compiler, bytes: &[u8]) -> f64 {
    let engine = PolicyEngine::with_compiler(compiler).expect("engine");
    let start = Instant::now();
    engine.compile(bytes).expect("compiles");
    start.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let calls: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(5_000);
    let plane = EnginePlane::deployment();
    let languages = [
        ("Rust (standard policy)", components::STANDARD),
        ("JavaScript (componentize-js 0.23)", polyglot::path(polyglot::JS_PROBE)),
        ("Python (componentize-py 0.25.1)", polyglot::path(polyglot::PY_PROBE)),
    ];
    println!(
        "| policy | component MiB | compile s Cranelift | compile s Winch | new instance ms | instance memory MiB | \
         {calls} decisions: bob p50 µs | bob p99 µs | nobody p50 µs | nobody p99 µs | quick tier (Winch): nobody p50 µs | p99 µs |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, path) in languages {
        let bytes = std::fs::read(path).expect("the component");
        let cranelift = compile_ms(Compiler::Cranelift, &bytes) / 1e3;
        let winch = compile_ms(Compiler::Winch, &bytes) / 1e3;
        let (base, _, _) = plane.call("sip:bob@contoso.com;opaque=app:voicemail");
        let mut config = base.config.clone();
        config.policy = PolicySource::File(path.into());
        config.limits = Limits {
            deadline: Duration::from_millis(100),
            runtime_deadline: Duration::from_millis(100),
            memory_bytes: 256 << 20,
            quarantine_after: 1000,
            ..Limits::default()
        };
        let tenant = Arc::new(Tenant { config, directory: base.directory.clone() });
        let policy = plane.registry.install_configured(&tenant);
        assert_eq!(policy.load_error, None, "{name} loads");
        let version = policy.own.clone().expect("its own version");
        let (_, _, bob) = plane.call("sip:bob@contoso.com;opaque=app:voicemail");
        let (_, _, nobody) = plane.call("sip:nobody@contoso.com;opaque=app:voicemail");
        let decide = |req| {
            let start = Instant::now();
            let v = policy.route(&tenant, req);
            assert!(
                matches!(
                    v.decided_by,
                    exum_router::policy::DecidedBy::Policy { .. } | exum_router::policy::DecidedBy::Standard
                ),
                "{name}: {:?}",
                v.decided_by
            );
            start.elapsed()
        };
        // Served from the quick tier until Cranelift's code replaces it.
        let quick = if version.compiler() == Some(Compiler::Winch) {
            let mut samples: Vec<Duration> = (0..calls.min(2_000)).map(|_| decide(&nobody)).collect();
            let quick = (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99));
            while version.compiler() != Some(Compiler::Cranelift) {
                std::thread::sleep(Duration::from_millis(50));
            }
            format!("{:.1} | {:.1}", quick.0, quick.1)
        } else {
            "- | -".to_owned()
        };
        let mut fresh: Vec<Duration> = (0..20)
            .map(|_| {
                let start = Instant::now();
                let _ = version.route_on_fresh_instance(&tenant, &bob);
                start.elapsed()
            })
            .collect();
        let memory = version.instance_memory(&tenant, &bob).expect("an instance") as f64 / 1048576.0;
        let latency = |req| {
            for _ in 0..calls / 10 {
                decide(req);
            }
            let mut samples: Vec<Duration> = (0..calls).map(|_| decide(req)).collect();
            (percentile(&mut samples, 0.5), percentile(&mut samples, 0.99))
        };
        let (bob50, bob99) = latency(&bob);
        let (nobody50, nobody99) = latency(&nobody);
        println!(
            "| {name} | {:.1} | {cranelift:.2} | {winch:.2} | {:.2} | {memory:.1} | {bob50:.1} | {bob99:.1} | {nobody50:.1} | {nobody99:.1} | {quick} |",
            bytes.len() as f64 / 1048576.0,
            percentile(&mut fresh, 0.5) / 1e3,
        );
    }
}

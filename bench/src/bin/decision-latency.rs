//! Latency distribution of one standard-policy decision, through the engine with
//! a reused instance and natively, measured per call: p50, p90, p99 and the
//! ratios. Prints a Markdown table. "Native" decides a request made from its
//! record on each call, as a component call does (see `native_route`); the
//! row with the request reused shows what its cached fields save.
//!
//! `cargo run --release -p exum-bench --bin decision-latency [calls]`

use std::hint::black_box;
use std::time::{Duration, Instant};

use exum_bench::{CALLS, EnginePlane, install_native_host, native_request, native_route};

fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_nanos() as f64 / 1000.0;
    [at(0.50), at(0.90), at(0.99)]
}

fn measure(calls: usize, mut f: impl FnMut()) -> [f64; 3] {
    for _ in 0..calls / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        f();
        samples.push(start.elapsed());
    }
    percentiles(samples)
}

fn main() {
    let calls: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let plane = EnginePlane::deployment();
    install_native_host();
    println!("| call | path | p50 µs | p90 µs | p99 µs |");
    println!("|---|---|---:|---:|---:|");
    for (name, ruri) in CALLS {
        let (tenant, policy, req) = plane.call(ruri);
        let engine = measure(calls, || {
            black_box(policy.route(&tenant, black_box(&req)));
        });
        let native_req = native_request(ruri);
        let native = measure(calls, || {
            black_box(native_route(black_box(native_req.wire())));
        });
        let parsed_once = measure(calls, || {
            black_box(exum_policy_standard::route(black_box(&native_req)));
        });
        let standard = plane.registry.standard().clone();
        let fresh = measure(calls / 20, || {
            black_box(standard.route_on_fresh_instance(&tenant, black_box(&req)).ok());
        });
        for (path, p) in [
            ("engine, reused instance", engine),
            ("engine, fresh instance", fresh),
            ("native", native),
            ("native, request reused (fields parsed once)", parsed_once),
        ] {
            println!("| {name} | {path} | {:.2} | {:.2} | {:.2} |", p[0], p[1], p[2]);
        }
        println!(
            "| {name} | ratio engine/native | {:.1}× | {:.1}× | {:.1}× |",
            engine[0] / native[0],
            engine[1] / native[1],
            engine[2] / native[2]
        );
        println!("| {name} | ratio fresh/reused | {:.1}× | | |", fresh[0] / engine[0]);
    }
}

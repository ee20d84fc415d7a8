//! Where the time of one policy decision goes: a policy call that does nothing,
//! one import call, the standard policy called directly, the registry's whole
//! path, and decision validation. Mean of many calls each.
//!
//! `cargo run --release -p exum-bench --bin call-breakdown`

use std::hint::black_box;
use std::time::Instant;

use exum_bench::EnginePlane;
use exum_router::control::config::{Fallback, Limits};
use exum_router_tests::{components, tenant_with_policy};

fn mean_us(n: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64 / 1000.0
}

fn main() {
    let plane = EnginePlane::deployment();
    let (tenant, policy, req) = plane.call("sip:alice@contoso.com;opaque=app:voicemail");
    let bytes = std::fs::read(components::HOSTILE).expect("the hostile fixture is built by exum-router-tests");
    let fixture = |mode: &str| {
        let t = tenant_with_policy("fixture", components::HOSTILE, mode, Fallback::Standard, Limits::default());
        plane.registry.load_bytes(&t, &bytes, "hostile.wasm".into()).expect("loads")
    };
    let noop = fixture("ok");
    let flood = fixture("flood:100");
    let standard = plane.registry.standard().clone();
    let decision = standard.route(&tenant, &req).expect("decides");

    let call = mean_us(200_000, || {
        black_box(noop.route(&tenant, &req).ok());
    });
    let import = (mean_us(20_000, || {
        black_box(flood.route(&tenant, &req).ok());
    }) - call)
        / 100.0;
    println!("| step | mean µs |");
    println!("|---|---:|");
    println!("| policy call doing nothing (request in, `standard` out) | {call:.2} |");
    println!("| one import call (`lookup-user`, no match) | {import:.2} |");
    println!(
        "| standard policy, called directly | {:.2} |",
        mean_us(200_000, || {
            black_box(standard.route(&tenant, &req).ok());
        })
    );
    println!(
        "| standard policy through the registry (pool, validation, stats) | {:.2} |",
        mean_us(200_000, || {
            black_box(policy.route(&tenant, &req));
        })
    );
    println!(
        "| decision validation alone | {:.2} |",
        mean_us(200_000, || {
            black_box(exum_router::policy::decision::validate(&decision).ok());
        })
    );
}

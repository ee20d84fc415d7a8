//! Criterion benchmarks of one policy decision: the standard policy through the
//! engine (reused instance, fresh instance) against the same crate compiled
//! natively.
//!
//! `cargo bench -p exum-bench --bench policy`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use exum_bench::{CALLS, EnginePlane, install_native_host, native_request, native_route};

fn decisions(c: &mut Criterion) {
    let plane = EnginePlane::deployment();
    install_native_host();
    let mut group = c.benchmark_group("standard_decision");
    for (name, ruri) in CALLS {
        let (tenant, policy, req) = plane.call(ruri);
        group.bench_function(format!("{name}/engine_reused_instance"), |b| {
            b.iter(|| black_box(policy.route(&tenant, black_box(&req))))
        });
        let standard = plane.registry.standard().clone();
        group.bench_function(format!("{name}/engine_fresh_instance"), |b| {
            b.iter(|| black_box(standard.route_on_fresh_instance(&tenant, black_box(&req))))
        });
        let native = native_request(ruri);
        group
            .bench_function(format!("{name}/native"), |b| b.iter(|| black_box(native_route(black_box(native.wire())))));
    }
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);

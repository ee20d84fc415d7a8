//! What the policy lifecycle costs a decision on the request path: one
//! tenant's `route` (the standard policy for a hosted user, through the
//! registry) plain, with every call recorded, with a shadow candidate (the
//! copy handed to the shadow thread; how many it compared and dropped), and
//! with a canary taking half the calls. Per call: p50, p90, p99. Prints a
//! Markdown table.
//!
//! `cargo run --release -p exum-bench --bin lifecycle [calls]`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use exum_bench::EnginePlane;
use exum_router::control::Tenant;
use exum_router::policy::candidate::{CanaryRule, Mode};
use exum_router::policy::contract::Request;
use exum_router::policy::record::{RecordSettings, Recorder};
use exum_router::policy::{CandidateSource, STANDARD_COMPONENT, TenantPolicy};

fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_nanos() as f64 / 1000.0;
    [at(0.50), at(0.90), at(0.99)]
}

/// `calls` decisions, each with its own Call-ID, timed one by one.
fn measure(calls: usize, tenant: &Arc<Tenant>, policy: &TenantPolicy, reqs: &[Request]) -> [f64; 3] {
    for r in reqs.iter().take(calls / 10) {
        black_box(policy.route(tenant, r));
    }
    let mut samples = Vec::with_capacity(calls);
    for r in reqs.iter().take(calls) {
        let start = Instant::now();
        black_box(policy.route(tenant, black_box(r)));
        samples.push(start.elapsed());
    }
    percentiles(samples)
}

fn main() {
    let calls: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let plane = EnginePlane::deployment();
    let ruri = "sip:alice@contoso.com;opaque=app:voicemail";
    let (tenant, _, req) = plane.call(ruri);
    // One request view per call, each its own Call-ID (canary and sampling go by it).
    let call_id = exum_router::policy::view::text(&req, req.call_id).to_owned();
    let reqs: Vec<Request> = (0..calls)
        .map(|i| {
            let mut r = req.clone();
            let id = format!("{i:08}-{call_id}");
            let at = r.call_id.start as usize;
            r.head.replace_range(at..at + r.call_id.len as usize, &id);
            r.call_id.len = id.len() as u32;
            // Spans after the Call-ID keep their place only if it did not grow:
            // nothing after it is read by the standard policy for this call.
            r
        })
        .collect();
    println!("| path | p50 µs | p90 µs | p99 µs | note |");
    println!("|---|---:|---:|---:|---|");
    let row =
        |name: &str, p: [f64; 3], note: &str| println!("| {name} | {:.2} | {:.2} | {:.2} | {note} |", p[0], p[1], p[2]);

    let plain = plane.registry.get(&tenant);
    row("serving only", measure(calls, &tenant, &plain, &reqs), "");

    let dir = tempfile::tempdir().expect("tempdir");
    let settings = RecordSettings { dir: dir.path().to_path_buf(), max_bytes_per_tenant: 256 << 20 };
    let recorder = Recorder::start(settings, Default::default(), Default::default()).expect("recorder");
    plane.registry.set_recorder(Some(recorder.clone()));
    let mut c = tenant.config.clone();
    c.record_decisions = 1.0;
    let recording = Arc::new(Tenant { config: c, directory: tenant.directory.clone() });
    let policy = plane.registry.install(&recording, None, None);
    let p = measure(calls, &recording, &policy, &reqs);
    recorder.flush();
    row("every call recorded", p, &format!("{} written, {} dropped", recorder.written.get(), recorder.dropped.get()));
    plane.registry.set_recorder(None);
    plane.registry.install(&tenant, None, None);

    let shadow = CandidateSource::Bytes { bytes: STANDARD_COMPONENT.to_vec(), source: "bench".into() };
    let policy = plane.registry.start_candidate(&tenant, shadow, Mode::Shadow, CanaryRule::default()).expect("shadow");
    let p = measure(calls, &tenant, &policy, &reqs);
    let c = policy.candidate.clone().expect("candidate");
    // The shadow thread finishes what it queued.
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.compared.load(Ordering::Relaxed) + c.dropped.load(Ordering::Relaxed) < (calls + calls / 10) as u64
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    row(
        "shadow candidate",
        p,
        &format!(
            "{} compared, {} dropped (queue full)",
            c.compared.load(Ordering::Relaxed),
            c.dropped.load(Ordering::Relaxed)
        ),
    );
    plane.registry.abandon(&tenant).expect("abandon");

    let canary = CandidateSource::Bytes { bytes: STANDARD_COMPONENT.to_vec(), source: "bench".into() };
    let policy = plane
        .registry
        .start_candidate(&tenant, canary, Mode::Canary { share: 0.5 }, CanaryRule::default())
        .expect("canary");
    let p = measure(calls, &tenant, &policy, &reqs);
    let c = policy.candidate.clone().expect("candidate");
    row("canary, half the calls", p, &format!("{} decided by the canary", c.lane.decisions.get()));
}

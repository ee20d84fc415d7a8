//! The whole request path up to the decision: parse, tenant by domain, request
//! view, the standard policy (and the example tenants' policies) through the
//! engine, the forwarding edits, on the shipped example deployment. Arbitrary
//! bytes must give a decision or a clear error, never a crash.
#![no_main]

use std::sync::OnceLock;

use exum_router::tools::{SimulateOptions, Simulator};
use libfuzzer_sys::fuzz_target;

fn simulator() -> &'static Simulator {
    static SIMULATOR: OnceLock<Simulator> = OnceLock::new();
    SIMULATOR.get_or_init(|| {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deployment/router.toml");
        Simulator::new(&config, &[]).expect("the example deployment loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let fail_all = data.first().is_some_and(|b| b & 1 == 1);
    let options = SimulateOptions { fail_all, ..SimulateOptions::default() };
    let _ = simulator().run("fuzz", data, &options);
});

//! The router's CPU per call under sipp load with the tenant's policy in
//! Rust (the standard policy), JavaScript and Python (the test probes of
//! `tests/polyglot/`: a directory lookup, then the standard decision), each in
//! a router of its own (release build), then the three side by side in one
//! router (three tenants, a third of the calls each); the same calls: sipp
//! places `calls` calls at `rate` per second to on-premises users behind a
//! sipp UAS. Prints a Markdown table: calls answered and failed, the router's
//! CPU seconds, and its CPU per call.
//!
//! `cargo build --release && cargo run --release -p exum-bench --bin polyglot-load [calls] [rate]`

use std::process::{Command, Stdio};
use std::time::Duration;

use exum_bench::attack::cpu_seconds;
use exum_bench::harness::{bound_within, on_premises_deployment, serve_in, stop};
use exum_router_tests::sipp::stat;
use exum_router_tests::{components, polyglot};

const PROXY: u16 = 5980;
const UM: u16 = 5981;
const UAC: u16 = 5982;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().ok());
    let calls = args.next().flatten().unwrap_or(3_000);
    let rate = args.next().flatten().unwrap_or(150);
    println!("| policy | calls | answered | failed | router CPU s | CPU per call µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (rust, js, py) = (components::STANDARD, polyglot::path(polyglot::JS_PROBE), polyglot::path(polyglot::PY_PROBE));
    let single = |path| vec![("contoso", path)];
    for (name, tenants) in [
        ("Rust (standard policy)", single(rust)),
        ("JavaScript", single(js)),
        ("Python", single(py)),
        (
            "Rust, JavaScript and Python tenants in one router",
            vec![("contoso", rust), ("fabrikam", js), ("litware", py)],
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        on_premises_deployment(d, &["uac.xml", "uas.xml"], 20, UM, None);
        if tenants.len() > 1 {
            spread_over(d, &tenants, 21);
        }
        let mut config = format!(
            "directory = \"directory.toml\"\n[[listen]]\naddress = \"127.0.0.1:{PROXY}\"\ntransports = [\"udp\"]\n\
             [probes]\nenabled = false\n"
        );
        for (id, path) in &tenants {
            config.push_str(&format!(
                "[[tenant]]\nid = \"{id}\"\ndomains = [\"{id}.com\"]\npeers = [\"127.0.0.0/8\"]\npolicy = {path:?}\n"
            ));
        }
        std::fs::write(d.join("router.toml"), config).expect("write");
        let mut uas = Command::new("sipp")
            .args(["-sf", "uas.xml", "-i", "127.0.0.1", "-p", &UM.to_string(), "-nostdin", "-buff_size", "4194304"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp (apt-get install -y sip-tester)");
        let router = serve_in(d);
        // It binds once the start has compiled the policy (a runtime's worth of
        // code takes seconds on one core).
        assert!(bound_within(PROXY, Duration::from_secs(120)), "the router did not bind {PROXY}");
        // The start compiles the policy (up to policy_start_wait) before it
        // binds; a few calls first put instances in the pool.
        let run = |n: u64, stats: &str| {
            Command::new("sipp")
                .arg(format!("127.0.0.1:{PROXY}"))
                .args(["-sf", "uac.xml", "-inf", "users.csv", "-i", "127.0.0.1", "-p", &UAC.to_string()])
                .args(["-m", &n.to_string(), "-r", &rate.to_string(), "-nostdin", "-buff_size", "4194304"])
                .args(["-timeout", "300s", "-trace_stat", "-stf", stats, "-fd", "1"])
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("sipp UAC")
        };
        run(rate, "warm.csv");
        let before = cpu_seconds(router.id());
        run(calls, "uac.csv");
        let cpu = cpu_seconds(router.id()) - before;
        let answered = stat(&d.join("uac.csv"), "SuccessfulCall(C)");
        let failed = stat(&d.join("uac.csv"), "FailedCall(C)");
        println!("| {name} | {calls} | {answered} | {failed} | {cpu:.2} | {:.0} |", cpu * 1e6 / calls as f64);
        stop(router);
        let _ = uas.kill();
        let _ = uas.wait();
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Users of every tenant in `tenants`, each on a dial plan whose UM server is
/// the sipp UAS, and sipp's list of them in turn: a call for each tenant in
/// every `tenants.len()` calls.
fn spread_over(d: &std::path::Path, tenants: &[(&str, &str)], users: usize) {
    let mut list = String::from("SEQUENTIAL\n");
    let mut directory = String::new();
    for i in 0..users {
        let id = tenants[i % tenants.len()].0;
        list.push_str(&format!("user{i};{id}.com\n"));
        directory.push_str(&format!(
            "[[tenants.{id}.users]]\nsip = \"sip:user{i}@{id}.com\"\neum = \"eum:user{i}@{id}.com;phone-context=DP1\"\n"
        ));
    }
    for (id, _) in tenants {
        directory.push_str(&format!(
            "[[tenants.{id}.dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{{ uri = \"sip:127.0.0.1:{UM}\" }}]\n"
        ));
    }
    std::fs::write(d.join("users.csv"), list).expect("write");
    std::fs::write(d.join("directory.toml"), directory).expect("write");
}

//! Start-up time and resident memory with many tenants, each with a policy file
//! of its own (variants of the pilot-group example: the same code with a custom
//! section that makes every file's hash different). Measures a cold start (an
//! empty precompiled cache) and a warm start (a second process reading the cache).
//!
//! `cargo run --release -p exum-bench --bin many-tenants -- <tenants> <dir> [cold|warm] [wait_s]`
//! With `cold` (the default), generates the deployment in `<dir>` and starts
//! with an empty cache; with `warm`, starts from what the cold run left there.
//! `wait_s` is the deployment's `policy_start_wait_s` (20 by default): how long
//! the start waits for policies to compile before it serves. After the start,
//! waits until every policy is compiled (the backlog empty). Prints one
//! Markdown row: time to serving, RSS then, time until every policy is
//! compiled, the peak RSS (VmHWM).

use std::time::Instant;

use exum_router::server::Server;
use exum_router_tests::{component_variant as variant, components};

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/exum-many".into()));
    let warm = args.next().as_deref() == Some("warm");
    let wait: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20.0);
    if !warm {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
        let base = std::fs::read(components::PILOT_GROUP).expect("component");
        let mut config = String::from(
            "directory = \"directory.toml\"\npolicy_dir = \"policies\"\npolicy_cache = \"cache\"\n\
             policy_start_wait_s = WAIT\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n",
        );
        for i in 0..n {
            config.push_str(&format!(
                "[[tenant]]\nid = \"t{i}\"\ndomains = [\"t{i}.example.com\"]\npolicy_config = \"sip:pilot@t{i}.example.com\"\n"
            ));
            std::fs::write(dir.join(format!("policies/t{i}.wasm")), variant(&base, i)).expect("write");
        }
        std::fs::write(dir.join("router.toml"), config).expect("write");
        std::fs::write(dir.join("directory.toml"), "").expect("write");
    }
    let config = std::fs::read_to_string(dir.join("router.toml")).expect("router.toml");
    let config: String = config
        .lines()
        .map(|l| {
            if l.starts_with("policy_start_wait_s") {
                format!("policy_start_wait_s = {wait}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(dir.join("router.toml"), config).expect("write");

    let start = Instant::now();
    let server = Server::start(&dir.join("router.toml")).await.expect("starts");
    let elapsed = start.elapsed();
    let after = rss_mib();
    let left = server.metrics.policy_compile_backlog.get();
    // Every policy compiled: the backlog drains (polled; this is a benchmark).
    while server.metrics.policy_compile_backlog.get() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let all = start.elapsed();
    let engine = server.policy.engine();
    let loaded = server.policy.all().iter().filter(|p| p.own.is_some()).count();
    println!(
        "| {n} | {} | {wait} s | {:.2} s | {left} | {:.0} MiB | {:.2} s | {:.0} MiB | {} compiled, {} read from the cache at start, {loaded} policies |",
        if warm { "warm" } else { "cold" },
        elapsed.as_secs_f64(),
        after,
        all.as_secs_f64(),
        status_mib("VmHWM:"),
        engine.compilations.get(),
        engine.disk_hits.get(),
    );
}

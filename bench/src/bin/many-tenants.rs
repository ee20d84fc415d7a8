//! Start-up time and resident memory with many tenants, each with a policy file
//! of its own (variants of the pilot-group example: the same code with a custom
//! section that makes every file's hash different). Measures a cold start (an
//! empty precompiled cache) and a warm start (a second process reading the cache).
//!
//! `cargo run --release -p exum-bench --bin many-tenants -- <tenants> <dir> [cold|warm|fleet] [wait_s]`
//! With `cold` (the default), generates the deployment in `<dir>` and starts
//! with an empty cache; with `warm`, starts from what the cold run left there;
//! with `fleet`, starts as a new instance of the fleet: its own cache emptied,
//! the artifacts the cold run put in the fleet's shared cache
//! (`[compile] shared_cache`) there.
//! `wait_s` is the deployment's `policy_start_wait_s` (20 by default): how long
//! the start waits for policies to compile before it serves. After the start,
//! waits until every policy is compiled (the backlog empty: each tenant decides
//! with its own policy, from Winch's code first), then until Cranelift's code
//! replaced Winch's everywhere. Prints one Markdown row: time to serving, RSS
//! then, time until every tenant has its own policy, time until every policy
//! runs Cranelift's code, the peak RSS (VmHWM).

use std::time::Instant;

/// The router's binary's allocator: compiles allocate much, and the figures
/// should be the router's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let mode = args.next().unwrap_or_else(|| "cold".into());
    let warm = mode != "cold";
    if mode == "fleet" {
        // A new instance of the fleet: an empty cache of its own, the
        // artifacts the cold run shared.
        let _ = std::fs::remove_dir_all(dir.join("cache"));
    }
    let wait: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20.0);
    if !warm {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
        let base = std::fs::read(components::PILOT_GROUP).expect("component");
        let mut config = String::from(
            "directory = \"directory.toml\"\npolicy_dir = \"policies\"\npolicy_cache = \"cache\"\n\
             policy_start_wait_s = WAIT\n[compile]\nshared_cache = \"shared\"\nshared_cache_key_file = \"fleet.key\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n",
        );
        for i in 0..n {
            config.push_str(&format!(
                "[[tenant]]\nid = \"t{i}\"\ndomains = [\"t{i}.example.com\"]\npolicy_config = \"sip:pilot@t{i}.example.com\"\n"
            ));
            std::fs::write(dir.join(format!("policies/t{i}.wasm")), variant(&base, i)).expect("write");
        }
        std::fs::write(dir.join("router.toml"), config).expect("write");
        std::fs::write(dir.join("directory.toml"), "").expect("write");
        std::fs::write(dir.join("fleet.key"), [7u8; 32]).expect("write");
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
    // Then Cranelift's code for those compiled with Winch first.
    while server.metrics.policy_optimize_backlog.get() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let optimized = start.elapsed();
    let engine = server.policy.engine();
    let loaded = server.policy.all().iter().filter(|p| p.own.is_some()).count();
    println!(
        "| {n} | {} | {wait} s | {:.2} s | {left} | {:.0} MiB | {:.2} s | {:.2} s | {:.0} MiB | {} compiled, {} taken from the fleet's shared cache, {} mapped from the disk cache, {loaded} policies |",
        mode,
        elapsed.as_secs_f64(),
        after,
        all.as_secs_f64(),
        optimized.as_secs_f64(),
        status_mib("VmHWM:"),
        engine.compilations.get(),
        server.metrics.policy_shared_cache_hits.get(),
        engine.disk_hits.get(),
    );
}

//! Start-up time and resident memory with many tenants, each with a policy file
//! of its own (variants of the pilot-group example: the same code with a custom
//! section that makes every file's hash different). Measures a cold start (an
//! empty precompiled cache) and a warm start (a second process reading the cache).
//!
//! `cargo run --release -p exum-bench --bin many-tenants -- <tenants> <dir> [warm]`
//! Without `warm`, generates the deployment in `<dir>` and starts cold; with
//! `warm`, starts from what the cold run left there. Prints one Markdown row.

use std::time::Instant;

use exum_router::server::Server;
use exum_router_tests::components;

/// The component with a custom section `exum-variant` holding `n`: valid, same
/// behaviour, different bytes.
fn variant(component: &[u8], n: usize) -> Vec<u8> {
    let name = b"exum-variant";
    let payload = n.to_le_bytes();
    let mut section = Vec::new();
    section.push(name.len() as u8);
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    let mut len = section.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        out.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&section);
    out
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/exum-many".into()));
    let warm = args.next().as_deref() == Some("warm");
    if !warm {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
        let base = std::fs::read(components::PILOT_GROUP).expect("component");
        let mut config = String::from(
            "directory = \"directory.toml\"\npolicy_dir = \"policies\"\npolicy_cache = \"cache\"\n\
             [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n",
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
    let before = rss_mib();
    let start = Instant::now();
    let server = Server::start(&dir.join("router.toml")).await.expect("starts");
    let elapsed = start.elapsed();
    let after = rss_mib();
    let engine = server.policy.engine();
    let loaded = server.policy.all().iter().filter(|p| p.own.is_some()).count();
    println!(
        "| {n} | {} | {:.2} s | {:.0} MiB | {:.0} MiB | {} compiled, {} read from the cache at start, {loaded} policies |",
        if warm { "warm" } else { "cold" },
        elapsed.as_secs_f64(),
        after,
        after - before,
        engine.compilations.get(),
        engine.disk_hits.get(),
    );
}

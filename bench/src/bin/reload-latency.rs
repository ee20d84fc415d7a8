//! Time from the atomic rename of a tenant's policy file to the first decision
//! made by the new version, over many replacements alternating two versions.
//! Prints p50/p90/p99/max.
//!
//! `cargo run --release -p exum-bench --bin reload-latency [replacements]`

use std::time::{Duration, Instant};

use exum_router::model::wire;
use exum_router::policy::DecidedBy;
use exum_router::server::Server;
use exum_router_tests::components;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    std::fs::write(
        dir.path().join("directory.toml"),
        "[[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{ uri = \"sip:127.0.0.1:9\" }]\n\
         [[tenants.contoso.dial_plans]]\nname = \"B\"\nphone_context = \"B\"\nservers = [{ uri = \"sip:127.0.0.1:10\" }]\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n",
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("starts");
    let versions = [std::fs::read(components::PLAN_A).expect("A"), std::fs::read(components::PLAN_B).expect("B")];
    let hashes = versions.iter().map(|b| exum_router::policy::engine::hex_sha256(b)).collect::<Vec<_>>();
    let text = "INVITE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@contoso.com>\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\n\r\n";
    let msg = wire::Message::parse(text.as_bytes().to_vec(), false, wire::DEFAULT_MAX_MESSAGE).expect("parses");
    let source = exum_router::model::Source {
        addr: ([192, 0, 2, 1], 5060).into(),
        transport: exum_router::model::Transport::Udp,
        tls_peer_name: None,
        local: None,
    };
    let req = exum_router::policy::view::request_view(&msg, &source).expect("view");
    let target = dir.path().join("policies/contoso.wasm");
    let tmp = dir.path().join("policies/.contoso.wasm.tmp");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let which = i % 2;
        std::fs::write(&tmp, &versions[which]).expect("write");
        let t0 = Instant::now();
        std::fs::rename(&tmp, &target).expect("rename");
        loop {
            let tenants = server.proxy.tenants();
            let tenant = tenants.by_id("contoso").expect("tenant");
            let policy = server.policy.get(tenant);
            let verdict = policy.route(tenant, &req);
            let by_new = matches!(verdict.decided_by, DecidedBy::Policy { .. })
                && policy.own.as_ref().is_some_and(|v| v.hash == hashes[which]);
            if by_new {
                samples.push(t0.elapsed());
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "version {which} never served");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)].as_secs_f64() * 1000.0;
    println!("| replacements | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|");
    println!("| {n} | {:.1} | {:.1} | {:.1} | {:.1} |", at(0.5), at(0.9), at(0.99), at(1.0));
}

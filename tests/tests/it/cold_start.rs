//! A cold start (no policy in the disk cache) with a backlog: the router serves
//! before its policies are compiled, each tenant from its fallback until its
//! own version is compiled; a called tenant's version is compiled before those
//! nobody called; compiled code leaves memory for the disk cache; a version
//! that does not compile is refused as it would be at a synchronous start.

use std::sync::Arc;

use exum_router::model::Transport;
use exum_router::model::wire::Name;
use exum_router::server::Server;
use exum_router_tests::json_body as body;
use exum_router_tests::peer::{UdpPeer, request};
use exum_router_tests::{component_variant, components, http_get, until};
use serde_json::{Value, json};

use crate::admin::sample;

const TENANTS: usize = 30;

/// A call to `bob@domain`: the final status the caller gets (retransmissions
/// of earlier calls' final responses, never acknowledged here, are skipped).
async fn call(caller: &UdpPeer, router: std::net::SocketAddr, domain: &str, id: &str) -> u16 {
    let text = request("INVITE", &format!("sip:bob@{domain}"), caller.addr, "UDP", id, &format!("z9hG4bK-{id}"));
    caller.send(router, &text).await;
    loop {
        let response = caller.final_response().await;
        if response.first(Name::CallId) == Some(id) {
            return response.status().expect("a status");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_serves_from_the_fallback_and_compiles_the_called_tenant_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    // Every tenant has a distinct component (the plan A fixture with a custom
    // section), so each one is a compilation; with an empty directory it
    // rejects with 503 ("dial plan missing"); the fallback rejects with 480.
    let plan_a = std::fs::read(components::PLAN_A).expect("plan A");
    let mut config = String::from(
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\npolicy_cache = \"cache\"\npolicy_start_wait_s = 0\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [probes]\nenabled = false\n[sip]\nt1_ms = 50\n",
    );
    for i in 0..TENANTS {
        config.push_str(&format!("[[tenant]]\nid = \"t{i}\"\ndomains = [\"t{i}.test\"]\nfallback = 480\n"));
        std::fs::write(dir.path().join(format!("policies/t{i}.wasm")), component_variant(&plan_a, i)).expect("write");
    }
    // One component that compiles but breaks the contract.
    config.push_str("[[tenant]]\nid = \"bad\"\ndomains = [\"bad.test\"]\nfallback = 480\n");
    std::fs::copy(components::FOREIGN_IMPORT, dir.path().join("policies/bad.wasm")).expect("copy");
    std::fs::write(dir.path().join("router.toml"), config).expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");

    let server = Arc::new(Server::start(&dir.path().join("router.toml")).await.expect("router starts"));
    let router = server.local_addr(Transport::Udp).expect("udp");
    let admin = server.admin_addr().expect("admin");
    let caller = UdpPeer::bind().await;
    let last = format!("t{}", TENANTS - 1);

    // Serving at once: the last tenant in the queue is still compiling, its
    // call decided by its fallback (not a fault: nothing is quarantined).
    let t = body(&http_get(admin, &format!("/tenants/{last}")).await);
    assert_eq!((&t["state"], &t["on_fallback"]), (&json!("compiling"), &json!("compiling")), "{t}");
    // Which tenants the fallback decides for, and how many: it among them.
    let listed = body(&http_get(admin, "/tenants?on_fallback=true").await);
    let listed: Vec<&str> =
        listed["tenants"].as_array().expect("tenants").iter().filter_map(|t| t["id"].as_str()).collect();
    assert!(listed.contains(&last.as_str()) && !listed.contains(&"bad"), "{listed:?}");
    let metrics = http_get(admin, "/metrics").await;
    let on_fallback = sample(&metrics, "exum_policy_on_fallback_tenants", &[("reason", "compiling")]);
    assert!(on_fallback >= 1.0, "{metrics}");
    assert_eq!(call(&caller, router, &format!("{last}.test"), "c1").await, 480);
    assert!(metrics.contains("exum_policy_compile_backlog "), "the backlog is exported");

    // Called, it goes first: it serves while tenants queued before it still wait.
    let tenant = server.proxy.tenants().by_id(&last).expect("tenant").clone();
    until("the called tenant's policy compiled", || server.policy.get(&tenant).state() == "active").await;
    let compiling = (0..TENANTS - 1)
        .filter(|i| {
            let t = server.proxy.tenants().by_id(&format!("t{i}")).expect("tenant").clone();
            server.policy.get(&t).state() == "compiling"
        })
        .count();
    assert!(compiling > 0, "a tenant queued before the called one is still compiling");
    assert_eq!(call(&caller, router, &format!("{last}.test"), "c2").await, 503, "its own policy decides");

    // Everything compiles (first with Winch); code nobody called left memory
    // for the disk cache.
    until("the backlog drained", || server.metrics.policy_compile_backlog.get() == 0).await;
    for i in 0..TENANTS {
        let t = body(&http_get(admin, &format!("/tenants/t{i}")).await);
        assert_eq!((&t["state"], &t["on_fallback"]), (&json!("active"), &Value::Null), "{t}");
    }
    // Then each again with Cranelift: the called tenant, loaded, runs the
    // optimised code; the quick artifacts leave the cache.
    optimised(&server).await;
    let t = body(&http_get(admin, &format!("/tenants/{last}")).await);
    assert_eq!((&t["policy"]["loaded"], &t["policy"]["compiler"]), (&json!(true), &json!("cranelift")), "{t}");
    assert_eq!(call(&caller, router, &format!("{last}.test"), "c4").await, 503, "its optimised code decides");
    // Each tenant's policy twice (Winch, Cranelift), the standard policy
    // once; the one outside the contract is refused before any compile.
    assert_eq!(server.metrics.policy_compilations.get(), 2 * TENANTS as u64 + 1);
    let listed = body(&http_get(admin, "/tenants?on_fallback=true").await);
    assert_eq!(listed["tenants"], json!([]), "nobody on the fallback any more");
    let metrics = http_get(admin, "/metrics").await;
    let on_fallback = sample(&metrics, "exum_policy_on_fallback_tenants", &[("reason", "compiling")]);
    assert!(on_fallback == 0.0 && metrics.contains("exum_policy_on_fallback_tenants{"), "{metrics}");
    let first = server.proxy.tenants().by_id("t0").expect("t0").clone();
    assert!(!server.policy.get(&first).own.as_ref().expect("own").is_loaded(), "t0's code is only on disk");
    assert_eq!(call(&caller, router, "t0.test", "c3").await, 503);
    let t0 = server.policy.get(&first).own.clone().expect("own");
    assert!(t0.is_loaded(), "mapped at its first call");
    assert_eq!(t0.compiler(), Some(exum_router::policy::engine::Compiler::Cranelift), "Cranelift's artifact mapped");
    let artifacts = std::fs::read_dir(dir.path().join("cache"))
        .expect("cache")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm")))
        .count();
    assert_eq!(artifacts, TENANTS + 1, "every tenant's component and the standard policy");

    // The one that breaks the contract is refused; the standard policy serves.
    let t = body(&http_get(admin, "/tenants/bad").await);
    assert_eq!(t["state"], "standard", "{t}");
    assert!(t["last_error"].as_str().is_some_and(|e| e.contains("outside the contract")), "{t}");
    let h = body(&http_get(admin, "/tenants/bad/policy/history").await);
    assert_eq!(h["versions"][0]["state"], "refused", "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_its_policies_within_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let plan_a = std::fs::read(components::PLAN_A).expect("plan A");
    let mut config = String::from(
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n",
    );
    for i in 0..4 {
        config.push_str(&format!("[[tenant]]\nid = \"t{i}\"\ndomains = [\"t{i}.test\"]\nfallback = 480\n"));
        std::fs::write(dir.path().join(format!("policies/t{i}.wasm")), component_variant(&plan_a, i)).expect("write");
    }
    std::fs::write(dir.path().join("router.toml"), &config).expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    // Without a disk cache, and within the default bound: every policy is
    // compiled (and kept in memory) when the start returns.
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    assert_eq!(server.metrics.policy_compile_backlog.get(), 0);
    for p in server.policy.all() {
        let own = p.own.as_ref().expect("own policy");
        assert!(own.is_loaded(), "{} compiled before the start returned", p.tenant_id);
    }
    let router = server.local_addr(Transport::Udp).expect("udp");
    let caller = UdpPeer::bind().await;
    assert_eq!(call(&caller, router, "t3.test", "w1").await, 503, "its own policy decides the first call");

    // A bound that is not a number of seconds is a configuration error naming the key.
    std::fs::write(dir.path().join("router.toml"), format!("policy_start_wait_s = -1\n{config}")).expect("write");
    let e = Server::start(&dir.path().join("router.toml")).await.expect_err("refused");
    let e = format!("{e:#}");
    assert!(e.contains("router.toml") && e.contains("policy_start_wait_s") && e.contains("0 to 3600"), "{e}");
}

/// A router's deployment of `TENANTS_SHARED` tenants whose policies are
/// distinct variants of plan A, with its own `policy_cache` and the fleet's
/// shared cache and key.
fn fleet_member(root: &std::path::Path, name: &str, key: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
    let plan_a = std::fs::read(components::PLAN_A).expect("plan A");
    let mut config = format!(
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\npolicy_cache = \"cache\"\npolicy_start_wait_s = 0\n\
         [compile]\nshared_cache = \"../shared\"\nshared_cache_key_file = \"../{key}\"\n\
         [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[probes]\nenabled = false\n[sip]\nt1_ms = 50\n",
    );
    for i in 0..TENANTS_SHARED {
        config.push_str(&format!("[[tenant]]\nid = \"t{i}\"\ndomains = [\"t{i}.test\"]\nfallback = 480\n"));
        std::fs::write(dir.join(format!("policies/t{i}.wasm")), component_variant(&plan_a, 100 + i)).expect("write");
    }
    std::fs::write(dir.join("router.toml"), config).expect("write");
    std::fs::write(dir.join("directory.toml"), "").expect("write");
    dir.join("router.toml")
}

const TENANTS_SHARED: usize = 4;

/// Waits until no policy compiled at start waits for its first code or for
/// Cranelift's. The optimise pass compiles one policy at a time beside
/// everything else a busy machine runs: bounded by minutes, not by `until`'s
/// seconds.
async fn optimised(server: &Server) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while server.metrics.policy_compile_backlog.get() != 0 || server.metrics.policy_optimize_backlog.get() != 0 {
        assert!(std::time::Instant::now() < deadline, "still compiling after 300 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts a fleet member and waits until every tenant runs Cranelift's code
/// (compiled or taken from the shared cache); its first call is decided by
/// the tenant's own policy.
async fn started(config: &std::path::Path) -> Server {
    let server = Server::start(config).await.expect("router starts");
    optimised(&server).await;
    let router = server.local_addr(Transport::Udp).expect("udp");
    let caller = UdpPeer::bind().await;
    for i in 0..TENANTS_SHARED {
        assert_eq!(call(&caller, router, &format!("t{i}.test"), &format!("s{i}")).await, 503, "t{i}'s own policy");
    }
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shares_its_compiled_policies_and_refuses_artifacts_its_key_did_not_tag() {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("fleet.key"), [7u8; 32]).expect("key");
    std::fs::write(root.path().join("other.key"), [9u8; 32]).expect("key");
    let shared = root.path().join("shared");
    let artifacts = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&shared)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect())
            .unwrap_or_default()
    };

    // The first router compiles everything and shares Cranelift's code
    // (every tenant's and the standard policy's; not Winch's).
    let first = started(&fleet_member(root.path(), "a", "fleet.key")).await;
    assert_eq!(first.metrics.policy_compilations.get(), 2 * TENANTS_SHARED as u64 + 1);
    assert_eq!(first.metrics.policy_shared_cache_hits.get(), 0);
    assert_eq!(artifacts().len(), TENANTS_SHARED + 1, "{:?}", artifacts());

    // A new instance with an empty cache compiles nothing: it starts warm.
    let second = started(&fleet_member(root.path(), "b", "fleet.key")).await;
    assert_eq!(second.metrics.policy_compilations.get(), 0, "nothing compiled");
    assert_eq!(second.metrics.policy_shared_cache_hits.get(), TENANTS_SHARED as u64 + 1);
    assert_eq!(second.metrics.policy_shared_cache_refused.get(), 0);

    // An artifact altered in the shared folder is refused, and that policy
    // compiled: the others are still taken.
    let plan_a = std::fs::read(components::PLAN_A).expect("plan A");
    let t0 = exum_router::policy::engine::hex_sha256(&component_variant(&plan_a, 100));
    let altered = artifacts()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&t0)))
        .expect("t0's artifact");
    let mut bytes = std::fs::read(&altered).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&altered, &bytes).expect("alter");
    let third = started(&fleet_member(root.path(), "c", "fleet.key")).await;
    assert_eq!(third.metrics.policy_shared_cache_refused.get(), 1);
    assert_eq!(third.metrics.policy_shared_cache_hits.get(), TENANTS_SHARED as u64);
    assert_eq!(third.metrics.policy_compilations.get(), 2, "the refused one compiled (Winch, Cranelift)");

    // A router with another key takes nothing: every artifact is refused.
    let stranger = started(&fleet_member(root.path(), "d", "other.key")).await;
    assert_eq!(stranger.metrics.policy_shared_cache_hits.get(), 0);
    assert_eq!(stranger.metrics.policy_shared_cache_refused.get(), TENANTS_SHARED as u64 + 1);
    assert_eq!(stranger.metrics.policy_compilations.get(), 2 * TENANTS_SHARED as u64 + 1);

    // The shared folder may not be the router's own cache, nor hold it: the
    // router's own artifacts are mapped without a tag.
    let config = fleet_member(root.path(), "e", "fleet.key");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("policy_cache = \"cache\"", "policy_cache = \"../shared/cache\""))
        .expect("write");
    let e = format!("{:#}", Server::start(&config).await.expect_err("refused"));
    assert!(e.contains("compile.shared_cache") && e.contains("one is in the other"), "{e}");
}

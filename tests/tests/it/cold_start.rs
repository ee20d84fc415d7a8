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

    // Everything compiles; code nobody called left memory for the disk cache.
    until("the backlog drained", || server.metrics.policy_compile_backlog.get() == 0).await;
    for i in 0..TENANTS {
        let t = body(&http_get(admin, &format!("/tenants/t{i}")).await);
        assert_eq!((&t["state"], &t["on_fallback"]), (&json!("active"), &Value::Null), "{t}");
    }
    let listed = body(&http_get(admin, "/tenants?on_fallback=true").await);
    assert_eq!(listed["tenants"], json!([]), "nobody on the fallback any more");
    let metrics = http_get(admin, "/metrics").await;
    let on_fallback = sample(&metrics, "exum_policy_on_fallback_tenants", &[("reason", "compiling")]);
    assert!(on_fallback == 0.0 && metrics.contains("exum_policy_on_fallback_tenants{"), "{metrics}");
    let first = server.proxy.tenants().by_id("t0").expect("t0").clone();
    assert!(!server.policy.get(&first).own.as_ref().expect("own").is_loaded(), "t0's code is only on disk");
    assert_eq!(call(&caller, router, "t0.test", "c3").await, 503);
    assert!(server.policy.get(&first).own.as_ref().expect("own").is_loaded(), "mapped at its first call");
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

//! The policy lifecycle through the admin API of a running router: a shadow
//! and canaries under sipp load (0 failed calls; automatic rollback), a
//! canary rolled back for its failed calls, and the version history with
//! rollback and its pin across a restart.

use std::path::Path;

use exum_router::model::Transport;
use exum_router::server::Server;
use exum_router::tools::{self, ReplayOptions};
use exum_router_tests::http_status as status;
use exum_router_tests::json_body as body;
use exum_router_tests::sipp::{sipp_address, stat};
use exum_router_tests::{components, http, http_get};
use serde_json::Value;

/// Polls the tenant's candidate until `condition` holds on it (20 s at most).
async fn candidate_until(admin: std::net::SocketAddr, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let read = async || body(&http_get(admin, "/tenants/contoso/policy/candidate").await);
    exum_router_tests::eventually(what, read, condition).await
}

/// A deployment in `dir`: contoso's users on dial plan A (`a_at`), dial plan
/// B at `b_at`, plan A serving from the watched directory, `policy_config`
/// given to every version (the hostile fixture reads it).
fn deployment(dir: &Path, a_at: std::net::SocketAddr, b_at: std::net::SocketAddr, policy_config: &str) {
    std::fs::create_dir_all(dir.join("policies")).expect("mkdir");
    let mut directory = String::new();
    let mut users = String::from("SEQUENTIAL\n");
    for i in 0..20 {
        directory.push_str(&format!(
            "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=A\"\n"
        ));
        users.push_str(&format!("user{i};contoso.com\n"));
    }
    directory.push_str(&format!(
        "[[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{{ uri = \"sip:{a_at}\", timeout_ms = 5000 }}]\n\
         [[tenants.contoso.dial_plans]]\nname = \"B\"\nphone_context = \"B\"\nservers = [{{ uri = \"sip:{b_at}\", timeout_ms = 5000 }}]\n"
    ));
    std::fs::write(dir.join("directory.toml"), directory).expect("write");
    std::fs::write(dir.join("users.csv"), users).expect("write");
    // A deadline well above the default 5 ms: these tests are about versions
    // and candidates, and a debug build's first call of a new version on a
    // loaded machine (its instance made then) may use more than 5 ms of CPU,
    // which would count as a fault of the candidate (seen once: a canary
    // rolled back for a fault instead of its failed calls).
    std::fs::write(
        dir.join("router.toml"),
        format!(
            "directory = \"directory.toml\"\npolicy_dir = \"policies\"\npolicy_cache = \"cache\"\n\
             [[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
             [admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n[probes]\nenabled = false\n\
             [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\npolicy_config = \"{policy_config}\"\n\
             limits = {{ deadline_ms = 100 }}\n"
        ),
    )
    .expect("write");
    std::fs::copy(components::PLAN_A, dir.join("policies/contoso.wasm")).expect("copy");
}

fn uas(dir: &Path, at: std::net::SocketAddr, stats: &str) -> std::process::Child {
    exum_router_tests::sipp::uas(dir, at)
        .args(["-timeout", "150s", "-trace_stat", "-stf", stats, "-fd", "1"])
        .spawn()
        .expect("sipp UAS starts (apt-get install -y sip-tester)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_and_canaries_under_sipp_load_lose_no_call_and_a_faulty_canary_is_rolled_back() {
    const CALLS: u64 = 1800;
    const RATE: u64 = 40;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_at, b_at, uac_at) = (sipp_address(), sipp_address(), sipp_address());
    // `panic`: the hostile fixture panics in every route; plans A and B ignore it.
    deployment(dir.path(), a_at, b_at, "panic");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let admin = server.admin_addr().expect("admin");
    let (mut uas_a, mut uas_b) = (uas(dir.path(), a_at, "a.csv"), uas(dir.path(), b_at, "b.csv"));
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, CALLS, RATE).spawn().expect("sipp UAC starts");

    // A shadow: plan B decides a copy of every new call; every one diverges
    // (other targets), and none is routed by it.
    let plan_b = std::fs::read(components::PLAN_B).expect("plan B");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate?mode=shadow", &plan_b).await;
    assert_eq!(status(&r), 201, "{r}");
    let c = candidate_until(admin, "100 shadow comparisons", |c| c["compared"].as_u64() >= Some(100)).await;
    assert_eq!(c["mode"], "shadow");
    let compared = c["compared"].as_u64().unwrap_or(0);
    assert_eq!(c["divergences"]["targets"].as_u64(), Some(compared), "{c}");
    assert_eq!(c["divergences"]["action"].as_u64(), Some(0), "{c}");
    assert_eq!(c["candidate"]["faults"].as_u64(), Some(0));
    let samples = c["samples"].as_array().expect("samples");
    assert!(!samples.is_empty() && samples.len() <= 20, "{c}");
    assert!(samples[0]["request"].as_str().is_some_and(|h| h.starts_with("INVITE sip:user")), "{c}");
    // A sample is two decision records that replay as recorded.
    let sample = http_get(admin, "/tenants/contoso/policy/candidate/samples/0").await;
    let file = dir.path().join("sample.json");
    std::fs::write(&file, sample.split("\r\n\r\n").nth(1).unwrap_or("")).expect("write");
    let components_dir = dir.path().join("cache/history/components");
    let report = tools::replay(&file, &ReplayOptions { components: Some(components_dir), ..Default::default() })
        .expect("replays");
    assert_eq!((report.differing, report.failed), (0, 0), "{}", report.text);
    assert!(report.text.contains("2 replayed: 2 same"), "{}", report.text);
    let r = http(admin, "DELETE", "/tenants/contoso/policy/candidate", b"").await;
    assert_eq!(status(&r), 200, "{r}");

    // A canary that faults on every call: the fallback (standard) decides
    // those calls, and the canary is rolled back once judged.
    let hostile = std::fs::read(components::HOSTILE).expect("hostile");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate?mode=canary&share=0.5&min_calls=10", &hostile).await;
    assert_eq!(status(&r), 201, "{r}");
    let c = candidate_until(admin, "the faulty canary's rollback", |c| c["state"] == "rolled_back").await;
    let reason = c["rollback_reason"].as_str().unwrap_or("");
    assert!(reason.starts_with("fault rate 100.0% against 0.0%"), "{c}");
    assert!(c["candidate"]["faults"].as_u64() >= Some(10), "{c}");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate/promote", b"").await;
    assert_eq!(status(&r), 409, "a rolled-back canary is not promoted: {r}");

    // A good canary takes its share of calls (to plan B), then is promoted.
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate?mode=canary&share=0.5", &plan_b).await;
    assert_eq!(status(&r), 201, "{r}");
    let c = candidate_until(admin, "the canary's calls", |c| c["candidate"]["calls"].as_u64() >= Some(30)).await;
    assert_eq!(c["state"], "running");
    assert_eq!(c["candidate"]["failed_calls"].as_u64(), Some(0), "{c}");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate/promote", b"").await;
    assert_eq!(status(&r), 200, "{r}");
    let serving = body(&r)["serving"].as_u64();
    let t = body(&http_get(admin, "/tenants/contoso").await);
    assert_eq!(t["policy"]["version"].as_u64(), serving);
    assert_eq!(t["candidate"], Value::Null);
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.contains("exum_policy_canary_rollbacks_total{tenant=\"contoso\"} 1"), "{metrics}");
    assert!(metrics.contains("exum_policy_info{tenant=\"contoso\",role=\"serving\""), "{metrics}");

    let out = tokio::task::spawn_blocking(move || uac.wait_with_output().expect("UAC ends")).await.expect("join");
    let (failed, succeeded) =
        (stat(&dir.path().join("uac.csv"), "FailedCall(C)"), stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)"));
    assert!(out.status.success(), "sipp UAC: {} ({succeeded} ok, {failed} failed)", out.status);
    assert_eq!((succeeded, failed), (CALLS, 0));
    server.stop();
    for child in [&mut uas_a, &mut uas_b] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (a, b) =
        (stat(&dir.path().join("a.csv"), "IncomingCall(C)"), stat(&dir.path().join("b.csv"), "IncomingCall(C)"));
    assert!(a > 0 && b > 0, "A {a}, B {b}");
}

/// A shadow never routes a call and its faults are its own: with no UM
/// server behind plan B, a call it routed would fail; a shadow that panics on
/// every request leaves the serving version unquarantined and the tenant's
/// fault counters at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_routes_no_call_and_its_faults_count_against_it_alone() {
    const CALLS: u64 = 900;
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens at plan B's address.
    let (a_at, b_at, uac_at) = (sipp_address(), sipp_address(), sipp_address());
    deployment(dir.path(), a_at, b_at, "panic");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let admin = server.admin_addr().expect("admin");
    let mut uas_a = uas(dir.path(), a_at, "a.csv");
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, CALLS, 30).spawn().expect("sipp UAC starts");

    let plan_b = std::fs::read(components::PLAN_B).expect("plan B");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate?mode=shadow", &plan_b).await;
    assert_eq!(status(&r), 201, "{r}");
    let c = candidate_until(admin, "50 shadow comparisons", |c| c["compared"].as_u64() >= Some(50)).await;
    assert_eq!(c["candidate"]["calls"].as_u64(), Some(0), "a shadow takes no call: {c}");
    let r = http(admin, "DELETE", "/tenants/contoso/policy/candidate", b"").await;
    assert_eq!(status(&r), 200, "{r}");

    let hostile = std::fs::read(components::HOSTILE).expect("hostile");
    let r = http(admin, "POST", "/tenants/contoso/policy/candidate?mode=shadow", &hostile).await;
    assert_eq!(status(&r), 201, "{r}");
    let c = candidate_until(admin, "the shadow's faults", |c| c["candidate"]["faults"].as_u64() >= Some(50)).await;
    // A fault is a fault, not a divergence.
    let divergences: u64 = ["action", "targets", "rewrite", "headers"]
        .iter()
        .map(|k| c["divergences"][k].as_u64().unwrap_or(u64::MAX))
        .sum();
    assert_eq!(divergences, 0, "{c}");
    let t = body(&http_get(admin, "/tenants/contoso").await);
    assert_eq!(t["quarantined"], Value::Bool(false), "{t}");
    assert_eq!(t["state"], "active", "{t}");
    assert_eq!(t["policy"]["stats"]["faults"].as_u64(), Some(0), "{t}");
    assert_eq!(t["stats"]["fallbacks"].as_u64(), Some(0), "{t}");
    let faults = t["stats"]["faults"].as_object().expect("faults");
    assert!(faults.values().all(|n| n.as_u64() == Some(0)), "{t}");

    let out = tokio::task::spawn_blocking(move || uac.wait_with_output().expect("UAC ends")).await.expect("join");
    let (failed, succeeded) =
        (stat(&dir.path().join("uac.csv"), "FailedCall(C)"), stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)"));
    assert!(out.status.success(), "sipp UAC: {} ({succeeded} ok, {failed} failed)", out.status);
    assert_eq!((succeeded, failed), (CALLS, 0), "every call went to plan A's UM server");
    server.stop();
    let _ = uas_a.kill();
    let _ = uas_a.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_whose_calls_fail_is_rolled_back_and_only_its_calls_failed() {
    const CALLS: u64 = 600;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_at, b_at, uac_at) = (sipp_address(), sipp_address(), sipp_address());
    // `reject:480`: the hostile fixture answers every call 480.
    deployment(dir.path(), a_at, b_at, "reject:480");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let admin = server.admin_addr().expect("admin");
    let mut uas_a = uas(dir.path(), a_at, "a.csv");
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, CALLS, 30).spawn().expect("sipp UAC starts");
    let hostile = std::fs::read(components::HOSTILE).expect("hostile");
    let path = "/tenants/contoso/policy/candidate?mode=canary&share=0.3&min_calls=10&failure_margin=0.2";
    let r = http(admin, "POST", path, &hostile).await;
    assert_eq!(status(&r), 201, "{r}");
    let c = candidate_until(admin, "the rollback", |c| c["state"] == "rolled_back").await;
    assert!(c["rollback_reason"].as_str().is_some_and(|r| r.starts_with("failed calls 100.0% against 0.0%")), "{c}");
    let out = tokio::task::spawn_blocking(move || uac.wait_with_output().expect("UAC ends")).await.expect("join");
    let _ = out;
    let c = body(&http_get(admin, "/tenants/contoso/policy/candidate").await);
    let canary_failed = c["candidate"]["failed_calls"].as_u64().unwrap_or(0);
    let (failed, succeeded) =
        (stat(&dir.path().join("uac.csv"), "FailedCall(C)"), stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)"));
    assert!(canary_failed >= 10, "{c}");
    assert_eq!(failed, canary_failed, "the calls that failed are the canary's");
    assert_eq!(succeeded + failed, CALLS);
    server.stop();
    let _ = uas_a.kill();
    let _ = uas_a.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_kept_and_rolled_back_and_the_pin_survives_a_restart_until_the_file_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a_at, b_at) = (sipp_address(), sipp_address());
    deployment(dir.path(), a_at, b_at, "");
    let config = dir.path().join("router.toml");
    let server = Server::start(&config).await.expect("router starts");
    let admin = server.admin_addr().expect("admin");
    let file = dir.path().join("policies/contoso.wasm");
    let serving = |t: &Value| t["policy"]["version"].as_u64();
    // Version 1 (plan A) serves; plan B written over it is version 2.
    let t = body(&http_get(admin, "/tenants/contoso").await);
    assert_eq!(serving(&t), Some(1));
    let tmp = dir.path().join("policies/.tmp");
    std::fs::copy(components::PLAN_B, &tmp).expect("copy");
    std::fs::rename(&tmp, &file).expect("rename");
    let r = http(admin, "POST", "/tenants/contoso/reload", b"").await;
    assert_eq!(serving(&body(&r)), Some(2), "{r}");
    let h = body(&http_get(admin, "/tenants/contoso/policy/history").await);
    let states: Vec<(u64, String)> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["number"].as_u64().unwrap_or(0), v["state"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(states, [(2, "serving".to_owned()), (1, "retired".to_owned())], "{h}");
    // Roll back: version 1 serves again, pinned over the file (plan B).
    let r = http(admin, "POST", "/tenants/contoso/policy/rollback", b"").await;
    assert_eq!(status(&r), 200, "{r}");
    assert_eq!(body(&r)["serving"].as_u64(), Some(1));
    let r = http(admin, "POST", "/tenants/contoso/policy/rollback?to=9", b"").await;
    assert_eq!(status(&r), 404, "{r}");
    // The same file reloaded does not undo the pin.
    let r = http(admin, "POST", "/tenants/contoso/reload", b"").await;
    assert_eq!(serving(&body(&r)), Some(1), "{r}");
    server.stop();
    drop(server);

    // A restart keeps the history and the pin.
    let server = Server::start(&config).await.expect("router restarts");
    let admin = server.admin_addr().expect("admin");
    let t = body(&http_get(admin, "/tenants/contoso").await);
    assert_eq!(serving(&t), Some(1), "{t}");
    let h = body(&http_get(admin, "/tenants/contoso/policy/history").await);
    assert_eq!(h["versions"].as_array().map(Vec::len), Some(2), "{h}");
    // The command line sees the same history, and rolls back through the API.
    use exum_router::admin::client::{Action, Target, run};
    let target =
        Target { config: config.clone(), address: Some(admin), token: Some(exum_router_tests::ADMIN_TOKEN.into()) };
    let out = run(&target, "contoso", Action::History).await.expect("history");
    assert!(out.contains("\"state\": \"serving\"") && out.contains("\"number\": 2"), "{out}");
    let e = run(&Target { address: None, ..target.clone() }, "contoso", Action::History)
        .await
        .expect_err("port 0")
        .to_string();
    assert!(e.contains("give the router's with --admin"), "{e}");
    let e = run(&target, "contoso", Action::Promote).await.expect_err("no candidate").to_string();
    assert!(e.contains("404") && e.contains("no candidate"), "{e}");
    // A new file ends the pin: it serves as version 3.
    std::fs::copy(components::PREFIX_ROUTING, &tmp).expect("copy");
    std::fs::rename(&tmp, &file).expect("rename");
    let r = http(admin, "POST", "/tenants/contoso/reload", b"").await;
    assert_eq!(serving(&body(&r)), Some(3), "{r}");
    let r = http(admin, "POST", "/tenants/contoso/policy/rollback?to=2", b"").await;
    assert_eq!(body(&r)["serving"].as_u64(), Some(2), "{r}");
    server.stop();
}

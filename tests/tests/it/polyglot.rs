//! Policies in JavaScript and Python, built from `tests/polyglot/` by their
//! languages' own toolchains against the contract with no SDK, through the
//! real engine: they decide, the WASI sandbox gives them nothing of the host,
//! their random bytes and clock replay exactly, and a hostile one costs one
//! decision, as a Rust one does.

use std::sync::Arc;
use std::time::Duration;

use exum_router::control::config::{Fallback, Limits};
use exum_router::control::{Tenant, Tenants};
use exum_router::policy::contract::Decision;
use exum_router::policy::host_api::Imports;
use exum_router::policy::record::{DecisionRecord, Export, Output};
use exum_router::policy::version::PolicyCall;
use exum_router::policy::{DecidedBy, FaultKind, TenantPolicy, Verdict};
use exum_router_tests::{Plane, polyglot, tenant_with_policy};

/// Interpreters in a debug build: a generous deadline and memory.
fn limits() -> Limits {
    Limits {
        deadline: Duration::from_millis(500),
        runtime_deadline: Duration::from_millis(500),
        memory_bytes: 64 << 20,
        quarantine_after: 1000,
        ..Limits::default()
    }
}

/// A tenant and its installed policy.
type Installed = (Arc<Tenant>, Arc<TenantPolicy>);

/// A plane with one tenant per language (`js`, `python`), each serving its probe.
fn plane() -> (Plane, Vec<Installed>) {
    let plane = Plane::new(Tenants::default());
    let mut tenants = Vec::new();
    for (id, component) in [("js", polyglot::JS_PROBE), ("python", polyglot::PY_PROBE)] {
        let tenant = tenant_with_policy(id, polyglot::path(component), "", Fallback::Reject(503), limits());
        let policy = plane.registry.install_configured(&tenant);
        assert_eq!(policy.load_error, None, "the {id} probe loads");
        tenants.push((tenant, policy));
    }
    (plane, tenants)
}

fn request(user: &str, call_id: &str) -> exum_router::policy::contract::Request {
    let text =
        exum_router_tests::invite(&format!("sip:{user}@contoso.com;opaque=app:voicemail"), "sip:zoe@fabrikam.com")
            .replace("Call-ID: test@192.0.2.10", &format!("Call-ID: {call_id}"));
    exum_router_tests::view_of(&text)
}

fn rejected(v: &Verdict) -> (u16, String) {
    assert!(matches!(v.decided_by, DecidedBy::Policy { .. }), "decided by the policy: {:?}", v.decided_by);
    match &v.decision {
        Decision::Reject(r) => (r.code, r.reason.clone()),
        other => panic!("a reject, not {other:?}"),
    }
}

/// Records `route(req)` of the tenant's own version, replays the record on a
/// fresh instance of the same component, and asserts the replay is byte for
/// byte the recorded output; the record's import calls.
fn records_and_replays(
    plane: &Plane,
    tenant: &Arc<Tenant>,
    policy: &TenantPolicy,
    req: &exum_router::policy::contract::Request,
) -> Vec<exum_router::policy::record::ImportCall> {
    let id = &tenant.config.id;
    let version = policy.own.clone().expect("its own version");
    let (result, imports) = version.call_with(tenant, PolicyCall::Route(req), Imports::recording());
    let Imports::Recording(calls) = imports else { panic!("recording") };
    let record = DecisionRecord::new(
        id,
        version.recorded(),
        Export::Route,
        req,
        None,
        exum_router::policy::host_api::now(tenant),
        calls.clone(),
        Output::Decision(result.expect("decides")),
    );
    let bytes = std::fs::read(polyglot::path(if id == "js" { polyglot::JS_PROBE } else { polyglot::PY_PROBE }))
        .expect("the component");
    let replayed = exum_router::policy::replay::replay(plane.registry.engine(), &record, &bytes, "").expect("replays");
    assert!(replayed.same, "{id}: {:?}", replayed.differences);
    calls
}

#[test]
fn policies_in_javascript_and_python_decide_through_the_engine() {
    let (_plane, tenants) = plane();
    for (tenant, policy) in &tenants {
        let id = &tenant.config.id;
        let (code, reason) = rejected(&policy.route(tenant, &request("nobody", "a@x")));
        assert_eq!(code, 404, "{id}");
        assert_eq!(reason, format!("Not Found ({id})"));
        // The next call takes an instance from the pool and decides alike.
        assert_eq!(rejected(&policy.route(tenant, &request("nobody", "b@x"))), (404, reason));
    }
}

#[test]
fn a_policy_in_any_language_composes_with_the_routers_standard_decision() {
    let (plane, tenants) = plane();
    for (tenant, policy) in &tenants {
        let id = &tenant.config.id;
        let v = policy.route(tenant, &request("std", "std@x"));
        let (code, reason) = rejected(&v);
        // The standard algorithm's answer for a user the directory lacks,
        // adjusted by the policy.
        assert_eq!(code, 404, "{id}");
        assert_eq!(reason, format!("composed ({id}): Not Found"));
        let Decision::Reject(r) = &v.decision else { unreachable!() };
        assert!(r.headers.iter().any(|h| h.name == "ms-diagnostics" && h.value.starts_with("15004")), "{r:?}");
        // Recorded as an import, and answered from the record on replay.
        let calls = records_and_replays(&plane, tenant, policy, &request("std", "std-r@x"));
        assert!(
            calls.iter().any(|c| matches!(c.ask, exum_router::policy::record::Ask::StandardRoute(_))),
            "{id}: {calls:?}"
        );
    }
}

#[test]
fn the_wasi_sandbox_gives_a_python_policy_no_file_no_socket_no_environment() {
    let (_plane, tenants) = plane();
    let (tenant, policy) = &tenants[1];
    let (code, reason) = rejected(&policy.route(tenant, &request("sandbox", "s@x")));
    assert_eq!(code, 403);
    let fields: std::collections::HashMap<&str, &str> = reason.split(' ').filter_map(|f| f.split_once('=')).collect();
    assert_ne!(fields["file"], "allowed", "{reason}");
    assert_ne!(fields["socket"], "allowed", "{reason}");
    assert_eq!((fields["env"], fields["argv"]), ("0", "0"), "{reason}");
}

#[test]
fn random_bytes_and_clocks_follow_the_call_id_and_the_policy_clock_and_replay_exactly() {
    let (plane, tenants) = plane();
    for (tenant, policy) in &tenants {
        let id = &tenant.config.id;
        let entropy = |call_id: &str| {
            let (code, reason) = rejected(&policy.route(tenant, &request("entropy", call_id)));
            assert_eq!(code, 480);
            // language, random bytes, the clock's second, a monotonic or random number
            reason.split(' ').map(str::to_owned).collect::<Vec<_>>()
        };
        let (a, again, b) = (entropy("a@x"), entropy("a@x"), entropy("b@x"));
        assert_eq!(a[1], again[1], "{id}: the same Call-ID, the same bytes");
        assert_eq!(a[3], again[3], "{id}: the same Call-ID, the same numbers");
        assert_ne!(a[1], b[1], "{id}: another Call-ID, other bytes");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let seen: u64 = a[2].parse().expect("seconds");
        assert!(seen <= now && seen + 3600 >= now, "{id}: the policy clock ({seen}), not a fixed one");

        // Recorded, then replayed on a fresh instance: byte for byte the same.
        records_and_replays(&plane, tenant, policy, &request("entropy", "r@x"));
    }
}

#[test]
fn a_hostile_javascript_or_python_policy_costs_one_decision() {
    let (plane, tenants) = plane();
    let cases = [
        ("js", "loop", FaultKind::Deadline),
        ("js", "bomb", FaultKind::Memory),
        ("python", "loop", FaultKind::Deadline),
        ("python", "bomb", FaultKind::Memory),
        ("python", "exit", FaultKind::Trap),
    ];
    for (id, mode, kind) in cases {
        let (tenant, policy) = tenants.iter().find(|(t, _)| t.config.id == id).expect("tenant");
        let faults = || plane.registry.metrics().faults_of(id, kind.as_str());
        let before = faults();
        let v = policy.route(tenant, &request(mode, &format!("{mode}@x")));
        assert_eq!(v.decided_by, DecidedBy::Fallback { reason: kind.as_str().to_owned() }, "{id} {mode}");
        assert_eq!(faults(), before + 1, "{id} {mode}: one fault");
        // The next call is the policy's again.
        assert_eq!(rejected(&policy.route(tenant, &request("nobody", "n@x"))).0, 404, "{id} after {mode}");
    }
}

#[test]
fn a_tenant_serves_components_up_to_its_component_mib_refused_before_compiling() {
    let plane = Plane::new(Tenants::default());
    let compiled = plane.registry.metrics().policy_compilations.get();
    let small = Limits { component_bytes: 8 << 20, ..limits() };
    let tenant = tenant_with_policy("python", polyglot::path(polyglot::PY_PROBE), "", Fallback::Reject(503), small);
    let policy = plane.registry.install_configured(&tenant);
    let e = policy.load_error.clone().expect("refused");
    assert!(e.contains("the tenant's limit is 8388608 (component_mib)"), "{e}");
    assert_eq!(plane.registry.metrics().policy_compilations.get(), compiled, "not compiled");
}

#[test]
fn a_runtimes_worth_of_code_serves_from_winch_at_once_then_from_cranelift() {
    use exum_router::policy::engine::Compiler;
    let (_plane, tenants) = plane();
    // Loaded from the quick tier's code (never compiled before here) ...
    for (tenant, policy) in &tenants {
        let id = &tenant.config.id;
        let version = policy.own.clone().expect("its own version");
        assert_eq!(version.compiler(), Some(Compiler::Winch), "{id}");
        assert_eq!(rejected(&policy.route(tenant, &request("nobody", "q@x"))).0, 404, "{id}");
    }
    // ... until Cranelift's, compiled in the background, replaces it.
    for (tenant, policy) in &tenants {
        let id = &tenant.config.id;
        let version = policy.own.clone().expect("its own version");
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while version.compiler() != Some(Compiler::Cranelift) {
            assert!(std::time::Instant::now() < deadline, "{id}: the optimised code never came");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(rejected(&policy.route(tenant, &request("nobody", "o@x"))).0, 404, "{id}");
        assert_eq!(rejected(&policy.route(tenant, &request("std", "s@x"))).0, 404, "{id}");
    }
}

/// sipp places calls through the router while the tenant's policy is swapped
/// three times between Python and JavaScript (each swap a component the
/// router never compiled: served from the quick tier first): 0 failed calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_flow_under_sipp_while_the_policy_is_swapped_between_python_and_javascript() {
    use exum_router::model::Transport;
    use exum_router::server::Server;
    use exum_router_tests::sipp::{sipp_address, stat};
    const CALLS: u64 = 600;
    const RATE: u64 = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let (um_at, uac_at) = (sipp_address(), sipp_address());
    let mut directory = String::new();
    let mut users = String::from("SEQUENTIAL\n");
    for i in 0..20 {
        directory.push_str(&format!(
            "[[tenants.contoso.users]]\nsip = \"sip:user{i}@contoso.com\"\neum = \"eum:user{i}@contoso.com;phone-context=A\"\n"
        ));
        users.push_str(&format!("user{i};contoso.com\n"));
    }
    directory.push_str(&format!(
        "[[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{{ uri = \"sip:{um_at}\", timeout_ms = 5000 }}]\n"
    ));
    std::fs::write(dir.path().join("directory.toml"), directory).expect("write");
    std::fs::write(dir.path().join("users.csv"), users).expect("write");
    // Interpreters in a debug build: a deadline of 200 ms.
    std::fs::write(
        dir.path().join("router.toml"),
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n\
         [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\npeers = [\"127.0.0.0/8\"]\n\
         limits = { runtime_deadline_ms = 200 }\n",
    )
    .expect("write");
    let python = std::fs::read(polyglot::path(polyglot::PY_PROBE)).expect("python");
    let js = std::fs::read(polyglot::path(polyglot::JS_PROBE)).expect("js");
    std::fs::write(dir.path().join("policies/contoso.wasm"), &python).expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let router = server.local_addr(Transport::Udp).expect("udp");
    let tenant = server.proxy.tenants().by_id("contoso").expect("tenant").clone();
    let mut uas = exum_router_tests::sipp::uas(dir.path(), um_at)
        .args(["-timeout", "300s", "-trace_stat", "-stf", "um.csv", "-fd", "1"])
        .spawn()
        .expect("sipp UAS starts (apt-get install -y sip-tester)");
    let uac = exum_router_tests::sipp::uac(dir.path(), router, uac_at, CALLS, RATE).spawn().expect("sipp UAC starts");
    let policy = server.policy.clone();
    let policies = dir.path().join("policies");
    let swapping = tokio::spawn(async move {
        let mut swapped = 0;
        // Python -> JavaScript -> Python (a variant: not compiled before) -> JavaScript (a variant).
        for next in
            [js.clone(), exum_router_tests::component_variant(&python, 1), exum_router_tests::component_variant(&js, 1)]
        {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let hash = exum_router::policy::hex_sha256(&next);
            let tmp = policies.join(".contoso.wasm.tmp");
            std::fs::write(&tmp, &next).expect("write");
            std::fs::rename(&tmp, policies.join("contoso.wasm")).expect("rename");
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while policy.get(&tenant).own.as_ref().map(|v| v.hash.clone()) != Some(hash.clone()) {
                assert!(std::time::Instant::now() < deadline, "swap {} never applied", swapped + 1);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            swapped += 1;
        }
        swapped
    });
    let out = tokio::task::spawn_blocking(move || uac.wait_with_output().expect("UAC ends")).await.expect("join");
    let swapped = swapping.await.expect("join");
    let _ = uas.kill();
    let _ = uas.wait();
    let failed = stat(&dir.path().join("uac.csv"), "FailedCall(C)");
    let succeeded = stat(&dir.path().join("uac.csv"), "SuccessfulCall(C)");
    assert!(out.status.success(), "sipp UAC: {} ({succeeded} ok, {failed} failed)", out.status);
    assert_eq!((succeeded, failed), (CALLS, 0));
    assert_eq!(swapped, 3, "three swaps while the calls flowed");
    server.stop();
}

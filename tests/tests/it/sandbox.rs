//! The sandbox, in pairs: each limit once obeyed and once violated. A violation
//! costs one decision (the fallback makes it), is counted by kind, and repeated
//! faults quarantine the version.

use std::sync::Arc;
use std::time::Duration;

use exum_router::control::config::{Fallback, Limits};
use exum_router::control::{Tenant, Tenants};
use exum_router::policy::contract::Decision;
use exum_router::policy::{DecidedBy, FaultKind, LoadError, Verdict};
use exum_router_tests::{Plane, components, invite, tenant_with_policy};

use crate::reject;

fn limits(deadline_ms: u64, memory_mib: usize, quarantine_after: u32) -> Limits {
    Limits {
        deadline: Duration::from_millis(deadline_ms),
        memory_bytes: memory_mib << 20,
        quarantine_after,
        ..Limits::default()
    }
}

/// Installs the hostile fixture in `mode` for a fresh tenant and routes one call.
fn hostile(mode: &str, fallback: Fallback, limits: Limits) -> (Plane, Arc<Tenant>, Verdict) {
    let tenant = tenant_with_policy("hostile", components::HOSTILE, mode, fallback, limits);
    let plane = Plane::new(Tenants::default());
    let policy = plane.registry.install_configured(&tenant);
    assert_eq!(policy.load_error, None, "the fixture loads in mode {mode}");
    let req = exum_router_tests::view_of(&invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:zoe@fabrikam.com"));
    let verdict = policy.route(&tenant, &req);
    (plane, tenant, verdict)
}

fn fault_count(plane: &Plane, tenant: &Tenant, kind: FaultKind) -> u64 {
    plane.registry.metrics().faults_of(&tenant.config.id, kind.as_str())
}

fn fell_back(v: &Verdict, kind: &str) {
    assert_eq!(v.decided_by, DecidedBy::Fallback { reason: kind.to_owned() }, "decision: {:?}", v.decision);
}

fn obeyed(v: &Verdict) {
    assert!(
        matches!(v.decided_by, DecidedBy::Standard | DecidedBy::Policy { .. }),
        "expected no fault, got {:?}",
        v.decided_by
    );
}

#[test]
fn endless_loop_is_cut_at_the_deadline() {
    let (_, _, ok) = hostile("spin:1000", Fallback::Standard, limits(20, 16, 5));
    obeyed(&ok);
    // The endless loop never returns by itself: the decision coming back at all
    // is the deadline at work. The call runs on a thread of its own so that a
    // broken deadline fails this test (after a minute) instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(hostile("loop", Fallback::Standard, limits(20, 16, 5)));
    });
    let (plane, tenant, v) = rx.recv_timeout(Duration::from_secs(60)).expect("the deadline interrupts the loop");
    fell_back(&v, "deadline");
    assert_eq!(fault_count(&plane, &tenant, FaultKind::Deadline), 1);
    // Not cut early: the policy had its whole 20 ms.
    assert!(v.elapsed >= Duration::from_millis(20), "{:?}", v.elapsed);
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let (_, _, ok) = hostile("alloc:1048576", Fallback::Standard, limits(1000, 16, 5));
    obeyed(&ok);
    let (plane, tenant, v) = hostile("alloc:104857600", Fallback::Standard, limits(1000, 16, 5));
    fell_back(&v, "memory");
    assert_eq!(fault_count(&plane, &tenant, FaultKind::Memory), 1);
}

#[test]
fn panic_costs_one_decision() {
    let (_, _, ok) = hostile("ok", Fallback::Standard, Limits::default());
    obeyed(&ok);
    let (plane, tenant, v) = hostile("panic", Fallback::Reject(503), Limits::default());
    fell_back(&v, "panic");
    assert_eq!(reject(&v).code, 503, "the configured reject fallback");
    assert_eq!(fault_count(&plane, &tenant, FaultKind::Panic), 1);
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let (_, _, ok) = hostile("recurse:100", Fallback::Standard, limits(1000, 16, 5));
    obeyed(&ok);
    let (_, _, v) = hostile("recurse:100000000", Fallback::Standard, limits(1000, 16, 5));
    fell_back(&v, "stack_overflow");
}

#[test]
fn a_million_targets_are_refused() {
    let (_, _, ok) = hostile("targets:3", Fallback::Standard, Limits::default());
    assert!(matches!(&ok.decision, Decision::Forward(f) if f.targets.len() == 3));
    assert!(matches!(ok.decided_by, DecidedBy::Policy { .. }));
    // With room to build them, the decision reaches the router and is refused ...
    let (_, _, v) = hostile("targets:1000000", Fallback::Standard, limits(5000, 256, 5));
    fell_back(&v, "invalid_decision");
    // ... and under the default memory limit the policy cannot even build it.
    let (_, _, v) = hostile("targets:1000000", Fallback::Standard, limits(5000, 16, 5));
    fell_back(&v, "memory");
}

#[test]
fn a_ten_megabyte_header_is_refused() {
    let (_, _, ok) = hostile("header:100", Fallback::Standard, Limits::default());
    assert!(matches!(ok.decided_by, DecidedBy::Policy { .. }));
    let (_, _, v) = hostile("header:10000000", Fallback::Standard, limits(5000, 64, 5));
    fell_back(&v, "invalid_decision");
}

#[test]
fn a_reject_code_outside_4xx_6xx_is_refused() {
    let (_, _, ok) = hostile("reject:486", Fallback::Standard, Limits::default());
    assert_eq!(reject(&ok).code, 486);
    let (_, _, v) = hostile("reject:200", Fallback::Standard, Limits::default());
    fell_back(&v, "invalid_decision");
}

#[test]
fn flooding_host_calls_runs_into_the_deadline() {
    let (_, _, ok) = hostile("flood:100", Fallback::Standard, limits(1000, 16, 5));
    obeyed(&ok);
    let (_, _, v) = hostile("flood:1000000000", Fallback::Standard, limits(20, 16, 5));
    fell_back(&v, "deadline");
}

#[test]
fn a_policy_sees_only_its_own_tenant() {
    // The nosy policy serves contoso and asks for one of its users, then for a
    // user of fabrikam.
    let (_, tenants) = Tenants::load(&exum_router_tests::deployment_config()).expect("deployment");
    let contoso = tenants.by_id("contoso").expect("contoso").clone();
    let mut config = contoso.config.clone();
    config.policy = exum_router::control::config::PolicySource::File(components::HOSTILE.into());
    let plane = Plane::deployment();
    let (_, req) = plane.request(&invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:zoe@fabrikam.com"));
    for (mode, expected) in
        [("nosy:sip:bob@contoso.com", 599), ("nosy:sip:grace@fabrikam.com", 404), ("nosy:+12065550100", 404)]
    {
        config.policy_config = mode.to_owned();
        let tenant = Arc::new(Tenant { config: config.clone(), directory: contoso.directory.clone() });
        let policy = plane.registry.install_configured(&tenant);
        let v = policy.route(&tenant, &req);
        assert_eq!(reject(&v).code, expected, "{mode}: {:?}", v.decision);
    }
}

#[test]
fn repeated_faults_quarantine_until_a_new_version() {
    let tenant = tenant_with_policy("hostile", components::HOSTILE, "panic", Fallback::Reject(500), limits(5, 16, 3));
    let plane = Plane::new(Tenants::default());
    let policy = plane.registry.install_configured(&tenant);
    let req = exum_router_tests::view_of(&invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:zoe@fabrikam.com"));
    for _ in 0..3 {
        fell_back(&policy.route(&tenant, &req), "panic");
    }
    assert!(policy.is_quarantined());
    let v = policy.route(&tenant, &req);
    fell_back(&v, "quarantined");
    assert_eq!(fault_count(&plane, &tenant, FaultKind::Panic), 3, "a quarantined policy is not called");
    // A new version arrives: clean record, called again.
    let fresh = plane.registry.install_configured(&tenant);
    assert!(!fresh.is_quarantined());
    fell_back(&fresh.route(&tenant, &req), "panic");
}

#[test]
fn on_failure_goes_to_the_same_version() {
    let (plane, tenant, v) = hostile("fail:486", Fallback::Standard, Limits::default());
    obeyed(&v);
    let policy = plane.policy(&tenant);
    let req = exum_router_tests::view_of(&invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:zoe@fabrikam.com"));
    let failure = exum_router::policy::contract::Failure { attempts: vec![] };
    let after = policy.on_failure(&tenant, &req, &failure);
    assert_eq!(reject(&after).code, 486);
    assert_eq!(reject(&after).reason, "from on-failure");
}

#[test]
fn init_failures_refuse_the_version() {
    let plane = Plane::new(Tenants::default());
    let load = |mode: &str| {
        let tenant = tenant_with_policy("hostile", components::HOSTILE, mode, Fallback::Standard, limits(20, 16, 5));
        let bytes = std::fs::read(components::HOSTILE).expect("component");
        plane.registry.load_bytes(&tenant, &bytes, "hostile.wasm".into()).map(|_| ())
    };
    assert_eq!(load("ok"), Ok(()));
    assert_eq!(load("fail-init"), Err(LoadError::Init("this policy refuses every configuration".into())));
    assert!(matches!(load("panic-init"), Err(LoadError::InitFault(m)) if m.contains("panic")));
    assert!(matches!(load("loop-init"), Err(LoadError::InitFault(m)) if m.contains("deadline")));
}

#[test]
fn components_outside_the_contract_are_refused_at_load() {
    let plane = Plane::new(Tenants::default());
    let tenant = Arc::new(Tenant::empty("t"));
    let load = |bytes: &[u8]| plane.registry.load_bytes(&tenant, bytes, "p.wasm".into()).map(|_| ());

    let foreign = std::fs::read(components::FOREIGN_IMPORT).expect("component");
    let e = load(&foreign).expect_err("foreign import");
    assert_eq!(e, LoadError::ForeignImports(vec!["exum:fixture/net".into()]));
    assert!(e.to_string().contains("imports exum:fixture/net outside the contract exum:policy@0.1.0"), "{e}");

    let bare = std::fs::read(components::NO_EXPORTS).expect("component");
    let e = load(&bare).expect_err("no handler");
    assert_eq!(e, LoadError::MissingExport(vec!["route".into()]));
    assert!(e.to_string().contains("does not export exum:policy/handler@0.1.0 (it exports: route)"), "{e}");

    let core_module = b"\0asm\x01\0\0\0";
    assert!(matches!(load(core_module), Err(LoadError::NotAComponent(m)) if m.contains("core WebAssembly module")));
    assert!(matches!(load(b"hello"), Err(LoadError::NotAComponent(m)) if m.contains("not WebAssembly")));
}

#[test]
fn precompiled_artifacts_survive_a_restart_and_start_up_is_lazy() {
    let cache = tempfile::tempdir().expect("tempdir");
    let tenant = tenant_with_policy(
        "cached",
        components::PILOT_GROUP,
        "sip:bob@contoso.com",
        Fallback::Standard,
        Limits::default(),
    );
    let tenants_of = || {
        Tenants::new(
            &exum_router::control::config::RouterConfig::with_tenants(vec![tenant.config.clone()]),
            Default::default(),
        )
    };
    for run in 0..2 {
        let engine = std::sync::Arc::new(exum_router::policy::PolicyEngine::new().expect("engine"));
        engine.set_disk_cache(cache.path().to_path_buf()).expect("cache dir");
        let registry = exum_router::policy::PolicyRegistry::new(engine.clone(), Default::default(), Default::default())
            .expect("registry");
        let tenants = tenants_of();
        registry.install_all(&tenants);
        let t = tenants.by_id("cached").expect("tenant");
        let policy = registry.get(t);
        let version = policy.own.as_ref().expect("installed");
        assert_eq!(version.pooled(), 0, "no instance before the first call");
        assert_eq!(version.is_loaded(), run == 0, "from a warm cache the code loads at the first call");
        let req =
            exum_router_tests::view_of(&invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:zoe@fabrikam.com"));
        assert!(matches!(policy.route(t, &req).decided_by, DecidedBy::Policy { .. }));
        assert_eq!(version.pooled(), 1, "instantiated by the first call, then pooled");
        // The standard policy is embedded and compiled every start; the tenant's
        // policy is compiled once, then read back from the disk cache.
        let (compiled, from_disk) = (engine.compilations.get(), engine.disk_hits.get());
        if run == 0 {
            assert_eq!((compiled, from_disk), (2, 0));
        } else {
            assert_eq!((compiled, from_disk), (0, 2), "a restart compiles nothing");
        }
    }
}

//! Decision records and replay: calls of the standard policy and of every
//! example policy are recorded by the real engine, and replayed from the files
//! the recorder wrote.

use std::path::Path;
use std::sync::Arc;

use exum_router::control::config::PolicySource;
use exum_router::control::health::HealthTable;
use exum_router::control::{Tenant, Tenants};
use exum_router::metrics::Metrics;
use exum_router::policy::PolicyRegistry;
use exum_router::policy::contract::{Attempt, Failure, Outcome};
use exum_router::policy::record::{self, RecordSettings};
use exum_router::tools::{self, ReplayOptions};
use exum_router_tests::{components, deployment_config, invite, view_of, workspace};

/// The example deployment with every tenant recording every call into `dir`,
/// and the policies given (`(tenant, component, policy_config)`) instead of
/// the configured ones.
fn recording_plane(dir: &Path, policies: &[(&str, &str, &str)]) -> (Tenants, PolicyRegistry) {
    let (mut config, tenants) = Tenants::load(&deployment_config()).expect("the example deployment loads");
    config.policy_dir = None;
    config.records = Some(RecordSettings { dir: dir.to_path_buf(), max_bytes_per_tenant: 64 << 20 });
    let changes: Vec<(String, Option<Tenant>)> = tenants
        .iter()
        .map(|t| {
            let mut c = t.config.clone();
            c.record_decisions = 1.0;
            if let Some((_, path, cfg)) = policies.iter().find(|(id, ..)| *id == c.id) {
                c.policy = PolicySource::File(path.into());
                c.policy_config = (*cfg).to_owned();
            }
            (c.id.clone(), Some(Tenant { config: c, directory: t.directory.clone() }))
        })
        .collect();
    let tenants = tenants.with_changes(changes);
    let registry =
        PolicyRegistry::for_deployment(&config, &tenants, Arc::new(HealthTable::default()), Arc::new(Metrics::new()))
            .expect("the policy plane starts");
    for t in tenants.iter() {
        assert_eq!(registry.get(t).load_error, None, "{}", t.config.id);
    }
    (tenants, registry)
}

/// Routes every example request, a few more, and an on-failure for each
/// forward, through their tenants' policies.
fn route_traffic(tenants: &Tenants, registry: &PolicyRegistry) -> usize {
    let mut requests: Vec<String> = std::fs::read_dir(workspace().join("examples/deployment/requests"))
        .expect("requests")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("request"))
        .collect();
    requests.sort();
    for (ruri, from) in [
        ("sip:bob@contoso.com;opaque=app:voicemail", "sip:z@x.com"),
        ("sip:erin@contoso.com;opaque=app:voicemail", "sip:z@x.com"),
        ("sip:dave@contoso.com;opaque=app:voicemail", "sip:z@x.com"),
        ("sip:+14255550199@contoso.com;user=phone", "sip:z@x.com"),
        ("sip:+33155550104@contoso.com;user=phone", "sip:z@x.com"),
        ("sip:grace@fabrikam.com;opaque=app:voicemail", "sip:grace@fabrikam.com"),
        ("sip:nobody@fabrikam.com;opaque=app:voicemail", "sip:z@x.com"),
        ("sip:ivan@litware.com;opaque=app:voicemail", "sip:z@x.com"),
    ] {
        requests.push(invite(ruri, from));
    }
    let mut calls = 0;
    for (i, sip) in requests.iter().enumerate() {
        // A Call-ID of its own per request, so records name their call.
        let sip = sip.replacen("Call-ID: ", &format!("Call-ID: {i}-"), 1);
        let req = view_of(&sip);
        let host = exum_router::model::uri::Uri::parse(exum_router::policy::view::text(&req, req.request_uri))
            .expect("ruri")
            .host;
        let tenant = tenants.by_domain(&host).expect("a tenant").clone();
        let policy = registry.get(&tenant);
        let verdict = policy.route(&tenant, &req);
        calls += 1;
        if let exum_router::policy::contract::Decision::Forward(f) = &verdict.decision {
            let failure = Failure {
                attempts: f
                    .targets
                    .iter()
                    .map(|t| Attempt { target: t.uri.clone(), outcome: Outcome::Response(503) })
                    .collect(),
            };
            policy.on_failure(&tenant, &req, &failure);
            calls += 1;
        }
    }
    registry.recorder().expect("a recorder").flush();
    calls
}

fn record_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = ["contoso", "fabrikam", "litware"]
        .iter()
        .map(|t| dir.join(t).join("decisions.jsonl"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn recorded_decisions_of_the_standard_policy_and_every_example_replay_byte_for_byte() {
    let pilots = "sip:bob@contoso.com";
    let after_hours = "main=+14255550199; attendant=+14255550198; open=00:00-00:00; days=mon-sun";
    let prefixes = "+33=dial-plan:DP-Paris; +1425=hosted:na.um.example.net";
    let vips = "server=sip:vip-um.contoso.com;transport=tls; callers=sip:z@x.com";
    let setups: [&[(&str, &str, &str)]; 5] = [
        &[],
        &[("contoso", components::PILOT_GROUP, pilots)],
        &[("contoso", components::AFTER_HOURS, after_hours)],
        &[("contoso", components::PREFIX_ROUTING, prefixes), ("fabrikam", components::PREFIX_ROUTING, prefixes)],
        &[("contoso", components::VIP_FIRST, vips), ("fabrikam", components::VIP_FIRST, vips)],
    ];
    for policies in setups {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tenants, registry) = recording_plane(dir.path(), policies);
        let calls = route_traffic(&tenants, &registry);
        let files = record_files(dir.path());
        let records: usize = files.iter().map(|f| record::read(f).expect("records read").len()).sum();
        // Every call is recorded, and the standard policy's after a
        // `standard` answer is a record of its own.
        assert!(records >= calls, "{records} records of {calls} calls ({policies:?})");
        for (name, ..) in policies {
            let own = record::read(&dir.path().join(name).join("decisions.jsonl")).expect("records");
            assert!(own.iter().any(|r| r.policy.name != "standard"), "{name}'s own policy was recorded");
        }
        for file in &files {
            let first = tools::replay(file, &ReplayOptions::default()).expect("replays");
            assert_eq!((first.differing, first.failed), (0, 0), "{}:\n{}", file.display(), first.text);
            assert!(first.text.contains("same as recorded"));
            let again = tools::replay(file, &ReplayOptions::default()).expect("replays");
            assert_eq!(first, again, "the same record gives the same result every time");
        }
    }
}

#[test]
fn a_record_replayed_with_another_configuration_shows_how_its_decision_differs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed = "main=+14255550199; attendant=+14255550198; open=00:00-00:00; days=mon-sun";
    let (tenants, registry) = recording_plane(dir.path(), &[("contoso", components::AFTER_HOURS, closed)]);
    route_traffic(&tenants, &registry);
    let file = dir.path().join("contoso").join("decisions.jsonl");
    let records = record::read(&file).expect("records");
    let n = records
        .iter()
        .position(|r| {
            r.policy.name != "standard" && r.call_id.ends_with("test@192.0.2.10") && {
                let ruri = exum_router::policy::view::text(&r.request, r.request.request_uri);
                ruri.starts_with("sip:+14255550199@")
            }
        })
        .expect("the main number's record")
        + 1;
    // Open all day: the same call is left to the standard algorithm.
    let open = "main=+14255550199; attendant=+14255550198; open=00:00-24:00; days=mon-sun";
    let options = ReplayOptions {
        policy: Some(components::AFTER_HOURS.into()),
        policy_config: Some(open.into()),
        line: Some(n),
        ..Default::default()
    };
    let report = tools::replay(&file, &options).expect("replays");
    assert_eq!((report.differing, report.failed), (1, 0), "{}", report.text);
    assert!(report.text.contains("output {\"decision\":\"Standard\"}"), "{}", report.text);
    assert!(report.text.contains("differs from the recorded output"), "{}", report.text);
    // Replayed as recorded, it is the same.
    let options = ReplayOptions { line: Some(n), ..Default::default() };
    let report = tools::replay(&file, &options).expect("replays");
    assert_eq!((report.differing, report.failed), (0, 0), "{}", report.text);
    // A line beyond the file is refused with what it holds.
    let options = ReplayOptions { line: Some(10_000), ..Default::default() };
    let err = tools::replay(&file, &options).expect_err("no such line");
    assert!(err.to_string().contains("no record on line 10000"), "{err}");
}

#[test]
fn a_policy_that_asks_for_what_the_record_does_not_hold_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tenants, registry) = recording_plane(dir.path(), &[("contoso", components::PLAN_A, "")]);
    route_traffic(&tenants, &registry);
    let file = dir.path().join("contoso").join("decisions.jsonl");
    let records = record::read(&file).expect("records");
    let n = records.iter().position(|r| r.policy.name != "standard").expect("a plan-A record") + 1;
    // Plan B looks up dial plan "B"; plan A's record holds only "A".
    let options = ReplayOptions { policy: Some(components::PLAN_B.into()), line: Some(n), ..Default::default() };
    let report = tools::replay(&file, &options).expect("runs");
    assert_eq!(report.failed, 1, "{}", report.text);
    assert!(report.text.contains("the policy asked for lookup-dial-plan(\"B\")"), "{}", report.text);
    assert!(report.text.contains("which the record does not hold"), "{}", report.text);
    // The recorded component replaced by another: refused, not replayed on it.
    let kept = dir.path().join("policies").join(format!("{}.wasm", records[n - 1].policy.hash));
    std::fs::copy(components::PLAN_B, &kept).expect("copy");
    let report = tools::replay(&file, &ReplayOptions { line: Some(n), ..Default::default() }).expect("runs");
    assert_eq!(report.failed, 1, "{}", report.text);
    assert!(report.text.contains("is not the recorded component"), "{}", report.text);
}

#[test]
fn the_ring_keeps_at_most_its_size_per_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut config, tenants) = Tenants::load(&deployment_config()).expect("loads");
    config.policy_dir = None;
    config.records = Some(RecordSettings { dir: dir.path().to_path_buf(), max_bytes_per_tenant: 64 << 10 });
    let changes: Vec<(String, Option<Tenant>)> = tenants
        .iter()
        .map(|t| {
            let mut c = t.config.clone();
            c.record_decisions = 1.0;
            (c.id.clone(), Some(Tenant { config: c, directory: t.directory.clone() }))
        })
        .collect();
    let tenants = tenants.with_changes(changes);
    let registry =
        PolicyRegistry::for_deployment(&config, &tenants, Arc::new(HealthTable::default()), Arc::new(Metrics::new()))
            .expect("starts");
    let tenant = tenants.by_id("contoso").expect("contoso").clone();
    let policy = registry.get(&tenant);
    for i in 0..400 {
        let sip = invite("sip:bob@contoso.com;opaque=app:voicemail", "sip:z@x.com").replacen(
            "Call-ID: ",
            &format!("Call-ID: {i}-"),
            1,
        );
        policy.route(&tenant, &view_of(&sip));
    }
    let recorder = registry.recorder().expect("recorder");
    recorder.flush();
    let size = |name: &str| std::fs::metadata(dir.path().join("contoso").join(name)).map_or(0, |m| m.len());
    let (current, older) = (size("decisions.jsonl"), size("decisions.1.jsonl"));
    assert!(older > 0, "the ring turned");
    assert!(current + older <= 64 << 10, "{current} + {older} bytes kept");
    // The newest record is in the current half and replays.
    let report =
        tools::replay(&dir.path().join("contoso").join("decisions.jsonl"), &ReplayOptions::default()).expect("replays");
    assert_eq!((report.differing, report.failed), (0, 0), "{}", report.text);
    assert_eq!(recorder.dropped.get(), 0);
}

#[test]
fn a_sampled_tenant_records_the_calls_its_share_picks_by_call_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut config, tenants) = Tenants::load(&deployment_config()).expect("loads");
    config.policy_dir = None;
    config.records = Some(RecordSettings { dir: dir.path().to_path_buf(), max_bytes_per_tenant: 64 << 20 });
    let changes: Vec<(String, Option<Tenant>)> = tenants
        .iter()
        .map(|t| {
            let mut c = t.config.clone();
            c.record_decisions = if c.id == "contoso" { 0.3 } else { 0.0 };
            (c.id.clone(), Some(Tenant { config: c, directory: t.directory.clone() }))
        })
        .collect();
    let tenants = tenants.with_changes(changes);
    let registry =
        PolicyRegistry::for_deployment(&config, &tenants, Arc::new(HealthTable::default()), Arc::new(Metrics::new()))
            .expect("starts");
    let mut expected = std::collections::BTreeSet::new();
    for (id, ruri) in [("contoso", "sip:bob@contoso.com;opaque=app:voicemail"), ("fabrikam", "sip:grace@fabrikam.com")]
    {
        let tenant = tenants.by_id(id).expect("tenant").clone();
        let policy = registry.get(&tenant);
        for i in 0..200 {
            let sip = invite(ruri, "sip:z@x.com").replacen("Call-ID: ", &format!("Call-ID: {i}-"), 1);
            let req = view_of(&sip);
            let call_id = exum_router::policy::view::text(&req, req.call_id).to_owned();
            if id == "contoso" && record::sampled(&call_id, 0.3) {
                expected.insert(call_id);
            }
            policy.route(&tenant, &req);
        }
    }
    registry.recorder().expect("recorder").flush();
    let recorded: std::collections::BTreeSet<String> =
        record::read(&dir.path().join("contoso").join("decisions.jsonl"))
            .expect("records")
            .into_iter()
            .map(|r| r.call_id)
            .collect();
    assert!(expected.len() > 20 && expected.len() < 120, "{} of 200 picked", expected.len());
    assert_eq!(recorded, expected, "exactly the calls the share picks");
    assert!(!dir.path().join("fabrikam").join("decisions.jsonl").exists(), "a share of 0 records nothing");
}

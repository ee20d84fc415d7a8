//! The example policies written three times, in Rust, TypeScript and Python,
//! decide identically through the real engine: on every request of the
//! example deployment and on requests generated from its directory (each
//! address and number, voice-mail or not, SIP or SIPS, from a listed caller,
//! the callee itself or anyone), under each configuration and, for
//! after-hours, at each time of the week that matters.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use exum_router::control::Tenant;
use exum_router::control::config::PolicySource;
use exum_router_tests::{Plane, components, invite, polyglot, workspace};

/// The three builds of one example.
fn builds(
    rust: &'static str,
    ts: Result<&'static str, &'static str>,
    py: Result<&'static str, &'static str>,
) -> [(&'static str, String); 3] {
    [
        ("rust", rust.to_owned()),
        ("typescript", polyglot::path(ts).to_owned()),
        ("python", polyglot::path(py).to_owned()),
    ]
}

/// The Request-URIs to route: the deployment directory's SIP addresses (of
/// a tenant's domain) and numbers, in the forms callers send.
fn request_uris(plane: &Plane) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("examples/deployment/directory.toml")).expect("directory");
    let value: toml::Value = toml::from_str(&text).expect("TOML");
    let mut strings = Vec::new();
    collect(&value, &mut strings);
    let mut addresses: Vec<String> = Vec::new();
    let mut numbers: Vec<String> = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    for s in strings {
        let s = s.split(';').next().unwrap_or(&s).to_owned();
        if let Some(host) = s.strip_prefix("sip:").and_then(|r| r.split_once('@')).map(|(_, h)| h.to_owned()) {
            if plane.tenants.by_domain(&host).is_some() {
                domains.push(host);
                addresses.push(s);
            }
        } else if let Some(n) = s.strip_prefix("tel:").or(Some(s.as_str())).filter(|n| n.starts_with('+')) {
            numbers.push(n.to_owned());
        }
    }
    domains.sort();
    domains.dedup();
    addresses.sort();
    addresses.dedup();
    numbers.sort();
    numbers.dedup();
    let mut out = Vec::new();
    for a in &addresses {
        out.push(a.clone());
        out.push(format!("{a};opaque=app:voicemail"));
        out.push(format!("{};opaque=app:voicemail", a.replacen("sip:", "sips:", 1)));
        out.push(format!("{};gruu;opaque=app:voicemail", a.to_uppercase().replacen("SIP:", "sip:", 1)));
    }
    for n in &numbers {
        for d in &domains {
            out.push(format!("sip:{n}@{d};user=phone"));
        }
    }
    for d in &domains {
        out.push(format!("sip:nobody@{d};opaque=app:voicemail"));
        out.push(format!("sip:+19995550100@{d};user=phone"));
    }
    out
}

fn collect(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if s.starts_with("sip:") || s.starts_with("tel:+") || s.starts_with('+') => {
            out.push(s.clone());
        }
        toml::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        toml::Value::Table(t) => t.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// Every request: the deployment's request files, then one INVITE per
/// generated Request-URI and caller.
fn requests(plane: &Plane, callers: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let folder = workspace().join("examples/deployment/requests");
    let mut files: Vec<_> = std::fs::read_dir(&folder).expect("requests").flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        out.push(std::fs::read_to_string(f).expect("request"));
    }
    for ruri in request_uris(plane) {
        let own = ruri.split(';').next().unwrap_or(&ruri).replacen("sips:", "sip:", 1);
        for from in callers.iter().copied().chain([own.as_str()]) {
            out.push(invite(&ruri, from));
        }
    }
    out
}

/// Each request's decision by `component` under `config` (and the tenant's
/// UTC offset), comparable across builds: the decision and who made it (the
/// policy, the standard algorithm, or a fallback and why), not the file's
/// name; or why the component refused the configuration.
fn decide(
    plane: &Plane,
    component: &str,
    config: &str,
    offset: Option<i32>,
    reqs: &[String],
) -> Result<Vec<String>, String> {
    let mut policies: Vec<(String, Arc<Tenant>, Arc<exum_router::policy::TenantPolicy>)> = Vec::new();
    let mut out = Vec::with_capacity(reqs.len());
    for sip in reqs {
        let (base, req) = plane.request(sip);
        let at = match policies.iter().position(|(id, ..)| *id == base.config.id) {
            Some(at) => at,
            None => {
                let mut c = base.config.clone();
                c.policy = PolicySource::File(component.into());
                c.policy_config = config.to_owned();
                if let Some(offset) = offset {
                    c.utc_offset_minutes = offset;
                }
                // What is compared is the decisions, not the time: the
                // interpreters' `init` runs in a debug build on a machine the
                // suite keeps busy, where its wall-clock time (bounded by the
                // budget plus a second) went past two seconds once the three
                // language tests ran beside the sipp loads. A deadline no
                // scheduling delay reaches: the deadlines have tests of their own.
                c.limits.runtime_deadline = std::time::Duration::from_secs(10);
                let tenant = Arc::new(Tenant { config: c, directory: base.directory.clone() });
                let policy = plane.registry.install_configured(&tenant);
                if let Some(e) = &policy.load_error {
                    return Err(e.to_string());
                }
                policies.push((base.config.id.clone(), tenant, policy));
                policies.len() - 1
            }
        };
        let (_, tenant, policy) = &policies[at];
        let verdict = policy.route(tenant, &req);
        let mut v = serde_json::to_value(verdict).expect("JSON");
        if let Some(by) = v["decided_by"].as_object_mut() {
            by.remove("name");
            by.remove("version");
        }
        out.push(format!("{} {}", v["decided_by"], v["decision"]));
    }
    Ok(out)
}

/// Decides every request with each build and asserts they agree; the number of
/// requests decided by the policy itself (not the standard algorithm).
fn agree(plane: &Plane, builds: &[(&str, String); 3], config: &str, offset: Option<i32>, reqs: &[String]) -> usize {
    let decided: Vec<(&str, Vec<String>)> = builds
        .iter()
        .map(|(lang, path)| {
            (
                *lang,
                decide(plane, path, config, offset, reqs).unwrap_or_else(|e| panic!("{lang} refused `{config}`: {e}")),
            )
        })
        .collect();
    let (_, reference) = &decided[0];
    for (lang, decisions) in &decided[1..] {
        for ((d, r), sip) in decisions.iter().zip(reference).zip(reqs) {
            let first_line = sip.lines().next().unwrap_or_default();
            assert_eq!(d, r, "{lang} against rust, config `{config}`, request {first_line}");
        }
    }
    reference.iter().filter(|r| r.contains("\"by\":\"policy\"")).count()
}

/// Configurations every build must refuse (each says why in its own words).
fn all_refuse(plane: &Plane, builds: &[(&str, String); 3], configs: &[&str], sip: &str) {
    for config in configs {
        for (lang, path) in builds {
            assert!(decide(plane, path, config, None, &[sip.to_owned()]).is_err(), "{lang} accepted `{config}`");
        }
    }
}

#[test]
fn vip_first_decides_identically_in_rust_typescript_and_python() {
    let plane = Plane::deployment();
    let builds = builds(components::VIP_FIRST, polyglot::VIP_FIRST_TS, polyglot::VIP_FIRST_PY);
    let callers = ["sip:zoe@fabrikam.com", "sip:CEO@Contoso.com", "sip:someone@example.net"];
    let reqs = requests(&plane, &callers);
    assert!(reqs.len() > 100, "{} requests", reqs.len());
    let mut by_policy = 0;
    for config in [
        "server=sip:vip-um.contoso.com;transport=tls; callers=sip:zoe@fabrikam.com, sip:ceo@contoso.com",
        "server=sips:vip.example.net:5061; callers=sip:someone@example.net;",
        " server=sip:vip-um.contoso.com;transport=tcp;;  callers= , sip:bob@contoso.com ,",
    ] {
        by_policy += agree(&plane, &builds, config, None, &reqs);
    }
    assert!(by_policy > 0, "no request reached a VIP path");
    all_refuse(
        &plane,
        &builds,
        &[
            "callers=sip:a@b.com",
            "server=nope; callers=sip:a@b.com",
            "server=sip:vip.example.com; callers=",
            "server=http://x; callers=sip:a@b",
        ],
        &reqs[0],
    );
}

/// The tenant's UTC offset that makes the local time now `minute_of_week`
/// (0 = Monday 00:00), to the minute.
fn offset_for(minute_of_week: i64) -> Option<i32> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    // 1970-01-05 was a Monday.
    let now_minute_of_week = (now - 4 * 86_400).div_euclid(60).rem_euclid(7 * 1440);
    let mut shift = minute_of_week - now_minute_of_week;
    if shift > 7 * 720 {
        shift -= 7 * 1440;
    } else if shift < -7 * 720 {
        shift += 7 * 1440;
    }
    Some(shift as i32)
}

#[test]
fn after_hours_decides_identically_in_rust_typescript_and_python() {
    let plane = Plane::deployment();
    let builds = builds(components::AFTER_HOURS, polyglot::AFTER_HOURS_TS, polyglot::AFTER_HOURS_PY);
    let reqs = requests(&plane, &["sip:zoe@fabrikam.com"]);
    const DAY: i64 = 1440;
    let mut by_policy = 0;
    for config in [
        "main=+14255550199; attendant=+14255550198; open=08:00-18:00; days=mon-fri",
        "main=+1 (425) 555-0199; attendant=0014255550198; open=07:30-19:15; days=TUE-sat",
        "main=+14255550199; attendant=+14255550100",
    ] {
        // Monday 10:00, Monday 19:30, Tuesday 07:00, Saturday 10:00, Sunday 23:00:
        // each at least ten minutes from an opening or closing time.
        for at in [10 * 60, 19 * 60 + 30, DAY + 7 * 60, 5 * DAY + 10 * 60, 6 * DAY + 23 * 60] {
            by_policy += agree(&plane, &builds, config, offset_for(at), &reqs);
        }
    }
    by_policy += agree(
        &plane,
        &builds,
        "main=+14255550199; attendant=+14255550198; open=00:00-00:00; days=mon-sun",
        None,
        &reqs,
    );
    assert!(by_policy > 0, "no request reached the attendant");
    all_refuse(
        &plane,
        &builds,
        &[
            "main=+1425",
            "main=+1425;attendant=+1426;open=8-18",
            "main=+1425;attendant=+1426;days=mon-xyz",
            "main=5550100;attendant=+1426",
            "nope",
            "main=+1;attendant=+2;colour=red",
            "main=+1;attendant=+2;open=25:00-26:00",
        ],
        &reqs[0],
    );
}

/// The lifecycle takes components of other languages as it takes Rust ones:
/// the Python build of vip-first as a shadow of the TypeScript build decides
/// every copy the same (no divergence), is promoted, and the TypeScript build
/// comes back by a rollback; both are in the tenant's history.
#[test]
fn a_python_shadow_of_a_typescript_policy_diverges_nowhere_then_is_promoted_and_rolled_back() {
    use exum_router::policy::CandidateSource;
    use exum_router::policy::candidate::{CanaryRule, Mode};
    let plane = Plane::deployment();
    let (ts, py) = (polyglot::path(polyglot::VIP_FIRST_TS), polyglot::path(polyglot::VIP_FIRST_PY));
    let config = "server=sip:vip-um.contoso.com;transport=tls; callers=sip:zoe@fabrikam.com, sip:ceo@contoso.com";
    let reqs: Vec<String> = requests(&plane, &["sip:zoe@fabrikam.com", "sip:someone@example.net"])
        .into_iter()
        .filter(|sip| plane.request(sip).0.config.id == "contoso")
        .collect();
    let (base, _) = plane.request(&reqs[0]);
    let mut c = base.config.clone();
    c.policy = PolicySource::File(ts.into());
    c.policy_config = config.to_owned();
    let tenant = Arc::new(Tenant { config: c, directory: base.directory.clone() });
    let serving = plane.registry.install_configured(&tenant);
    assert_eq!(serving.load_error, None);
    let bytes = std::fs::read(py).expect("the Python build");
    let policy = plane
        .registry
        .start_candidate(
            &tenant,
            CandidateSource::Bytes { bytes, source: "python".into() },
            Mode::Shadow,
            CanaryRule::default(),
        )
        .expect("the shadow starts");
    for sip in &reqs {
        let (_, req) = plane.request(sip);
        policy.route(&tenant, &req);
    }
    let candidate = policy.candidate.as_ref().expect("a candidate");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let report = loop {
        let report = candidate.json(&policy.serving);
        let done = report["compared"].as_u64().unwrap_or(0) + report["shadow_dropped"].as_u64().unwrap_or(0);
        if done >= reqs.len() as u64 {
            break report;
        }
        assert!(std::time::Instant::now() < until, "the shadow compared {done} of {}", reqs.len());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(report["compared"].as_u64().unwrap_or(0) > 0, "{report}");
    for (kind, n) in report["divergences"].as_object().expect("divergences") {
        assert_eq!(n.as_u64(), Some(0), "{kind}: {}", report["samples"]);
    }
    let promoted = plane.registry.promote(&tenant).expect("promoted");
    let own = promoted.own.as_ref().expect("serving");
    assert_eq!(own.hash, exum_router::policy::hex_sha256(&std::fs::read(py).expect("read")));
    let back = plane.registry.rollback_to(&tenant, None).expect("rolled back");
    let own = back.own.as_ref().expect("serving");
    assert_eq!(own.hash, exum_router::policy::hex_sha256(&std::fs::read(ts).expect("read")));
    assert!(plane.registry.history("contoso").len() >= 2, "both kept");
}

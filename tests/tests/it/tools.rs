//! `check` and `simulate` on good and bad input.

use std::path::Path;

use exum_router::tools::{self, SimulateOptions, ToolError};
use exum_router_tests::{components, deployment_config, workspace};

#[test]
fn check_describes_a_conforming_component() {
    let out = tools::check(Path::new(components::PILOT_GROUP)).expect("conforms");
    assert!(out.contains("contract   exum:policy@0.1.0"), "{out}");
    assert!(out.contains("export   exum:policy/handler@0.1.0"), "{out}");
    assert!(out.contains("import   exum:policy/directory@0.1.0"), "{out}");
    assert!(out.contains("ok: "), "{out}");
}

#[test]
fn check_refuses_bad_components_with_the_reason() {
    let e = tools::check(Path::new(components::FOREIGN_IMPORT)).expect_err("foreign import").to_string();
    assert!(e.contains("exum:fixture/net"), "{e}");
    let e = tools::check(Path::new(components::NO_EXPORTS)).expect_err("no handler").to_string();
    assert!(e.contains("does not export exum:policy/handler@0.1.0"), "{e}");
    assert!(matches!(tools::check(Path::new("/nonexistent.wasm")), Err(ToolError::Read { .. })));
}

fn request(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("examples/deployment/requests").join(name)).expect("request file")
}

#[test]
fn simulate_prints_the_decision_and_the_forwarded_request() {
    let out =
        tools::simulate(&deployment_config(), "bob", &request("bob-on-premises.sip"), &SimulateOptions::default())
            .expect("simulates");
    let json_end = out.find("\n---").expect("a forwarded request follows the JSON");
    let json: serde_json::Value = serde_json::from_str(&out[..json_end]).expect("the decision is JSON");
    assert_eq!(json["tenant"], "contoso");
    assert_eq!(json["decision"]["Forward"]["targets"][0]["uri"], "sip:um1.redmond.contoso.com:5061;transport=tls");
    let forwarded = &out[json_end..];
    assert!(forwarded.contains("Diversion: <sip:bob@contoso.com>;reason=no-answer\r\n"), "{forwarded}");
    assert!(!forwarded.contains("reason=unconditional"), "the old Diversion is removed: {forwarded}");
    assert!(forwarded.contains("Max-Forwards: 69\r\n"), "{forwarded}");
}

#[test]
fn simulate_shows_rejections_and_on_failure() {
    let out =
        tools::simulate(&deployment_config(), "carol", &request("carol-not-enabled.sip"), &SimulateOptions::default())
            .expect("simulates");
    assert!(out.contains("SIP/2.0 480 Temporarily Unavailable\r\n"), "{out}");
    assert!(out.contains("ms-diagnostics: 15000;"), "{out}");
    let options = SimulateOptions { fail_all: true, ..SimulateOptions::default() };
    let out =
        tools::simulate(&deployment_config(), "ivan", &request("ivan-on-premises.sip"), &options).expect("simulates");
    assert!(out.contains("on-failure"), "{out}");
    assert!(out.contains("ms-diagnostics: 15030;"), "litware has no rerouting: {out}");
}

#[test]
fn simulate_refuses_bad_input_clearly() {
    let options = SimulateOptions::default();
    let e =
        tools::simulate(&deployment_config(), "x.sip", b"not sip at all\r\n\r\n", &options).expect_err("unparseable");
    assert!(matches!(e, ToolError::Sip { .. }), "{e}");
    assert!(e.to_string().starts_with("x.sip: not a SIP request"), "{e}");
    let other = String::from_utf8(request("bob-on-premises.sip"))
        .expect("utf8")
        .replace("bob@contoso.com;", "bob@northwind.com;");
    let e = tools::simulate(&deployment_config(), "n.sip", other.as_bytes(), &options).expect_err("unknown tenant");
    assert_eq!(e.to_string(), "no tenant owns the domain `northwind.com` of the Request-URI (the router answers 404)");
    let e = tools::simulate(Path::new("/nonexistent/router.toml"), "r", &request("bob-on-premises.sip"), &options)
        .expect_err("unreadable config");
    assert!(e.to_string().starts_with("/nonexistent/router.toml: cannot read"), "{e}");
}

#[test]
fn simulate_refuses_a_tenant_whose_policy_does_not_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("router.toml");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        &config,
        format!(
            "directory = \"directory.toml\"\n[[tenant]]\nid = \"t\"\ndomains = [\"contoso.com\"]\npolicy = {:?}\n",
            components::FOREIGN_IMPORT
        ),
    )
    .expect("write");
    let e = tools::simulate(&config, "r", &request("bob-on-premises.sip"), &SimulateOptions::default())
        .expect_err("policy refused");
    assert!(e.to_string().contains("tenant t: ") && e.to_string().contains("exum:fixture/net"), "{e}");
}

#[test]
fn simulate_decides_with_the_policy_serve_would_use_and_forwards_as_the_proxy_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("router.toml");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:5080\"\n\
         [[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\nrecord_route = true\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("directory.toml"),
        "[[tenants.contoso.users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=A\"\n\
         [[tenants.contoso.dial_plans]]\nname = \"A\"\nphone_context = \"A\"\nservers = [{ uri = \"sip:um-a.contoso.com\" }]\n\
         [[tenants.contoso.dial_plans]]\nname = \"B\"\nphone_context = \"B\"\nservers = [{ uri = \"sip:um-b.contoso.com\" }]\n",
    )
    .expect("write");
    let bob = request("bob-on-premises.sip");
    let options = SimulateOptions::default();
    // No file in the policy directory: the standard policy, bob's own plan A.
    let out = tools::simulate(&config, "bob", &bob, &options).expect("simulates");
    assert!(out.contains("--- forwarded to sip:um-a.contoso.com ---"), "{out}");
    // The tenant's file in the policy directory decides, as it would in serve.
    std::fs::copy(components::PLAN_B, dir.path().join("policies/contoso.wasm")).expect("copy");
    let out = tools::simulate(&config, "bob", &bob, &options).expect("simulates");
    let json_end = out.find("\n---").expect("a forwarded request follows the JSON");
    let json: serde_json::Value = serde_json::from_str(&out[..json_end]).expect("the decision is JSON");
    assert_eq!(json["decided_by"]["by"], "policy", "{out}");
    assert_eq!(json["decided_by"]["name"], "contoso.wasm");
    assert!(out.contains("--- forwarded to sip:um-b.contoso.com ---"), "{out}");
    // Forwarded with the proxy's own edits: its Via, its Record-Route, Max-Forwards.
    let forwarded = &out[json_end..];
    assert!(forwarded.contains("Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-simulated;rport\r\n"), "{forwarded}");
    assert!(forwarded.contains("Record-Route: <sip:127.0.0.1:5080;lr;exum="), "with its dialog tag: {forwarded}");
    assert!(forwarded.contains("Max-Forwards: 69\r\n"), "{forwarded}");
    // A request the proxy refuses before routing gets the proxy's own answer.
    let text = String::from_utf8(bob).expect("utf8").replacen("Max-Forwards: 70", "Max-Forwards: 0", 1);
    let out = tools::simulate(&config, "bob", text.as_bytes(), &options).expect("simulates");
    assert!(out.contains("SIP/2.0 483 Too Many Hops\r\n"), "{out}");
}

//! Signed policies and manifests, through the watched policy directory of a
//! running router: what a tenant trusts serves; an unsigned, untrusted or
//! altered component, or one asking for more than the tenant's caps, is
//! refused with the reason on the API while the last good version serves.

use std::path::Path;

use exum_router::control::Tenants;
use exum_router::policy::manifest::MANIFEST_SECTION;
use exum_router::server::Server;
use exum_router::tools;
use exum_router_tests::json_body as body;
use exum_router_tests::{components, http, http_get};
use serde_json::Value;

/// A key pair in `dir`: the key file and its public key.
fn key(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    let out = tools::keygen(&path).expect("keygen");
    let public = out.rsplit(": ").next().expect("public key").trim().to_owned();
    (path, public)
}

/// `component` with a top-level manifest section holding `json` appended.
fn with_manifest(component: &[u8], json: &str) -> Vec<u8> {
    exum_router_tests::with_custom_section(component, MANIFEST_SECTION, json.as_bytes())
}

/// Installs `bytes` as contoso's policy file and reloads it; the tenant as
/// the API shows it then.
async fn install(admin: std::net::SocketAddr, dir: &Path, bytes: &[u8]) -> (u16, Value) {
    let tmp = dir.join("policies/.tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join("policies/contoso.wasm")).expect("rename");
    let r = http(admin, "POST", "/tenants/contoso/reload", b"").await;
    let status = r.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body(&http_get(admin, "/tenants/contoso").await))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_components_signed_by_a_trusted_key_and_within_the_caps_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("policies")).expect("mkdir");
    let (trusted, public) = key(dir.path(), "trusted.pem");
    let (other, _) = key(dir.path(), "other.pem");
    let signed = |policy: &str, key: &Path, name: &str| {
        let out = dir.path().join(name);
        tools::sign(key, Path::new(policy), Some(&out)).expect("signs");
        std::fs::read(out).expect("read")
    };
    let plan_a = signed(components::PLAN_A, &trusted, "a.wasm");
    std::fs::write(dir.path().join("policies/contoso.wasm"), &plan_a).expect("write");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    std::fs::write(
        dir.path().join("router.toml"),
        format!(
            "directory = \"directory.toml\"\npolicy_dir = \"policies\"\n[[listen]]\naddress = \"127.0.0.1:0\"\ntransports = [\"udp\"]\n[admin]\naddress = \"127.0.0.1:0\"\ntoken = \"exum-test-admin-token\"\n\
             [probes]\nenabled = false\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\
             limits = {{ deadline_ms = 5, memory_mib = 16 }}\n\
             [tenant.signing]\ntrusted_keys = [\"{public}\"]\nrequired = true\n"
        ),
    )
    .expect("write");
    let server = Server::start(&dir.path().join("router.toml")).await.expect("router starts");
    let admin = server.admin_addr().expect("admin");
    let t = body(&http_get(admin, "/tenants/contoso").await);
    assert_eq!(t["state"], "active", "{t}");
    assert_eq!(t["policy"]["signed_by"], public.as_str());
    assert_eq!(t["policy"]["manifest"]["name"], "exum-fixture-plan-a", "{t}");
    assert_eq!(t["policy"]["manifest"]["version"], "0.1.0");
    let serving = t["policy"]["hash"].clone();

    // Refused, each with its reason, while plan A serves on.
    let plan_b = std::fs::read(components::PLAN_B).expect("plan B");
    let mut altered = signed(components::PLAN_B, &trusted, "b.wasm");
    let middle = altered.len() / 2;
    altered[middle] ^= 0x01;
    for (bytes, reason) in [
        (plan_b.clone(), "signature: unsigned, and the tenant requires signed policies"),
        (signed(components::PLAN_B, &other, "b-other.wasm"), "which the tenant does not trust"),
        (altered, "does not verify"),
        (
            {
                let asking = with_manifest(&plan_b, r#"{"name":"greedy","version":"2.0.0","deadline_ms":500}"#);
                std::fs::write(dir.path().join("greedy.wasm"), asking).expect("write");
                signed(dir.path().join("greedy.wasm").to_str().expect("path"), &trusted, "greedy-signed.wasm")
            },
            "manifest: asks for a deadline of 500 ms; the tenant's cap is 5 ms",
        ),
        (
            {
                let asking = with_manifest(&plan_b, r#"{"name":"hungry","version":"2.0.0","memory_mib":64}"#);
                std::fs::write(dir.path().join("hungry.wasm"), asking).expect("write");
                signed(dir.path().join("hungry.wasm").to_str().expect("path"), &trusted, "hungry-signed.wasm")
            },
            "manifest: asks for 64 MiB of memory; the tenant's cap is 16 MiB",
        ),
    ] {
        let (status, t) = install(admin, dir.path(), &bytes).await;
        assert_eq!(status, 422, "{t}");
        assert_eq!(t["state"], "last_good_after_failed_reload", "{t}");
        assert!(t["last_error"].as_str().is_some_and(|e| e.contains(reason)), "{reason}: {t}");
        assert_eq!(t["policy"]["hash"], serving, "plan A still serves");
    }
    let h = body(&http_get(admin, "/tenants/contoso/policy/history").await);
    let refused = h["versions"].as_array().expect("versions").iter().filter(|v| v["state"] == "refused").count();
    assert_eq!(refused, 5, "{h}");

    // Signed by the trusted key and asking for less than the caps: serves,
    // with the limits it asked for.
    let modest = with_manifest(
        &plan_b,
        r#"{"name":"modest","version":"1.2.0","author":"Contoso IT","deadline_ms":2,"memory_mib":8}"#,
    );
    std::fs::write(dir.path().join("modest.wasm"), modest).expect("write");
    let ok = signed(dir.path().join("modest.wasm").to_str().expect("path"), &trusted, "modest-signed.wasm");
    let (status, t) = install(admin, dir.path(), &ok).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["state"], "active", "{t}");
    assert_eq!(t["policy"]["manifest"]["name"], "modest");
    assert_eq!(t["policy"]["manifest"]["author"], "Contoso IT", "{t}");
    assert_eq!(t["policy"]["limits"]["deadline_ms"], 2, "{t}");
    assert_eq!(t["policy"]["limits"]["memory_mib"], 8, "{t}");
    let metrics = http_get(admin, "/metrics").await;
    assert!(metrics.contains("name=\"modest 1.2.0\""), "{metrics}");
    server.stop();
}

#[test]
fn a_bad_trusted_key_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("directory.toml"), "").expect("write");
    let config = dir.path().join("router.toml");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\
         [tenant.signing]\ntrusted_keys = [\"c2hvcnQ=\"]\n",
    )
    .expect("write");
    let e = Tenants::load(&config).expect_err("refused").to_string();
    assert!(e.contains("tenant[0].signing") && e.contains("trusted_keys[0]: 5 bytes"), "{e}");
    std::fs::write(
        &config,
        "directory = \"directory.toml\"\n[[tenant]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n\
         [tenant.signing]\nrequired = true\n",
    )
    .expect("write");
    let e = Tenants::load(&config).expect_err("refused").to_string();
    assert!(e.contains("tenant[0].signing.required") && e.contains("at least one trusted key"), "{e}");
}

//! A tenant's developer loop: `exum-router new` outside the repository, the
//! crate's own tests with plain cargo, `exum-router build`, then `check` with
//! a configuration and a request, and `simulate --policy` on a deployment;
//! and the errors of `componentize` a tenant meets on the way.

use std::path::Path;
use std::process::Command;

use exum_router::scaffold::{Lang, SdkSource, build, new_policy};
use exum_router::tools::{self, SimulateOptions};
use exum_router_tests::{components, deployment_config, workspace};

fn request(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("examples/deployment/requests").join(name)).expect("request file")
}

#[test]
fn a_new_policy_crate_tests_builds_and_routes_outside_the_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sdk = SdkSource::Path(workspace().join("sdk"));
    let crate_dir = new_policy(Lang::Rust, dir.path(), "contoso-routing", &sdk).expect("created");
    for file in ["Cargo.toml", "src/lib.rs", "README.md", "rust-toolchain.toml", "Cargo.lock"] {
        assert!(crate_dir.join(file).is_file(), "{file}");
    }
    assert!(
        new_policy(Lang::Rust, dir.path(), "contoso-routing", &sdk).is_err(),
        "an existing folder is not overwritten"
    );
    assert!(new_policy(Lang::Rust, dir.path(), "Bad Name", &sdk).is_err());
    // One target folder for every run of this test: the SDK's dependencies
    // are compiled once.
    let target = workspace().join("target/scaffold");
    // Its own tests, with plain cargo.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        // One job: the suite's other tests share the machine's CPUs.
        .env("CARGO_BUILD_JOBS", "1")
        .args(["test", "--quiet"])
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo test: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 passed"), "{}", String::from_utf8_lossy(&out.stdout));
    // The component.
    let report = build(&crate_dir, None, Some(&target)).expect("builds");
    assert!(report.contains("manifest   contoso-routing 0.1.0"), "{report}");
    let component = crate_dir.join("contoso_routing.wasm");
    assert!(component.is_file());
    // check: init with a configuration, and a request routed.
    let bob = request("bob-on-premises.sip");
    let out = tools::check_running(&component, "sip:ceo@contoso.com", Some(("bob.sip", &bob))).expect("checks");
    assert!(out.contains("init       accepted the configuration"), "{out}");
    assert!(out.contains("\"Reject\"") && out.contains("15004"), "an empty directory knows no bob: {out}");
    let e = tools::check_running(&component, "not an address", None).expect_err("init refuses").to_string();
    assert!(e.contains("init refused its configuration: `not an address` is not a SIP address"), "{e}");
    // simulate --policy: the deployment's data, this policy, its configuration.
    let caller = String::from_utf8_lossy(&bob)
        .lines()
        .find(|l| l.starts_with("From:"))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .expect("a From URI")
        .to_owned();
    let options =
        SimulateOptions { policy: Some(component.clone()), policy_config: Some(caller), ..Default::default() };
    let out = tools::simulate(&deployment_config(), "bob.sip", &bob, &options).expect("simulates");
    assert!(out.contains("X-Priority-Caller"), "{out}");
    assert!(out.contains("\"name\": \"contoso_routing.wasm\""), "{out}");
    assert!(out.contains("sip:um1.redmond.contoso.com:5061;transport=tls"), "{out}");
}

/// A core module: the preamble, one function type, and `imports` (module, name).
fn core_module(imports: &[(&str, &str)]) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
    if !imports.is_empty() {
        let mut payload = vec![imports.len() as u8];
        for (module, name) in imports {
            payload.push(module.len() as u8);
            payload.extend_from_slice(module.as_bytes());
            payload.push(name.len() as u8);
            payload.extend_from_slice(name.as_bytes());
            payload.extend_from_slice(&[0, 0]);
        }
        m.push(2);
        m.push(payload.len() as u8);
        m.extend_from_slice(&payload);
    }
    m
}

#[test]
fn componentize_says_what_is_wrong_and_leaves_no_file_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.wasm");
    let wasi = dir.path().join("wasi.wasm");
    std::fs::write(&wasi, core_module(&[("wasi_snapshot_preview1", "fd_write")])).expect("write");
    let e = tools::componentize(&wasi, &out).expect_err("WASI").to_string();
    assert!(e.contains("imports WASI functions") && e.contains("wasm32-unknown-unknown"), "{e}");
    assert!(!out.exists());
    let bare = dir.path().join("bare.wasm");
    std::fs::write(&bare, core_module(&[])).expect("write");
    let e = tools::componentize(&bare, &out).expect_err("no world").to_string();
    assert!(e.contains("export_policy!"), "{e}");
    assert!(!out.exists());
    // A component given where a module is expected.
    let e = tools::componentize(Path::new(components::PLAN_A), &out).expect_err("a component").to_string();
    assert!(e.contains("already a component"), "{e}");
    assert!(!out.exists());
}

/// Runs a tool in `dir`; its output on failure.
fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program).current_dir(dir).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{program} {args:?} in {}: {text}", dir.display());
    text
}

/// What a tenant does after `new` in JavaScript or TypeScript, then in
/// Python: the README's commands (install, native tests), `exum-router
/// build`, `check` with a configuration and a request, and `simulate --policy`
/// on the example deployment, the listed caller's call carrying the header.
fn new_policy_builds_and_routes(lang: Lang, name: &str, install_and_test: &[(&str, &[&str])], test_summary: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sdk = SdkSource::Path(workspace().join(match lang {
        Lang::Python => "sdk-py",
        _ => "sdk-js",
    }));
    let project = new_policy(lang, dir.path(), name, &sdk).expect("created");
    assert!(project.join("README.md").is_file());
    assert!(new_policy(lang, dir.path(), name, &sdk).is_err(), "an existing folder is not overwritten");
    let wrong = SdkSource::Path(workspace().join("sdk"));
    let e = new_policy(lang, dir.path(), "other", &wrong).expect_err("the Rust SDK").to_string();
    assert!(e.contains("not the"), "{e}");
    // Without its toolchain installed, build says what to run.
    let e = build(&project, None, None).expect_err("no toolchain yet").to_string();
    assert!(e.contains("npm install") || e.contains("pip install"), "{e}");
    let mut last = String::new();
    for (program, args) in install_and_test {
        last = run_in(&project, program, args);
    }
    assert!(last.contains(test_summary), "the native tests: {last}");
    let report = build(&project, None, None).expect("builds");
    assert!(report.contains(&format!("manifest   {name} 0.1.0")), "{report}");
    let component = project.join(format!("{}.wasm", name.replace('-', "_")));
    let bob = request("bob-on-premises.sip");
    let out = tools::check_running(&component, "sip:ceo@contoso.com", Some(("bob.sip", &bob))).expect("checks");
    assert!(out.contains("init       accepted the configuration"), "{out}");
    let e = tools::check_running(&component, "not an address", None).expect_err("init refuses").to_string();
    assert!(e.contains("init refused its configuration: `not an address` is not a SIP address"), "{e}");
    let options = SimulateOptions {
        policy: Some(component.clone()),
        policy_config: Some("sip:zoe@fabrikam.com".into()),
        ..Default::default()
    };
    let out = tools::simulate(&deployment_config(), "bob.sip", &bob, &options).expect("simulates");
    assert!(out.contains("X-Priority-Caller") && out.contains("\"by\": \"policy\""), "{out}");
    assert!(out.contains("sip:um1.redmond.contoso.com:5061;transport=tls"), "{out}");
    // Signed as a Rust policy is: the manifest stays, the signature follows it.
    let key = dir.path().join("key.pem");
    tools::keygen(&key).expect("a key");
    tools::sign(&key, &component, None).expect("signed");
    let out = tools::check(&component).expect("checks");
    assert!(out.contains(&format!("manifest   {name} 0.1.0")) && !out.contains("signed by  nobody"), "{out}");
}

#[test]
fn a_new_typescript_policy_tests_builds_and_routes_outside_the_repository() {
    new_policy_builds_and_routes(
        Lang::Ts,
        "contoso-ts",
        &[("npm", &["install", "--prefer-offline", "--no-audit", "--no-fund"]), ("npm", &["test"])],
        "# pass 3",
    );
}

#[test]
fn a_new_javascript_policy_tests_builds_and_routes_outside_the_repository() {
    new_policy_builds_and_routes(
        Lang::Js,
        "contoso-js",
        &[("npm", &["install", "--prefer-offline", "--no-audit", "--no-fund"]), ("npm", &["test"])],
        "# pass 3",
    );
}

#[test]
fn a_new_python_policy_tests_builds_and_routes_outside_the_repository() {
    new_policy_builds_and_routes(
        Lang::Python,
        "contoso-py",
        &[
            ("python3", &["-m", "venv", ".venv"]),
            (".venv/bin/pip", &["install", "--quiet", "-r", "requirements-dev.txt"]),
            (".venv/bin/pytest", &["-q", "-p", "no:cacheprovider"]),
        ],
        "3 passed",
    );
}

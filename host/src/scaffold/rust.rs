//! Policies in Rust: a crate that builds with plain cargo wherever it is put,
//! its component built by cargo and componentized here.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ScaffoldError, SdkSource, write};

/// `exum-router new <name>`: a policy crate in `<parent>/<name>`: Cargo.toml
/// (the SDK as a dependency, release profile for small fast components, its
/// own workspace, metadata for publishing), `src/lib.rs` (the standard
/// algorithm with one adjustment, and native tests against `TestHost`), a
/// README and a `rust-toolchain.toml` with the wasm32 target.
/// The name is checked and the folder new (`super::new_policy`).
pub(super) fn new_policy(dir: &Path, name: &str, sdk: &SdkSource) -> Result<PathBuf, ScaffoldError> {
    let dependency = match sdk {
        SdkSource::Path(p) => {
            let p = p.canonicalize().map_err(|source| ScaffoldError::Io { path: p.clone(), source })?;
            if !p.join("Cargo.toml").is_file() {
                return Err(ScaffoldError::Invalid(format!("{}: no Cargo.toml: not the SDK's folder", p.display())));
            }
            format!("{{ version = \"{SDK_VERSION}\", path = {:?} }}", p.display().to_string())
        }
        SdkSource::Git { url, rev } => match rev {
            Some(r) => format!("{{ version = \"{SDK_VERSION}\", git = {url:?}, rev = {r:?} }}"),
            None => format!("{{ version = \"{SDK_VERSION}\", git = {url:?} }}"),
        },
    };
    let module = name.replace('-', "_");
    let ty: String = name
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    write(&dir.join("Cargo.toml"), &CARGO_TOML.replace("{name}", name).replace("{sdk}", &dependency))?;
    write(&dir.join("src/lib.rs"), &LIB_RS.replace("{name}", name).replace("{Type}", &ty))?;
    write(&dir.join("README.md"), &README.replace("{name}", name).replace("{module}", &module))?;
    write(&dir.join("rust-toolchain.toml"), RUST_TOOLCHAIN)?;
    write(&dir.join(".gitignore"), "/target\n/*.wasm\n")?;
    // The router's own lock file, when the SDK is its folder: the crate
    // builds with the versions the router was tested with.
    if let SdkSource::Path(p) = sdk
        && let Ok(lock) = std::fs::read_to_string(p.join("../Cargo.lock"))
    {
        write(&dir.join("Cargo.lock"), &lock)?;
    }
    Ok(dir.to_path_buf())
}

/// The SDK's version, the one this router speaks.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

const RUST_TOOLCHAIN: &str = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-unknown-unknown\"]\n";

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
description = "An exum-router routing policy"
license = "Apache-2.0"
# authors = ["Your Name <you@example.com>"]
# repository = "https://example.com/you/{name}"

[lib]
# cdylib: the component; rlib: native tests with `cargo test`.
crate-type = ["cdylib", "rlib"]

[dependencies]
exum-policy-sdk = {sdk}

# Small, fast components: what `exum-router build` compiles with.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
debug = false

# A workspace of its own, wherever the crate is put.
[workspace]
"#;

const LIB_RS: &str = r#"//! {name}: an exum-router routing policy.
//!
//! It starts as the router's standard Exchange UM algorithm with one
//! adjustment: calls from the callers listed in `policy_config` (SIP
//! addresses, comma-separated) carry an `X-Priority-Caller: yes` header to the
//! UM server. Change `route` to route your way; `exum_policy_sdk::standard`
//! gives the standard decision to start from, `exum_policy_sdk::routing` its
//! building blocks.

use std::cell::RefCell;

use exum_policy_sdk::{Decision, Failure, Policy, Request, parse_uri, standard};

thread_local! {
    /// The callers from `policy_config`, set by `init`.
    static CALLERS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The policy.
pub struct {Type};

impl Policy for {Type} {
    fn init(config: &str) -> Result<(), String> {
        let mut callers = Vec::new();
        for entry in config.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let uri = parse_uri(entry).ok_or_else(|| format!("`{entry}` is not a SIP address"))?;
            callers.push(uri.address());
        }
        CALLERS.with(|c| *c.borrow_mut() = callers);
        Ok(())
    }

    fn route(req: &Request) -> Decision {
        let decision = standard::route(req);
        if CALLERS.with(|c| c.borrow().contains(&req.from().address())) {
            return decision.map_forward(|f| f.add_header("X-Priority-Caller", "yes"));
        }
        decision
    }

    fn on_failure(req: &Request, failure: &Failure) -> Decision {
        standard::on_failure(req, failure)
    }
}

// The component's export, and its manifest (name, version and authors from
// Cargo.toml). To ask for tighter limits than the tenant's:
// `exum_policy_sdk::export_policy!({Type}, deadline_ms = 2, memory_mib = 8);`
exum_policy_sdk::export_policy!({Type});

#[cfg(test)]
mod tests {
    use exum_policy_sdk::testing::{TestHost, invite};
    use exum_policy_sdk::{Decision, Policy};

    use super::{Type};

    /// A tenant with one on-premises user on dial plan DP1.
    fn contoso() -> TestHost {
        TestHost::new("contoso")
            .on_premises_user("sip:bob@contoso.com", "eum:bob@contoso.com;phone-context=DP1.contoso.com")
            .dial_plan("DP1", "DP1.contoso.com", &[("sip:um1.contoso.com;transport=tls", 3000)])
    }

    #[test]
    fn listed_callers_reach_the_standard_targets_with_the_header() {
        contoso().install();
        {Type}::init("sip:ceo@contoso.com").expect("the configuration is valid");
        let req = invite("sip:bob@contoso.com;opaque=app:voicemail").from("sip:ceo@contoso.com").build();
        let Decision::Forward(f) = {Type}::route(&req) else { panic!("expected a forward") };
        assert_eq!(f.targets[0].uri, "sip:um1.contoso.com;transport=tls");
        assert!(f.add_headers.iter().any(|h| h.name == "X-Priority-Caller"));
    }

    #[test]
    fn other_callers_get_the_standard_decision() {
        contoso().install();
        {Type}::init("sip:ceo@contoso.com").expect("the configuration is valid");
        let req = invite("sip:bob@contoso.com;opaque=app:voicemail").from("sip:someone@fabrikam.com").build();
        assert_eq!({Type}::route(&req), exum_policy_sdk::standard::route(&req));
    }

    #[test]
    fn a_bad_configuration_is_refused() {
        assert!({Type}::init("not an address").is_err());
    }
}
"#;

const README: &str = r#"# {name}

An [exum-router](https://example.invalid/exum-router) routing policy: a
WebAssembly component the router runs in its sandbox for one tenant.

## Test, build, try

```sh
cargo test                          # native tests against the SDK's TestHost
exum-router build                   # the component: {module}.wasm, checked
exum-router check {module}.wasm --policy-config "sip:ceo@contoso.com"
exum-router simulate --config router.toml --policy {module}.wasm call.sip
```

Without `exum-router build`, the same with cargo and the router:

```sh
cargo build --release --target wasm32-unknown-unknown
exum-router componentize target/wasm32-unknown-unknown/release/{module}.wasm {module}.wasm
```

## Deploy

Copy `{module}.wasm` to the router's watched policy folder as
`<tenant-id>.wasm`, or start it as a shadow or canary first:

```sh
exum-router policy --config router.toml --tenant contoso shadow {module}.wasm
exum-router policy --config router.toml --tenant contoso status
exum-router policy --config router.toml --tenant contoso promote
```

Sign it when the tenant requires signed policies:
`exum-router sign --key key.pem {module}.wasm`.

## The SDK

`exum-policy-sdk` is a path or git dependency for now (see `Cargo.toml`); the
`version` there lets this crate be published once the SDK is on a registry.
"#;

/// `exum-router build [dir]`: builds the policy crate in `dir` for
/// wasm32-unknown-unknown (release profile), turns it into a component,
/// checks it, and writes `<dir>/<crate>.wasm` (or `output`). Cargo's target
/// folder is `target_dir` when given (else cargo's own choice). The report of
/// `check`.
pub(super) fn build(dir: &Path, output: Option<&Path>, target_dir: Option<&Path>) -> Result<String, ScaffoldError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(ScaffoldError::Invalid(format!("{}: no Cargo.toml: not a policy crate", dir.display())));
    }
    exum_guest_build::ensure_wasm_target(dir).map_err(|e| ScaffoldError::Cargo(format!("{e:#}")))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let metadata = Command::new(&cargo)
        .current_dir(dir)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| ScaffoldError::Cargo(format!("running cargo: {e}")))?;
    if !metadata.status.success() {
        return Err(ScaffoldError::Cargo(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&metadata.stderr).trim()
        )));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).map_err(|e| ScaffoldError::Cargo(format!("cargo metadata: {e}")))?;
    let target_dir = match target_dir {
        Some(t) => t.to_path_buf(),
        None => PathBuf::from(meta["target_directory"].as_str().unwrap_or("target")),
    };
    let manifest_path = manifest.canonicalize().unwrap_or(manifest.clone());
    let package = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["manifest_path"].as_str().is_some_and(|m| Path::new(m) == manifest_path)))
        .and_then(|p| p["name"].as_str())
        .ok_or_else(|| ScaffoldError::Invalid(format!("{}: no package in it", manifest.display())))?
        .to_owned();
    let status = Command::new(&cargo)
        .current_dir(dir)
        .args(["build", "--release", "--target", exum_guest_build::WASM_TARGET, "--lib", "--target-dir"])
        .arg(&target_dir)
        .status()
        .map_err(|e| ScaffoldError::Cargo(format!("running cargo: {e}")))?;
    if !status.success() {
        return Err(ScaffoldError::Cargo(format!("cargo build failed ({status})")));
    }
    let module = package.replace('-', "_");
    let core = target_dir.join(exum_guest_build::WASM_TARGET).join("release").join(format!("{module}.wasm"));
    let out = output.map_or_else(|| dir.join(format!("{module}.wasm")), Path::to_path_buf);
    crate::tools::componentize(&core, &out).map_err(|e| ScaffoldError::Cargo(e.to_string()))
}

//! Build-script helper: compiles policy crates of this workspace to
//! `wasm32-unknown-unknown` with one nested `cargo build`, turns each core module
//! into a component with `wit-component`, and tells the calling build script's
//! crate where the components are.
//!
//! The nested build uses its own target directory (`target/guests`) so it never
//! waits on the outer build's lock, and the `guest` profile of the workspace.
//!
//! rustup installs the `wasm32-unknown-unknown` target named in
//! `rust-toolchain.toml` only when it installs the toolchain itself; a machine
//! that already had the toolchain lacks it. The build installs it then through
//! rustup, and without rustup fails with the command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// One policy crate to build: its package name and the constant to emit for it.
#[derive(Debug, Clone, Copy)]
pub struct Guest {
    /// The cargo package name, e.g. `exum-policy-standard`.
    pub package: &'static str,
    /// The name of the `&str` constant holding the component's path, e.g. `STANDARD`.
    pub constant: &'static str,
}

/// Builds `guests` and writes `components.rs` into `OUT_DIR`, with one
/// `pub const NAME: &str = "/path/to/name.wasm";` per guest. Emits the
/// `rerun-if-changed` lines for the workspace's guest sources.
pub fn build(guests: &[Guest]) -> Result<()> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let workspace = find_workspace_root(&manifest_dir)?;
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let target_dir = workspace.join("target").join("guests");

    for dir in ["address", "sdk", "policies", "examples", "tests/fixtures", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    ensure_wasm_target(&workspace)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--quiet", "--target", WASM_TARGET, "--profile", "guest"])
        .arg("--target-dir")
        .arg(&target_dir);
    for guest in guests {
        cmd.args(["-p", guest.package]);
    }
    // The outer cargo's settings are for the host, not for the guests: flags for
    // another target, a clippy or coverage wrapper, the outer target directory.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_LLVM_COV",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().context("running the nested cargo build of the policies")?;
    if !status.success() {
        bail!("the nested cargo build of the policies failed ({status})");
    }

    let mut constants = String::new();
    for guest in guests {
        let file = guest.package.replace('-', "_");
        let core = target_dir.join("wasm32-unknown-unknown/guest").join(format!("{file}.wasm"));
        let bytes = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
        let component = componentize(&bytes).with_context(|| format!("componentizing {}", core.display()))?;
        let out = out_dir.join(format!("{file}.component.wasm"));
        std::fs::write(&out, component).with_context(|| format!("writing {}", out.display()))?;
        constants.push_str(&format!(
            "/// The component built from the `{}` crate.\npub const {}: &str = {:?};\n",
            guest.package,
            guest.constant,
            out.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("components.rs"), constants).context("writing components.rs")?;
    Ok(())
}

/// The target the policies are built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Makes sure the toolchain used in `workspace` has the standard library of
/// [`WASM_TARGET`]: installs it with rustup when it is missing, or says how to.
pub fn ensure_wasm_target(workspace: &Path) -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    if wasm_target_installed(&rustc, workspace) {
        return Ok(());
    }
    let manual = format!("rustup target add {WASM_TARGET}");
    if std::env::var_os("OUT_DIR").is_some() {
        println!("cargo:warning=the {WASM_TARGET} target is missing; installing it: {manual}");
    } else {
        eprintln!("the {WASM_TARGET} target is missing; installing it: {manual}");
    }
    let installed = Command::new("rustup").current_dir(workspace).args(["target", "add", WASM_TARGET]).status();
    // Two build scripts may install it at once (one rustup waits for or fails
    // on the other's): what counts is that it is there, now or once the other
    // install is done.
    for _ in 0..240 {
        if wasm_target_installed(&rustc, workspace) {
            return Ok(());
        }
        if installed.as_ref().is_ok_and(|s| s.success()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    match installed {
        Ok(status) => bail!(
            "the {WASM_TARGET} target is not installed and `{manual}` failed ({status}); \
             install it for this toolchain, then build again"
        ),
        Err(e) => bail!(
            "the {WASM_TARGET} target is not installed and rustup cannot be run ({e}); \
             run `{manual}` (or install the target's standard library for this toolchain), then build again"
        ),
    }
}

/// Whether the toolchain of `rustc` has the target's `core` library.
fn wasm_target_installed(rustc: &str, dir: &Path) -> bool {
    let Ok(out) =
        Command::new(rustc).current_dir(dir).args(["--print", "target-libdir", "--target", WASM_TARGET]).output()
    else {
        return false;
    };
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
}

/// Turns a core module built with wit-bindgen into a component.
pub fn componentize(core_module: &[u8]) -> Result<Vec<u8>> {
    wit_component::ComponentEncoder::default().module(core_module)?.validate(true).encode()
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run from a build script"))
}

fn find_workspace_root(start: &Path) -> Result<PathBuf> {
    for dir in start.ancestors() {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.contains("[workspace]")
        {
            return Ok(dir.to_path_buf());
        }
    }
    bail!("no workspace root above {}", start.display())
}

/// A policy in another language, built with that language's component
/// toolchain against `sdk/wit/policy.wit`.
#[derive(Debug, Clone, Copy)]
pub struct Polyglot {
    /// The language, which picks the toolchain.
    pub language: Language,
    /// The folder of its sources, relative to the workspace.
    pub dir: &'static str,
    /// Its entry: a JavaScript or TypeScript file (bundled with the SDK), or
    /// a Python module (the SDK on its path), in `dir`.
    pub entry: &'static str,
    /// The name of the constant to emit for it.
    pub constant: &'static str,
}

/// A language with a component toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// JavaScript, with componentize-js (`sdk-js/node_modules`, from `npm ci --prefix sdk-js`).
    JavaScript,
    /// Python, with componentize-py (`target/python`, from `pip install -r
    /// sdk-py/requirements-dev.txt` in that virtual environment, or on the PATH).
    Python,
}

/// Builds `guests` with their languages' toolchains and writes `polyglot.rs`
/// into `OUT_DIR`, with one `pub const NAME: Result<&str, &str>` per guest:
/// the component's path, or why it could not be built (a toolchain missing:
/// the tests that need it fail saying so). A component is kept in
/// `target/guests/polyglot/` under a hash of its sources, the contract and
/// the toolchain, and built again only when one of them changes.
pub fn build_polyglot(guests: &[Polyglot]) -> Result<()> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let workspace = find_workspace_root(&manifest_dir)?;
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    let cache = workspace.join("target").join("guests").join("polyglot");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let wit = workspace.join("sdk/wit/policy.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    println!("cargo:rerun-if-changed={}", workspace.join("sdk-js/package-lock.json").display());
    println!("cargo:rerun-if-changed={}", workspace.join("sdk-py/requirements-dev.txt").display());
    println!("cargo:rerun-if-changed={}", workspace.join("target/python/.exum-installed-requirements").display());
    println!("cargo:rerun-if-changed={}", workspace.join("sdk-js/node_modules/.exum-installed-lock").display());
    let mut constants = String::new();
    for guest in guests {
        let dir = workspace.join(guest.dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        let built = build_one(&workspace, &wit, &dir, guest, &cache);
        let value = match &built {
            Ok(path) => format!("Ok({:?})", path.display().to_string()),
            Err(e) => {
                println!("cargo:warning={}: {e:#}", guest.constant);
                format!("Err({:?})", format!("{e:#}"))
            }
        };
        constants.push_str(&format!(
            "/// The component built from `{}` ({:?}), or why it could not be built.\npub const {}: Result<&str, &str> = {value};\n",
            guest.dir, guest.language, guest.constant
        ));
    }
    std::fs::write(out_dir.join("polyglot.rs"), constants).context("writing polyglot.rs")?;
    Ok(())
}

fn build_one(workspace: &Path, wit: &Path, dir: &Path, guest: &Polyglot, cache: &Path) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let (tool, version_args): (PathBuf, &[&str]) = match guest.language {
        Language::JavaScript => (workspace.join("sdk-js/node_modules/.bin/componentize-js"), &["--version"]),
        Language::Python => {
            let venv = workspace.join("target/python/bin/componentize-py");
            (if venv.is_file() { venv } else { PathBuf::from("componentize-py") }, &["--version"])
        }
    };
    let version = Command::new(&tool).args(version_args).output().ok().filter(|o| o.status.success());
    let Some(version) = version else {
        bail!(
            "{} is not installed: {}",
            tool.display(),
            match guest.language {
                Language::JavaScript => "run `npm ci --prefix sdk-js` (scripts/test.sh does)",
                Language::Python => {
                    "run `python3 -m venv target/python && target/python/bin/pip install -r sdk-py/requirements-dev.txt` \
                     (scripts/test.sh does)"
                }
            }
        );
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    version.stdout.hash(&mut hasher);
    std::fs::read(wit).context("reading the contract")?.hash(&mut hasher);
    // The policy's sources and the SDK's: a policy built on the SDK changes with it.
    let sdk = match guest.language {
        Language::JavaScript => workspace.join("sdk-js/src"),
        Language::Python => workspace.join("sdk-py/exum_policy"),
    };
    println!("cargo:rerun-if-changed={}", sdk.display());
    for root in [dir, sdk.as_path()] {
        let mut files = Vec::new();
        sources(root, &mut files)?;
        files.sort();
        for file in &files {
            file.strip_prefix(root).unwrap_or(file).hash(&mut hasher);
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?.hash(&mut hasher);
        }
    }
    let out = cache.join(format!("{}-{:016x}.wasm", guest.constant.to_lowercase(), hasher.finish()));
    if out.is_file() {
        return Ok(out);
    }
    let tmp = out.with_extension("tmp.wasm");
    let mut cmd = Command::new(&tool);
    match guest.language {
        Language::JavaScript => {
            // One module: the policy with the SDK (from this repository) and
            // every import but the contract's, as `exum-router build` bundles.
            let bundle = out.with_extension("bundle.js");
            let script = format!(
                "import {{ build }} from 'rolldown';\n\
                 await build({{ input: {:?}, external: [/^exum:/, /^wasi:/], platform: 'neutral', logLevel: 'warn',\n\
                 resolve: {{ alias: {{ '@exum-router/policy-sdk': {:?} }} }},\n\
                 output: {{ file: {:?}, format: 'esm', codeSplitting: false }} }});\n",
                dir.join(guest.entry).display().to_string(),
                workspace.join("sdk-js/src/index.js").display().to_string(),
                bundle.display().to_string(),
            );
            let output = Command::new("node")
                .current_dir(workspace.join("sdk-js"))
                .args(["--input-type=module", "-e", &script])
                .output()
                .context("running node")?;
            if !output.status.success() {
                bail!("bundling {} failed: {}", dir.display(), String::from_utf8_lossy(&output.stderr));
            }
            // stdio, HTTP and fetch left out: the component imports WASI
            // random and clocks only (the router answers both per call).
            cmd.current_dir(cache)
                .arg("--wit")
                .arg(wit)
                .args(["--world-name", "policy", "-d", "stdio", "http", "fetch-event", "-o"])
                .arg(&tmp)
                .arg(&bundle);
        }
        Language::Python => {
            cmd.current_dir(cache)
                .arg("-d")
                .arg(wit)
                .args(["-w", "policy", "componentize", guest.entry, "-p"])
                .arg(dir)
                .arg("-p")
                .arg(workspace.join("sdk-py"))
                .arg("-o")
                .arg(&tmp);
        }
    }
    let output = cmd.output().with_context(|| format!("running {}", tool.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed on {}: {}{}",
            tool.display(),
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

/// The files under `dir`, but the toolchains' own folders.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if !["node_modules", "target", "__pycache__", ".venv"].iter().any(|n| name == *n) {
                sources(&path, out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

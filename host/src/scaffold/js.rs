//! Policies in JavaScript and TypeScript: an npm project on
//! `@exum-router/policy-sdk`, bundled by rolldown and built by componentize-js.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{POLICY_WIT, ScaffoldError, component_name, finish, limits, run, write};
use crate::policy::manifest::Manifest;

const PACKAGE_JSON: &str = include_str!("templates/js/package.json");
const README: &str = include_str!("templates/js/README.md");
const GITIGNORE: &str = include_str!("templates/js/gitignore");
const POLICY_JS: &str = include_str!("templates/js/policy.js");
const TEST_JS: &str = include_str!("templates/js/policy.test.js");
const POLICY_TS: &str = include_str!("templates/ts/policy.ts");
const TEST_TS: &str = include_str!("templates/ts/policy.test.ts");
const TSCONFIG: &str = include_str!("templates/ts/tsconfig.json");

/// The WASI features componentize-js leaves out: a policy has no console to
/// print to, no HTTP and no fetch event (random and clocks stay: the router
/// answers them per call, recorded).
const DISABLED_FEATURES: [&str; 3] = ["stdio", "http", "fetch-event"];

/// A JavaScript (or TypeScript) policy project in `dir`, on the SDK at `sdk`.
pub(super) fn new_policy(dir: &Path, name: &str, sdk: &Path, typescript: bool) -> Result<PathBuf, ScaffoldError> {
    let (entry, test, language) = if typescript {
        (
            "src/policy.ts",
            "tsc -p . && node --import @exum-router/policy-sdk/register --test test/policy.test.ts",
            "TypeScript",
        )
    } else {
        ("src/policy.js", "node --import @exum-router/policy-sdk/register --test test/policy.test.js", "JavaScript")
    };
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let unquote = |s: String| s[1..s.len() - 1].to_owned();
    let package = PACKAGE_JSON
        .replace("{name}", name)
        .replace("{entry}", entry)
        .replace("{test}", &unquote(json(test)))
        .replace("{sdk}", &unquote(json(&sdk.display().to_string())))
        .replace("{typescript}", if typescript { ",\n    \"typescript\": \"7.0.2\"" } else { "" });
    write(&dir.join("package.json"), &package)?;
    let module = component_name(name);
    let readme = README
        .replace("{name}", name)
        .replace("{language}", language)
        .replace("{module}", &module)
        .replace("{entry}", entry)
        .replace("{tsc}", if typescript { ", tsc" } else { "" });
    write(&dir.join("README.md"), &readme)?;
    write(&dir.join(".gitignore"), GITIGNORE)?;
    if typescript {
        write(&dir.join("src/policy.ts"), &POLICY_TS.replace("{name}", name))?;
        write(&dir.join("test/policy.test.ts"), TEST_TS)?;
        write(&dir.join("tsconfig.json"), TSCONFIG)?;
    } else {
        write(&dir.join("src/policy.js"), &POLICY_JS.replace("{name}", name))?;
        write(&dir.join("test/policy.test.js"), TEST_JS)?;
    }
    Ok(dir.to_path_buf())
}

/// Builds the project in `dir`: bundle, component, manifest, check.
pub(super) fn build(dir: &Path, output: Option<&Path>) -> Result<String, ScaffoldError> {
    let file = dir.join("package.json");
    let text = std::fs::read_to_string(&file).map_err(|source| ScaffoldError::Io { path: file.clone(), source })?;
    let package: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ScaffoldError::Invalid(format!("{}: not JSON: {e}", file.display())))?;
    let name = package["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScaffoldError::Invalid(format!("{}: name: missing", file.display())))?;
    let entry = match package["main"].as_str() {
        Some(main) => main.to_owned(),
        None => ["src/policy.ts", "src/policy.js", "policy.ts", "policy.js"]
            .into_iter()
            .find(|f| dir.join(f).is_file())
            .ok_or_else(|| {
                ScaffoldError::Invalid(format!(
                    "{}: main: missing, and no src/policy.ts or src/policy.js",
                    file.display()
                ))
            })?
            .to_owned(),
    };
    if !dir.join(&entry).is_file() {
        return Err(ScaffoldError::Invalid(format!("{}: main: {entry}: no such file", file.display())));
    }
    let (deadline_ms, memory_mib) = limits(package.get("exum-policy"), &file, "exum-policy")?;
    let author = match &package["author"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => o.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    let componentize = dir.join("node_modules/.bin/componentize-js");
    if !componentize.is_file() || !dir.join("node_modules/rolldown").is_dir() {
        return Err(ScaffoldError::Cargo(format!(
            "{}: the JavaScript toolchain is not installed (componentize-js, rolldown): run `npm install` there",
            dir.display()
        )));
    }
    let target = dir.join("target");
    write(&target.join("policy.wit"), POLICY_WIT)?;
    // One module with the SDK and every import but the contract's.
    let bundle = format!(
        "import {{ build }} from 'rolldown';\n\
         await build({{ input: {entry:?}, external: [/^exum:/, /^wasi:/], platform: 'neutral', logLevel: 'warn',\n\
         output: {{ file: 'target/policy.bundle.js', format: 'esm', codeSplitting: false }} }});\n"
    );
    run(dir, "bundling with rolldown", Command::new("node").args(["--input-type=module", "-e", &bundle]))?;
    let mut componentize_js = Command::new(&componentize);
    componentize_js.args(["--wit", "target/policy.wit", "--world-name", "policy"]);
    for feature in DISABLED_FEATURES {
        componentize_js.args(["-d", feature]);
    }
    componentize_js.args(["-o", "target/policy.component.wasm", "target/policy.bundle.js"]);
    run(dir, "componentize-js", &mut componentize_js)?;
    let manifest = Manifest {
        name: name.to_owned(),
        version: package["version"].as_str().unwrap_or_default().to_owned(),
        author,
        deadline_ms,
        memory_mib,
    };
    let out = output.map_or_else(|| dir.join(format!("{}.wasm", component_name(name))), Path::to_path_buf);
    finish(&target.join("policy.component.wasm"), &manifest, &out)
}

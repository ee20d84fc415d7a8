//! Policies in Python: a project on `exum-policy-sdk` in its own virtual
//! environment, built by componentize-py.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{POLICY_WIT, ScaffoldError, component_name, finish, limits, run, write};
use crate::policy::manifest::Manifest;

const POLICY_PY: &str = include_str!("templates/python/policy.py");
const TEST_PY: &str = include_str!("templates/python/test_policy.py");
const README: &str = include_str!("templates/python/README.md");
const GITIGNORE: &str = include_str!("templates/python/gitignore");

/// The toolchain's versions, those the router is tested with.
const REQUIREMENTS: &str = "# The SDK, the toolchain that builds the component, and the tests'.\n\
    exum-policy-sdk @ file://{sdk}\ncomponentize-py==0.25.1\npytest==8.3.4\n";

const PYPROJECT: &str = r#"[project]
name = "{name}"
version = "0.1.0"
description = "An exum-router routing policy"
requires-python = ">=3.11"
# authors = [{ name = "Your Name", email = "you@example.com" }]

# What `exum-router build` reads: the module holding `Handler`, and limits
# tighter than the tenant's, if wanted (deadline_ms, memory_mib).
[tool.exum-policy]
module = "policy"

[tool.pytest.ini_options]
pythonpath = ["."]
"#;

/// A Python policy project in `dir`, on the SDK at `sdk`.
pub(super) fn new_policy(dir: &Path, name: &str, sdk: &Path) -> Result<PathBuf, ScaffoldError> {
    let ty: String = name
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect();
    write(&dir.join("pyproject.toml"), &PYPROJECT.replace("{name}", name))?;
    write(&dir.join("requirements-dev.txt"), &REQUIREMENTS.replace("{sdk}", &sdk.display().to_string()))?;
    write(&dir.join("policy.py"), &POLICY_PY.replace("{name}", name).replace("{Type}", &ty))?;
    write(&dir.join("test_policy.py"), &TEST_PY.replace("{Type}", &ty))?;
    write(&dir.join("README.md"), &README.replace("{name}", name).replace("{module}", &component_name(name)))?;
    write(&dir.join(".gitignore"), GITIGNORE)?;
    Ok(dir.to_path_buf())
}

/// Builds the project in `dir`: component, manifest, check.
pub(super) fn build(dir: &Path, output: Option<&Path>) -> Result<String, ScaffoldError> {
    let file = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&file).map_err(|source| ScaffoldError::Io { path: file.clone(), source })?;
    let project: toml::Value =
        toml::from_str(&text).map_err(|e| ScaffoldError::Invalid(format!("{}: not TOML: {e}", file.display())))?;
    let name = project
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScaffoldError::Invalid(format!("{}: project.name: missing", file.display())))?;
    let version = project.get("project").and_then(|p| p.get("version")).and_then(|v| v.as_str()).unwrap_or_default();
    let author = project
        .get("project")
        .and_then(|p| p.get("authors"))
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.get("name").or_else(|| a.get("email")))
        .and_then(|n| n.as_str())
        .unwrap_or_default();
    let tool = project.get("tool").and_then(|t| t.get("exum-policy"));
    let tool_json = tool.map(|t| serde_json::to_value(t).unwrap_or_default());
    let (deadline_ms, memory_mib) = limits(tool_json.as_ref(), &file, "tool.exum-policy")?;
    let module = tool.and_then(|t| t.get("module")).and_then(|m| m.as_str()).unwrap_or("policy");
    if !dir.join(format!("{module}.py")).is_file() && !dir.join(module).join("__init__.py").is_file() {
        return Err(ScaffoldError::Invalid(format!(
            "{}: tool.exum-policy.module: no {module}.py (nor package {module}/) in {}",
            file.display(),
            dir.display()
        )));
    }
    // The project's `.venv`, else the environment the caller activated:
    // componentize-py finds the SDK and the other dependencies in the
    // site-packages of the environment named by VIRTUAL_ENV.
    let venv = dir.join(".venv");
    let missing = || {
        ScaffoldError::Cargo(format!(
            "{}: the Python toolchain is not installed (the SDK, componentize-py): run `python3 -m venv .venv && \
             .venv/bin/pip install -r requirements-dev.txt` there",
            dir.display()
        ))
    };
    let (componentize, environment) = if venv.join("bin/componentize-py").is_file() {
        (venv.join("bin/componentize-py"), venv.canonicalize().unwrap_or(venv))
    } else if let Some(active) = std::env::var_os("VIRTUAL_ENV") {
        let active = PathBuf::from(active);
        (active.join("bin/componentize-py"), active)
    } else {
        return Err(missing());
    };
    if !componentize.is_file() {
        return Err(missing());
    }
    let target = dir.join("target");
    write(&target.join("policy.wit"), POLICY_WIT)?;
    let mut componentize_py = Command::new(&componentize);
    componentize_py.env("VIRTUAL_ENV", environment);
    componentize_py
        .args(["-d", "target/policy.wit", "-w", "policy", "componentize", module, "-p", "."])
        .args(["-o", "target/policy.component.wasm"]);
    run(dir, "componentize-py", &mut componentize_py)?;
    let manifest = Manifest {
        name: name.to_owned(),
        version: version.to_owned(),
        author: author.to_owned(),
        deadline_ms,
        memory_mib,
    };
    let out = output.map_or_else(|| dir.join(format!("{}.wasm", component_name(name))), Path::to_path_buf);
    finish(&target.join("policy.component.wasm"), &manifest, &out)
}

//! A tenant's developer loop in every policy language: `exum-router new --lang
//! rust|js|ts|python <name>` creates a project that builds and tests with the
//! language's own tools wherever it is put, and `exum-router build` runs that
//! toolchain, adds the manifest where the toolchain cannot, checks the
//! component against the contract and writes it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::policy::manifest::{Manifest, with_manifest};

mod js;
mod python;
mod rust;

/// The contract every component is built against, as the router reads it.
pub const POLICY_WIT: &str = include_str!("../../../sdk/wit/policy.wit");

/// A policy language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the SDK crate `exum-policy-sdk`.
    Rust,
    /// JavaScript, with `@exum-router/policy-sdk`, built by componentize-js.
    #[value(alias = "javascript")]
    Js,
    /// TypeScript, with `@exum-router/policy-sdk`, built by componentize-js.
    #[value(alias = "typescript")]
    Ts,
    /// Python, with `exum-policy-sdk`, built by componentize-py.
    Python,
}

/// Where the SDK comes from in a new project.
#[derive(Debug, Clone)]
pub enum SdkSource {
    /// A path to the SDK's folder (`sdk/`, `sdk-js/` or `sdk-py/` of the router's repository).
    Path(PathBuf),
    /// A git repository holding the router's workspace, at a branch or tag (Rust only).
    Git {
        /// The repository's URL.
        url: String,
        /// A branch, tag or revision (`rev = ...`), if not the default branch.
        rev: Option<String>,
    },
}

/// Why a scaffolding step failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A wrong name or place.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The language's toolchain failed or is missing.
    #[error("{0}")]
    Cargo(String),
}

/// The SDK folder for `lang` in the repository this router was built from, if it is still there.
pub fn default_sdk(lang: Lang) -> Option<PathBuf> {
    let (folder, marker) = match lang {
        Lang::Rust => ("sdk", "Cargo.toml"),
        Lang::Js | Lang::Ts => ("sdk-js", "package.json"),
        Lang::Python => ("sdk-py", "pyproject.toml"),
    };
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(folder);
    sdk.join(marker).is_file().then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// `exum-router new --lang <lang> <name>`: a policy project in `<parent>/<name>`
/// that starts as the standard algorithm with one adjustment, with native
/// tests that pass and a README.
pub fn new_policy(lang: Lang, parent: &Path, name: &str, sdk: &SdkSource) -> Result<PathBuf, ScaffoldError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        return Err(ScaffoldError::Invalid(format!(
            "`{name}` is not a policy name: lowercase letters, digits, `-` and `_`, starting with a letter"
        )));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Invalid(format!("{} exists already", dir.display())));
    }
    let sdk_path = |marker: &str, what: &str| match sdk {
        SdkSource::Path(p) => {
            let p = p.canonicalize().map_err(|source| ScaffoldError::Io { path: p.clone(), source })?;
            if !p.join(marker).is_file() {
                return Err(ScaffoldError::Invalid(format!(
                    "{}: no {marker}: not the {what} SDK's folder",
                    p.display()
                )));
            }
            Ok(p)
        }
        SdkSource::Git { .. } => Err(ScaffoldError::Invalid(format!(
            "--sdk-git is for Rust policies; give --sdk-path <the router repository's {} folder>",
            if what == "Python" { "sdk-py" } else { "sdk-js" }
        ))),
    };
    match lang {
        Lang::Rust => rust::new_policy(&dir, name, sdk),
        Lang::Js | Lang::Ts => js::new_policy(&dir, name, &sdk_path("package.json", "JavaScript")?, lang == Lang::Ts),
        Lang::Python => python::new_policy(&dir, name, &sdk_path("pyproject.toml", "Python")?),
    }
}

/// What `exum-router new` prints: where the project is and what to run next.
pub fn next_steps(lang: Lang, dir: &Path) -> String {
    let d = dir.display();
    match lang {
        Lang::Rust => format!("created {d}\nnext: cd {d} && cargo test && exum-router build\n"),
        Lang::Js | Lang::Ts => format!("created {d}\nnext: cd {d} && npm install && npm test && exum-router build\n"),
        Lang::Python => format!(
            "created {d}\nnext: cd {d} && python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt \
             && .venv/bin/pytest && exum-router build\n"
        ),
    }
}

/// The language of the policy project in `dir`, from the file that defines it.
pub fn detect(dir: &Path) -> Result<Lang, ScaffoldError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Lang::Js)
    } else if dir.join("pyproject.toml").is_file() {
        Ok(Lang::Python)
    } else {
        Err(ScaffoldError::Invalid(format!(
            "{}: no Cargo.toml, package.json or pyproject.toml: not a policy project",
            dir.display()
        )))
    }
}

/// `exum-router build [dir]`: builds the policy project in `dir` with its
/// language's toolchain and writes the checked component to
/// `<dir>/<name>.wasm` (or `output`). The report of `check`.
pub fn build(dir: &Path, output: Option<&Path>, target_dir: Option<&Path>) -> Result<String, ScaffoldError> {
    match detect(dir)? {
        Lang::Rust => rust::build(dir, output, target_dir),
        Lang::Js | Lang::Ts => js::build(dir, output),
        Lang::Python => python::build(dir, output),
    }
}

/// Writes a file, creating its folder.
fn write(path: &Path, text: &str) -> Result<(), ScaffoldError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Io { path: parent.to_path_buf(), source })?;
    }
    std::fs::write(path, text).map_err(|source| ScaffoldError::Io { path: path.to_path_buf(), source })
}

/// Runs a toolchain step in `dir`; its output is passed through, a failure
/// names the step.
fn run(dir: &Path, step: &str, command: &mut Command) -> Result<(), ScaffoldError> {
    let status = command
        .current_dir(dir)
        .status()
        .map_err(|e| ScaffoldError::Cargo(format!("{step}: cannot run {:?}: {e}", command.get_program())))?;
    if !status.success() {
        return Err(ScaffoldError::Cargo(format!("{step} failed ({status})")));
    }
    Ok(())
}

/// The component file name for a package name: the last path segment of a
/// scoped name, `-` as `_` (as cargo names a crate's module).
fn component_name(package: &str) -> String {
    package.rsplit('/').next().unwrap_or(package).replace('-', "_")
}

/// Finishes a component a toolchain wrote to `built`: adds `manifest`, checks
/// it against the contract (a component that fails leaves no file) and writes
/// it to `out`. The report of `check`.
fn finish(built: &Path, manifest: &Manifest, out: &Path) -> Result<String, ScaffoldError> {
    let bytes = std::fs::read(built).map_err(|source| ScaffoldError::Io { path: built.to_path_buf(), source })?;
    let bytes =
        with_manifest(&bytes, manifest).map_err(|e| ScaffoldError::Cargo(format!("{}: {e}", built.display())))?;
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|source| ScaffoldError::Io { path: out.to_path_buf(), source })?;
    crate::tools::check(out).map_err(|e| {
        let _ = std::fs::remove_file(out);
        ScaffoldError::Cargo(e.to_string())
    })
}

/// The manifest's limits from a table of the project file
/// (`deadline_ms`, `memory_mib`); `file` and `key` name them in errors.
fn limits(table: Option<&serde_json::Value>, file: &Path, key: &str) -> Result<(u64, u64), ScaffoldError> {
    let Some(table) = table else { return Ok((0, 0)) };
    let Some(map) = table.as_object() else {
        return Err(ScaffoldError::Invalid(format!("{}: {key}: expected a table", file.display())));
    };
    let mut out = (0, 0);
    for (name, value) in map {
        let slot = match name.as_str() {
            "deadline_ms" => &mut out.0,
            "memory_mib" => &mut out.1,
            "entry" | "module" => continue,
            other => {
                return Err(ScaffoldError::Invalid(format!(
                    "{}: {key}.{other}: unknown key (deadline_ms, memory_mib)",
                    file.display()
                )));
            }
        };
        *slot = value.as_u64().ok_or_else(|| {
            ScaffoldError::Invalid(format!("{}: {key}.{name}: {value}: expected a positive integer", file.display()))
        })?;
    }
    Ok(out)
}

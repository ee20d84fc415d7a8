//! `componentize`: a Rust policy's core module into a checked component.

use std::path::Path;

use crate::policy::{LoadError, PolicyEngine};

use super::ToolError;

/// `exum-router componentize <core.wasm> <out.wasm>`: turns a policy crate's
/// core module (built for `wasm32-unknown-unknown`) into a component, checks it
/// against the contract, and writes it.
pub fn componentize(input: &Path, output: &Path) -> Result<String, ToolError> {
    let bytes = std::fs::read(input).map_err(|source| ToolError::Read { path: input.display().to_string(), source })?;
    if crate::policy::engine::is_component(&bytes) {
        return Err(ToolError::Policy {
            path: input.display().to_string(),
            source: LoadError::NotAComponent(
                "already a component: nothing to do; run `exum-router check` on it".into(),
            ),
        });
    }
    let refused =
        |why: String| ToolError::Policy { path: input.display().to_string(), source: LoadError::NotAComponent(why) };
    // What the module's sections tell, before wit-component's own words.
    if let Some(why) = crate::policy::manifest::module_problem(&bytes) {
        return Err(refused(why));
    }
    let component = exum_guest_build::componentize(&bytes)
        .map_err(|e| refused(format!("cannot make a component of this module: {e:#}")))?;
    // Checked before it is written: a component that fails leaves no file.
    let engine = PolicyEngine::new().map_err(|e| ToolError::Engine(format!("{e:#}")))?;
    engine.compile(&component).map_err(|source| ToolError::Policy { path: input.display().to_string(), source })?;
    let tmp = output.with_extension("wasm.tmp");
    std::fs::write(&tmp, &component)
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|source| ToolError::Read { path: output.display().to_string(), source })?;
    super::check(output)
}

//! `check`: a component against the contract; with a configuration, its `init`; with a request, a decision.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::control::health::HealthTable;
use crate::model::uri::UriRef;
use crate::model::wire::{self, Message};
use crate::model::{Source, Transport};
use crate::policy::PolicyEngine;
use crate::policy::engine::{ALLOWED_IMPORTS, CONTRACT, REQUIRED_EXPORT};

use super::ToolError;

/// `exum-router check <policy.wasm>`: validates a component against the contract
/// and describes it.
pub fn check(path: &Path) -> Result<String, ToolError> {
    let bytes = std::fs::read(path).map_err(|source| ToolError::Read { path: path.display().to_string(), source })?;
    let engine = PolicyEngine::new().map_err(|e| ToolError::Engine(format!("{e:#}")))?;
    let compiled =
        engine.compile(&bytes).map_err(|source| ToolError::Policy { path: path.display().to_string(), source })?;
    let mut out = String::new();
    let _ = writeln!(out, "component  {} ({} bytes)", path.display(), compiled.size);
    let _ = writeln!(out, "sha256     {}", compiled.hash);
    let _ = writeln!(out, "contract   {CONTRACT}");
    let _ = writeln!(out, "world      exum:policy/policy@0.1.0");
    for import in &compiled.imports {
        let _ = writeln!(out, "  import   {import}");
    }
    for export in &compiled.exports {
        let _ = writeln!(out, "  export   {export}");
    }
    let unused: Vec<&str> = ALLOWED_IMPORTS
        .iter()
        .copied()
        .filter(|i| !compiled.imports.iter().any(|c| c == i) && !i.ends_with("/types@0.1.0"))
        .collect();
    if !unused.is_empty() {
        let _ = writeln!(out, "  (does not use {})", unused.join(", "));
    }
    match crate::policy::manifest::manifest(&bytes) {
        Ok(Some(m)) => {
            let _ = writeln!(
                out,
                "manifest   {} (author {})",
                m.label(),
                if m.author.is_empty() { "not given" } else { &m.author }
            );
            if m.deadline_ms > 0 || m.memory_mib > 0 {
                let _ = writeln!(
                    out,
                    "  asks for deadline {} ms, memory {} MiB (0: the tenant's)",
                    m.deadline_ms, m.memory_mib
                );
            }
        }
        Ok(None) => {
            let _ = writeln!(out, "manifest   none (the SDK's export_policy! writes one)");
        }
        Err(e) => {
            let _ = writeln!(out, "manifest   unreadable: {e}");
        }
    }
    match crate::policy::manifest::signature(&bytes) {
        Ok(Some((sig, _))) => {
            let _ = writeln!(out, "signed by  {} (verified against a tenant's trusted keys when loaded)", sig.key);
        }
        Ok(None) => {
            let _ = writeln!(out, "signed by  nobody");
        }
        Err(e) => {
            let _ = writeln!(out, "signature  unreadable: {e}");
        }
    }
    if compiled.uses_wasi {
        let _ = writeln!(
            out,
            "ok: exports {REQUIRED_EXPORT} and imports nothing outside {CONTRACT} but WASI 0.2, which the router's \
             sandbox answers (no files, no network, the policy clock, output to the policy log)"
        );
    } else {
        let _ = writeln!(out, "ok: exports {REQUIRED_EXPORT} and imports nothing outside {CONTRACT}");
    }
    Ok(out)
}

/// `exum-router check <policy.wasm> --policy-config '...' [--request call.sip]`:
/// [`check`], then `init` run with the configuration, and the request (if
/// given) routed through the policy against an empty directory of a tenant
/// owning the Request-URI's domain; the decision as JSON.
pub fn check_running(path: &Path, policy_config: &str, request: Option<(&str, &[u8])>) -> Result<String, ToolError> {
    use crate::policy::version::{Code, PolicyVersion};
    let mut out = check(path)?;
    let bytes = std::fs::read(path).map_err(|source| ToolError::Read { path: path.display().to_string(), source })?;
    let engine = Arc::new(PolicyEngine::new().map_err(|e| ToolError::Engine(format!("{e:#}")))?);
    let compiled =
        engine.compile(&bytes).map_err(|source| ToolError::Policy { path: path.display().to_string(), source })?;
    let parsed = match request {
        Some((name, bytes)) => {
            let sip = Message::parse(bytes.to_vec(), false, wire::DEFAULT_MAX_MESSAGE)
                .map_err(|e| ToolError::Sip { path: name.to_owned(), reason: e.to_string() })?;
            Some((name, sip))
        }
        None => None,
    };
    let mut tenant = crate::control::Tenant::empty("check");
    if let Some((_, sip)) = &parsed
        && let Some(host) = sip.request_uri().and_then(|u| UriRef::parse(u).ok()).map(|u| u.host.to_ascii_lowercase())
    {
        tenant.config.domains = vec![host];
    }
    let tenant = Arc::new(tenant);
    let version = PolicyVersion::load(
        engine,
        Arc::new(HealthTable::default()),
        Code::Ready(compiled),
        path.display().to_string(),
        1,
        policy_config.to_owned(),
        crate::control::config::Limits::default(),
        &tenant,
        true,
    )
    .map_err(|source| ToolError::Policy { path: path.display().to_string(), source })?;
    let _ = writeln!(out, "init       accepted the configuration {policy_config:?}");
    if let Some((name, sip)) = parsed {
        let source = Source {
            addr: ([192, 0, 2, 10], 5060).into(),
            transport: Transport::Udp,
            tls_peer_name: None,
            local: None,
        };
        let view = crate::policy::view::request_view(&sip, &source)
            .map_err(|e| ToolError::Sip { path: name.to_owned(), reason: e.to_string() })?;
        let decision = match version.route(&tenant, &view) {
            Ok(d) => serde_json::json!({ "decision": d }),
            Err(fault) => serde_json::json!({ "fault": fault.to_string() }),
        };
        let _ =
            writeln!(out, "route      {name}, against an empty directory (`simulate --policy` uses a deployment's):");
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&decision).unwrap_or_default());
    }
    Ok(out)
}

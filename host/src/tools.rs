//! The offline tools: `check` a component against the contract, and `simulate`
//! a SIP request through its tenant's policy. Both work without any network.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::control::health::HealthTable;
use crate::control::{ConfigError, Tenants};
use crate::policy::contract::{Attempt, Decision, Failure, Outcome};
use crate::policy::decision::reason_phrase;
use crate::policy::engine::{ALLOWED_IMPORTS, CONTRACT, REQUIRED_EXPORT};
use crate::policy::view::ViewError;
use crate::policy::{LoadError, PolicyEngine, PolicyRegistry, Verdict, view};
use crate::sip::uri::UriRef;
use crate::sip::wire::{self, Message, WireError};
use crate::sip::{Source, Transport, originate};

/// Why a tool could not do its job. Each is a clear message and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file (or `-` for standard input).
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The component is not a valid policy.
    #[error("{path}: {source}")]
    Policy {
        /// The file.
        path: String,
        /// Why.
        source: LoadError,
    },
    /// The configuration or directory is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The SIP request does not parse.
    #[error("{path}: not a SIP request the router can route: {reason}")]
    Sip {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No tenant owns the Request-URI's domain.
    #[error("no tenant owns the domain `{0}` of the Request-URI (the router answers 404)")]
    UnknownTenant(String),
    /// The tenant's policy file could not be installed.
    #[error("tenant {tenant}: {reason}")]
    TenantPolicy {
        /// The tenant.
        tenant: String,
        /// Why.
        reason: String,
    },
    /// The engine could not start.
    #[error("the policy engine could not start: {0}")]
    Engine(String),
}

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
    let _ = writeln!(out, "ok: exports {REQUIRED_EXPORT} and imports nothing outside {CONTRACT}");
    Ok(out)
}

/// `exum-router componentize <core.wasm> <out.wasm>`: turns a policy crate's
/// core module (built for `wasm32-unknown-unknown`) into a component, checks it
/// against the contract, and writes it.
pub fn componentize(input: &Path, output: &Path) -> Result<String, ToolError> {
    let bytes = std::fs::read(input).map_err(|source| ToolError::Read { path: input.display().to_string(), source })?;
    if super::policy::engine::is_component(&bytes) {
        return Err(ToolError::Policy {
            path: input.display().to_string(),
            source: LoadError::NotAComponent(
                "already a component: nothing to do; run `exum-router check` on it".into(),
            ),
        });
    }
    let component = exum_guest_build::componentize(&bytes).map_err(|e| ToolError::Policy {
        path: input.display().to_string(),
        source: LoadError::NotAComponent(format!("cannot make a component of this module: {e:#}")),
    })?;
    std::fs::write(output, &component)
        .map_err(|source| ToolError::Read { path: output.display().to_string(), source })?;
    check(output)
}

/// Options of `simulate`.
#[derive(Debug, Clone, Default)]
pub struct SimulateOptions {
    /// The request's source address (default 192.0.2.10:5060 over UDP).
    pub source: Option<std::net::SocketAddr>,
    /// Targets to treat as marked down by health probes.
    pub down: Vec<String>,
    /// Also simulate every target of a forward failing (timeouts) and show the
    /// `on-failure` decision.
    pub fail_all: bool,
}

/// `exum-router simulate --config <file> <request.sip>`: runs a request through
/// its tenant's policy; returns the decision as JSON and the request as it would
/// be forwarded (or the response the router would send).
pub fn simulate(
    config: &Path,
    request_path: &str,
    request: &[u8],
    options: &SimulateOptions,
) -> Result<String, ToolError> {
    Simulator::new(config, &options.down)?.run(request_path, request, options)
}

/// A deployment loaded once that runs requests through their tenant's policy the
/// way the router's request path does up to the decision (parse, tenant by
/// domain, request view, policy call, forwarding edits): `simulate`, and the
/// fuzzing of the whole request path.
pub struct Simulator {
    tenants: Tenants,
    registry: PolicyRegistry,
    installed: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::policy::TenantPolicy>>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    /// Loads the configuration at `config` (and its directory); `down` lists
    /// targets to treat as marked down by health probes.
    pub fn new(config: &Path, down: &[String]) -> Result<Simulator, ToolError> {
        let (_, tenants) = Tenants::load(config)?;
        let health = Arc::new(HealthTable::default());
        for d in down {
            health.set(d, false);
        }
        let engine = Arc::new(PolicyEngine::new().map_err(|e| ToolError::Engine(format!("{e:#}")))?);
        let registry = PolicyRegistry::new(engine, health).map_err(|e| ToolError::Engine(e.to_string()))?;
        Ok(Simulator { tenants, registry, installed: std::sync::Mutex::new(Default::default()) })
    }

    /// Runs `request` (read from `request_path`, for messages) through its tenant's policy.
    pub fn run(&self, request_path: &str, request: &[u8], options: &SimulateOptions) -> Result<String, ToolError> {
        let tenants = &self.tenants;
        let sip_error = |reason: String| ToolError::Sip { path: request_path.to_owned(), reason };
        // Files written by hand often end lines in a bare LF; the wire layer takes both.
        let sip = Message::parse(request.to_vec(), false, wire::DEFAULT_MAX_MESSAGE)
            .map_err(|e: WireError| sip_error(e.to_string()))?;
        let ruri = sip.request_uri().ok_or_else(|| sip_error("a response, not a request".into()))?;
        let host =
            UriRef::parse(ruri).map_err(|e| sip_error(format!("invalid Request-URI: {e}")))?.host.to_ascii_lowercase();
        let tenant = tenants.by_domain(&host).ok_or(ToolError::UnknownTenant(host))?.clone();
        let source = Source {
            addr: options.source.unwrap_or_else(|| ([192, 0, 2, 10], 5060).into()),
            transport: Transport::Udp,
            tls_peer_name: None,
        };
        let view = view::request_view(&sip, &source).map_err(|e: ViewError| sip_error(e.to_string()))?;
        let policy = {
            let mut installed = self.installed.lock().unwrap_or_else(|e| e.into_inner());
            installed
                .entry(tenant.config.id.clone())
                .or_insert_with(|| self.registry.install_configured(&tenant))
                .clone()
        };
        if let Some(reason) = &policy.load_error {
            return Err(ToolError::TenantPolicy { tenant: tenant.config.id.clone(), reason: reason.clone() });
        }

        let verdict = policy.route(&tenant, &view);
        let mut out = String::new();
        write_verdict(&mut out, "route", &tenant.config.id, &verdict);
        write_outcome(&mut out, &sip, &verdict.decision);
        if options.fail_all
            && let Decision::Forward(f) = &verdict.decision
        {
            let failure = Failure {
                attempts: f
                    .targets
                    .iter()
                    .map(|t| Attempt { target: t.uri.clone(), outcome: Outcome::Timeout })
                    .collect(),
            };
            let after = policy.on_failure(&tenant, &view, &failure);
            out.push('\n');
            write_verdict(&mut out, "on-failure (every target timed out)", &tenant.config.id, &after);
            write_outcome(&mut out, &sip, &after.decision);
        }
        Ok(out)
    }
}

fn write_verdict(out: &mut String, step: &str, tenant: &str, verdict: &Verdict) {
    let json = serde_json::json!({
        "step": step,
        "tenant": tenant,
        "decided_by": verdict.decided_by,
        "decision": verdict.decision,
        "elapsed_us": verdict.elapsed.as_micros() as u64,
    });
    let _ = writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default());
}

fn write_outcome(out: &mut String, sip: &Message, decision: &Decision) {
    match decision {
        Decision::Forward(f) => {
            // The same splice edits the proxy makes, less its Via.
            let mut edit = sip.edit();
            if let Some(uri) = &f.request_uri {
                edit = edit.request_uri(uri);
            }
            for name in &f.remove_headers {
                edit = edit.remove(name);
            }
            for h in &f.add_headers {
                edit = edit.add(&h.name, &h.value);
            }
            let hops = sip.max_forwards().ok().flatten().unwrap_or(71);
            let forwarded = edit.max_forwards(hops.saturating_sub(1).min(70)).finish();
            let targets: Vec<&str> = f.targets.iter().map(|t| t.uri.as_str()).collect();
            let _ = writeln!(out, "\n--- forwarded to {} (the router also adds its Via) ---", targets.join(", then "));
            out.push_str(&String::from_utf8_lossy(&forwarded));
        }
        Decision::Reject(r) => {
            let reason = if r.reason.is_empty() { reason_phrase(r.code) } else { &r.reason };
            let extra: Vec<(&str, &str)> = r.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
            let _ = writeln!(out, "\n--- response ---");
            out.push_str(&String::from_utf8_lossy(&originate::response(sip, r.code, reason, "simulated", &extra)));
        }
        Decision::Redirect(r) => {
            let contacts: Vec<String> = r.contacts.iter().map(|c| format!("<{c}>")).collect();
            let mut extra: Vec<(&str, &str)> = contacts.iter().map(|c| ("Contact", c.as_str())).collect();
            extra.extend(r.headers.iter().map(|h| (h.name.as_str(), h.value.as_str())));
            let _ = writeln!(out, "\n--- response ---");
            out.push_str(&String::from_utf8_lossy(&originate::response(
                sip,
                r.code,
                reason_phrase(r.code),
                "simulated",
                &extra,
            )));
        }
        Decision::Standard => {}
    }
}

//! The offline tools: `check` a component against the contract, and `simulate`
//! a SIP request through its tenant's policy. Both work without any network.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::control::config::RouterConfig;
use crate::control::health::HealthTable;
use crate::control::{ConfigError, Tenants};
use crate::metrics::Metrics;
use crate::model::uri::UriRef;
use crate::model::wire::{self, Message, Name, WireError};
use crate::model::{Source, Transport};
use crate::policy::contract::{Attempt, Decision, Failure, Outcome};
use crate::policy::engine::{ALLOWED_IMPORTS, CONTRACT, REQUIRED_EXPORT};
use crate::policy::{DecidedBy, LoadError, PolicyEngine, PolicyRegistry, Verdict};
use crate::sip::error::{Answer, RequestError};
use crate::sip::originate;
use crate::sip::proxy::classify::{ALLOW, Classified, classify};
use crate::sip::proxy::decide;
use crate::sip::proxy::dialog;
use crate::sip::proxy::forward::{ForwardSpec, Hop, forwarded};
use crate::sip::proxy::stateless::next_hop;
use crate::sip::secret::Secret;

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
    /// A signing key is unusable.
    #[error("{path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        reason: String,
    },
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

/// `exum-router sign --key <key> <policy.wasm> [--output <signed.wasm>]`:
/// appends an Ed25519 signature section (replacing an older one).
pub fn sign(key: &Path, policy: &Path, output: Option<&Path>) -> Result<String, ToolError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| ToolError::Read { path: p.display().to_string(), source });
    let pair = crate::policy::manifest::read_key(&read(key)?)
        .map_err(|reason| ToolError::Key { path: key.display().to_string(), reason })?;
    let bytes = read(policy)?;
    let (signed, public) = crate::policy::manifest::sign(&bytes, &pair)
        .map_err(|e| ToolError::Policy { path: policy.display().to_string(), source: LoadError::NotAComponent(e) })?;
    let out = output.unwrap_or(policy);
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &signed)
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|source| ToolError::Read { path: out.display().to_string(), source })?;
    Ok(format!("signed {} with key {public}\n", out.display()))
}

/// `exum-router keygen --out <key.pem>`: a new Ed25519 signing key (PKCS#8
/// PEM, readable by its owner only); prints the public key for a tenant's
/// `trusted_keys`.
pub fn keygen(out: &Path) -> Result<String, ToolError> {
    let (pem, public) = crate::policy::manifest::generate_key()
        .map_err(|reason| ToolError::Key { path: out.display().to_string(), reason })?;
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out)?;
        f.write_all(pem.as_bytes())
    };
    write().map_err(|source| ToolError::Read { path: out.display().to_string(), source })?;
    Ok(format!("wrote {}\npublic key (for [tenant.signing] trusted_keys): {public}\n", out.display()))
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
    /// Decide with this component instead of the tenant's policy.
    pub policy: Option<std::path::PathBuf>,
    /// Give `init` this string instead of the tenant's `policy_config`.
    pub policy_config: Option<String>,
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
    Simulator::with_policy(config, &options.down, options.policy.as_deref(), options.policy_config.as_deref())?.run(
        request_path,
        request,
        options,
    )
}

/// A deployment loaded once that runs requests through the router's own
/// request path up to the wire, without a network: validation, the tenant by
/// domain and its peers, the policy `serve` would use (a tenant's file in the
/// policy directory included), the forwarding edits and the responses of the
/// proxy core. `simulate` and the fuzzing of the whole request path use it.
pub struct Simulator {
    config: RouterConfig,
    /// `[sip] secret` (or a random one): the Record-Route's dialog tag.
    secret: Secret,
    tenants: Tenants,
    registry: PolicyRegistry,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

impl Simulator {
    /// Loads the configuration at `config` (and its directory, and its policy
    /// directory); `down` lists targets to treat as marked down by health probes.
    pub fn new(config: &Path, down: &[String]) -> Result<Simulator, ToolError> {
        Self::with_policy(config, down, None, None)
    }

    /// [`Self::new`], every tenant deciding with the component at `policy`
    /// (and `init` given `policy_config`) when given. Nothing is recorded and
    /// no history written: the router's `policy_cache` is its own.
    pub fn with_policy(
        config: &Path,
        down: &[String],
        policy: Option<&Path>,
        policy_config: Option<&str>,
    ) -> Result<Simulator, ToolError> {
        let (mut config, tenants) = Tenants::load(config)?;
        config.records = None;
        config.policy_cache = None;
        if policy.is_some() {
            config.policy_dir = None;
        }
        let changes: Vec<(String, Option<crate::control::Tenant>)> = tenants
            .iter()
            .map(|t| {
                let mut c = t.config.clone();
                c.record_decisions = 0.0;
                if let Some(p) = policy {
                    c.policy = crate::control::config::PolicySource::File(p.to_path_buf());
                }
                if let Some(pc) = policy_config {
                    c.policy_config = pc.to_owned();
                }
                (c.id.clone(), Some(crate::control::Tenant { config: c, directory: t.directory.clone() }))
            })
            .collect();
        let tenants = tenants.with_changes(changes);
        let health = Arc::new(HealthTable::default());
        for d in down {
            health.set(d, false);
        }
        let metrics = Arc::new(Metrics::new());
        let registry = PolicyRegistry::for_deployment(&config, &tenants, health, metrics)
            .map_err(|e| ToolError::Engine(e.to_string()))?;
        let secret = Secret::new(config.secret.as_deref());
        Ok(Simulator { config, secret, tenants, registry })
    }

    /// Runs `request` (read from `request_path`, for messages) through the
    /// request path.
    pub fn run(&self, request_path: &str, request: &[u8], options: &SimulateOptions) -> Result<String, ToolError> {
        let sip_error = |reason: String| ToolError::Sip { path: request_path.to_owned(), reason };
        // Files written by hand often end lines in a bare LF; the wire layer takes both.
        let sip = Message::parse(request.to_vec(), false, wire::DEFAULT_MAX_MESSAGE)
            .map_err(|e: WireError| sip_error(e.to_string()))?;
        if !sip.is_request() {
            return Err(sip_error("a response, not a request".into()));
        }
        let source = Source {
            addr: options.source.unwrap_or_else(|| ([192, 0, 2, 10], 5060).into()),
            transport: Transport::Udp,
            tls_peer_name: None,
            local: None,
        };
        let mut out = String::new();
        let is_us = |u: &UriRef<'_>| self.is_us(u);
        // What the proxy does before any policy: validation, its own OPTIONS
        // and Route, a request in a dialog.
        let routable = match classify(&sip, is_us) {
            Classified::Refused(e) => {
                write_answer(&mut out, &sip, source.addr, &e.answer(), &self.config.name);
                return Ok(out);
            }
            Classified::OptionsToUs => {
                write_answer(
                    &mut out,
                    &sip,
                    source.addr,
                    &Answer::new(200).with("Allow", ALLOW.to_owned()),
                    &self.config.name,
                );
                return Ok(out);
            }
            Classified::InDialog(r) => {
                if let Err(e) = dialog::check(&sip, &source, &self.tenants, &self.secret, is_us) {
                    write_answer(&mut out, &sip, source.addr, &e.answer(), &self.config.name);
                    return Ok(out);
                }
                let req = r.rewritten.unwrap_or(sip);
                let Some((next, _)) = next_hop(&req, is_us) else {
                    write_answer(&mut out, &req, source.addr, &RequestError::NoNextHop.answer(), &self.config.name);
                    return Ok(out);
                };
                let _ = writeln!(out, "in a dialog: routed along its Route set, no policy asked");
                self.write_forwarded(
                    &mut out,
                    &req,
                    &ForwardSpec::default(),
                    &[next.as_str()],
                    None,
                    false,
                    r.pop_routes,
                    &source,
                );
                return Ok(out);
            }
            Classified::New(r) => r,
        };
        let pop_routes = routable.pop_routes;
        let sip = routable.rewritten.unwrap_or(sip);
        let tenant = match decide::tenant_for(&self.tenants, &sip, &source) {
            Ok(t) => t,
            Err(RequestError::UnknownDomain) => {
                let host = sip
                    .request_uri()
                    .and_then(|u| UriRef::parse(u).ok())
                    .map_or(String::new(), |u| u.host.to_ascii_lowercase());
                return Err(ToolError::UnknownTenant(host));
            }
            Err(e) => {
                write_answer(&mut out, &sip, source.addr, &e.answer(), &self.config.name);
                return Ok(out);
            }
        };
        if let Some(reason) = &self.registry.get(&tenant).load_error {
            return Err(ToolError::TenantPolicy { tenant: tenant.config.id.clone(), reason: reason.clone() });
        }
        let decided = match decide::decide(&self.registry, tenant, &sip, &source) {
            Ok(d) => d,
            Err(e) => {
                write_answer(&mut out, &sip, source.addr, &e.answer(), &self.config.name);
                return Ok(out);
            }
        };
        let id = decided.tenant.config.id.clone();
        let record_route = decided.tenant.config.record_route;
        write_verdict(&mut out, "route", &id, &decided.verdict);
        self.write_outcome(&mut out, &sip, &source, record_route, pop_routes, &decided.verdict);
        if options.fail_all
            && let Decision::Forward(f) = &decided.verdict.decision
        {
            let failure = Failure {
                attempts: f
                    .targets
                    .iter()
                    .map(|t| Attempt { target: t.uri.clone(), outcome: Outcome::Timeout })
                    .collect(),
            };
            let after =
                decide::on_failure(&decided.policy, &decided.tenant, &decided.view, &failure, decided.verdict.role);
            out.push('\n');
            write_verdict(&mut out, "on-failure (every target timed out)", &id, &after);
            self.write_outcome(&mut out, &sip, &source, record_route, pop_routes, &after);
        }
        Ok(out)
    }

    /// Whether `uri` names one of the configured listeners (port 5060, 5061
    /// for TLS, when the URI gives none; a listener on the unspecified address
    /// is every address of its family), as the proxy's test is for its bound
    /// sockets.
    fn is_us(&self, uri: &UriRef<'_>) -> bool {
        let Some(ip) = exum_address::ip_literal(uri.host) else { return false };
        let tls = matches!(uri.scheme, exum_address::Scheme::Sips)
            || uri.param("transport").flatten().is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let port = uri.port.unwrap_or(if tls { 5061 } else { 5060 });
        self.config.listen.iter().any(|l| {
            let a = l.address;
            a.port() == port && (a.ip() == ip || (a.ip().is_unspecified() && a.is_ipv6() == ip.is_ipv6()))
        })
    }

    /// The request as the proxy would forward it to the first target, or the
    /// response it would answer with.
    fn write_outcome(
        &self,
        out: &mut String,
        sip: &Message,
        source: &Source,
        record_route: bool,
        pop_routes: usize,
        verdict: &Verdict,
    ) {
        let decision = &verdict.decision;
        let Decision::Forward(f) = decision else {
            let answer = match (&verdict.decided_by, Answer::of_decision(decision)) {
                (DecidedBy::Internal, _) => RequestError::Internal("the standard policy failed".into()).answer(),
                (_, Some(answer)) => answer,
                (_, None) => RequestError::NoDecision.answer(),
            };
            write_answer(out, sip, source.addr, &answer, &self.config.name);
            return;
        };
        let targets: Vec<&str> = f.targets.iter().map(|t| t.uri.as_str()).collect();
        let transport = f.targets.first().and_then(|t| t.transport).map(Transport::from);
        self.write_forwarded(out, sip, &ForwardSpec::of(f), &targets, transport, record_route, pop_routes, source);
    }

    /// `sip` as the proxy forwards it (its Via shows the first listener's address).
    #[allow(clippy::too_many_arguments)]
    fn write_forwarded(
        &self,
        out: &mut String,
        sip: &Message,
        spec: &ForwardSpec,
        targets: &[&str],
        transport: Option<Transport>,
        record_route: bool,
        pop_routes: usize,
        source: &Source,
    ) {
        let local = self.config.listen.first().map_or_else(|| "127.0.0.1:5060".to_owned(), |l| l.address.to_string());
        let dialog_tag = self.secret.dialog_tag(sip.first(Name::CallId).unwrap_or(""));
        let hop = Hop {
            transport: transport.unwrap_or(Transport::Udp),
            local: &local,
            branch: "z9hG4bK-simulated",
            source: source.addr,
            record_route: record_route.then_some(dialog_tag.as_str()),
            pop_routes,
            inbound: None,
        };
        let _ = writeln!(out, "\n--- forwarded to {} ---", targets.join(", then "));
        out.push_str(&String::from_utf8_lossy(&forwarded(sip, spec, None, &hop)));
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

/// A response the router would send.
fn write_answer(out: &mut String, sip: &Message, source: std::net::SocketAddr, answer: &Answer, name: &str) {
    let answer = &answer.clone().sourced(name);
    let headers: Vec<(&str, &str)> = answer.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str())).collect();
    let _ = writeln!(out, "\n--- response ---");
    out.push_str(&String::from_utf8_lossy(&originate::response(
        sip,
        source,
        answer.code,
        &answer.reason,
        "simulated",
        &headers,
    )));
}

/// Options of `replay`.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Replay on this component instead of the recorded one.
    pub policy: Option<std::path::PathBuf>,
    /// Give `init` this string instead of the recorded one.
    pub policy_config: Option<String>,
    /// Where recorded components are (default: the `policies` folder beside
    /// the record's tenant folder, as the recorder keeps them).
    pub components: Option<std::path::PathBuf>,
    /// Only the record on this line (from 1).
    pub line: Option<usize>,
}

/// What `replay` found: its report, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The report, one block per record.
    pub text: String,
    /// Records whose replayed output differs from the recorded one.
    pub differing: usize,
    /// Records that could not be replayed.
    pub failed: usize,
}

/// `exum-router replay <records> [--policy other.wasm]`: runs recorded policy
/// calls again with their imports answered from the record, and compares.
pub fn replay(path: &Path, options: &ReplayOptions) -> Result<ReplayReport, ToolError> {
    use crate::policy::record;
    use crate::policy::replay::replay as run;
    let records =
        record::read(path).map_err(|e| ToolError::Sip { path: path.display().to_string(), reason: e.to_string() })?;
    let engine = Arc::new(PolicyEngine::new().map_err(|e| ToolError::Engine(format!("{e:#}")))?);
    let other = match &options.policy {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read(p).map_err(|source| ToolError::Read { path: p.display().to_string(), source })?,
        )),
        None => None,
    };
    let components = options.components.clone().unwrap_or_else(|| {
        let parent = path.parent().unwrap_or(Path::new("."));
        let beside = parent.join("policies");
        if beside.is_dir() { beside } else { parent.parent().unwrap_or(Path::new(".")).join("policies") }
    });
    let standard_hash = crate::policy::hex_sha256(crate::policy::STANDARD_COMPONENT);
    let mut report = ReplayReport { text: String::new(), differing: 0, failed: 0 };
    for (i, r) in records.iter().enumerate() {
        let n = i + 1;
        if options.line.is_some_and(|l| l != n) {
            continue;
        }
        let out = &mut report.text;
        let short = r.policy.hash.get(..12).unwrap_or(&r.policy.hash);
        let export = match r.export {
            record::Export::Route => "route",
            record::Export::OnFailure => "on-failure",
        };
        let _ = writeln!(
            out,
            "record {n}: tenant {}, call-id {}, {export}, recorded with {} v{} (sha256 {short}…)",
            r.tenant, r.call_id, r.policy.name, r.policy.version
        );
        let bytes = match &other {
            Some((name, bytes)) => {
                let _ = writeln!(out, "replayed on {name}");
                bytes.clone()
            }
            None if r.policy.hash == standard_hash => crate::policy::STANDARD_COMPONENT.to_vec(),
            None => {
                let file = components.join(format!("{}.wasm", r.policy.hash));
                match std::fs::read(&file) {
                    Ok(b) if crate::policy::hex_sha256(&b) != r.policy.hash => {
                        report.failed += 1;
                        let _ = writeln!(
                            out,
                            "error: {} is not the recorded component (another SHA-256)\n",
                            file.display()
                        );
                        continue;
                    }
                    Ok(b) => b,
                    Err(e) => {
                        report.failed += 1;
                        let _ = writeln!(
                            out,
                            "error: the recorded component {}: {e} (give it with --policy)\n",
                            file.display()
                        );
                        continue;
                    }
                }
            }
        };
        let config = options.policy_config.as_deref().unwrap_or(&r.policy.init_config);
        match run(&engine, r, &bytes, config) {
            Ok(replayed) => {
                let _ = writeln!(out, "output {}", serde_json::to_string(&replayed.output).unwrap_or_default());
                if replayed.same {
                    let _ = writeln!(out, "same as recorded\n");
                } else {
                    report.differing += 1;
                    let _ = writeln!(out, "differs from the recorded output:");
                    for d in &replayed.differences {
                        let _ = writeln!(out, "  {d}");
                    }
                    out.push('\n');
                }
            }
            Err(e) => {
                report.failed += 1;
                let _ = writeln!(out, "error: {e}\n");
            }
        }
    }
    if options.line.is_some_and(|l| l == 0 || l > records.len()) {
        return Err(ToolError::Sip {
            path: path.display().to_string(),
            reason: format!("no record on line {} (it holds {})", options.line.unwrap_or(0), records.len()),
        });
    }
    let total = options.line.map_or(records.len(), |_| 1);
    let _ = writeln!(
        report.text,
        "{total} replayed: {} same, {} different, {} not replayed",
        total - report.differing - report.failed,
        report.differing,
        report.failed
    );
    Ok(report)
}

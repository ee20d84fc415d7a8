//! `simulate`: a SIP request through its tenant's policy and the router's request path, offline.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::control::Tenants;
use crate::control::config::RouterConfig;
use crate::control::health::HealthTable;
use crate::metrics::Metrics;
use crate::model::uri::UriRef;
use crate::model::wire::{self, Message, Name, WireError};
use crate::model::{Source, Transport};
use crate::policy::contract::{Attempt, Decision, Failure, Outcome};
use crate::policy::{DecidedBy, PolicyRegistry, Verdict};
use crate::sip::error::{Answer, RequestError};
use crate::sip::originate;
use crate::sip::proxy::classify::{ALLOW, Classified, classify};
use crate::sip::proxy::decide;
use crate::sip::proxy::dialog;
use crate::sip::proxy::forward::{ForwardSpec, Hop, UmServerHop, forwarded};
use crate::sip::proxy::stateless::next_hop;
use crate::sip::secret::Secret;

use super::ToolError;

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
        config.shared_cache = None;
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
                let hop = HopOf { transport: None, record_route: false, pop_routes: r.pop_routes, um: None };
                self.write_forwarded(&mut out, &req, &ForwardSpec::default(), &[next.as_str()], hop, &source);
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
        self.write_outcome(&mut out, &sip, &source, &decided.tenant, (record_route, pop_routes), &decided.verdict);
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
            self.write_outcome(&mut out, &sip, &source, &decided.tenant, (record_route, pop_routes), &after);
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
        tenant: &crate::control::Tenant,
        (record_route, pop_routes): (bool, usize),
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
        let um = targets.first().and_then(|t| UmServerHop::of(tenant, sip.method() == Some("INVITE"), t));
        let hop = HopOf { transport, record_route, pop_routes, um: um.as_ref() };
        self.write_forwarded(out, sip, &ForwardSpec::of(f), &targets, hop, source);
    }

    /// `sip` as the proxy forwards it (its Via shows the first listener's address).
    fn write_forwarded(
        &self,
        out: &mut String,
        sip: &Message,
        spec: &ForwardSpec,
        targets: &[&str],
        HopOf { transport, record_route, pop_routes, um }: HopOf<'_>,
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
            um,
            trace: None,
        };
        let _ = writeln!(out, "\n--- forwarded to {} ---", targets.join(", then "));
        out.push_str(&String::from_utf8_lossy(&forwarded(sip, spec, None, &hop)));
    }
}

/// What of the hop a simulated forward shows: the transport, the tenant's
/// `record_route`, the Routes naming the router, and whether the first target
/// is a UM server.
struct HopOf<'a> {
    transport: Option<Transport>,
    record_route: bool,
    pop_routes: usize,
    um: Option<&'a UmServerHop>,
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

//! The host side of the contract's imports. Each store holds the calling tenant
//! (set before every call), so every import answers from that tenant's data only.
//! A call may record every import with its answer (a decision record), or have
//! them answered from a record (replay): see [`Imports`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::Policy;
use super::bindings::exum::policy::{clock, directory, health, log, standard, types};
use super::record::{Answer, Ask, ImportCall};
use crate::control::Tenant;
use crate::control::config::Rerouting;
use crate::control::directory::{ContactKind, Scope, VoicemailSetting};
use crate::control::health::HealthTable;

/// Longest log message kept from a policy, in bytes.
pub const MAX_LOG_MESSAGE: usize = 1024;
/// The CPU budget of creating and initialising an instance (a language
/// runtime's start-up: 0.8 to 1.4 ms with Cranelift's code, several times
/// that with the quick tier's), apart from the calls' `deadline_ms`, which
/// never pays for it; an `init` that never returns is stopped at it (and a
/// version whose instances keep failing so is quarantined).
pub const INIT_BUDGET: std::time::Duration = std::time::Duration::from_millis(100);

/// Log messages a policy may write per call; the rest are dropped.
pub const LOG_BUDGET_PER_CALL: u32 = 16;
/// Most table elements an instance may have.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Which store limit a call ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory.
    Memory,
    /// A table.
    Table,
}

/// The memory and table limits of one store; records which one was hit.
#[derive(Debug)]
pub struct Limiter {
    memory_bytes: usize,
    pub(crate) hit: Option<LimitHit>,
    /// The largest linear memory granted so far, in bytes.
    pub(crate) peak: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(LimitHit::Memory);
            wasmtime::bail!("linear memory limit of {} bytes exceeded (wanted {desired})", self.memory_bytes);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = Some(LimitHit::Table);
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded (wanted {desired})");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        4
    }
}

/// The data of one policy instance's store.
pub struct StoreState {
    /// The tenant whose request is being decided; replaced before every call so a
    /// pooled instance never sees another tenant's data.
    pub(crate) tenant: Arc<Tenant>,
    /// Target health, shared with the probes.
    health: Arc<HealthTable>,
    /// Memory and table limits.
    pub(crate) limiter: Limiter,
    /// `tenant/policy@version`, for log lines.
    log_tag: Arc<str>,
    /// Log lines left in this call.
    pub(crate) log_budget: u32,
    /// When the call in progress started: what its deadline is measured from.
    pub(crate) call: super::deadline::CallClock,
    /// The CPU budget of what runs now: [`INIT_BUDGET`] while the instance is
    /// created and initialised, the tenant's `deadline_ms` for its calls.
    pub(crate) budget: std::time::Duration,
    /// Whether the imports answer live, recording, or from a record.
    pub(crate) imports: Imports,
    /// The WASI the store answers (for policies in other languages' runtimes).
    pub(crate) wasi: super::wasi::StoreWasi,
    /// The standard policy, which the `standard` import runs.
    pub(crate) standard: std::sync::Weak<super::version::PolicyVersion>,
    /// The call in progress's Call-ID, hashed: what picks the first UM server
    /// of a round-robin dial plan (the same for every decision of one call).
    pub(crate) call_seed: u64,
}

impl wasmtime_wasi::WasiView for StoreState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.wasi.ctx, table: &mut self.wasi.table }
    }
}

/// How a store's imports answer.
#[derive(Debug, Default)]
pub enum Imports {
    /// From the tenant's data, the health table and the clock.
    #[default]
    Live,
    /// Live, and every call with its answer is kept (a decision record).
    Recording(Vec<ImportCall>),
    /// From a record only: an import the record does not hold traps, and
    /// what was asked is kept in `missed`.
    Replay {
        /// The recorded calls.
        calls: Arc<[ImportCall]>,
        /// The recorded clock, the answer to every `now`.
        clock: clock::Datetime,
        /// The first import the record could not answer.
        missed: Option<String>,
    },
}

impl Imports {
    /// A recording with nothing recorded yet.
    pub fn recording() -> Imports {
        Imports::Recording(Vec::new())
    }
}

impl StoreState {
    pub(crate) fn new(tenant: Arc<Tenant>, health: Arc<HealthTable>, memory_bytes: usize, log_tag: Arc<str>) -> Self {
        StoreState {
            tenant,
            health,
            limiter: Limiter { memory_bytes, hit: None, peak: 0 },
            log_tag,
            log_budget: LOG_BUDGET_PER_CALL,
            call: super::deadline::CallClock::start(),
            budget: INIT_BUDGET,
            imports: Imports::Live,
            wasi: super::wasi::StoreWasi::new(),
            standard: std::sync::Weak::new(),
            call_seed: 0,
        }
    }

    /// Answers one import: live (and recorded, when recording), or from the
    /// record being replayed.
    fn import<T: Clone>(
        &mut self,
        ask: impl FnOnce() -> Ask,
        live: impl FnOnce(&Self) -> T,
        wrap: fn(T) -> Answer,
        unwrap: fn(&Answer) -> Option<T>,
    ) -> wasmtime::Result<T> {
        match &mut self.imports {
            Imports::Live => Ok(live(self)),
            Imports::Recording(_) => {
                let answer = live(self);
                if let Imports::Recording(calls) = &mut self.imports {
                    calls.push(ImportCall { ask: ask(), answer: wrap(answer.clone()) });
                }
                Ok(answer)
            }
            Imports::Replay { calls, clock, missed } => {
                let ask = ask();
                if ask == Ask::Now
                    && let Some(v) = unwrap(&Answer::Now(*clock))
                {
                    return Ok(v);
                }
                if let Some(v) = calls.iter().find(|c| c.ask == ask).and_then(|c| unwrap(&c.answer)) {
                    return Ok(v);
                }
                let what = ask.to_string();
                missed.get_or_insert_with(|| what.clone());
                wasmtime::bail!("the record holds no answer for {what}")
            }
        }
    }
}

/// Adds the contract's imports to `linker`, and the sandboxed WASI 0.2
/// (`wasi.rs`).
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    Policy::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)?;
    wasmtime_wasi::p2::add_to_linker_sync(linker)
}

impl types::Host for StoreState {}

impl directory::Host for StoreState {
    fn lookup_user(&mut self, address: String) -> wasmtime::Result<Option<directory::User>> {
        self.import(
            || Ask::LookupUser(address.clone()),
            |s| user(&s.tenant, &address),
            Answer::User,
            |a| match a {
                Answer::User(u) => Some(u.clone()),
                _ => None,
            },
        )
    }

    fn lookup_contact(&mut self, address: String) -> wasmtime::Result<Option<directory::UmContact>> {
        self.import(
            || Ask::LookupContact(address.clone()),
            |s| contact(&s.tenant, &address),
            Answer::Contact,
            |a| match a {
                Answer::Contact(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    fn lookup_hosted_voicemail_policy(
        &mut self,
        scope: directory::PolicyScope,
    ) -> wasmtime::Result<Option<directory::HostedVoicemailPolicy>> {
        self.import(
            || Ask::LookupHostedVoicemailPolicy(scope.clone()),
            |s| hosted_policy(&s.tenant, &scope),
            Answer::HostedVoicemailPolicy,
            |a| match a {
                Answer::HostedVoicemailPolicy(p) => Some(p.clone()),
                _ => None,
            },
        )
    }

    fn lookup_contact_dial_plan(&mut self, address: String) -> wasmtime::Result<Option<directory::DialPlan>> {
        self.import(
            || Ask::LookupContactDialPlan(address.clone()),
            |s| dial_plan(&s.tenant, contact_dial_plan(&s.tenant, &address)?, s.call_seed),
            Answer::DialPlan,
            |a| match a {
                Answer::DialPlan(p) => Some(p.clone()),
                _ => None,
            },
        )
    }

    fn lookup_dial_plan(&mut self, key: String) -> wasmtime::Result<Option<directory::DialPlan>> {
        self.import(
            || Ask::LookupDialPlan(key.clone()),
            |s| dial_plan(&s.tenant, &key, s.call_seed),
            Answer::DialPlan,
            |a| match a {
                Answer::DialPlan(p) => Some(p.clone()),
                _ => None,
            },
        )
    }

    fn lookup_rerouting(&mut self, site: Option<String>) -> wasmtime::Result<directory::Rerouting> {
        self.import(
            || Ask::LookupRerouting(site.clone()),
            |s| {
                let config = &s.tenant.config;
                let r: &Rerouting =
                    site.as_ref().and_then(|s| config.site_rerouting.get(s)).unwrap_or(&config.rerouting);
                directory::Rerouting {
                    enabled: r.enabled,
                    auto_attendant: r.auto_attendant.clone(),
                    subscriber_access: r.subscriber_access.clone(),
                    pstn_gateway: r.pstn_gateway.clone(),
                }
            },
            Answer::Rerouting,
            |a| match a {
                Answer::Rerouting(r) => Some(r.clone()),
                _ => None,
            },
        )
    }

    fn settings(&mut self) -> wasmtime::Result<directory::TenantSettings> {
        self.import(
            || Ask::Settings,
            |s| {
                let c = &s.tenant.config;
                directory::TenantSettings {
                    id: c.id.clone(),
                    domains: c.domains.clone(),
                    edge: c.hosted_next_hop(),
                    default_next_hop: c.default_next_hop.clone(),
                }
            },
            Answer::Settings,
            |a| match a {
                Answer::Settings(s) => Some(s.clone()),
                _ => None,
            },
        )
    }

    fn resolve_hosted_route(
        &mut self,
        granted: Option<String>,
        site: Option<String>,
    ) -> wasmtime::Result<Option<directory::HostedRoute>> {
        self.import(
            || Ask::ResolveHostedRoute { granted: granted.clone(), site: site.clone() },
            |s| hosted_route(&s.tenant, &s.health, granted.as_deref(), site.as_deref()),
            Answer::HostedRoute,
            |a| match a {
                Answer::HostedRoute(r) => Some(r.clone()),
                _ => None,
            },
        )
    }

    fn healthy_um_servers(&mut self, of: directory::DialPlanOf) -> wasmtime::Result<Option<Vec<directory::UmServer>>> {
        self.import(
            || Ask::HealthyUmServers(of.clone()),
            |s| healthy_um_servers(&s.tenant, &s.health, &of, s.call_seed),
            Answer::UmServers,
            |a| match a {
                Answer::UmServers(s) => Some(s.clone()),
                _ => None,
            },
        )
    }
}

/// `resolve-hosted-route`: the first hosted policy of granted, site, global,
/// with the tenant's next hop and its health.
fn hosted_route(
    tenant: &Tenant,
    health: &HealthTable,
    granted: Option<&str>,
    site: Option<&str>,
) -> Option<directory::HostedRoute> {
    let directory = &tenant.directory;
    let policy = granted
        .and_then(|n| directory.hosted_policy(&Scope::Named(n.to_owned())))
        .or_else(|| site.and_then(|s| directory.hosted_policy(&Scope::Site(s.to_owned()))))
        .or_else(|| directory.hosted_policy(&Scope::Global))?;
    let next_hop = tenant.config.hosted_next_hop();
    Some(directory::HostedRoute {
        destination: policy.destination.clone(),
        organization: policy.organizations.first().cloned(),
        next_hop_healthy: next_hop.as_deref().is_some_and(|h| health.is_healthy(h)),
        next_hop,
    })
}

/// `healthy-um-servers`: a dial plan's servers not marked down.
/// `healthy-um-servers`: the dial plan's servers in the call's order
/// ([`crate::control::directory::DialPlan::call_order`]: highest Exchange
/// version only, round robin by Call-ID where the plan says), those marked
/// down left out.
fn healthy_um_servers(
    tenant: &Tenant,
    health: &HealthTable,
    of: &directory::DialPlanOf,
    seed: u64,
) -> Option<Vec<directory::UmServer>> {
    let key = match of {
        directory::DialPlanOf::Key(key) => key.as_str(),
        directory::DialPlanOf::Contact(address) => contact_dial_plan(tenant, address)?,
    };
    let plan = tenant.directory.dial_plan(key)?;
    Some(plan.call_order(seed, |s| health.is_healthy(&s.uri)).into_iter().map(um_server).collect())
}

/// The key of the dial plan of the contact at `address`, if it has one.
fn contact_dial_plan<'a>(tenant: &'a Tenant, address: &str) -> Option<&'a str> {
    tenant.directory.contact(address)?.dial_plan.as_deref()
}

fn user(tenant: &Tenant, address: &str) -> Option<directory::User> {
    let u = tenant.directory.user(address)?;
    Some(directory::User {
        sip_address: u.sip.clone(),
        line_uri: u.line.clone(),
        number: u.number.clone(),
        site: u.site.clone(),
        voicemail: match u.voicemail {
            VoicemailSetting::Hosted => directory::Voicemail::Hosted,
            VoicemailSetting::OnPremises => directory::Voicemail::OnPremises,
            VoicemailSetting::None => directory::Voicemail::None,
        },
        hosted_voicemail_policy: u.hosted_voicemail_policy.clone(),
        eum_address: u.eum.first().cloned(),
    })
}

fn contact(tenant: &Tenant, address: &str) -> Option<directory::UmContact> {
    let c = tenant.directory.contact(address)?;
    Some(directory::UmContact {
        sip_address: c.sip.clone(),
        number: c.number.clone(),
        kind: match c.kind {
            ContactKind::SubscriberAccess => directory::ContactKind::SubscriberAccess,
            ContactKind::AutoAttendant => directory::ContactKind::AutoAttendant,
        },
        site: c.site.clone(),
        hosted_voicemail_policy: c.hosted_voicemail_policy.clone(),
    })
}

fn hosted_policy(tenant: &Tenant, scope: &directory::PolicyScope) -> Option<directory::HostedVoicemailPolicy> {
    let scope = match scope {
        directory::PolicyScope::Global => Scope::Global,
        directory::PolicyScope::Site(s) => Scope::Site(s.clone()),
        directory::PolicyScope::Named(n) => Scope::Named(n.clone()),
    };
    let p = tenant.directory.hosted_policy(&scope)?;
    Some(directory::HostedVoicemailPolicy {
        name: p.name.clone(),
        destination: p.destination.clone(),
        organizations: p.organizations.clone(),
    })
}

/// `lookup-dial-plan`: the dial plan with its servers in the call's order
/// ([MS-EUMR]: the highest Exchange version only, ordered or round robin),
/// so that a policy building its targets from it follows the same rules as
/// `healthy-um-servers`.
fn dial_plan(tenant: &Tenant, key: &str, seed: u64) -> Option<directory::DialPlan> {
    let d = tenant.directory.dial_plan(key)?;
    Some(directory::DialPlan {
        name: d.name.clone(),
        phone_context: d.phone_context.clone(),
        servers: d.call_order(seed, |_| true).into_iter().map(um_server).collect(),
    })
}

fn um_server(s: &crate::control::directory::UmServer) -> directory::UmServer {
    directory::UmServer { uri: s.uri.clone(), timeout_ms: s.timeout_ms }
}

impl health::Host for StoreState {
    fn target_healthy(&mut self, uri: String) -> wasmtime::Result<bool> {
        self.import(
            || Ask::TargetHealthy(uri.clone()),
            |s| s.health.is_healthy(&uri),
            Answer::Healthy,
            |a| match a {
                Answer::Healthy(h) => Some(*h),
                _ => None,
            },
        )
    }
}

impl clock::Host for StoreState {
    fn now(&mut self) -> wasmtime::Result<clock::Datetime> {
        self.import(
            || Ask::Now,
            |s| now(&s.tenant),
            Answer::Now,
            |a| match a {
                Answer::Now(d) => Some(*d),
                _ => None,
            },
        )
    }
}

/// The current time with `tenant`'s UTC offset.
pub fn now(tenant: &Tenant) -> clock::Datetime {
    let unix_seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    clock::Datetime { unix_seconds, utc_offset_minutes: tenant.config.utc_offset_minutes }
}

impl StoreState {
    /// The standard policy's decision for `call` (the tenant's own data):
    /// a 500 when it faults (it is the router's code: it does not).
    fn standard_decision(&self, call: super::version::PolicyCall<'_>) -> types::Decision {
        let failed = |why: String| {
            types::Decision::Reject(types::Reject {
                code: 500,
                reason: "Server Internal Error".into(),
                headers: vec![types::Header { name: "Warning".into(), value: format!("399 exum-router \"{why}\"") }],
            })
        };
        let Some(version) = self.standard.upgrade() else { return failed("no standard policy".into()) };
        match version.call_with(&self.tenant, call, Imports::Live).0 {
            Ok(d) => d,
            Err(fault) => failed(format!("the standard algorithm failed: {fault}")),
        }
    }

    /// Logs what the call wrote to standard output and error, a line at a
    /// time, under the call's log budget (what the budget leaves out is
    /// dropped, as `log` lines beyond it are).
    pub(crate) fn log_output(&mut self) {
        let (out, dropped) = self.wasi.call.take_output();
        if out.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let _ = log::Host::log(self, log::Level::Info, line.to_owned());
        }
        if dropped > 0 {
            let _ = log::Host::log(self, log::Level::Warn, format!("{dropped} bytes of output dropped"));
        }
    }
}

impl standard::Host for StoreState {
    fn route(&mut self, req: types::Request) -> wasmtime::Result<types::Decision> {
        let req = Box::new(req);
        self.import(
            || Ask::StandardRoute(req.clone()),
            |s| s.standard_decision(super::version::PolicyCall::Route(&req)),
            Answer::Decision,
            |a| match a {
                Answer::Decision(d) => Some(d.clone()),
                _ => None,
            },
        )
    }

    fn on_failure(&mut self, req: types::Request, failure: types::Failure) -> wasmtime::Result<types::Decision> {
        let (req, failure) = (Box::new(req), Box::new(failure));
        self.import(
            || Ask::StandardOnFailure(req.clone(), failure.clone()),
            |s| s.standard_decision(super::version::PolicyCall::OnFailure(&req, &failure)),
            Answer::Decision,
            |a| match a {
                Answer::Decision(d) => Some(d.clone()),
                _ => None,
            },
        )
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if self.log_budget == 0 {
            return Ok(());
        }
        self.log_budget -= 1;
        let mut end = message.len().min(MAX_LOG_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        // Under the target `policy`, so a filter (`RUST_LOG=policy=debug`) or a
        // log shipper can tell a policy's words from the router's.
        let (tenant, policy) = (self.tenant.config.id.as_str(), &*self.log_tag);
        match level {
            log::Level::Trace => tracing::trace!(target: "policy", tenant, policy, message),
            log::Level::Debug => tracing::debug!(target: "policy", tenant, policy, message),
            log::Level::Info => tracing::info!(target: "policy", tenant, policy, message),
            log::Level::Warn => tracing::warn!(target: "policy", tenant, policy, message),
            log::Level::Error => tracing::error!(target: "policy", tenant, policy, message),
        }
        Ok(())
    }
}

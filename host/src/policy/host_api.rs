//! The host side of the contract's imports. Each store holds the calling tenant
//! (set before every call), so every import answers from that tenant's data only.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::Policy;
use super::bindings::exum::policy::{clock, directory, health, log, types};
use crate::control::Tenant;
use crate::control::config::Rerouting;
use crate::control::directory::{ContactKind, Scope, VoicemailSetting};
use crate::control::health::HealthTable;

/// Longest log message kept from a policy, in bytes.
pub const MAX_LOG_MESSAGE: usize = 1024;
/// Log messages a policy may write per call; the rest are dropped.
pub const LOG_BUDGET_PER_CALL: u32 = 16;
/// Most table elements an instance may have.
const MAX_TABLE_ELEMENTS: usize = 20_000;

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
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.hit = Some(LimitHit::Memory);
            wasmtime::bail!("linear memory limit of {} bytes exceeded (wanted {desired})", self.memory_bytes);
        }
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
}

impl StoreState {
    pub(crate) fn new(tenant: Arc<Tenant>, health: Arc<HealthTable>, memory_bytes: usize, log_tag: Arc<str>) -> Self {
        StoreState {
            tenant,
            health,
            limiter: Limiter { memory_bytes, hit: None },
            log_tag,
            log_budget: LOG_BUDGET_PER_CALL,
            call: super::deadline::CallClock::start(),
        }
    }
}

/// Adds the contract's imports to `linker`.
pub fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    Policy::add_to_linker::<StoreState, HasSelf<StoreState>>(linker, |s| s)
}

impl types::Host for StoreState {}

impl directory::Host for StoreState {
    fn lookup_user(&mut self, address: String) -> Option<directory::User> {
        let u = self.tenant.directory.user(&address)?;
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
            eum_address: u.eum.clone(),
        })
    }

    fn lookup_contact(&mut self, address: String) -> Option<directory::UmContact> {
        let c = self.tenant.directory.contact(&address)?;
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

    fn lookup_hosted_voicemail_policy(
        &mut self,
        scope: directory::PolicyScope,
    ) -> Option<directory::HostedVoicemailPolicy> {
        let scope = match scope {
            directory::PolicyScope::Global => Scope::Global,
            directory::PolicyScope::Site(s) => Scope::Site(s),
            directory::PolicyScope::Named(n) => Scope::Named(n),
        };
        let p = self.tenant.directory.hosted_policy(&scope)?;
        Some(directory::HostedVoicemailPolicy {
            name: p.name.clone(),
            destination: p.destination.clone(),
            organizations: p.organizations.clone(),
        })
    }

    fn lookup_contact_dial_plan(&mut self, address: String) -> Option<directory::DialPlan> {
        let plan = self.tenant.directory.contact(&address)?.dial_plan.clone()?;
        self.lookup_dial_plan(plan)
    }

    fn lookup_dial_plan(&mut self, key: String) -> Option<directory::DialPlan> {
        let d = self.tenant.directory.dial_plan(&key)?;
        Some(directory::DialPlan {
            name: d.name.clone(),
            phone_context: d.phone_context.clone(),
            servers: d
                .servers
                .iter()
                .map(|s| directory::UmServer { uri: s.uri.clone(), timeout_ms: s.timeout_ms })
                .collect(),
        })
    }

    fn lookup_rerouting(&mut self, site: Option<String>) -> directory::Rerouting {
        let config = &self.tenant.config;
        let r: &Rerouting = site.and_then(|s| config.site_rerouting.get(&s)).unwrap_or(&config.rerouting);
        directory::Rerouting {
            enabled: r.enabled,
            auto_attendant: r.auto_attendant.clone(),
            subscriber_access: r.subscriber_access.clone(),
            pstn_gateway: r.pstn_gateway.clone(),
        }
    }

    fn settings(&mut self) -> directory::TenantSettings {
        let c = &self.tenant.config;
        directory::TenantSettings {
            id: c.id.clone(),
            domains: c.domains.clone(),
            edge: c.hosted_next_hop(),
            default_next_hop: c.default_next_hop.clone(),
        }
    }
}

impl health::Host for StoreState {
    fn target_healthy(&mut self, uri: String) -> bool {
        self.health.is_healthy(&uri)
    }
}

impl clock::Host for StoreState {
    fn now(&mut self) -> clock::Datetime {
        let unix_seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        clock::Datetime { unix_seconds, utc_offset_minutes: self.tenant.config.utc_offset_minutes }
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        if self.log_budget == 0 {
            return;
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
    }
}

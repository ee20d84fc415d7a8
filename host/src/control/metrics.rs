//! Prometheus metrics of the router, exposed at `/metrics` of the admin listener:
//! requests by method and tenant, decisions by kind, policy call latency per
//! tenant, policy faults by kind, fallbacks, quarantines, reloads, transactions
//! in progress, UM servers up or down, requests refused by overload control.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels: method and tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The SIP method.
    pub method: String,
    /// The tenant id.
    pub tenant: String,
}

/// Labels: tenant and a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantKind {
    /// The tenant id.
    pub tenant: String,
    /// The kind (decision kind, fault kind, reload outcome).
    pub kind: String,
}

/// Labels: one tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    /// The tenant id.
    pub tenant: String,
}

/// Labels: one UM server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// The server URI.
    pub server: String,
}

/// Labels: why overload control refused a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverloadLabel {
    /// `transactions` (the cap) or `source_rate` (the per-source limit).
    pub reason: &'static str,
}

/// Labels: which access control refused a message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccessLabel {
    /// `listener` (its `allow` list) or `tenant` (its `peers`).
    pub reason: &'static str,
}

/// Every metric of the router.
pub struct Metrics {
    registry: Registry,
    /// New requests by method and tenant.
    pub requests: Family<RequestLabels, Counter>,
    /// Decisions by kind (forward, reject, redirect) and tenant.
    pub decisions: Family<TenantKind, Counter>,
    /// Policy call latency (seconds) per tenant.
    pub policy_latency: Family<TenantLabel, Histogram>,
    /// Policy faults by kind and tenant.
    pub faults: Family<TenantKind, Counter>,
    /// Decisions made by a fallback, per tenant.
    pub fallbacks: Family<TenantLabel, Counter>,
    /// Quarantines entered, per tenant.
    pub quarantines: Family<TenantLabel, Counter>,
    /// Policy reloads by outcome (`ok`, `failed`) and tenant.
    pub reloads: Family<TenantKind, Counter>,
    /// Transactions in progress.
    pub transactions: Gauge,
    /// UM servers: 1 up, 0 down.
    pub um_server_up: Family<ServerLabel, Gauge>,
    /// New requests refused with 503 by overload control, by reason.
    pub overload_refused: Family<OverloadLabel, Counter>,
    /// Messages refused by access control, by reason.
    pub access_refused: Family<AccessLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("exum");
        let requests = Family::<RequestLabels, Counter>::default();
        let decisions = Family::<TenantKind, Counter>::default();
        let policy_latency = Family::<TenantLabel, Histogram>::new_with_constructor(|| {
            // 1 µs to 130 ms in steps of 1.4×: fine enough to read a p99 from.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(1e-6, 1.4, 36))
        });
        let faults = Family::<TenantKind, Counter>::default();
        let fallbacks = Family::<TenantLabel, Counter>::default();
        let quarantines = Family::<TenantLabel, Counter>::default();
        let reloads = Family::<TenantKind, Counter>::default();
        let transactions = Gauge::default();
        let um_server_up = Family::<ServerLabel, Gauge>::default();
        let overload_refused = Family::<OverloadLabel, Counter>::default();
        let access_refused = Family::<AccessLabel, Counter>::default();
        registry.register("sip_requests", "New SIP requests by method and tenant", requests.clone());
        registry.register("policy_decisions", "Decisions by kind and tenant", decisions.clone());
        registry.register(
            "policy_call_seconds",
            "Time to decide, policy calls included, per tenant",
            policy_latency.clone(),
        );
        registry.register("policy_faults", "Policy faults (traps, limits, invalid decisions) by kind", faults.clone());
        registry.register("policy_fallbacks", "Decisions made by the tenant's fallback", fallbacks.clone());
        registry.register("policy_quarantines", "Policy versions quarantined", quarantines.clone());
        registry.register("policy_reloads", "Policy reloads by outcome", reloads.clone());
        registry.register("sip_transactions_active", "Transactions in progress", transactions.clone());
        registry.register("um_server_up", "UM servers: 1 up, 0 down (by OPTIONS probes)", um_server_up.clone());
        registry.register(
            "sip_overload_refused",
            "New requests refused with 503 by overload control, by reason",
            overload_refused.clone(),
        );
        registry.register(
            "sip_access_refused",
            "Messages refused by access control (listener allow lists, tenant peers)",
            access_refused.clone(),
        );
        Metrics {
            registry,
            requests,
            decisions,
            policy_latency,
            faults,
            fallbacks,
            quarantines,
            reloads,
            transactions,
            um_server_up,
            overload_refused,
            access_refused,
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A counter with tenant and kind labels.
    pub fn tenant_kind(family: &Family<TenantKind, Counter>, tenant: &str, kind: &str) {
        family.get_or_create(&TenantKind { tenant: tenant.to_owned(), kind: kind.to_owned() }).inc();
    }
}

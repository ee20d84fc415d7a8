//! The router's counters, the one set of them: Prometheus metrics exposed at
//! `/metrics` of the admin listener, which the admin API's per-tenant figures
//! and the tests read too. SIP: transactions, retransmissions, messages
//! dropped without an answer by reason, the router's own error answers by side
//! and status, malformed messages, closed streams, access and overload
//! refusals. Policies: decisions, latency, faults, fallbacks, quarantines,
//! reloads. Control: configuration reloads, UM server health.

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

/// Labels: one policy version of a tenant, in a role (`serving`, `canary`, `shadow`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// The tenant id.
    pub tenant: String,
    /// The tenant's number of the version (`0`: the standard policy).
    pub version: String,
    /// Its role.
    pub role: String,
}

/// Labels: a policy version and an outcome or kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionKind {
    /// The tenant id.
    pub tenant: String,
    /// The tenant's number of the version.
    pub version: String,
    /// Its role.
    pub role: String,
    /// The outcome (`completed`, `failed`) or divergence kind.
    pub kind: String,
}

/// Labels of `exum_policy_info`: what serves a tenant, and what it says it is.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    /// The tenant id.
    pub tenant: String,
    /// `serving` or the candidate's mode.
    pub role: String,
    /// The tenant's number of the version.
    pub version: String,
    /// SHA-256 of the component.
    pub hash: String,
    /// The component's name and version from its manifest, else its file's name.
    pub name: String,
}

/// Labels: one UM server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    /// The server URI.
    pub server: String,
}

/// Labels: one reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// Labels: an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok` or `failed`.
    pub outcome: &'static str,
}

/// Labels: the side that failed and the status the router answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `peer`, `policy`, `target` or `router`.
    pub side: &'static str,
    /// The status code.
    pub code: u16,
}

/// Labels: a transport.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabel {
    /// `udp`, `tcp` or `tls`.
    pub transport: &'static str,
}

/// Why a received message was dropped without any answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// It is not a SIP message the router can read enough of to answer.
    Unparseable,
    /// A request without a usable Via: there is nowhere to answer.
    NoVia,
    /// A response that matches no transaction of the router's.
    StrayResponse,
    /// An ACK that matches no transaction and belongs to no dialog.
    StrayAck,
    /// A message from a peer the listener does not allow, that cannot be answered.
    Refused,
    /// Over a rate limit (stray 2xx forwarded per second, a source's rate).
    RateLimited,
    /// A message the router would have forwarded to one of its own addresses.
    Loop,
}

impl Dropped {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Unparseable => "unparseable",
            Dropped::NoVia => "no_via",
            Dropped::StrayResponse => "stray_response",
            Dropped::StrayAck => "stray_ack",
            Dropped::Refused => "refused",
            Dropped::RateLimited => "rate_limited",
            Dropped::Loop => "loop",
        }
    }
}

/// The kinds of decision, as counted.
pub const DECISION_KINDS: [&str; 4] = ["forward", "reject", "redirect", "standard"];

/// One tenant's counters of every decision, looked up once (when its policy is
/// installed) so that deciding counts without building labels or hashing them.
#[derive(Clone, Debug)]
pub struct TenantCounters {
    /// Decisions by kind, in the order of [`DECISION_KINDS`].
    pub decisions: [Counter; 4],
    /// Time to decide.
    pub latency: Histogram,
    /// The same, readable.
    pub buckets: Buckets,
    /// Decisions made by the fallback.
    pub fallbacks: Counter,
}

/// The first bucket bound of decision latency (seconds).
const BUCKET_START: f64 = 1e-6;
/// Each bucket bound is this times the one before.
const BUCKET_FACTOR: f64 = 1.4;
/// Decision latency buckets (and one more, above the last bound).
const BUCKETS: usize = 36;

/// Counts of decision latencies in the buckets of `exum_policy_call_seconds`
/// (and one above its last bound), readable where prometheus-client's
/// histogram is not.
#[derive(Debug, Clone)]
pub struct Buckets(std::sync::Arc<Vec<std::sync::atomic::AtomicU64>>);

impl Default for Buckets {
    fn default() -> Self {
        Buckets(std::sync::Arc::new((0..=BUCKETS).map(|_| std::sync::atomic::AtomicU64::new(0)).collect()))
    }
}

impl Buckets {
    /// Counts one latency of `seconds`.
    pub fn observe(&self, seconds: f64) {
        let i = if seconds <= BUCKET_START {
            0
        } else {
            ((seconds / BUCKET_START).ln() / BUCKET_FACTOR.ln()).ceil().min(BUCKETS as f64) as usize
        };
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts so far, bucket by bucket.
    pub fn counts(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).collect()
    }

    /// The upper bound (seconds) of the bucket holding the `q` quantile of
    /// the latencies counted between `before` and `after` (two [`Self::counts`]);
    /// `None` when none were; infinity above the last bound.
    pub fn quantile(before: &[u64], after: &[u64], q: f64) -> Option<f64> {
        let delta: Vec<u64> =
            after.iter().enumerate().map(|(i, a)| a.saturating_sub(before.get(i).copied().unwrap_or(0))).collect();
        let total: u64 = delta.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in delta.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(if i >= BUCKETS { f64::INFINITY } else { BUCKET_START * BUCKET_FACTOR.powi(i as i32) });
            }
        }
        Some(f64::INFINITY)
    }
}

/// Declares every metric once: its field (with its doc), type, constructor,
/// exported name (after `exum_`) and help. The struct, its constructor and
/// the registration are generated from the one list, in its order.
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $init:expr, $name:literal, $help:literal;)*) => {
        /// Every metric of the router.
        pub struct Metrics {
            registry: Registry,
            /// The families registered, with the prefix.
            names: Vec<String>,
            /// Decision latency per tenant in the buckets of
            /// `policy_latency`, readable (the status page's p99 over the
            /// last minute); not exported.
            pub decision_buckets: Family<TenantLabel, Buckets>,
            $($(#[$doc])* pub $field: $ty,)*
        }

        impl Metrics {
            /// Creates and registers every metric.
            pub fn new() -> Metrics {
                let mut registry = Registry::with_prefix("exum");
                let mut names = Vec::new();
                $(
                    let $field: $ty = $init;
                    names.push(concat!("exum_", $name).to_owned());
                    registry.register($name, $help, $field.clone());
                )*
                Metrics { registry, names, decision_buckets: Family::default(), $($field,)* }
            }
        }
    };
}

metrics! {
    /// New server transactions.
    transactions: Counter = Default::default(),
        "sip_transactions", "New server transactions";
    /// Server transactions in the table, lingering ones included (set when
    /// `/metrics` is read).
    transactions_active: Gauge = Default::default(),
        "sip_transactions_active", "Server transactions in the table, lingering ones included (read when scraped)";
    /// Bytes held by transactions, as overload control estimates them.
    transaction_bytes: Gauge = Default::default(),
        "sip_transaction_bytes", "Bytes held by transactions, as overload control estimates them";
    /// Retransmitted requests absorbed by their transaction.
    retransmissions: Counter = Default::default(),
        "sip_retransmissions", "Retransmitted requests absorbed";
    /// Messages dropped without an answer, by reason.
    dropped: Family<ReasonLabel, Counter> = Default::default(),
        "sip_dropped", "Messages dropped without an answer, by reason";
    /// Final responses the router answered with itself, by side and status.
    request_errors: Family<ErrorLabels, Counter> = Default::default(),
        "sip_request_errors", "Final responses the router answered with itself, by failing side and status";
    /// Messages that did not parse, by transport (answered or not).
    malformed: Family<TransportLabel, Counter> = Default::default(),
        "sip_malformed", "Messages that did not parse, by transport";
    /// TCP and TLS connections the router closed, by reason (`garbage`: not
    /// SIP or oversize; `stalled`: a message not whole within its timeout;
    /// `send_timeout`: the peer did not read; `lifetime`).
    streams_closed: Family<ReasonLabel, Counter> = Default::default(),
        "sip_streams_closed", "TCP/TLS connections the router closed, by reason";
    /// TCP and TLS connections refused when accepted, by reason (`global`,
    /// `per_ip`: the connection caps).
    connections_refused: Family<ReasonLabel, Counter> = Default::default(),
        "sip_connections_refused", "TCP/TLS connections refused when accepted, by cap";
    /// TCP and TLS connections accepted and open now.
    connections_open: Gauge = Default::default(),
        "sip_connections_open", "TCP/TLS connections accepted and open";
    /// TLS handshakes that failed or timed out.
    tls_handshakes_failed: Counter = Default::default(),
        "tls_handshakes_failed", "TLS handshakes that failed or timed out";
    /// New requests by method and tenant.
    requests: Family<RequestLabels, Counter> = Default::default(),
        "sip_requests", "New SIP requests by method and tenant";
    /// Decisions by kind (forward, reject, redirect) and tenant.
    decisions: Family<TenantKind, Counter> = Default::default(),
        "policy_decisions", "Decisions by kind and tenant";
    /// Policy call latency (seconds) per tenant.
    policy_latency: Family<TenantLabel, Histogram> = Family::new_with_constructor(|| {
        // 1 µs to 130 ms in steps of 1.4×: fine enough to read a p99 from.
        Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(BUCKET_START, BUCKET_FACTOR, BUCKETS as u16))
    }),
        "policy_call_seconds", "Time to decide, policy calls included, per tenant";
    /// Policy faults by kind and tenant.
    faults: Family<TenantKind, Counter> = Default::default(),
        "policy_faults", "Policy faults (traps, limits, invalid decisions) by kind";
    /// Decisions made by a fallback, per tenant.
    fallbacks: Family<TenantLabel, Counter> = Default::default(),
        "policy_fallbacks", "Decisions made by the tenant's fallback";
    /// Quarantines entered, per tenant.
    quarantines: Family<TenantLabel, Counter> = Default::default(),
        "policy_quarantines", "Policy versions quarantined";
    /// Policy reloads by outcome (`ok`, `failed`) and tenant.
    reloads: Family<TenantKind, Counter> = Default::default(),
        "policy_reloads", "Policy reloads by outcome";
    /// Policy components compiled from scratch.
    policy_compilations: Counter = Default::default(),
        "policy_compilations", "Policy components compiled from scratch";
    /// Policy components loaded from the disk cache of compiled artifacts.
    policy_disk_hits: Counter = Default::default(),
        "policy_disk_cache_hits", "Policy components loaded from the disk cache of compiled artifacts";
    /// Compiled artifacts taken from the fleet's shared cache.
    policy_shared_cache_hits: Counter = Default::default(),
        "policy_shared_cache_hits", "Compiled policy artifacts taken from the fleet's shared cache instead of compiled";
    /// Artifacts of the shared cache refused (a tag the fleet's key did not
    /// make, a file cut short, not a regular file, unreadable).
    policy_shared_cache_refused: Counter = Default::default(),
        "policy_shared_cache_refused", "Artifacts of the fleet's shared cache refused: a tag the fleet's key did not make, a file cut short, not a regular file, or unreadable";
    /// Policy compiles given up because nobody waited for them any more.
    policy_compiles_abandoned: Counter = Default::default(),
        "policy_compiles_abandoned", "Policy compiles given up because nobody waited for them any more";
    /// Tenants whose calls their fallback decides now, by why (`compiling`,
    /// `refused`, `quarantined`); set when `/metrics` is read.
    policy_on_fallback: Family<ReasonLabel, Gauge> = Default::default(),
        "policy_on_fallback_tenants", "Tenants whose calls their fallback decides now, by why (compiling, refused, quarantined)";
    /// Policy versions installed at start-up still waiting to be compiled.
    policy_compile_backlog: Gauge = Default::default(),
        "policy_compile_backlog", "Policy versions installed at start-up still waiting to be compiled (their tenants' calls go to the fallback)";
    /// Policy versions serving the quick tier's code until Cranelift's.
    policy_optimize_backlog: Gauge = Default::default(),
        "policy_optimize_backlog", "Policy versions compiled at start-up with the quick tier (Winch) whose optimised code (Cranelift) is not compiled yet";
    /// Decisions per policy version and role.
    version_decisions: Family<VersionLabels, Counter> = Default::default(),
        "policy_version_decisions", "Decisions per policy version and role (serving, canary, shadow)";
    /// Faults per policy version and role.
    version_faults: Family<VersionLabels, Counter> = Default::default(),
        "policy_version_faults", "Faults per policy version and role";
    /// Calls that ended, per policy version, role and outcome (`completed`, `failed`).
    version_calls: Family<VersionKind, Counter> = Default::default(),
        "policy_version_calls", "Calls that ended, per policy version, role and outcome (completed, failed)";
    /// Shadow divergences per candidate version and kind.
    shadow_divergences: Family<VersionKind, Counter> = Default::default(),
        "policy_shadow_divergences", "Shadow decisions that differ from the serving version's, per kind";
    /// Canaries rolled back automatically, per tenant.
    canary_rollbacks: Family<TenantLabel, Counter> = Default::default(),
        "policy_canary_rollbacks", "Canaries rolled back automatically";
    /// 1 per version serving or running as a candidate, with its identity.
    policy_info: Family<InfoLabels, Gauge> = Default::default(),
        "policy_info", "The policy versions serving or running as candidates (1 each)";
    /// Decision records written.
    records_written: Counter = Default::default(),
        "policy_records_written", "Decision records written";
    /// Decision records dropped (the writer's queue full, or a write failed).
    records_dropped: Counter = Default::default(),
        "policy_records_dropped", "Decision records dropped (writer queue full or write failed)";
    /// Seconds since the directory source was last known current: 0 while the
    /// database is connected and followed (set when `/metrics` is read).
    directory_stale_seconds: Gauge = Default::default(),
        "directory_stale_seconds", "Seconds since the directory database was last followed (0 while connected)";
    /// 1 while the directory database is connected and followed, else 0.
    directory_connected: Gauge = Default::default(),
        "directory_connected", "1 while the directory database is connected and followed";
    /// Tenant changes read from the directory database, by outcome (`applied`,
    /// `refused`: invalid, the tenant keeps its previous data).
    directory_changes: Family<OutcomeLabel, Counter> = Default::default(),
        "directory_changes", "Tenant changes read from the directory database, by outcome";
    /// Reads of the directory database by where they went: `replica`,
    /// `primary` (no replica configured), `lagging` and `unreachable` (the
    /// primary, the replica passed over).
    directory_reads: Family<OutcomeLabel, Counter> = Default::default(),
        "directory_reads", "Reads of the directory database by where they went (replica, primary, lagging, unreachable)";
    /// Tenants whose data in the directory database is refused now, with the
    /// previous data serving.
    directory_refused_tenants: Gauge = Default::default(),
        "directory_refused_tenants", "Tenants whose database rows are refused now (their previous data serves)";
    /// LDAP entries refused now (each alone; the rest of its tenant serves).
    ldap_refused_entries: Gauge = Default::default(),
        "ldap_refused_entries", "LDAP entries refused now";
    /// Seconds since the longest-unreachable LDAP server was last read (0 when
    /// all are read; set when `/metrics` is read).
    ldap_stale_seconds: Gauge = Default::default(),
        "ldap_stale_seconds", "Seconds since the longest-unreachable LDAP server was last read";
    /// Configuration and directory reloads by outcome (`ok`, `failed`).
    config_reloads: Family<OutcomeLabel, Counter> = Default::default(),
        "config_reloads", "Configuration and directory reloads by outcome";
    /// UM servers: 1 up, 0 down.
    um_server_up: Family<ServerLabel, Gauge> = Default::default(),
        "um_server_up", "Probed targets (UM servers, edges, PSTN gateways, default next hops): 1 up, 0 down (by OPTIONS probes)";
    /// New requests refused with 503 by overload control, by reason.
    overload_refused: Family<ReasonLabel, Counter> = Default::default(),
        "sip_overload_refused", "New requests refused with 503 by overload control or shutdown, by reason";
    /// HEP packets sent to the capture server.
    hep_sent: Counter = Default::default(),
        "hep_sent", "HEP packets sent to the capture server";
    /// HEP packets not sent, by reason (`queue_full`: the sender's queue was
    /// full; `send_failed`: the capture server could not be reached).
    hep_dropped: Family<ReasonLabel, Counter> = Default::default(),
        "hep_dropped", "HEP packets not sent, by reason (queue_full, send_failed, too_large)";
    /// Calls (INVITEs a tenant's policy decided) that ended, by tenant and
    /// outcome: `failed` when the caller got 403, 404, 408, 480 or a 5xx (as
    /// canaries are judged), else `completed`.
    tenant_calls: Family<TenantKind, Counter> = Default::default(),
        "sip_calls", "Calls a tenant's policy decided that ended, by tenant and outcome (completed, failed)";
    /// Messages refused by access control, by reason.
    access_refused: Family<ReasonLabel, Counter> = Default::default(),
        "sip_access_refused", "Messages refused by access control (listener allow lists, tenant peers)";
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
    /// The name of every metric family, as exported (`exum_sip_requests`),
    /// whether it has samples yet or not.
    pub fn families(&self) -> &[String] {
        &self.names
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts a message dropped without an answer.
    pub fn count_dropped(&self, reason: Dropped) {
        self.dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).inc();
    }

    /// Messages dropped for `reason` so far.
    pub fn dropped_of(&self, reason: Dropped) -> u64 {
        self.dropped.get_or_create(&ReasonLabel { reason: reason.as_str() }).get()
    }

    /// Counts a final response `code` the router answered with itself because
    /// `side` failed (`peer`, `policy`, `target`, `router`).
    pub fn count_request_error(&self, side: &'static str, code: u16) {
        self.request_errors.get_or_create(&ErrorLabels { side, code }).inc();
    }

    /// Counts a connection the router closed, for `reason`.
    pub fn count_stream_closed(&self, reason: &'static str) {
        self.streams_closed.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Connections the router closed so far, for `reason`.
    pub fn streams_closed_of(&self, reason: &'static str) -> u64 {
        self.streams_closed.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Connections refused when accepted so far, for `reason`.
    pub fn connections_refused_of(&self, reason: &'static str) -> u64 {
        self.connections_refused.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Counts a message refused by access control (`listener` or `tenant`).
    pub fn count_access_refused(&self, reason: &'static str) {
        self.access_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Messages refused by access control so far, for `reason`.
    pub fn access_refused_of(&self, reason: &'static str) -> u64 {
        self.access_refused.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Counts a new request refused by overload control (`transactions`,
    /// `source_rate`) or shutdown (`draining`).
    pub fn count_overload(&self, reason: &'static str) {
        self.overload_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// New requests refused for `reason` so far.
    pub fn overload_of(&self, reason: &'static str) -> u64 {
        self.overload_refused.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Counts a new request of `tenant`.
    pub fn count_request(&self, method: &str, tenant: &str) {
        self.requests.get_or_create(&RequestLabels { method: method.to_owned(), tenant: tenant.to_owned() }).inc();
    }

    /// A counter with tenant and kind labels.
    pub fn tenant_kind(family: &Family<TenantKind, Counter>, tenant: &str, kind: &str) {
        family.get_or_create(&TenantKind { tenant: tenant.to_owned(), kind: kind.to_owned() }).inc();
    }

    /// The value of a counter with tenant and kind labels.
    pub fn tenant_kind_of(family: &Family<TenantKind, Counter>, tenant: &str, kind: &str) -> u64 {
        family.get_or_create(&TenantKind { tenant: tenant.to_owned(), kind: kind.to_owned() }).get()
    }

    /// A tenant's decisions so far, all kinds.
    pub fn decisions_of(&self, tenant: &str) -> u64 {
        DECISION_KINDS.iter().map(|k| Metrics::tenant_kind_of(&self.decisions, tenant, k)).sum()
    }

    /// The per-decision counters of `tenant`.
    pub fn tenant_counters(&self, tenant: &str) -> TenantCounters {
        let label = TenantLabel { tenant: tenant.to_owned() };
        TenantCounters {
            decisions: DECISION_KINDS.map(|kind| {
                self.decisions.get_or_create(&TenantKind { tenant: tenant.to_owned(), kind: kind.to_owned() }).clone()
            }),
            latency: self.policy_latency.get_or_create(&label).clone(),
            buckets: self.decision_buckets.get_or_create(&label).clone(),
            fallbacks: self.fallbacks.get_or_create(&label).clone(),
        }
    }

    /// The counters of one policy version in one role.
    pub fn lane(&self, tenant: &str, version: u64, role: &str) -> Lane {
        let labels = VersionLabels { tenant: tenant.to_owned(), version: version.to_string(), role: role.to_owned() };
        let calls = |kind: &str| {
            let l = VersionKind {
                tenant: tenant.to_owned(),
                version: version.to_string(),
                role: role.to_owned(),
                kind: kind.to_owned(),
            };
            self.version_calls.get_or_create(&l).clone()
        };
        Lane {
            decisions: self.version_decisions.get_or_create(&labels).clone(),
            faults: self.version_faults.get_or_create(&labels).clone(),
            calls: calls("completed"),
            failed: calls("failed"),
        }
    }

    /// A tenant's policy faults of `kind` so far.
    pub fn faults_of(&self, tenant: &str, kind: &str) -> u64 {
        Metrics::tenant_kind_of(&self.faults, tenant, kind)
    }

    /// Counts a call of `tenant` that ended with `code` upstream.
    pub fn count_call(&self, tenant: &str, failed: bool) {
        let kind = if failed { "failed" } else { "completed" };
        self.tenant_calls.get_or_create(&TenantKind { tenant: tenant.to_owned(), kind: kind.to_owned() }).inc();
    }

    /// A tenant's calls that ended with `outcome` (`completed`, `failed`) so far.
    pub fn calls_of(&self, tenant: &str, outcome: &str) -> u64 {
        Metrics::tenant_kind_of(&self.tenant_calls, tenant, outcome)
    }

    /// A tenant's new requests of `method` so far.
    pub fn requests_of(&self, tenant: &str, method: &str) -> u64 {
        self.requests.get_or_create(&RequestLabels { method: method.to_owned(), tenant: tenant.to_owned() }).get()
    }

    /// A tenant's fallback decisions so far.
    pub fn fallbacks_of(&self, tenant: &str) -> u64 {
        self.fallbacks.get_or_create(&TenantLabel { tenant: tenant.to_owned() }).get()
    }

    /// A tenant's policy reloads with `outcome` (`ok`, `failed`) so far.
    pub fn reloads_of(&self, tenant: &str, outcome: &str) -> u64 {
        Metrics::tenant_kind_of(&self.reloads, tenant, outcome)
    }

    /// Configuration reloads with `outcome` (`ok`, `failed`) so far.
    pub fn config_reloads_of(&self, outcome: &'static str) -> u64 {
        self.config_reloads.get_or_create(&OutcomeLabel { outcome }).get()
    }
}

/// The counters of one policy version in one role (`exum_policy_version_*`);
/// the policy plane judges canaries by them (`policy/candidate.rs`).
#[derive(Debug, Clone, Default)]
pub struct Lane {
    /// Decisions it made.
    pub decisions: Counter,
    /// Faults (each also a decision made by the fallback).
    pub faults: Counter,
    /// Calls it decided that ended well (or as the callee chose).
    pub calls: Counter,
    /// Calls it decided that failed (as `policy::candidate::call_failed` tells).
    pub failed: Counter,
}

impl Lane {
    /// The counters as the API shows them.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "decisions": self.decisions.get(),
            "faults": self.faults.get(),
            "calls": self.calls.get() + self.failed.get(),
            "failed_calls": self.failed.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_buckets_match_the_histograms_and_give_a_quantile() {
        let b = Buckets::default();
        for _ in 0..98 {
            b.observe(3e-6); // 2.744 µs < 3 µs <= 3.8416 µs: bucket 4
        }
        b.observe(0.5); // above the last bound
        b.observe(1e-7); // below the first
        let after = b.counts();
        assert_eq!((after[4], after[BUCKETS], after[0]), (98, 1, 1));
        let none = vec![0; BUCKETS + 1];
        let p50 = Buckets::quantile(&none, &after, 0.5).expect("some");
        assert!((p50 - 1e-6 * 1.4f64.powi(4)).abs() < 1e-12, "{p50}");
        assert_eq!(Buckets::quantile(&none, &after, 1.0), Some(f64::INFINITY));
        assert_eq!(Buckets::quantile(&after, &after, 0.99), None, "nothing in between");
    }

    /// Every metric the router exports has a row in the documentation's
    /// table of metrics (`docs/architecture.md`), under its exported name.
    #[test]
    fn every_exported_metric_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/architecture.md"))
            .expect("docs/architecture.md");
        let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `exum_")).collect();
        let metrics = Metrics::new();
        // Counters are exported with `_total`.
        let missing: Vec<&String> = metrics
            .families()
            .iter()
            .filter(|name| {
                !rows.iter().any(|r| r.contains(&format!("`{name}`")) || r.contains(&format!("`{name}_total`")))
            })
            .collect();
        assert!(missing.is_empty(), "not in the table of docs/architecture.md: {missing:?}");
        assert!(metrics.families().len() >= 40, "{}", metrics.families().len());
    }
}

//! The configuration file as written: what serde reads, before validation
//! (`validate.rs`) turns it into [`super::RouterConfig`].

use std::collections::BTreeMap;

use serde::Deserialize;

use std::path::PathBuf;

use super::{CompileSettings, SharedCacheSettings, VerificationLevel};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    /// A file name, or a `[directory]` table.
    pub(super) directory: serde_json::Value,
    #[serde(default)]
    pub(super) directory_may_remove_all_users: bool,
    #[serde(default)]
    pub(super) directory_max_mib: Option<u64>,
    #[serde(default)]
    pub(super) directory_max_removed_share: Option<f64>,
    #[serde(default)]
    pub(super) directory_settle_ms: Option<u64>,
    #[serde(default)]
    pub(super) compile: CompileFile,
    #[serde(default)]
    pub(super) policy_dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) policy_cache: Option<PathBuf>,
    #[serde(default)]
    pub(super) policy_start_wait_s: Option<f64>,
    #[serde(default)]
    pub(super) records: Option<RecordsFile>,
    #[serde(default)]
    pub(super) lifecycle: LifecycleFile,
    #[serde(default)]
    pub(super) policy_defaults: LimitsFile,
    #[serde(default, rename = "tenant")]
    pub(super) tenants: Vec<TenantFile>,
    #[serde(default, rename = "hosting_provider")]
    pub(super) hosting_providers: Vec<HostingProviderFile>,
    #[serde(default)]
    pub(super) listen: Vec<ListenFile>,
    #[serde(default)]
    pub(super) sip: SipFile,
    #[serde(default)]
    pub(super) probes: ProbesFile,
    #[serde(default)]
    pub(super) overload: OverloadFile,
    #[serde(default)]
    pub(super) tls: TlsFile,
    #[serde(default)]
    pub(super) dns: DnsFile,
    #[serde(default)]
    pub(super) admin: Option<AdminFile>,
    #[serde(default)]
    pub(super) hep: Option<HepFile>,
    #[serde(default)]
    pub(super) otel: Option<OtelFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OtelFile {
    pub(super) endpoint: String,
    #[serde(default)]
    pub(super) sample: Option<f64>,
    #[serde(default)]
    pub(super) service_name: Option<String>,
    #[serde(default)]
    pub(super) instance: Option<String>,
    #[serde(default)]
    pub(super) sip_header: Option<String>,
    #[serde(default)]
    pub(super) queue: Option<usize>,
    #[serde(default)]
    pub(super) export_interval_ms: Option<u64>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HepFile {
    pub(super) address: String,
    #[serde(default)]
    pub(super) transport: Option<String>,
    #[serde(default)]
    pub(super) capture_id: Option<u32>,
    #[serde(default)]
    pub(super) auth_key: Option<String>,
    #[serde(default)]
    pub(super) node_name: Option<String>,
    #[serde(default)]
    pub(super) share: Option<f64>,
    #[serde(default)]
    pub(super) queue: Option<usize>,
    #[serde(default = "yes")]
    pub(super) decisions: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HostingProviderFile {
    pub(super) identity: String,
    pub(super) proxy: String,
    #[serde(default = "default_verification")]
    pub(super) verification_level: VerificationLevel,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default = "yes")]
    pub(super) shared_address_space: bool,
    #[serde(default)]
    pub(super) hosts_ocs_users: bool,
}

pub(super) fn default_verification() -> VerificationLevel {
    VerificationLevel::UseSourceVerification
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct OverloadFile {
    pub(super) max_transactions: Option<usize>,
    pub(super) per_source_requests: Option<u32>,
    pub(super) per_source_window_ms: Option<u64>,
    pub(super) retry_after_s: Option<u32>,
    pub(super) stray_2xx_per_second: Option<u32>,
    pub(super) max_transaction_bytes: Option<usize>,
    pub(super) ban_after: Option<u32>,
    pub(super) ban_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningFile {
    #[serde(default)]
    pub(super) trusted_keys: Vec<String>,
    #[serde(default)]
    pub(super) required: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LifecycleFile {
    pub(super) history: Option<usize>,
    pub(super) shadow_samples: Option<usize>,
    pub(super) canary_min_calls: Option<u64>,
    pub(super) canary_fault_margin: Option<f64>,
    pub(super) canary_failure_margin: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CompileFile {
    pub(super) workers: Option<usize>,
    pub(super) memory_mib: Option<u64>,
    pub(super) cpu_s: Option<u64>,
    pub(super) cache_max_mib: Option<u64>,
    pub(super) shared_cache: Option<PathBuf>,
    pub(super) shared_cache_key_file: Option<PathBuf>,
}

impl CompileFile {
    /// The fleet's shared artifacts (paths resolved against `base`), which
    /// need both keys and a `policy_cache` to copy them into.
    pub(super) fn shared(
        &self,
        base: &std::path::Path,
        policy_cache: Option<&std::path::Path>,
    ) -> Result<Option<SharedCacheSettings>, (String, String)> {
        match (&self.shared_cache, &self.shared_cache_key_file) {
            (None, None) => Ok(None),
            (Some(_), None) => Err((
                "compile.shared_cache_key_file".into(),
                "missing: a shared cache needs the fleet's key (at least 32 bytes; head -c 32 /dev/urandom > it)"
                    .into(),
            )),
            (None, Some(_)) => {
                Err(("compile.shared_cache".into(), "missing: the key file is for a shared cache".into()))
            }
            (Some(_), Some(_)) if policy_cache.is_none() => Err((
                "compile.shared_cache".into(),
                "needs policy_cache (shared artifacts are copied there before use)".into(),
            )),
            (Some(dir), Some(_)) if dir.as_os_str().is_empty() => {
                Err(("compile.shared_cache".into(), "empty: give the folder the fleet shares".into()))
            }
            (Some(dir), Some(key)) => Ok(Some(SharedCacheSettings { dir: base.join(dir), key_file: base.join(key) })),
        }
    }

    /// The validated settings, or the key and why it is refused.
    pub(super) fn settings(&self) -> Result<CompileSettings, (String, String)> {
        let d = CompileSettings::default();
        let s = CompileSettings {
            workers: self.workers.unwrap_or(d.workers),
            memory_mib: self.memory_mib.unwrap_or(d.memory_mib),
            cpu_s: self.cpu_s.unwrap_or(d.cpu_s),
            cache_max_bytes: self.cache_max_mib.map_or(d.cache_max_bytes, |m| m.saturating_mul(1 << 20)),
        };
        if !(1..=64).contains(&s.workers) {
            return Err(("compile.workers".into(), format!("{}: 1 to 64 compiles at once", s.workers)));
        }
        if !(64..=65_536).contains(&s.memory_mib) {
            return Err(("compile.memory_mib".into(), format!("{}: 64 to 65536 MiB", s.memory_mib)));
        }
        if !(1..=3_600).contains(&s.cpu_s) {
            return Err(("compile.cpu_s".into(), format!("{}: 1 to 3600 seconds", s.cpu_s)));
        }
        if let Some(m) = self.cache_max_mib
            && !(16..=1 << 20).contains(&m)
        {
            return Err(("compile.cache_max_mib".into(), format!("{m}: 16 to 1048576 MiB")));
        }
        Ok(s)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecordsFile {
    pub(super) dir: PathBuf,
    pub(super) max_mib_per_tenant: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub(super) address: String,
    pub(super) token: Option<String>,
    #[serde(default)]
    pub(super) token_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenFile {
    pub(super) address: String,
    #[serde(default = "default_transports")]
    pub(super) transports: Vec<String>,
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) allow_names: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DnsFile {
    #[serde(default)]
    pub(super) servers: Vec<String>,
    #[serde(default)]
    pub(super) hosts: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsFile {
    pub(super) certificate: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    pub(super) ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) require_client_certificate: bool,
}

pub(super) fn default_transports() -> Vec<String> {
    vec!["udp".into(), "tcp".into()]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SipFile {
    pub(super) t1_ms: Option<u64>,
    pub(super) t2_ms: Option<u64>,
    pub(super) t4_ms: Option<u64>,
    pub(super) target_timeout_ms: Option<u64>,
    pub(super) timer_c_ms: Option<u64>,
    pub(super) max_message_bytes: Option<usize>,
    pub(super) tcp_idle_timeout_ms: Option<u64>,
    pub(super) tcp_first_message_timeout_ms: Option<u64>,
    pub(super) tcp_message_timeout_ms: Option<u64>,
    pub(super) tcp_send_timeout_ms: Option<u64>,
    pub(super) tcp_lifetime_ms: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_ip: Option<usize>,
    pub(super) shutdown_grace_ms: Option<u64>,
    pub(super) udp_receive_buffer_bytes: Option<usize>,
    pub(super) udp_receivers: Option<usize>,
    pub(super) worker_threads: Option<usize>,
    pub(super) secret: Option<String>,
    pub(super) name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ProbesFile {
    pub(super) enabled: Option<bool>,
    pub(super) interval_ms: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) down_after: Option<u32>,
    pub(super) up_after: Option<u32>,
    pub(super) gateways: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsFile {
    pub(super) deadline_ms: Option<u64>,
    pub(super) runtime_deadline_ms: Option<u64>,
    pub(super) memory_mib: Option<u64>,
    pub(super) quarantine_after: Option<u32>,
    pub(super) component_mib: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantFile {
    pub(super) id: String,
    pub(super) domains: Vec<String>,
    #[serde(default)]
    pub(super) policy: Option<String>,
    #[serde(default)]
    pub(super) policy_config: String,
    #[serde(default)]
    pub(super) fallback: Option<FallbackFile>,
    #[serde(default)]
    pub(super) limits: LimitsFile,
    pub(super) edge: Option<String>,
    pub(super) hosting_provider: Option<String>,
    pub(super) default_next_hop: Option<String>,
    pub(super) pstn_gateway: Option<String>,
    pub(super) av_edge_gruu: Option<String>,
    #[serde(default)]
    pub(super) utc_offset_minutes: i32,
    #[serde(default)]
    pub(super) rerouting: Option<ReroutingFile>,
    #[serde(default)]
    pub(super) site_rerouting: BTreeMap<String, ReroutingFile>,
    #[serde(default)]
    pub(super) record_route: bool,
    #[serde(default)]
    pub(super) uniform_user_answers: bool,
    #[serde(default)]
    pub(super) record_decisions: Option<f64>,
    #[serde(default = "yes")]
    pub(super) hep: bool,
    #[serde(default)]
    pub(super) hep_share: Option<f64>,
    #[serde(default)]
    pub(super) signing: Option<SigningFile>,
    #[serde(default)]
    pub(super) peers: Vec<String>,
    #[serde(default)]
    pub(super) ldap: Option<crate::control::ldap::LdapFile>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum FallbackFile {
    Named(String),
    Code(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReroutingFile {
    pub(super) enabled: bool,
    pub(super) auto_attendant: Option<String>,
    pub(super) subscriber_access: Option<String>,
    pub(super) pstn_gateway: Option<String>,
}

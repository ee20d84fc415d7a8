//! The router configuration (TOML): tenants, their domains, policies, fallbacks,
//! limits and routing settings. Loaded as parse → validate; an invalid file is
//! refused whole with the file, the key and the reason.
//!
//! ```toml
//! directory = "directory.toml"        # users, contacts, hosted policies, dial plans
//! policy_dir = "policies"             # watched: <tenant-id>.wasm is that tenant's policy
//!
//! [policy_defaults]                   # limits for every tenant's policy calls
//! deadline_ms = 5                     # CPU-time budget of one call
//! runtime_deadline_ms = 20            # the same for JavaScript or Python policies
//! memory_mib = 16                     # linear memory of one instance
//! quarantine_after = 5                # consecutive faults before quarantine
//!
//! [[tenant]]
//! id = "contoso"
//! domains = ["contoso.com"]
//! policy = "policies/contoso.wasm"    # or "standard" (the default)
//! policy_config = "pilot=alice"       # given to the policy's init
//! fallback = "standard"               # or a reject code: fallback = 503
//! edge = "sip:edge.contoso.com:5061;transport=tls"
//! default_next_hop = "sip:pool.contoso.com;transport=tcp"
//! pstn_gateway = "sip:gw.contoso.com;transport=tcp"
//! utc_offset_minutes = -480           # local time for policies' clock
//! limits = { deadline_ms = 10 }       # per-tenant overrides of policy_defaults
//!
//! [tenant.rerouting]                  # voice-mail rerouting when no UM answers
//! enabled = true
//! auto_attendant = "+14255550150"
//! subscriber_access = "+14255550151"
//!
//! [tenant.site_rerouting.paris]       # a site's own rerouting settings
//! enabled = true
//! auto_attendant = "+33155550150"
//! subscriber_access = "+33155550151"
//! pstn_gateway = "sip:gw.paris.contoso.com"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, check_sip_uri, parse_text, read_file};

mod file;
mod validate;

use file::*;
pub use validate::host_name;
pub(crate) use validate::{TenantContext, tenant_from_value};

/// The validated router configuration.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory file, resolved against the config file's folder; with a
    /// database source, the name its errors are reported under (`postgres`).
    pub directory: PathBuf,
    /// Where the directory comes from: the file (`directory = "file.toml"`, or
    /// `[directory] source = "file"`), or PostgreSQL (`[directory] source = "postgres"`).
    pub directory_source: DirectorySource,
    /// The watched policy directory (`policy_dir`): `<tenant-id>.wasm` there is
    /// the tenant's policy, replacing its configured one while present.
    pub policy_dir: Option<PathBuf>,
    /// Where precompiled policies are cached across restarts (`policy_cache`);
    /// it must be writable by the router alone.
    pub policy_cache: Option<PathBuf>,
    /// How long a start waits for the policies that are not in `policy_cache`
    /// to compile before it serves (`policy_start_wait_s`, 20 s); those left
    /// compile in the background, their tenants' calls decided by the
    /// fallback until each is compiled.
    pub policy_start_wait: Duration,
    /// How policies are compiled (`[compile]`).
    pub compile: CompileSettings,
    /// Compiled artifacts shared by the fleet (`[compile] shared_cache` and
    /// `shared_cache_key_file`).
    pub shared_cache: Option<SharedCacheSettings>,
    /// How long the directory file must stay unchanged before it is read
    /// (`directory_settle_ms`).
    pub directory_settle: Duration,
    /// Where decision records are written (`[records]`), if anywhere.
    pub records: Option<crate::control::policy_settings::RecordSettings>,
    /// HEP capture to Homer or sngrep (`[hep]`); `None`: off.
    pub hep: Option<HepSettings>,
    /// OpenTelemetry traces (`[otel]`); `None`: off.
    pub otel: Option<OtelSettings>,
    /// Version history and candidates (`[lifecycle]`).
    pub lifecycle: Lifecycle,
    /// The tenants, in file order.
    pub tenants: Vec<TenantConfig>,
    /// Where to listen for SIP.
    pub listen: Vec<Listen>,
    /// SIP timers and limits.
    pub sip: SipSettings,
    /// OPTIONS health probes of UM servers.
    pub probes: Probes,
    /// The admin HTTP listener, if any.
    pub admin: Option<Admin>,
    /// `[tls]`: certificate, key and CA roots for TLS.
    pub tls: TlsSettings,
    /// `[dns]`: name servers and static hosts.
    pub dns: crate::model::dns::DnsSettings,
    /// `[sip] secret`: the key of the tags the router puts in the branches and
    /// Record-Routes it mints, to know them again. Give every router of a fleet
    /// the same; without it, a random key per start (dialogs routed before a
    /// restart are then recognised by their tenant's domain and peers only).
    pub secret: Option<String>,
    /// `[sip] name`: the router's name in the `source` of the `ms-diagnostics`
    /// it and its policies write (the host's name by default), as Lync servers
    /// name themselves.
    pub name: String,
    /// `[policy_defaults]`: the limits tenants inherit (those defined in the
    /// directory too).
    pub policy_defaults: Limits,
    /// `[[hosting_provider]]`s, in file order.
    pub hosting_providers: Vec<HostingProvider>,
    /// Whether a reloaded directory may leave a tenant that had users with none
    /// (`directory_may_remove_all_users`, false): refused by default, as the
    /// mark of a file caught half-written.
    pub directory_may_remove_all_users: bool,
    /// The largest share of a tenant's users one reload of the directory may
    /// remove (`directory_max_removed_share`, 0.5): a reload that would remove
    /// more is refused for that tenant, which keeps its previous directory
    /// (a file caught half-written), unless `directory_may_remove_all_users`.
    pub directory_max_removed_share: f64,
    /// Largest directory file read (`directory_max_mib`, 64): a larger one is
    /// refused, naming its size, before it is read.
    pub directory_max_bytes: u64,
}

/// Where the directory (and, with a database, the policy versions) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorySource {
    /// The directory file, watched.
    File,
    /// PostgreSQL, shared by a fleet (see `docs/deployment.md`).
    Postgres(PostgresSettings),
}

/// `[directory] source = "postgres"`: how to reach the database.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// The connection string (`url`, or read from the environment variable
    /// `url_env`): `postgres://user:password@host:port/db` or `host=... user=...`.
    pub url: String,
    /// Connections for reads and the admin API's writes (`pool_size`, 4); the
    /// change listener has its own.
    pub pool_size: usize,
    /// TLS to the database (`tls = true`), verified against `ca`.
    pub tls_ca: Option<PathBuf>,
    /// How long one connection attempt may take (`connect_timeout_ms`, 5000).
    pub connect_timeout: Duration,
    /// Whether the router brings the schema up to date at start (`migrate`,
    /// true); false for a role without the rights, the schema then migrated by
    /// `exum-router db migrate`.
    pub migrate: bool,
    /// Where the last directory applied is kept, to start from when the
    /// database cannot be reached (`snapshot`, true; `snapshot_file`, else
    /// `directory.snapshot` in `policy_cache`); `None`: no snapshot.
    pub snapshot: Option<PathBuf>,
    /// A hot standby near the router that every read goes to (`read_url`, or
    /// `read_url_env`); changes are still notified by the primary (`url`), and
    /// a read waits until the standby has replayed the primary's position
    /// taken after the change.
    pub read_url: Option<String>,
    /// How long a read waits for the standby to replay that far before it
    /// goes to the primary instead (`read_wait_ms`, 1000).
    pub read_wait: Duration,
}

impl PostgresSettings {
    /// The settings of a database named by `url`, every other key at its
    /// default (no snapshot, no read replica).
    pub fn with_url(url: String) -> PostgresSettings {
        PostgresSettings {
            url,
            pool_size: 4,
            tls_ca: None,
            connect_timeout: Duration::from_secs(5),
            migrate: true,
            snapshot: None,
            read_url: None,
            read_wait: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: never printed.
        f.debug_struct("PostgresSettings")
            .field("pool_size", &self.pool_size)
            .field("tls_ca", &self.tls_ca)
            .field("connect_timeout", &self.connect_timeout)
            .field("migrate", &self.migrate)
            .field("snapshot", &self.snapshot)
            .field("read_replica", &self.read_url.is_some())
            .field("read_wait", &self.read_wait)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectorySection {
    source: String,
    file: Option<PathBuf>,
    url: Option<String>,
    url_env: Option<String>,
    pool_size: Option<usize>,
    #[serde(default)]
    tls: bool,
    ca: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    migrate: Option<bool>,
    snapshot: Option<bool>,
    snapshot_file: Option<PathBuf>,
    read_url: Option<String>,
    read_url_env: Option<String>,
    read_wait_ms: Option<u64>,
}

/// `[tls]`: the router's certificate and key (for its TLS listeners, and
/// presented as client certificate to peers: mutual TLS), and the CA roots that
/// verify the servers it connects to and the clients that connect to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain (`certificate`), relative to the configuration file.
    pub certificate: Option<PathBuf>,
    /// PEM private key (`key`).
    pub key: Option<PathBuf>,
    /// PEM CA certificates (`ca`): required for outbound TLS and for client
    /// certificates.
    pub ca: Option<PathBuf>,
    /// TLS listeners refuse clients without a certificate signed by `ca`
    /// (`require_client_certificate`, false).
    pub require_client_certificate: bool,
}

/// `[admin]`: the admin HTTP API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Where it listens (`address`, e.g. "127.0.0.1:9060").
    pub address: std::net::SocketAddr,
    /// Bearer token (`token`): required for every change (any method but GET
    /// and HEAD), and for every request when the address is not a loopback
    /// address (where a token, or `token_file`, must be configured). Without
    /// one, the API only reads: changes get 403.
    pub token: Option<String>,
    /// A file holding the token (`token_file`, relative to the configuration
    /// file), created with a random token (mode 0600) at the router's first
    /// start when it does not exist; the CLI reads it too.
    pub token_file: Option<PathBuf>,
    /// Host names the API answers to besides its own address, `localhost`
    /// and loopback addresses (`names`, e.g. `["router1.ops.contoso.com"]`):
    /// a request naming another host (DNS rebinding) gets 421.
    pub names: Vec<String>,
}

/// `[hep]`: every SIP message the router receives and sends, and each
/// policy decision, mirrored as HEPv3 packets to a capture server (Homer's
/// heplify-server, sngrep `-L`). Read at start; a change needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct HepSettings {
    /// The capture server (`address`, IP address and port).
    pub address: std::net::SocketAddr,
    /// Over TCP (`transport = "tcp"`) instead of UDP.
    pub tcp: bool,
    /// The capture agent id Homer groups by (`capture_id`, default 1).
    pub capture_id: u32,
    /// The capture server's password (`auth_key`), sent in every packet.
    pub auth_key: Option<String>,
    /// The node name in every packet (`node_name`, default `[sip] name`).
    pub node_name: String,
    /// The share of calls captured, by Call-ID (`share`, 0 to 1, default 1);
    /// a tenant's `hep_share` overrides it, `hep = false` turns it off.
    pub share: f64,
    /// Packets waiting to be sent, at most (`queue`, default 10,000); beyond
    /// it they are dropped and counted, never waited for.
    pub queue: usize,
    /// Each policy decision as a HEP log event (type 100) too (`decisions`,
    /// default true).
    pub decisions: bool,
}

/// `[otel]`: the router's spans (`request`, `policy`, `client`) exported
/// over OTLP/HTTP. Read at start; a change needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct OtelSettings {
    /// The collector's OTLP/HTTP traces URL (`endpoint`,
    /// `http://127.0.0.1:4318/v1/traces`).
    pub endpoint: String,
    /// The share of traces sampled (`sample`, 0 to 1, default 1), by trace
    /// id; a request whose trace context says sampled always is.
    pub sample: f64,
    /// `service.name` (`service_name`, default `exum-router`).
    pub service_name: String,
    /// `service.instance.id` (`instance`, default `[sip] name`).
    pub instance: String,
    /// The SIP header carrying W3C trace context (`sip_header`, e.g.
    /// `traceparent`): read from requests, written into forwarded ones.
    pub sip_header: Option<String>,
    /// Spans waiting to be exported, at most (`queue`, default 4096).
    pub queue: usize,
    /// How often a batch is exported (`export_interval_ms`, default 1000).
    pub export_interval: std::time::Duration,
    /// How long an export may take (`timeout_ms`, default 5000).
    pub timeout: std::time::Duration,
}

/// One SIP listener: `[[listen]] address = "127.0.0.1:5060"`, `transports = ["udp", "tcp"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The socket address.
    pub address: std::net::SocketAddr,
    /// Listen on UDP.
    pub udp: bool,
    /// Listen on TCP.
    pub tcp: bool,
    /// Listen on TLS (over TCP).
    pub tls: bool,
    /// TLS peer names (DNS names of their certificate) that may send to this
    /// listener (`allow_names`; empty: any). Applies to TLS connections; other
    /// transports of a listener with names have no name and are refused.
    pub allow_names: Vec<String>,
    /// Peers that may send to this listener (`allow`, CIDR networks; empty:
    /// everyone). Requests from others get 403; their responses are dropped.
    pub allow: Vec<crate::control::acl::Cidr>,
}

/// `[sip]`: timers (RFC 3261 §17) and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipSettings {
    /// T1, the round-trip estimate (`t1_ms`, 500).
    pub t1: Duration,
    /// T2, the cap of retransmission intervals (`t2_ms`, 4000).
    pub t2: Duration,
    /// T4, how long a message stays in the network (`t4_ms`, 5000).
    pub t4: Duration,
    /// Per-target timer when the decision gives none (`target_timeout_ms`,
    /// 8000, or 64 × `t1_ms` when that is less): how long a target may take to
    /// send its first response, at most 64 × `t1_ms` (Timer B; a longer value
    /// is refused). Once it answered provisionally, `timer_c` applies.
    pub target_timeout: Duration,
    /// Timer C (`timer_c_ms`, 185000; RFC 3261 §16.8 asks for more than three
    /// minutes): how long a target that rings (1xx) may take to answer finally,
    /// restarted by each provisional response other than 100; then it is
    /// CANCELled and the next target tried.
    pub timer_c: Duration,
    /// Largest message accepted (`max_message_bytes`, 65536).
    pub max_message_bytes: usize,
    /// A TCP peer that sends part of a message and then nothing for this long is
    /// disconnected; an idle connection too (`tcp_idle_timeout_ms`, 30000).
    pub tcp_idle_timeout: Duration,
    /// An accepted TCP or TLS connection that has not sent a whole message
    /// this long after it was opened is closed (`tcp_first_message_timeout_ms`,
    /// 5000, at most the idle timeout): idle connections cannot hold the
    /// connection caps.
    pub tcp_first_message_timeout: Duration,
    /// A TCP or TLS message must arrive whole within this of its first byte, or
    /// the connection is closed (`tcp_message_timeout_ms`, 10000): a peer
    /// trickling a message a byte at a time cannot hold a connection.
    pub tcp_message_timeout: Duration,
    /// A write to a TCP or TLS peer that does not complete within this closes
    /// the connection (`tcp_send_timeout_ms`, 10000); at most 256 messages
    /// wait to be written to one connection, beyond which sends fail.
    pub tcp_send_timeout: Duration,
    /// Connections accepted are closed at the first message boundary after
    /// this long (`tcp_lifetime_ms`, 0: never). Off by default: a response to a
    /// transaction still in progress on a closed connection would be lost.
    pub tcp_lifetime: Option<Duration>,
    /// TCP and TLS connections accepted at once, all peers together
    /// (`max_connections`, 4096; lowered to fit the process's file limit).
    pub max_connections: usize,
    /// TCP and TLS connections accepted at once from one IP address
    /// (`max_connections_per_ip`, 128).
    pub max_connections_per_ip: usize,
    /// At shutdown, how long in-flight transactions may take to finish
    /// (`shutdown_grace_ms`, 10000).
    pub shutdown_grace: Duration,
    /// Receive buffer asked for on each UDP socket (`udp_receive_buffer_bytes`,
    /// 4 MiB; the kernel caps it at `net.core.rmem_max`): bursts above what the
    /// receivers drain at once wait there instead of being dropped.
    pub udp_receive_buffer: usize,
    /// Tasks receiving on each UDP socket (`udp_receivers`, 1): each parses
    /// and dispatches what it receives. Every task waiting on a socket is woken
    /// for each datagram, so more than one costs a wake-up per message more
    /// (docs/performance.md measures it).
    pub udp_receivers: usize,
    /// Threads of the runtime that runs the SIP plane and the policies
    /// (`worker_threads`, one per CPU; read at start). One thread spends the
    /// least CPU per call at low rates (no wake-ups between threads) but uses
    /// one core at most.
    pub worker_threads: usize,
    /// `[overload]`: when new requests are refused with 503.
    pub overload: Overload,
}

/// `[overload]`: beyond these limits a new out-of-dialog request gets `503` with
/// `Retry-After`; in-dialog requests and transactions in progress go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overload {
    /// Transactions in the table, lingering ones (final response sent, kept for
    /// retransmissions) included, beyond which new requests are refused
    /// (`max_transactions`, 50000; 0: no cap).
    pub max_transactions: usize,
    /// Bytes transactions may hold (their requests, the copies forwarded, the
    /// responses kept) beyond which new requests are refused
    /// (`max_transaction_bytes`, 512 MiB; 0: no bound). In-dialog requests are
    /// refused only beyond 1.25 times this, so calls in progress can end.
    pub max_transaction_bytes: usize,
    /// New requests one source IP address may send per window
    /// (`per_source_requests`, 500; 0: no limit), a token bucket of that size:
    /// a Lync pool or an SBC sending 500 new calls a second is let through.
    pub per_source_requests: u32,
    /// The window of `per_source_requests` (`per_source_window_ms`, 1000).
    pub per_source_window: Duration,
    /// The `Retry-After` of the 503, in seconds (`retry_after_s`, 5).
    pub retry_after_s: u32,
    /// Windows in a row a source sent at least twice `per_source_requests`
    /// after which it is banned (`ban_after`, 5; 0: no bans).
    pub ban_after: u32,
    /// How long a ban lasts (`ban_ms`, 60000): the source's new requests are
    /// dropped unanswered; `GET /bans` lists them.
    pub ban: Duration,
    /// 2xx responses whose transaction is gone forwarded per second at most
    /// (`stray_2xx_per_second`, 200; 0: none): a retransmitted 2xx after the
    /// router forgot its transaction; beyond, they are dropped.
    pub stray_2xx_per_second: u32,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            max_transactions: 50_000,
            max_transaction_bytes: 512 << 20,
            per_source_requests: 500,
            per_source_window: Duration::from_secs(1),
            retry_after_s: 5,
            ban_after: 5,
            ban: Duration::from_secs(60),
            stray_2xx_per_second: 200,
        }
    }
}

impl Default for SipSettings {
    fn default() -> Self {
        SipSettings {
            t1: Duration::from_millis(500),
            t2: Duration::from_millis(4000),
            t4: Duration::from_millis(5000),
            target_timeout: Duration::from_millis(8000),
            timer_c: Duration::from_millis(185_000),
            max_message_bytes: 64 * 1024,
            tcp_idle_timeout: Duration::from_millis(30_000),
            tcp_first_message_timeout: Duration::from_millis(5_000),
            tcp_message_timeout: Duration::from_millis(10_000),
            tcp_send_timeout: Duration::from_millis(10_000),
            tcp_lifetime: None,
            max_connections: 4096,
            max_connections_per_ip: 128,
            shutdown_grace: Duration::from_millis(10_000),
            udp_receive_buffer: 4 << 20,
            udp_receivers: 1,
            worker_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            overload: Overload::default(),
        }
    }
}

/// `[probes]`: OPTIONS health probes of every UM server of every dial plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probes {
    /// Whether probing is on (`enabled`, true).
    pub enabled: bool,
    /// Time between probes of one server (`interval_ms`, 10000).
    pub interval: Duration,
    /// How long to wait for an answer (`timeout_ms`, 2000).
    pub timeout: Duration,
    /// Consecutive failures that mark a server down (`down_after`, 2).
    pub down_after: u32,
    /// Consecutive successes that mark it up again (`up_after`, 1).
    pub up_after: u32,
    /// Whether PSTN gateways and default next hops are probed too
    /// (`gateways`, true); UM servers and edges always are.
    pub gateways: bool,
}

impl Default for Probes {
    fn default() -> Self {
        Probes {
            enabled: true,
            interval: Duration::from_millis(10_000),
            timeout: Duration::from_millis(2000),
            down_after: 2,
            up_after: 1,
            gateways: true,
        }
    }
}

/// `[[hosting_provider]]`: a provider of hosted Exchange UM, as Lync's
/// `New-CsHostingProvider` registers one. A tenant's hosted voice-mail calls go
/// to its provider's proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostingProvider {
    /// `identity`: its name, `ExchangeOnline`; tenants name it.
    pub identity: String,
    /// `proxy`: its proxy, as Lync's ProxyFqdn (`exap.um.outlook.com`, reached
    /// over TLS) or a SIP URI.
    pub proxy: String,
    /// `verification_level`: how Lync marks messages from it
    /// (`always-verifiable`, `always-unverifiable`, `use-source-verification`,
    /// the default). Recorded; the router neither signs nor verifies.
    pub verification_level: VerificationLevel,
    /// `enabled` (true): a disabled provider takes no calls; its tenants'
    /// hosted calls are refused (480, 15033).
    pub enabled: bool,
    /// `shared_address_space` (true): users of one SIP domain split between
    /// on-premises and the provider.
    pub shared_address_space: bool,
    /// `hosts_ocs_users` (false): the provider hosts Lync users, not only mailboxes.
    pub hosts_ocs_users: bool,
}

/// Lync's `VerificationLevel` of a hosting provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerificationLevel {
    /// Messages from the provider are verified.
    AlwaysVerifiable,
    /// Messages from the provider are not verified.
    AlwaysUnverifiable,
    /// Verified when the source says so.
    UseSourceVerification,
}

impl HostingProvider {
    /// The next hop of hosted calls through this provider (`sip:<fqdn>;transport=tls`
    /// for a bare FQDN), or `None` when it is disabled.
    pub fn next_hop(&self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        Some(if self.proxy.contains(':') { self.proxy.clone() } else { format!("sip:{};transport=tls", self.proxy) })
    }
}

/// One tenant's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// The tenant id (`contoso`).
    pub id: String,
    /// The SIP domains it owns, lower-cased.
    pub domains: Vec<String>,
    /// Its routing policy.
    pub policy: PolicySource,
    /// The string given to the policy's `init`.
    pub policy_config: String,
    /// What decides when its policy faults.
    pub fallback: Fallback,
    /// Limits of its policy calls.
    pub limits: Limits,
    /// The edge next hop towards hosted UM (`edge`, a shorthand for a hosting
    /// provider with that proxy).
    pub edge: Option<String>,
    /// The tenant's hosting provider (`hosting_provider`, by identity).
    pub hosting_provider: Option<HostingProvider>,
    /// Where requests that are not voice-mail-bound go.
    pub default_next_hop: Option<String>,
    /// The tenant's PSTN gateway.
    pub pstn_gateway: Option<String>,
    /// The GRUU of the tenant's A/V Edge (its MRAS service): sent to UM
    /// servers as `Ms-Mras-Address` ([MS-EUMR] 3.1.5 step 4).
    pub av_edge_gruu: Option<String>,
    /// Offset of local time from UTC, in minutes.
    pub utc_offset_minutes: i32,
    /// Tenant-wide voice-mail rerouting.
    pub rerouting: Rerouting,
    /// Per-site voice-mail rerouting.
    pub site_rerouting: BTreeMap<String, Rerouting>,
    /// Whether the router Record-Routes the tenant's dialogs (stays on the path of
    /// in-dialog requests).
    pub record_route: bool,
    /// Whether an unknown user and a user not enabled for UM get the same
    /// answer (`uniform_user_answers`, false): both `480` with
    /// `ms-diagnostics: 15030`, as when the UM servers failed, so callers
    /// cannot tell which addresses are users.
    pub uniform_user_answers: bool,
    /// Share of the tenant's policy calls recorded into `[records]` (0 to 1).
    pub record_decisions: f64,
    /// The share of the tenant's calls captured to HEP (`hep = false`: 0;
    /// `hep_share`); `None`: `[hep] share`.
    pub hep_share: Option<f64>,
    /// The keys whose signatures the tenant trusts, and whether its policies
    /// must be signed (`[tenant.signing]`).
    pub signing: crate::control::policy_settings::Trust,
    /// Peers the tenant's new requests are accepted from (`peers`, CIDR
    /// networks; empty: any peer the listener allows). Others get 403.
    pub peers: Vec<crate::control::acl::Cidr>,
    /// Users and contacts read from the tenant's LDAP directory (`[tenant.ldap]`).
    pub ldap: Option<std::sync::Arc<super::ldap::LdapSettings>>,
}

impl TenantConfig {
    /// Where the tenant's hosted voice-mail calls go: its hosting provider's
    /// proxy (none while the provider is disabled), or its `edge`.
    pub fn hosted_next_hop(&self) -> Option<String> {
        match &self.hosting_provider {
            Some(p) => p.next_hop(),
            None => self.edge.clone(),
        }
    }

    /// A tenant with no domain, the standard policy and default settings.
    pub fn empty(id: &str) -> TenantConfig {
        TenantConfig {
            id: id.to_owned(),
            domains: Vec::new(),
            policy: PolicySource::Standard,
            policy_config: String::new(),
            fallback: Fallback::Standard,
            limits: Limits::default(),
            edge: None,
            hosting_provider: None,
            default_next_hop: None,
            pstn_gateway: None,
            av_edge_gruu: None,
            utc_offset_minutes: 0,
            rerouting: Rerouting::default(),
            site_rerouting: BTreeMap::new(),
            record_route: false,
            uniform_user_answers: false,
            record_decisions: 0.0,
            hep_share: None,
            signing: crate::control::policy_settings::Trust::default(),
            peers: Vec::new(),
            ldap: None,
        }
    }
}

/// How policies are compiled (`[compile]`): compiling costs memory and CPU
/// by the shape of the code, not its size, so every compile from scratch takes
/// one of `workers` slots and, when the router runs as its binary, happens in a
/// child process capped at `memory_mib` of data and `cpu_s` of CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileSettings {
    /// Compiles at once, at most (`workers`; 2).
    pub workers: usize,
    /// Memory one compile may use, in MiB (`memory_mib`; 1024).
    pub memory_mib: u64,
    /// CPU one compile may use, in seconds (`cpu_s`; 300).
    pub cpu_s: u64,
    /// Bytes of compiled artifacts kept in `policy_cache` (`cache_max_mib`;
    /// 2048): beyond it the least recently used are removed, never those of
    /// a version in service.
    pub cache_max_bytes: u64,
}

/// A folder of compiled artifacts the fleet shares, and the key their tags
/// are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCacheSettings {
    /// The folder (`shared_cache`).
    pub dir: PathBuf,
    /// The fleet's key (`shared_cache_key_file`), read at start.
    pub key_file: PathBuf,
}

impl Default for CompileSettings {
    fn default() -> Self {
        CompileSettings { workers: 2, memory_mib: 1024, cpu_s: 300, cache_max_bytes: 2048 << 20 }
    }
}

/// How long a directory file must stay unchanged before it is read, by default.
pub const DEFAULT_DIRECTORY_SETTLE: Duration = Duration::from_millis(1000);

/// Version history and candidates (`[lifecycle]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lifecycle {
    /// Versions kept per tenant.
    pub history: usize,
    /// Diverging shadow samples kept per candidate.
    pub shadow_samples: usize,
    /// When a canary is rolled back, unless the request starting it says otherwise.
    pub rule: crate::control::policy_settings::CanaryRule,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            history: crate::control::policy_settings::DEFAULT_HISTORY_KEEP,
            shadow_samples: 20,
            rule: crate::control::policy_settings::CanaryRule::default(),
        }
    }
}

/// Where a tenant's policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The standard policy embedded in the router.
    Standard,
    /// A component file.
    File(PathBuf),
}

/// What decides when a tenant's policy faults (trap, deadline, memory, invalid
/// decision) or is quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The standard algorithm.
    Standard,
    /// A rejection with this status code.
    Reject(u16),
}

/// Per-call limits of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU-time budget of one call (wall-clock time: that plus 1 s at most) (`deadline_ms`).
    pub deadline: Duration,
    /// The same for a component that embeds a language runtime (JavaScript,
    /// Python: it imports WASI), whose engine collects garbage inside a call
    /// now and then (`runtime_deadline_ms`).
    pub runtime_deadline: Duration,
    /// Linear memory of one instance (`memory_mib`).
    pub memory_bytes: usize,
    /// Consecutive faults after which the policy is quarantined (`quarantine_after`).
    pub quarantine_after: u32,
    /// Largest component the tenant may serve (`component_mib`).
    pub component_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // 32 MiB of linear memory holds a Python or JavaScript runtime with
        // room for its heap during a call (an initialised instance of either
        // holds 9 to 12 MiB); a Rust policy uses about 1 MiB. It is a cap per
        // instance, not a reservation. Components up to 32 MiB hold those
        // runtimes (12 and 18 MB) and the standard library they bring.
        //
        // A native policy decides in microseconds: 5 ms of CPU is a runaway.
        // A language runtime's decision takes tens of microseconds too, but
        // its garbage collector runs inside some call: measured, a few ms of
        // CPU at the worst, twice that on a busy core or from the quick
        // tier's code; 20 ms holds those pauses and still stops a loop.
        Limits {
            deadline: Duration::from_millis(5),
            runtime_deadline: Duration::from_millis(20),
            memory_bytes: 32 << 20,
            quarantine_after: 5,
            component_bytes: 32 << 20,
        }
    }
}

/// Voice-mail rerouting settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rerouting {
    /// Whether rerouting is on.
    pub enabled: bool,
    /// The auto-attendant number, E.164.
    pub auto_attendant: Option<String>,
    /// The subscriber-access number, E.164.
    pub subscriber_access: Option<String>,
    /// The PSTN gateway (defaults to the tenant's).
    pub pstn_gateway: Option<String>,
}

/// How long a start waits for policies to compile, by default.
pub const DEFAULT_POLICY_START_WAIT: Duration = Duration::from_secs(20);

/// What a tenant id may be, as said in errors.
const TENANT_ID: &str = "a letter or digit, then letters, digits, `-`, `_`, `.`; at most 64";

/// Whether `id` is a tenant id: a strict token that is safe as a file and
/// folder name (`<id>.wasm`, records under `<dir>/<id>/`): it starts with a
/// letter or digit (never `.` or `..`), has at most 64 characters.
pub fn is_tenant_id(id: &str) -> bool {
    id.len() <= 64
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl RouterConfig {
    /// A configuration with `tenants` and every other setting at its default
    /// (no listener, no directory file), for tools and tests that build
    /// tenants in memory.
    pub fn with_tenants(tenants: Vec<TenantConfig>) -> RouterConfig {
        RouterConfig {
            path: "router.toml".into(),
            directory: "directory.toml".into(),
            directory_source: DirectorySource::File,
            policy_dir: None,
            policy_cache: None,
            policy_start_wait: DEFAULT_POLICY_START_WAIT,
            compile: CompileSettings::default(),
            shared_cache: None,
            directory_settle: DEFAULT_DIRECTORY_SETTLE,
            records: None,
            hep: None,
            otel: None,
            lifecycle: Lifecycle::default(),
            tenants,
            listen: Vec::new(),
            sip: SipSettings::default(),
            probes: Probes::default(),
            admin: None,
            tls: TlsSettings::default(),
            dns: crate::model::dns::DnsSettings::default(),
            secret: None,
            name: host_name(),
            directory_may_remove_all_users: false,
            directory_max_bytes: 64 << 20,
            directory_max_removed_share: 0.5,
            policy_defaults: Limits::default(),
            hosting_providers: Vec::new(),
        }
    }

    /// Reads and validates the configuration at `path`.
    pub fn load(path: &Path) -> Result<RouterConfig, ConfigError> {
        let file: ConfigFile = read_file(path)?;
        Self::validate(path, file)
    }

    /// Validates `text` as the configuration file `path` would be (for tools and
    /// fuzzing: paths in it resolve against `path`'s folder; nothing is read).
    pub fn from_text(path: &Path, text: &str) -> Result<RouterConfig, ConfigError> {
        let file: ConfigFile = parse_text(path, text)?;
        Self::validate(path, file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<RouterConfig, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("router.toml");
        std::fs::write(&path, text).expect("write");
        RouterConfig::load(&path)
    }

    fn err(text: &str) -> String {
        load(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn loads_a_tenant_with_defaults() {
        let c =
            load("directory = \"d.toml\"\n[[tenant]]\nid = \"contoso\"\ndomains = [\"Contoso.com\"]\n").expect("valid");
        let t = &c.tenants[0];
        assert_eq!(t.domains, ["contoso.com"]);
        assert_eq!(t.policy, PolicySource::Standard);
        assert_eq!(t.fallback, Fallback::Standard);
        assert_eq!(t.limits, Limits::default());
        assert!(c.directory.ends_with("d.toml"));
    }

    #[test]
    fn paths_inside_resolve_against_the_files_folder_made_absolute() {
        // Tests run in the package's folder: `src/` exists there.
        let c = RouterConfig::from_text(
            Path::new("src/router.toml"),
            "directory = \"directory.toml\"\npolicy_dir = \"policy\"\n",
        )
        .expect("valid");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(c.directory, cwd.join("src/directory.toml"));
        assert_eq!(c.policy_dir, Some(cwd.join("src/policy")));
        let bare = RouterConfig::from_text(Path::new("router.toml"), "directory = \"d.toml\"\n").expect("valid");
        assert_eq!(bare.directory, cwd.join("d.toml"));
    }

    #[test]
    fn the_per_target_timer_is_the_time_to_a_first_response_within_timer_b() {
        let c = load("directory = \"d\"\n").expect("valid");
        assert_eq!((c.sip.target_timeout.as_millis(), c.sip.timer_c.as_millis()), (8000, 185_000));
        let c =
            load("directory = \"d\"\n[sip]\nt1_ms = 50\ntarget_timeout_ms = 3200\ntimer_c_ms = 1000\n").expect("valid");
        assert_eq!(c.sip.timer_c, Duration::from_millis(1000));
        let long = err("directory = \"d\"\n[sip]\ntarget_timeout_ms = 60000\n");
        assert!(long.contains("sip.target_timeout_ms: 60000: the time to a target's first response"), "{long}");
        assert!(long.contains("32000 (Timer B)"), "{long}");
        assert!(
            err("directory = \"d\"\n[sip]\ntimer_c_ms = 0\n").contains("sip.timer_c_ms: 0: must be 100 to 3600000")
        );
    }

    #[test]
    fn compiles_and_the_directory_settle_time_are_configured_with_bounds() {
        let c = load("directory = \"d\"\n").expect("valid");
        assert_eq!(c.compile, CompileSettings::default());
        assert_eq!(c.directory_settle, Duration::from_millis(1000));
        let c = load(
            "directory = \"d\"\ndirectory_settle_ms = 5000\n[compile]\nworkers = 1\nmemory_mib = 512\ncpu_s = 60\ncache_max_mib = 100\n",
        )
        .expect("valid");
        assert_eq!(c.compile, CompileSettings { workers: 1, memory_mib: 512, cpu_s: 60, cache_max_bytes: 100 << 20 });
        assert_eq!(c.directory_settle, Duration::from_secs(5));
        assert_eq!(c.shared_cache, None);
        let c = load("directory = \"d\"\npolicy_cache = \"c\"\n[compile]\nshared_cache = \"/srv/a\"\nshared_cache_key_file = \"fleet.key\"\n")
            .expect("valid");
        let shared = c.shared_cache.expect("shared");
        assert!(shared.dir.ends_with("/srv/a") && shared.key_file.ends_with("fleet.key"), "{shared:?}");
        for (text, message) in [
            ("[compile]\nworkers = 0", "compile.workers: 0: 1 to 64"),
            ("[compile]\nmemory_mib = 8", "compile.memory_mib: 8: 64 to 65536 MiB"),
            ("[compile]\ncpu_s = 0", "compile.cpu_s: 0: 1 to 3600"),
            ("[compile]\ncache_max_mib = 1", "compile.cache_max_mib: 1: 16 to"),
            ("[compile]\nthreads = 2", "threads"),
            ("[compile]\nshared_cache = \"s\"", "compile.shared_cache_key_file: missing"),
            ("[compile]\nshared_cache_key_file = \"k\"", "compile.shared_cache: missing"),
            (
                "[compile]\nshared_cache = \"s\"\nshared_cache_key_file = \"k\"",
                "compile.shared_cache: needs policy_cache",
            ),
            ("directory_settle_ms = 10", "directory_settle_ms: 10: 50 to 60000"),
        ] {
            let e = err(&format!("directory = \"d\"\n{text}\n"));
            assert!(e.contains(message), "{text}: {e}");
        }
    }

    #[test]
    fn a_tenant_may_serve_components_up_to_its_component_mib() {
        let c = load("directory = \"d\"\n[policy_defaults]\ncomponent_mib = 48\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\nlimits = { component_mib = 8 }\n[[tenant]]\nid = \"b\"\ndomains = [\"b.com\"]\n").expect("valid");
        assert_eq!((c.tenants[0].limits.component_bytes, c.tenants[1].limits.component_bytes), (8 << 20, 48 << 20));
        assert_eq!(Limits::default().component_bytes, 32 << 20);
        let e = err("directory = \"d\"\n[policy_defaults]\ncomponent_mib = 65\n");
        assert!(e.contains("policy_defaults.component_mib: 65: must be 1 to 64 MiB"), "{e}");
    }

    #[test]
    fn a_tenant_id_is_a_strict_token() {
        for bad in ["..", ".", ".hidden", "-x", "a/b", "", &"x".repeat(65)] {
            let e = err(&format!("directory = \"d\"\n[[tenant]]\nid = {bad:?}\ndomains = [\"a.com\"]\n"));
            assert!(e.contains("tenant[0].id") && e.contains("is not a tenant id"), "{bad}: {e}");
        }
        assert!(is_tenant_id("contoso.com-2_b"));
    }

    #[test]
    fn names_the_key_and_reason() {
        assert!(
            err("directory = \"d\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\nfallback = 200\n")
                .contains("tenant[0].fallback: 200: a reject code must be 400-699")
        );
        assert!(err("directory = \"d\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\n[[tenant]]\nid = \"b\"\ndomains = [\"A.com\"]\n")
            .contains("tenant[1].domains[0]: domain `a.com` belongs to another tenant already"));
        assert!(
            err("directory = \"d\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\nedge = \"http://x\"\n")
                .contains("tenant[0].edge")
        );
        assert!(
            err("directory = \"d\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\nlimits = { deadline_ms = 0 }\n")
                .contains("tenant[0].limits.deadline_ms")
        );
        let unknown = err("directory = \"d\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\nedg = \"sip:x\"\n");
        assert!(unknown.contains("tenant[0]") && unknown.contains("unknown field `edg`"), "{unknown}");
        let rerouting = err(
            "directory = \"d\"\n[[tenant]]\nid = \"a\"\ndomains = [\"a.com\"]\n[tenant.rerouting]\nenabled = true\nauto_attendant = \"+1425\"\n",
        );
        assert!(rerouting.contains("tenant[0].rerouting.pstn_gateway"), "{rerouting}");
        assert!(err("directory = \n").contains("line 1"));
        assert!(
            err("directory = \"d\"\n[admin]\naddress = \"0.0.0.0:9060\"\n")
                .contains("admin.token: required: 0.0.0.0:9060 is not a loopback address")
        );
        assert!(err("directory = \"d\"\n[sip]\nudp_receivers = 0\n").contains("sip.udp_receivers: 0: must be 1 to 64"));
        assert!(
            err("directory = \"d\"\n[sip]\nworker_threads = 0\n").contains("sip.worker_threads: 0: must be 1 to 256")
        );
        assert!(
            err("directory = \"d\"\n[sip]\nsecret = \"short\"\n")
                .contains("sip.secret: 5 characters: must be at least 16")
        );
        assert!(
            err("directory = \"d\"\n[sip]\nudp_receive_buffer_bytes = 1\n")
                .contains("sip.udp_receive_buffer_bytes: 1: must be 65536")
        );
    }

    #[test]
    fn hosting_providers() {
        let base = "directory = \"d\"\n[[hosting_provider]]\nidentity = \"ExchangeOnline\"\nproxy = \"exap.um.outlook.com\"\n\
                    [[tenant]]\nid = \"f\"\ndomains = [\"f.com\"]\n";
        let c = load(&format!("{base}hosting_provider = \"ExchangeOnline\"\n")).expect("valid");
        let p = c.tenants[0].hosting_provider.as_ref().expect("provider");
        assert_eq!((p.enabled, p.shared_address_space, p.hosts_ocs_users), (true, true, false), "Lync's defaults");
        assert_eq!(p.verification_level, VerificationLevel::UseSourceVerification);
        assert_eq!(c.tenants[0].hosted_next_hop().as_deref(), Some("sip:exap.um.outlook.com;transport=tls"));
        assert!(
            err(&format!("{base}hosting_provider = \"Nope\"\n"))
                .contains("tenant[0].hosting_provider: `Nope` names no")
        );
        assert!(
            err(&format!("{base}hosting_provider = \"ExchangeOnline\"\nedge = \"sip:e.f.com\"\n"))
                .contains("tenant[0].hosting_provider: give either")
        );
        assert!(err(&base.replace("exap.um.outlook.com", "exap um")).contains("hosting_provider[0].proxy"));
        assert!(
            err(&base.replace("proxy = ", "verification_level = \"sometimes\"\nproxy = "))
                .contains("verification_level")
        );
        let disabled = load(&format!(
            "{}hosting_provider = \"ExchangeOnline\"\n",
            base.replace("proxy =", "enabled = false\nproxy =")
        ))
        .expect("valid");
        assert_eq!(disabled.tenants[0].hosted_next_hop(), None, "a disabled provider takes no call");
    }

    #[test]
    fn overload_settings() {
        let c = load("directory = \"d\"\n[overload]\nmax_transactions = 10\nper_source_requests = 3\nper_source_window_ms = 60000\nretry_after_s = 30\n").expect("valid");
        assert_eq!(
            c.sip.overload,
            Overload {
                max_transactions: 10,
                per_source_requests: 3,
                per_source_window: Duration::from_secs(60),
                retry_after_s: 30,
                ..Overload::default()
            }
        );
        assert_eq!(load("directory = \"d\"\n").expect("valid").sip.overload, Overload::default());
        assert!(
            err("directory = \"d\"\n[overload]\nretry_after_s = 0\n")
                .contains("overload.retry_after_s: 0: must be 1 to 3600")
        );
        assert!(
            err("directory = \"d\"\n[overload]\nper_source_window_ms = 0\n").contains("overload.per_source_window_ms")
        );
        assert!(
            err("directory = \"d\"\n[overload]\nmax_transaction = 1\n").contains("unknown field `max_transaction`")
        );
    }

    #[test]
    fn dns_settings() {
        let c = load("directory = \"d\"\n[dns]\nservers = [\"127.0.0.1:5353\", \"::1\"]\n[dns.hosts]\n\"UM.contoso.com\" = [\"192.0.2.5\"]\n")
            .expect("valid");
        assert_eq!(c.dns.servers, ["127.0.0.1:5353".parse().expect("addr"), "[::1]:53".parse().expect("addr")]);
        assert_eq!(c.dns.hosts["um.contoso.com"], ["192.0.2.5".parse::<std::net::IpAddr>().expect("ip")]);
        assert!(err("directory = \"d\"\n[dns]\nservers = [\"ns.example\"]\n").contains("dns.servers[0]"));
        assert!(err("directory = \"d\"\n[dns.hosts]\nx = [\"nowhere\"]\n").contains("dns.hosts.x[0]"));
    }

    #[test]
    fn udp_receive_settings() {
        let c =
            load("directory = \"d\"\n[sip]\nudp_receivers = 3\nudp_receive_buffer_bytes = 65536\nworker_threads = 1\n")
                .expect("valid");
        assert_eq!((c.sip.udp_receivers, c.sip.udp_receive_buffer, c.sip.worker_threads), (3, 65536, 1));
        let d = load("directory = \"d\"\n").expect("valid");
        assert_eq!(d.sip.udp_receive_buffer, 4 << 20);
        assert_eq!(d.sip.udp_receivers, 1);
        assert!(d.sip.worker_threads >= 1);
    }

    #[test]
    fn the_directory_is_a_file_or_a_postgres_source_named_key_by_key() {
        let file = load("[directory]\nsource = \"file\"\nfile = \"d.json\"\n").expect("valid");
        assert!(file.directory.ends_with("d.json"));
        assert_eq!(file.directory_source, DirectorySource::File);
        let pg = load(
            "[directory]\nsource = \"postgres\"\nurl = \"postgres://r:hunter2pw@127.0.0.1:5/exum\"\npool_size = 3\n",
        )
        .expect("valid");
        let DirectorySource::Postgres(s) = &pg.directory_source else { panic!("postgres") };
        assert_eq!((s.pool_size, s.migrate, s.tls_ca.is_none()), (3, true, true));
        assert!(!format!("{pg:?}").contains("hunter2pw"), "the connection string is never printed");
        assert_eq!((s.read_url.as_deref(), s.read_wait), (None, Duration::from_secs(1)));
        let replica = load(
            "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\nread_url = \"postgres://r:pw2secret@near/db\"\nread_wait_ms = 250\n",
        )
        .expect("valid");
        let DirectorySource::Postgres(s) = &replica.directory_source else { panic!("postgres") };
        assert_eq!(
            (s.read_url.as_deref(), s.read_wait),
            (Some("postgres://r:pw2secret@near/db"), Duration::from_millis(250))
        );
        assert!(!format!("{replica:?}").contains("pw2secret"), "nor the replica's");
        for (text, expected) in [
            ("[directory]\nsource = \"ldap\"\n", "directory.source: `ldap`"),
            ("[directory]\nsource = \"postgres\"\n", "directory.url: required"),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"x\"\nfile = \"d\"\n",
                "directory.file: only for source = \"file\"",
            ),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\ntls = true\n",
                "directory.ca: required with tls = true",
            ),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\npool_size = 0\n",
                "directory.pool_size: 0",
            ),
            (
                "[directory]\nsource = \"postgres\"\nurl_env = \"EXUM_TEST_UNSET_VARIABLE\"\n",
                "EXUM_TEST_UNSET_VARIABLE` is not set",
            ),
            (
                "[directory]\nsource = \"file\"\nfile = \"d\"\npool_size = 2\n",
                "directory.pool_size: only for source = \"postgres\"",
            ),
            ("[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\nuser = \"x\"\n", "directory.user"),
            ("directory = 5\n", "directory: expected a file name"),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\nread_url = \"postgres://h:x/db\"\n",
                "directory.read_url: not a connection string",
            ),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\nread_wait_ms = 500\n",
                "directory.read_wait_ms: only with read_url",
            ),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\nread_url = \"postgres://r/db\"\nread_wait_ms = 0\n",
                "directory.read_wait_ms: must be 10 to 60000",
            ),
            (
                "[directory]\nsource = \"postgres\"\nurl = \"postgres://h/db\"\nread_url = \"postgres://r/db\"\nread_url_env = \"X\"\n",
                "directory.read_url: give read_url or read_url_env, not both",
            ),
            (
                "[directory]\nsource = \"file\"\nfile = \"d\"\nread_url = \"postgres://r/db\"\n",
                "directory.read_url: only for source = \"postgres\"",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}

//! `serve`: loads the configuration and directory, starts the policy plane, the
//! SIP transports, the proxy and the health probes, the admin API and the file
//! watcher, and runs until shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::control::Tenants;
use crate::control::config::{DirectorySource, RouterConfig, SipSettings};
use crate::control::health::HealthTable;
use crate::db::follow::{self, Follower};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::model::Transport;
use crate::policy::PolicyRegistry;
use crate::sip::probe;
use crate::sip::proxy::{Identity, Proxy as ProxyCore};
use crate::sip::transport::Transports;
use crate::watch::{self as file_watch, Change, FileWatch, Watched};

/// A running router.
#[derive(Debug)]
pub struct Server {
    /// The proxy core.
    pub proxy: Arc<ProxyCore>,
    /// The policy registry.
    pub policy: Arc<PolicyRegistry>,
    /// Target health.
    pub health: Arc<HealthTable>,
    /// The router's counters.
    pub metrics: Arc<Metrics>,
    /// The configuration file, for reloads.
    config: std::path::PathBuf,
    sip: SipSettings,
    /// Set to true to stop.
    shutdown: watch::Sender<bool>,
    /// Keeps the OS watch alive.
    _watch: FileWatch,
    /// Where the admin API listens, if configured.
    admin: Option<SocketAddr>,
    /// With the directory in PostgreSQL: the follower of its changes.
    follower: Option<Follower>,
    /// With tenants reading LDAP: their entries.
    ldap: Option<Arc<crate::ldap::LdapSync>>,
}

/// How long a watched file must be quiet before its change is applied.
pub const RELOAD_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(20);

impl Server {
    /// Starts a router from the configuration at `config`. It watches the
    /// policy directory, the directory file and the TLS certificate and key,
    /// and applies their changes.
    pub async fn start(config: &Path) -> anyhow::Result<Server> {
        // Relative to the working directory, once: reloads read the same file.
        let config = &std::path::absolute(config).with_context(|| format!("{}", config.display()))?;
        let metrics = Arc::new(Metrics::new());
        let router_config = RouterConfig::load(config)?;
        if router_config.listen.is_empty() {
            anyhow::bail!("{}: no [[listen]] address configured", config.display());
        }
        let (router_config, tenants, mut database, ldap) = load_tenants(config, router_config, &metrics).await?;
        let tenants = Arc::new(tenants);
        let health = Arc::new(HealthTable::default());
        let db_policies = database.as_mut().map(|i| std::mem::take(&mut i.policies)).unwrap_or_default();
        let policy =
            PolicyRegistry::for_serving(&router_config, &tenants, health.clone(), metrics.clone(), db_policies)?;
        let (shutdown, rx) = watch::channel(false);
        let tls = match (&router_config.tls.certificate, &router_config.tls.ca) {
            (None, None) => None,
            _ => Some(Arc::new(
                crate::sip::tls::Tls::load(&router_config.tls)
                    .map_err(|e| anyhow::anyhow!("{}: [tls]: {e}", router_config.path.display()))?,
            )),
        };
        let transports = Transports::bind(&router_config.listen, router_config.sip, tls, metrics.clone(), rx.clone())
            .await
            .with_context(|| format!("{}: binding the listeners", config.display()))?;
        if let Some(hep) = &router_config.hep {
            let capture = crate::hep::Hep::start(hep, metrics.clone())
                .with_context(|| format!("{}: hep.address: {}", config.display(), hep.address))?;
            transports.set_capture(capture);
        }
        let resolver = Arc::new(crate::sip::resolve::Resolver::new(&router_config.dns));
        let secret = crate::sip::secret::Secret::new(router_config.secret.as_deref());
        let live = Arc::new(crate::control::LiveTenants::new(tenants.clone()));
        let proxy = ProxyCore::start(
            transports,
            resolver,
            policy.clone(),
            live.clone(),
            router_config.sip,
            Identity { name: router_config.name.clone(), secret },
            metrics.clone(),
        );
        let follower = database.map(|initial| {
            Follower::spawn(initial, live.clone(), policy.clone(), ldap.clone().map(|s| s as _), rx.clone())
        });
        if let Some(sync) = &ldap {
            let poller = crate::ldap::follow(sync.clone(), live.clone(), rx.clone());
            tokio::spawn(poller.instrument(tracing::info_span!("ldap_poller")));
        }
        tokio::spawn(probe::run(proxy.clone(), health.clone(), router_config.probes, rx));
        for t in tenants.iter() {
            tracing::info!(tenant = %t.config.id, domains = ?t.config.domains, users = t.directory.user_count(), "tenant loaded");
        }
        let watch = start_watch(config, &router_config, &proxy, &policy, follower.clone(), ldap.clone())?;
        let admin_addr = match &router_config.admin {
            Some(admin) => {
                let parts = Parts {
                    proxy: &proxy,
                    health: &health,
                    policy: &policy,
                    follower: follower.as_ref(),
                    ldap: ldap.as_ref(),
                };
                Some(start_admin(config, &router_config, admin, parts, &shutdown).await?)
            }
            None => None,
        };
        Ok(Server {
            proxy,
            policy,
            health,
            metrics,
            config: config.to_path_buf(),
            sip: router_config.sip,
            shutdown,
            _watch: watch,
            admin: admin_addr,
            follower,
            ldap,
        })
    }

    /// Where the admin API listens, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Reloads the configuration and the directory: validated first, then
    /// swapped. An invalid configuration is refused whole with the reason; a
    /// tenant whose directory section is refused keeps its previous one while
    /// the others are updated, and the reasons are returned. Tenants whose
    /// configuration changed get their policy reinstalled; transactions in
    /// progress keep what they started with. Listeners, timers and probes
    /// need a restart.
    pub fn reload(&self) -> anyhow::Result<Vec<String>> {
        reload_tenants(&self.config, &self.proxy, &self.policy, self.follower.as_ref(), self.ldap.as_ref())
    }

    /// With tenants reading LDAP: their entries and status.
    pub fn ldap(&self) -> Option<&Arc<crate::ldap::LdapSync>> {
        self.ldap.as_ref()
    }

    /// With the directory in PostgreSQL: its status (connection, staleness,
    /// refused tenants).
    pub fn directory_status(&self) -> Option<&Arc<follow::DirectoryStatus>> {
        self.follower.as_ref().map(|f| &f.status)
    }

    /// Stops taking new transactions, waits for in-flight ones up to the grace
    /// period, then stops.
    pub async fn shutdown_gracefully(&self) {
        self.proxy.drain();
        let deadline = tokio::time::Instant::now() + self.sip.shutdown_grace;
        while self.proxy.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if self.proxy.in_flight() > 0 {
            tracing::warn!(
                in_flight = self.proxy.in_flight(),
                "shutdown grace period over; stopping with transactions in flight"
            );
        }
        self.stop();
    }

    /// The address the router listens on for `transport` (the first listener).
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.proxy.transports().local_addr(transport, None)
    }

    /// The addresses of every listener of `transport`, in configuration order.
    pub fn listeners(&self, transport: Transport) -> Vec<SocketAddr> {
        self.proxy.transports().listeners(transport).to_vec()
    }

    /// Stops receiving and the background tasks.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reloads configuration and directory into a running proxy (see
/// [`Server::reload`]), counted by outcome.
fn reload_tenants(
    config: &Path,
    proxy: &Arc<ProxyCore>,
    policy: &Arc<PolicyRegistry>,
    follower: Option<&Follower>,
    ldap: Option<&Arc<crate::ldap::LdapSync>>,
) -> anyhow::Result<Vec<String>> {
    let result = match follower {
        Some(f) => resync_database(config, proxy, f),
        None => apply_reload(config, proxy, policy, ldap),
    };
    if result.is_err() {
        proxy.metrics.config_reloads.get_or_create(&OutcomeLabel { outcome: "failed" }).inc();
    }
    result
}

/// With the directory in PostgreSQL, a reload reads the configuration and has
/// the follower validate every tenant against it again (in the background:
/// refused tenants show on `/directory`).
fn resync_database(config: &Path, proxy: &Arc<ProxyCore>, follower: &Follower) -> anyhow::Result<Vec<String>> {
    let router_config = RouterConfig::load(config)?;
    if !matches!(router_config.directory_source, DirectorySource::Postgres(_)) {
        anyhow::bail!("{}: directory: the directory source cannot change without a restart", config.display());
    }
    proxy.transports().reload_tls().map_err(|e| anyhow::anyhow!("{}: [tls]: {e}", config.display()))?;
    follower.resync(router_config);
    proxy.metrics.config_reloads.get_or_create(&OutcomeLabel { outcome: "ok" }).inc();
    tracing::info!(config = %config.display(), "configuration reloaded; every tenant is read from the database again");
    Ok(Vec::new())
}

/// Applies a reload; returns why each tenant whose directory was refused was
/// refused (those keep their previous directory, the others are updated).
fn apply_reload(
    config: &Path,
    proxy: &Arc<ProxyCore>,
    policy: &Arc<PolicyRegistry>,
    ldap: Option<&Arc<crate::ldap::LdapSync>>,
) -> anyhow::Result<Vec<String>> {
    let old = proxy.tenants();
    let (_, tenants, refused) = Tenants::reload(config, &old)?;
    let tenants = match ldap {
        Some(sync) => sync.overlay(tenants),
        None => tenants,
    };
    // A renewed TLS certificate and key (same files) are read again, once the
    // rest is known to be valid.
    proxy.transports().reload_tls().map_err(|e| anyhow::anyhow!("{}: [tls]: {e}", config.display()))?;
    let tenants = Arc::new(tenants);
    for t in tenants.iter() {
        let changed = old.by_id(&t.config.id).is_none_or(|o| o.config != t.config);
        if changed {
            crate::spans::tenant(&t.config.id).in_scope(|| policy.install_configured(t));
        }
    }
    for t in old.iter() {
        if tenants.by_id(&t.config.id).is_none() {
            policy.remove(&t.config.id);
        }
    }
    for why in &refused {
        tracing::warn!(reason = %why, "part of the directory refused");
    }
    // Counted before the swap is announced: whoever awaits the swap sees it counted.
    let outcome = if refused.is_empty() { "ok" } else { "partial" };
    proxy.metrics.config_reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    proxy.live_tenants().set(tenants);
    tracing::info!(config = %config.display(), refused = refused.len(), "configuration and directory reloaded");
    Ok(refused)
}

/// Watches the policy directory and the files a reload reads, and applies
/// their changes one after another, in the order the files were first written.
fn start_watch(
    config: &Path,
    router_config: &RouterConfig,
    proxy: &Arc<ProxyCore>,
    policy: &Arc<PolicyRegistry>,
    follower: Option<Follower>,
    ldap: Option<Arc<crate::ldap::LdapSync>>,
) -> anyhow::Result<FileWatch> {
    let mut files = Vec::new();
    if router_config.directory_source == DirectorySource::File {
        files.push((router_config.directory.clone(), "directory file"));
    }
    if let Some(c) = &router_config.tls.certificate {
        files.push((c.clone(), "TLS certificate"));
    }
    if let Some(k) = &router_config.tls.key {
        files.push((k.clone(), "TLS key"));
    }
    let watched =
        Watched { policy_dir: router_config.policy_dir.clone(), files, settle: router_config.directory_settle };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = file_watch::watch(watched, RELOAD_DEBOUNCE, tx).context("watching the policy directory and files")?;
    let (config, proxy, policy) = (config.to_path_buf(), proxy.clone(), policy.clone());
    let relay = async move {
        while let Some(change) = rx.recv().await {
            match change {
                Change::File { path, what } => {
                    let _reload = tracing::info_span!("reload", trigger = %path.display()).entered();
                    tracing::info!(what, "file changed; reloading");
                    if let Err(e) = reload_tenants(&config, &proxy, &policy, follower.as_ref(), ldap.as_ref()) {
                        tracing::warn!(error = format!("{e:#}"), "reload refused, the previous configuration stays");
                    }
                }
                change => apply_policy_change(&proxy, &policy, change).await,
            }
        }
    };
    tokio::spawn(relay.instrument(tracing::info_span!("watcher")));
    Ok(watch)
}

/// Applies a policy file change off the request path.
async fn apply_policy_change(proxy: &Arc<ProxyCore>, policy: &Arc<PolicyRegistry>, change: Change) {
    let tenants = proxy.tenants();
    let (Change::PolicyUpdated { tenant, .. } | Change::PolicyRemoved { tenant }) = &change else { return };
    let Some(tenant) = tenants.by_id(tenant).cloned() else {
        tracing::debug!(?change, "policy file for no configured tenant; ignored");
        return;
    };
    let policy = policy.clone();
    let span = crate::spans::tenant(&tenant.config.id);
    let applied = span.in_scope(|| {
        crate::spans::spawn_blocking(move || match change {
            Change::PolicyUpdated { path, .. } => {
                let _ = policy.reload_file(&tenant, &path);
            }
            Change::PolicyRemoved { .. } => {
                policy.file_removed(&tenant);
            }
            Change::File { .. } => {}
        })
    });
    let _ = applied.await;
}

/// Runs the router until SIGINT or SIGTERM; SIGHUP reloads the configuration
/// and the directory (so do changes to the directory file or the TLS files).
pub async fn run(config: &Path) -> anyhow::Result<()> {
    // Signal handlers first: a signal from the moment the router says it listens
    // must drain or reload, never kill.
    let stop = stop_signals()?;
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    spawn_sighup(reload_tx.clone())?;
    let notifier = Arc::new(crate::notify::Notifier::from_env());
    let server = Arc::new(Server::start(config).await?);
    let (reloader, notify) = (server.clone(), notifier.clone());
    tokio::spawn(async move {
        while let Some(why) = reload_rx.recv().await {
            // Compiling and `init` run off the runtime's workers (with one
            // worker, they would hold every call up).
            notify.reloading();
            let server = reloader.clone();
            let reload = tracing::info_span!("reload", trigger = why);
            match reload.in_scope(|| crate::spans::spawn_blocking(move || server.reload())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(why, error = format!("{e:#}"), "reload refused, the previous configuration stays")
                }
                Err(e) => tracing::error!(why, error = %e, "the reload failed"),
            }
            notify.ready();
        }
    });
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        for addr in server.listeners(t) {
            tracing::info!(transport = ?t, %addr, "listening");
        }
    }
    // Listeners bound and every tenant's policy serving (Server::start
    // waited for them, within [policy] start_wait_ms).
    notifier.ready();
    if let Some(interval) = notifier.watchdog_interval() {
        tokio::spawn(watchdog(server.clone(), notifier.clone(), interval));
    }
    stop.await;
    notifier.stopping();
    tracing::info!("stopping: no new transactions, finishing those in flight");
    server.shutdown_gracefully().await;
    Ok(())
}

/// Tells the service manager the router is alive every half `interval`,
/// only while it is: the ping is sent from the event loop, after the policy
/// engine answered a decision within the half interval.
async fn watchdog(server: Arc<Server>, notifier: Arc<crate::notify::Notifier>, interval: std::time::Duration) {
    let tenant = Arc::new(crate::control::Tenant {
        config: crate::control::config::TenantConfig::empty("watchdog"),
        directory: Default::default(),
    });
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        let (policy, probe) = (server.policy.clone(), tenant.clone());
        let answered =
            tokio::time::timeout(interval / 2, tokio::task::spawn_blocking(move || policy.standard().answers(&probe)))
                .await;
        match answered {
            Ok(Ok(true)) => notifier.watchdog(),
            other => tracing::warn!(?other, "the policy engine did not answer; no watchdog ping"),
        }
    }
}

fn spawn_sighup(tx: tokio::sync::mpsc::UnboundedSender<&'static str>) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                if tx.send("SIGHUP").is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = tx;
    Ok(())
}

/// A future that completes at SIGTERM or SIGINT; the handlers are installed now.
fn stop_signals() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// The tenants at start: the configuration's directory (a file, or the
/// database, migrated when configured), with the users and contacts of
/// tenants that have an LDAP server laid over it.
async fn load_tenants(
    config: &Path,
    router_config: RouterConfig,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(RouterConfig, Tenants, Option<follow::Initial>, Option<Arc<crate::ldap::LdapSync>>)> {
    let (router_config, tenants, database) = match &router_config.directory_source {
        DirectorySource::File => {
            let (router_config, tenants) = Tenants::load(config)?;
            (router_config, tenants, None)
        }
        DirectorySource::Postgres(settings) => {
            let db = crate::db::Database::new(settings)?;
            let reached = tokio::time::timeout(settings.connect_timeout, db.client("reaching the directory database"))
                .await
                .map_err(|_| anyhow::anyhow!("no connection within {} ms", settings.connect_timeout.as_millis()))
                .and_then(|c| c.map(drop).map_err(anyhow::Error::from));
            let mut initial = match (reached, &settings.snapshot) {
                (Err(why), Some(path)) => {
                    let (snapshot, policies) = crate::db::snapshot::read(path).with_context(|| {
                        format!(
                            "{}: [directory] the database cannot be reached ({why:#}) and there is no usable snapshot",
                            config.display()
                        )
                    })?;
                    tracing::warn!(
                        error = format!("{why:#}"),
                        snapshot = %path.display(),
                        age_s = snapshot.age().as_secs(),
                        tenants = snapshot.tenants.len(),
                        "directory database unreachable; serving from the snapshot until it is back"
                    );
                    follow::from_snapshot(db, router_config.clone(), metrics.clone(), snapshot, policies)
                }
                (reached, _) => {
                    reached.with_context(|| format!("{}: [directory] reaching the database", config.display()))?;
                    let prepared = db
                        .prepare(settings.migrate, &crate::db::schema::migrations())
                        .await
                        .with_context(|| format!("{}: [directory]", config.display()))?;
                    if !prepared.applied.is_empty() {
                        tracing::info!(migrations = ?prepared.applied, "database schema migrated");
                    }
                    follow::initial(db, router_config.clone(), metrics.clone())
                        .await
                        .with_context(|| format!("{}: [directory] reading the database", config.display()))?
                }
            };
            if let Some(path) = &settings.snapshot {
                initial.keep_snapshots(path.clone());
            }
            let tenants = std::mem::take(&mut initial.tenants);
            (router_config, tenants, Some(initial))
        }
    };
    // Tenants with an LDAP server: their users and contacts read from it.
    let ldap = if tenants.iter().any(|t| t.config.ldap.is_some()) {
        let snapshot = router_config.policy_cache.as_ref().map(|d| d.join("ldap.snapshot"));
        let sync = Arc::new(crate::ldap::LdapSync::new(snapshot));
        crate::ldap::initial(&sync, &tenants).await;
        Some(sync)
    } else {
        None
    };
    let tenants = match &ldap {
        Some(sync) => sync.overlay(tenants),
        None => tenants,
    };
    Ok((router_config, tenants, database, ldap))
}

/// What the admin API acts on.
struct Parts<'a> {
    proxy: &'a Arc<ProxyCore>,
    health: &'a Arc<HealthTable>,
    policy: &'a Arc<PolicyRegistry>,
    follower: Option<&'a Follower>,
    ldap: Option<&'a Arc<crate::ldap::LdapSync>>,
}

/// Binds the admin API and serves it until shutdown; the address it listens on.
async fn start_admin(
    config: &Path,
    router_config: &RouterConfig,
    admin: &crate::control::config::Admin,
    parts: Parts<'_>,
    shutdown: &watch::Sender<bool>,
) -> anyhow::Result<SocketAddr> {
    let Parts { proxy, health, policy, follower, ldap } = parts;
    let listener = tokio::net::TcpListener::bind(admin.address)
        .await
        .with_context(|| format!("{}: binding the admin listener {}", config.display(), admin.address))?;
    let address = listener.local_addr()?;
    let (path, p, r, f, l) = (config.to_path_buf(), proxy.clone(), policy.clone(), follower.cloned(), ldap.cloned());
    let reload: crate::admin::Reload = Arc::new(move || {
        let _reload = tracing::info_span!("reload", trigger = "admin API").entered();
        reload_tenants(&path, &p, &r, f.as_ref(), l.as_ref())
    });
    let traffic = Arc::new(crate::admin::traffic::Traffic::default());
    let sampler = crate::admin::traffic::run(traffic.clone(), proxy.clone(), shutdown.subscribe());
    tokio::spawn(sampler.instrument(tracing::info_span!("traffic_sampler")));
    let state = Arc::new(crate::admin::Admin {
        proxy: proxy.clone(),
        health: health.clone(),
        traffic,
        policy: policy.clone(),
        token: match (&admin.token, &admin.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(file)) => Some(crate::admin::token_from_file(file)?),
            (None, None) => None,
        },
        reads_need_token: !admin.address.ip().is_loopback(),
        names: admin.names.clone(),
        reload,
        directory: follower.map(|f| f.status.clone()),
        ldap: ldap.cloned(),
        database: match &router_config.directory_source {
            DirectorySource::Postgres(s) => Some(crate::db::Database::new(s)?),
            DirectorySource::File => None,
        },
    });
    tokio::spawn(crate::admin::serve(listener, state, shutdown.subscribe()));
    tracing::info!(%address, "admin API listening");
    Ok(address)
}

//! `serve`: loads the configuration and directory, starts the policy plane, the
//! SIP transports, the proxy and the health probes, and runs until shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::control::Tenants;
use crate::control::config::SipSettings;
use crate::control::health::HealthTable;
use crate::control::watcher::{self, PolicyFileChange};
use crate::policy::{PolicyEngine, PolicyRegistry};
use crate::sip::proxy::Proxy as ProxyCore;
use crate::sip::transport::Transports;
use crate::sip::{Transport, probe};

/// A running router.
#[derive(Debug)]
pub struct Server {
    /// The proxy core.
    pub proxy: Arc<ProxyCore>,
    /// The policy registry.
    pub policy: Arc<PolicyRegistry>,
    /// Target health.
    pub health: Arc<HealthTable>,
    /// The configuration file, for reloads.
    config: std::path::PathBuf,
    sip: SipSettings,
    /// Set to true to stop.
    shutdown: watch::Sender<bool>,
    /// Keeps the OS watches alive.
    _watchers: Vec<watcher::PolicyDirWatcher>,
    /// Where the admin API listens, if configured.
    admin: Option<SocketAddr>,
}

/// How long the watched directory must be quiet before a change is applied.
pub const RELOAD_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(20);

impl Server {
    /// Starts a router from the configuration at `config`.
    pub async fn start(config: &Path) -> anyhow::Result<Server> {
        let (router_config, tenants) = Tenants::load(config)?;
        let tenants = Arc::new(tenants);
        if router_config.listen.is_empty() {
            anyhow::bail!("{}: no [[listen]] address configured", config.display());
        }
        let health = Arc::new(HealthTable::default());
        let engine = Arc::new(PolicyEngine::new().map_err(|e| anyhow::anyhow!("starting the policy engine: {e:#}"))?);
        if let Some(dir) = &router_config.policy_cache {
            engine.set_disk_cache(dir.clone()).with_context(|| format!("policy_cache {}", dir.display()))?;
        }
        let policy = Arc::new(PolicyRegistry::new(engine, health.clone()).context("loading the standard policy")?);
        let metrics = Arc::new(crate::control::metrics::Metrics::new());
        policy.set_metrics(metrics.clone());
        policy.set_policy_dir(router_config.policy_dir.clone());
        policy.install_all(&tenants);
        let (shutdown, rx) = watch::channel(false);
        let tls = match (&router_config.tls.certificate, &router_config.tls.ca) {
            (None, None) => None,
            _ => Some(Arc::new(
                crate::sip::tls::Tls::load(&router_config.tls)
                    .map_err(|e| anyhow::anyhow!("{}: [tls]: {e}", router_config.path.display()))?,
            )),
        };
        let transports = Transports::bind(&router_config.listen, router_config.sip, tls, rx.clone())
            .await
            .with_context(|| format!("{}: binding the listeners", config.display()))?;
        let resolver = Arc::new(crate::sip::resolve::Resolver::new(&router_config.dns));
        let proxy = ProxyCore::start(transports, resolver, policy.clone(), tenants.clone(), router_config.sip, metrics);
        tokio::spawn(probe::run(proxy.clone(), tenants.clone(), health.clone(), router_config.probes, rx));
        for t in tenants.iter() {
            tracing::info!(tenant = %t.config.id, domains = ?t.config.domains, users = t.directory.user_count(), "tenant loaded");
        }
        let mut watchers = Vec::new();
        if let Some(dir) = &router_config.policy_dir {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            watchers
                .push(watcher::watch(dir, RELOAD_DEBOUNCE, tx).with_context(|| format!("watching {}", dir.display()))?);
            let (proxy, policy) = (proxy.clone(), policy.clone());
            tokio::spawn(async move {
                while let Some(change) = rx.recv().await {
                    apply_policy_change(&proxy, &policy, change).await;
                }
            });
        }
        let mut admin_addr = None;
        if let Some(admin) = &router_config.admin {
            let listener = tokio::net::TcpListener::bind(admin.address)
                .await
                .with_context(|| format!("{}: binding the admin listener {}", config.display(), admin.address))?;
            admin_addr = Some(listener.local_addr()?);
            let (path, p, r) = (config.to_path_buf(), proxy.clone(), policy.clone());
            let reload: crate::control::admin::Reload =
                Arc::new(move || reload_tenants(&path, &p, &r).map_err(|e| format!("{e:#}")));
            let state = Arc::new(crate::control::admin::Admin {
                proxy: proxy.clone(),
                policy: policy.clone(),
                token: admin.token.clone(),
                reload,
            });
            tokio::spawn(crate::control::admin::serve(listener, state, shutdown.subscribe()));
            tracing::info!(address = %admin_addr.unwrap_or(admin.address), "admin API listening");
        }
        let server = Server {
            proxy,
            policy,
            health,
            config: config.to_path_buf(),
            sip: router_config.sip,
            shutdown,
            _watchers: watchers,
            admin: admin_addr,
        };
        Ok(server)
    }

    /// Where the admin API listens, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Reloads the configuration and the directory: validated first, swapped
    /// whole, refused whole with the reason. Tenants whose configuration changed
    /// get their policy reinstalled; transactions in progress keep what they
    /// started with. Listeners, timers and probes need a restart.
    pub fn reload(&self) -> anyhow::Result<()> {
        reload_tenants(&self.config, &self.proxy, &self.policy)
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

/// Reloads configuration and directory into a running proxy (see [`Server::reload`]).
fn reload_tenants(config: &Path, proxy: &Arc<ProxyCore>, policy: &Arc<PolicyRegistry>) -> anyhow::Result<()> {
    // A renewed TLS certificate and key (same files) are read again first.
    proxy.transports().reload_tls().map_err(|e| anyhow::anyhow!("{}: [tls]: {e}", config.display()))?;
    let (_, tenants) = Tenants::load(config)?;
    let tenants = Arc::new(tenants);
    let old = proxy.tenants();
    for t in tenants.iter() {
        let changed = old.by_id(&t.config.id).is_none_or(|o| o.config != t.config);
        if changed {
            policy.install_configured(t);
        }
    }
    for t in old.iter() {
        if tenants.by_id(&t.config.id).is_none() {
            policy.remove(&t.config.id);
        }
    }
    proxy.set_tenants(tenants);
    tracing::info!(config = %config.display(), "configuration and directory reloaded");
    Ok(())
}

/// Applies a policy file change off the request path.
async fn apply_policy_change(proxy: &Arc<ProxyCore>, policy: &Arc<PolicyRegistry>, change: PolicyFileChange) {
    let tenants = proxy.tenants();
    let (PolicyFileChange::Updated { tenant, .. } | PolicyFileChange::Removed { tenant }) = &change;
    let Some(tenant) = tenants.by_id(tenant).cloned() else {
        tracing::debug!(?change, "policy file for no configured tenant; ignored");
        return;
    };
    let policy = policy.clone();
    let _ = tokio::task::spawn_blocking(move || match change {
        PolicyFileChange::Updated { path, .. } => {
            let _ = policy.reload_file(&tenant, &path);
        }
        PolicyFileChange::Removed { .. } => {
            policy.file_removed(&tenant);
        }
    })
    .await;
}

/// Runs the router until SIGINT or SIGTERM; SIGHUP and changes to the directory
/// file or the TLS certificate and key reload them.
pub async fn run(config: &Path) -> anyhow::Result<()> {
    // Signal handlers first: a signal from the moment the router says it listens
    // must drain or reload, never kill.
    let stop = stop_signals()?;
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    spawn_sighup(reload_tx.clone())?;
    let server = Arc::new(Server::start(config).await?);
    let router_config = crate::control::config::RouterConfig::load(config)?;
    let mut _file_watches = vec![watch_file(&router_config.directory, "directory file changed", reload_tx.clone())?];
    for file in [&router_config.tls.certificate, &router_config.tls.key].into_iter().flatten() {
        _file_watches.push(watch_file(file, "TLS certificate or key changed", reload_tx.clone())?);
    }
    let reloader = server.clone();
    tokio::spawn(async move {
        while let Some(why) = reload_rx.recv().await {
            if let Err(e) = reloader.reload() {
                tracing::warn!("reload ({why}) refused, the previous configuration stays: {e:#}");
            }
        }
    });
    for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
        if let Some(addr) = server.local_addr(t) {
            tracing::info!(transport = ?t, %addr, "listening");
        }
    }
    stop.await;
    tracing::info!("stopping: no new transactions, finishing those in flight");
    server.shutdown_gracefully().await;
    Ok(())
}

/// Watches one file (the directory file, the TLS certificate and key) and
/// reports its changes as `why`.
fn watch_file(
    path: &Path,
    why: &'static str,
    tx: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let name = path.file_name().map(|n| n.to_owned());
    let dir = path.parent().map_or_else(|| Path::new(".").to_path_buf(), Path::to_path_buf);
    let (raw_tx, mut raw_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut w = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
        if let Ok(e) = e
            && e.paths.iter().any(|p| p.file_name() == name.as_deref())
        {
            let _ = raw_tx.send(());
        }
    })?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Debounce: wait until the file has been quiet.
            while let Ok(Some(())) = tokio::time::timeout(std::time::Duration::from_millis(100), raw_rx.recv()).await {}
            if tx.send(why).is_err() {
                return;
            }
        }
    });
    Ok(w)
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

//! `serve`: loads the configuration and directory, starts the policy plane, the
//! SIP transports, the proxy and the health probes, and runs until shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::control::Tenants;
use crate::control::health::HealthTable;
use crate::policy::{PolicyEngine, PolicyRegistry};
use crate::sip::proxy::Proxy;
use crate::sip::transport::Transports;
use crate::sip::{Transport, probe};

/// A running router.
#[derive(Debug)]
pub struct Server {
    /// The proxy core.
    pub proxy: Arc<Proxy>,
    /// The policy registry.
    pub policy: Arc<PolicyRegistry>,
    /// Target health.
    pub health: Arc<HealthTable>,
    /// Set to true to stop.
    shutdown: watch::Sender<bool>,
}

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
        let policy = Arc::new(PolicyRegistry::new(engine, health.clone()).context("loading the standard policy")?);
        policy.install_all(&tenants);
        let (shutdown, rx) = watch::channel(false);
        let transports = Transports::bind(&router_config.listen, router_config.sip, rx.clone())
            .await
            .with_context(|| format!("{}: binding the listeners", config.display()))?;
        let proxy = Proxy::start(transports, policy.clone(), tenants.clone(), router_config.sip);
        tokio::spawn(probe::run(proxy.clone(), tenants.clone(), health.clone(), router_config.probes, rx));
        for t in tenants.iter() {
            tracing::info!(tenant = %t.config.id, domains = ?t.config.domains, users = t.directory.user_count(), "tenant loaded");
        }
        Ok(Server { proxy, policy, health, shutdown })
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

/// Runs the router until SIGINT or SIGTERM.
pub async fn run(config: &Path) -> anyhow::Result<()> {
    let server = Server::start(config).await?;
    for t in [Transport::Udp, Transport::Tcp] {
        if let Some(addr) = server.local_addr(t) {
            tracing::info!(transport = ?t, %addr, "listening");
        }
    }
    wait_for_signal().await;
    tracing::info!("stopping");
    server.stop();
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

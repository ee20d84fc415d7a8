//! OPTIONS health probes of every UM server of every dial plan, of every
//! hosted next hop (a tenant's hosting provider, or edge) and of every PSTN
//! gateway and default next hop, taken from the tenants in service at each
//! round, so a server added by a directory reload is probed without a restart.
//! A server that fails `down_after` probes in a row (no answer, or 503) is
//! marked down in the health table (the standard policy skips it through
//! `target-healthy`), and up again after `up_after` other final responses.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::originate;
use super::proxy::Proxy;
use super::proxy::forward::via_protocol;
use super::transaction::Event;
use crate::control::Tenants;
use crate::control::config::Probes;
use crate::control::health::{HealthTable, TargetKind};

/// Runs the probes until `shutdown` changes.
pub async fn run(proxy: Arc<Proxy>, health: Arc<HealthTable>, probes: Probes, mut shutdown: watch::Receiver<bool>) {
    if !probes.enabled {
        return;
    }
    let mut streaks: HashMap<String, (u32, u32)> = HashMap::new();
    let mut round: u64 = 0;
    loop {
        round += 1;
        let servers = targets(&proxy.tenants(), probes.gateways);
        // A server no tenant names any more (removed by a reload) is forgotten:
        // its streak, its down mark and its `um_server_up` series.
        streaks.retain(|uri, _| {
            let kept = servers.binary_search_by(|(s, _)| s.cmp(uri)).is_ok();
            if !kept {
                proxy.metrics.um_server_up.remove(&crate::metrics::ServerLabel { server: uri.clone() });
                health.forget(uri);
                tracing::info!(server = %uri, "target no longer configured; not probed any more");
            }
            kept
        });
        let mut pending = Vec::with_capacity(servers.len());
        for (uri, kind) in &servers {
            let (proxy, uri, kind) = (proxy.clone(), uri.clone(), *kind);
            pending.push(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let ok = probe(&proxy, &uri, round, probes.timeout).await;
                (uri, kind, ok.then(|| started.elapsed()))
            }));
        }
        for p in pending {
            let Ok((uri, kind, round_trip)) = p.await else { continue };
            let ok = round_trip.is_some();
            let streak = streaks.entry(uri.clone()).or_insert((0, 0));
            let up = proxy.metrics.um_server_up.get_or_create(&crate::metrics::ServerLabel { server: uri.clone() });
            if ok {
                *streak = (0, streak.1 + 1);
                if streak.1 >= probes.up_after && health.set(&uri, true) {
                    tracing::info!(server = %uri, kind = kind.as_str(), "target is up again");
                }
                if health.is_healthy(&uri) {
                    up.set(1);
                }
            } else {
                *streak = (streak.0 + 1, 0);
                if streak.0 >= probes.down_after && health.set(&uri, false) {
                    tracing::warn!(server = %uri, kind = kind.as_str(), failures = streak.0, "target marked down");
                }
                if !health.is_healthy(&uri) {
                    up.set(0);
                }
            }
            health.probed(&uri, kind, round_trip);
        }
        tokio::select! {
            _ = tokio::time::sleep(probes.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What is probed, each once by URI with what it is (a URI that is both is
/// listed as the first kind of [`TargetKind`]'s order): every UM server of
/// every dial plan, the hosted next hops (the tenants' hosting providers, or
/// edges), and the PSTN gateways (the tenants', their rerouting ones) and
/// default next hops (unless `gateways` is false).
pub fn targets(tenants: &Tenants, gateways: bool) -> Vec<(String, TargetKind)> {
    let mut out: Vec<(String, TargetKind)> = Vec::new();
    for t in tenants.iter() {
        let c = &t.config;
        out.extend(t.directory.um_servers().map(|s| (s.uri.clone(), TargetKind::UmServer)));
        out.extend(c.hosted_next_hop().map(|u| (u, TargetKind::Edge)));
        if gateways {
            let hops = [&c.pstn_gateway, &c.default_next_hop, &c.rerouting.pstn_gateway]
                .into_iter()
                .chain(c.site_rerouting.values().map(|r| &r.pstn_gateway))
                .flatten();
            out.extend(hops.map(|u| (u.clone(), TargetKind::Gateway)));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// One OPTIONS to `uri`; true if a final response other than 503 came back in time.
async fn probe(proxy: &Arc<Proxy>, uri: &str, round: u64, timeout: std::time::Duration) -> bool {
    let Ok(d) = proxy.resolve_target(uri).await else { return false };
    let Some(local) = proxy.transports().egress(d.transport, d.addr, None) else { return false };
    let branch = proxy.new_branch();
    let (tx, mut rx) = mpsc::unbounded_channel();
    proxy.register_client(branch.clone(), tx);
    let call_id = format!("probe-{round}-{branch}");
    let bytes = originate::options(uri, &local.to_string(), via_protocol(d.transport), &branch, &call_id);
    // Over TLS, the server's certificate is checked against the target's name.
    let sent = proxy.transports().send_named(d.transport, Some(local), d.addr, Some(&d.name), bytes).await.is_ok();
    let answered = sent
        && tokio::time::timeout(timeout, async {
            while let Some(e) = rx.recv().await {
                if let Event::Response(r) = e
                    && let Some(code) = r.status().filter(|c| *c >= 200)
                {
                    return code != 503;
                }
            }
            false
        })
        .await
        .unwrap_or(false);
    proxy.unregister_client(&branch);
    answered
}

//! Following the database: one connection LISTENs on the directory and policy
//! channels; each notification names a tenant, whose rows are read again in one
//! snapshot, validated like a directory file's section, and swapped in alone
//! (the other tenants are shared, not reloaded). A tenant whose rows fail
//! validation keeps its previous data; the reason is logged, counted and shown
//! on the admin API.
//!
//! When the connection is lost the router keeps routing on what it has, says
//! since when its data is stale (`/ready`, `exum_directory_stale_seconds`), and
//! reconnects with back-off (100 ms doubling to 5 s). Once connected again it
//! compares every tenant's version in `exum.tenant_changes` with the version it
//! applied and reads again those that differ (and every active policy version),
//! so changes made during the outage are applied without a full reload.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Notification;
use tracing::Instrument as _;

use super::directory::{self as rows, TenantRows, Unreadable};
use super::replica::ReadFrom;
use super::snapshot::{self, Kept, PolicyRef, Snapshot};
use super::{DIRECTORY_CHANNEL, Database, DbError, POLICY_CHANNEL, policies};
use crate::control::config::RouterConfig;
use crate::control::directory::{Directory, TenantData};
use crate::control::{LiveTenants, Overlay, Tenant, Tenants};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::policy::candidate::{CanaryRule, Mode};
use crate::policy::{DatabaseCandidate, DatabaseVersion, PolicyRegistry};

/// Above this many tenants changed at once, the whole directory is read in
/// one snapshot instead of tenant by tenant.
const READ_ALL_ABOVE: usize = 64;
/// Every place a read can go, in `ReadFrom`'s order.
const READS: [ReadFrom; 4] = [ReadFrom::Primary, ReadFrom::Replica, ReadFrom::Lagging, ReadFrom::Unreachable];
/// Reconnection back-off: first and longest wait.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// What the admin API and the metrics say about the directory source.
#[derive(Debug, Default)]
pub struct DirectoryStatus {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default)]
struct StatusInner {
    connected: bool,
    stale_since: Option<SystemTime>,
    refused: BTreeMap<String, String>,
    changes_applied: u64,
    /// When the snapshot the router started from was taken, until it caught up.
    snapshot: Option<SystemTime>,
    /// Reads by where they went (`ReadFrom` as index).
    reads: [u64; 4],
}

impl DirectoryStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the database is connected and followed.
    pub fn connected(&self) -> bool {
        self.lock().connected
    }

    /// Since when the data is stale (the connection lost), if it is.
    pub fn stale_since(&self) -> Option<SystemTime> {
        self.lock().stale_since
    }

    /// Seconds the data has been stale (0 when current).
    pub fn stale_seconds(&self) -> f64 {
        self.stale_since().and_then(|t| t.elapsed().ok()).map_or(0.0, |d| d.as_secs_f64())
    }

    /// Why a tenant's rows are refused now, if they are.
    pub fn refused(&self, tenant: &str) -> Option<String> {
        self.lock().refused.get(tenant).cloned()
    }

    /// Tenant changes applied since start.
    pub fn changes_applied(&self) -> u64 {
        self.lock().changes_applied
    }

    /// The status as the admin API shows it.
    pub fn json(&self) -> serde_json::Value {
        let s = self.lock();
        let since = s.stale_since.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        let refused: Vec<serde_json::Value> =
            s.refused.iter().map(|(t, r)| serde_json::json!({"tenant": t, "reason": r})).collect();
        serde_json::json!({
            "source": "postgres",
            "connected": s.connected,
            "stale": s.stale_since.is_some(),
            "stale_since": since,
            "stale_seconds": s.stale_since.and_then(|t| t.elapsed().ok()).map_or(0, |d| d.as_secs()),
            "changes_applied": s.changes_applied,
            "refused": refused,
            "from_snapshot": s.snapshot.is_some(),
            "snapshot_taken_at": s.snapshot.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())),
            "reads": READS.iter().map(|r| (r.label(), s.reads[*r as usize])).collect::<BTreeMap<_, _>>(),
        })
    }

    /// Reads that went to `from` since start.
    pub fn reads(&self, from: ReadFrom) -> u64 {
        self.lock().reads[from as usize]
    }

    fn read_from(&self, metrics: &Metrics, from: ReadFrom) {
        self.lock().reads[from as usize] += 1;
        metrics.directory_reads.get_or_create(&OutcomeLabel { outcome: from.label() }).inc();
    }

    /// Started from a snapshot taken at `taken_at`: not connected, stale since then.
    fn started_from_snapshot(&self, metrics: &Metrics, taken_at: SystemTime) {
        let mut s = self.lock();
        s.connected = false;
        s.stale_since = Some(taken_at);
        s.snapshot = Some(taken_at);
        metrics.directory_connected.set(0);
    }

    fn set_connected(&self, metrics: &Metrics, connected: bool) {
        let mut s = self.lock();
        s.connected = connected;
        if connected {
            s.stale_since = None;
            s.snapshot = None;
        } else if s.stale_since.is_none() {
            s.stale_since = Some(SystemTime::now());
        }
        metrics.directory_connected.set(i64::from(connected));
    }

    fn refuse(&self, metrics: &Metrics, tenant: &str, reason: String) {
        let mut s = self.lock();
        s.refused.insert(tenant.to_owned(), reason);
        metrics.directory_refused_tenants.set(s.refused.len() as i64);
        metrics.directory_changes.get_or_create(&OutcomeLabel { outcome: "refused" }).inc();
    }

    fn applied(&self, metrics: &Metrics, tenant: &str) {
        let mut s = self.lock();
        s.refused.remove(tenant);
        s.changes_applied += 1;
        metrics.directory_refused_tenants.set(s.refused.len() as i64);
        metrics.directory_changes.get_or_create(&OutcomeLabel { outcome: "applied" }).inc();
    }
}

/// Validates a tenant's rows as a directory file's section; an error names
/// the row (`users (sip = ...)`), not its index.
fn validate(
    config: &RouterConfig,
    id: &str,
    data: TenantData,
    domains: &mut HashSet<String>,
) -> Result<Tenant, String> {
    let names = rows::RowNames::of(&data);
    let source = config.directory.as_path();
    let named = |e: crate::control::ConfigError| match e {
        crate::control::ConfigError::Invalid { file, key, reason } => {
            crate::control::ConfigError::Invalid { file, key: rows::name_rows(&key, &names), reason }.to_string()
        }
        e => e.to_string(),
    };
    let (directory, defined) = Directory::section(config, source, id, data, domains).map_err(named)?;
    let tenant_config = match defined {
        Some(c) => c,
        None => config.tenants.iter().find(|c| c.id == id).cloned().ok_or_else(|| format!("no tenant `{id}`"))?,
    };
    crate::control::check_hosting(source, &format!("tenants.{id}"), &tenant_config, Some(&directory))
        .map_err(|e| e.to_string())?;
    Ok(Tenant { config: tenant_config, directory })
}

/// What the router starts with: the tenants, the active policy versions, and
/// the follower's state (connected and listening since before the read).
#[derive(Debug)]
pub struct Initial {
    /// The tenants.
    pub tenants: Tenants,
    /// Active policy versions by tenant id.
    pub policies: HashMap<String, DatabaseVersion>,
    /// Shown on the admin API and in the metrics.
    pub status: Arc<DirectoryStatus>,
    state: State,
}

#[derive(Debug)]
struct State {
    db: Database,
    config: RouterConfig,
    /// The version of each tenant applied (or refused: a later change retries).
    versions: HashMap<String, i64>,
    listener: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
    notices: mpsc::UnboundedReceiver<Option<Notification>>,
    status: Arc<DirectoryStatus>,
    metrics: Arc<Metrics>,
    /// A new configuration not yet applied to every tenant (the database was
    /// lost while it was): the catch-up validates every tenant.
    resync_pending: bool,
    /// Tenants reading LDAP: their entries are laid over what the database says.
    ldap: Option<Arc<dyn Overlay>>,
    /// Each tenant's rows as last applied, with their version: what a
    /// snapshot keeps.
    kept: BTreeMap<String, Kept>,
    /// Where snapshots go, when kept; the saver's inbox once it runs.
    snapshot: Option<std::path::PathBuf>,
    saver: Option<watch::Sender<Option<Arc<Saved>>>>,
}

/// A snapshot to write, with the components of its policy versions.
#[derive(Debug)]
struct Saved {
    snapshot: Snapshot,
    policies: HashMap<String, DatabaseVersion>,
}

impl State {
    /// Whether the rows applied are kept for snapshots (`[directory] snapshot`).
    fn keeps_rows(&self) -> bool {
        matches!(&self.config.directory_source, crate::control::config::DirectorySource::Postgres(s) if s.snapshot.is_some())
    }

    /// Hands the data applied now to the snapshot saver (it writes the latest
    /// after a second of quiet); `policies`: the active versions.
    fn save(&self, policies: HashMap<String, DatabaseVersion>) {
        let Some(saver) = &self.saver else { return };
        let taken_at_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let refs = policies
            .iter()
            .map(|(t, v)| {
                (t.clone(), PolicyRef { version_id: v.version_id, sha256: crate::policy::hex_sha256(&v.bytes) })
            })
            .collect();
        let snapshot = Snapshot { taken_at_ms, tenants: self.kept.clone(), policies: refs };
        let _ = saver.send(Some(Arc::new(Saved { snapshot, policies })));
    }

    /// [`Self::save`] with the versions the registry serves now.
    fn save_serving(&self, live: &LiveTenants, policy: &PolicyRegistry) {
        if self.saver.is_none() {
            return;
        }
        let policies = live
            .load()
            .iter()
            .filter_map(|t| Some((t.config.id.clone(), policy.database_version(&t.config.id)?)))
            .collect();
        self.save(policies);
    }
}

/// Writes the latest snapshot handed over, a second after the last change
/// (changes in a burst make one write), until the follower ends.
async fn save_snapshots(path: std::path::PathBuf, mut inbox: watch::Receiver<Option<Arc<Saved>>>) {
    while inbox.changed().await.is_ok() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(saved) = inbox.borrow_and_update().clone() else { continue };
        let at = path.clone();
        let written =
            crate::spans::spawn_blocking(move || snapshot::write(&at, &saved.snapshot, &saved.policies)).await;
        match written {
            Ok(Ok(())) => tracing::debug!(path = %path.display(), "directory snapshot written"),
            Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "cannot write the directory snapshot"),
            Err(_) => {}
        }
    }
}

impl State {
    /// A connection to read the directory from: the read replica once it
    /// has replayed what the primary holds now, else the primary.
    async fn read(&self, what: &str) -> Result<(deadpool_postgres::Object, ReadFrom), DbError> {
        let (client, from) = self.db.reader(what).await?;
        self.status.read_from(&self.metrics, from);
        if matches!(from, ReadFrom::Lagging | ReadFrom::Unreachable) {
            tracing::debug!(read = from.label(), "{what}: from the primary");
        }
        Ok((client, from))
    }

    /// Connects the listener and LISTENs on both channels.
    async fn listen(&mut self) -> Result<(), DbError> {
        if let Some((_, task)) = self.listener.take() {
            task.abort();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (client, task) = self.db.connect_with(Some(tx)).await?;
        client
            // Named with this router's schema: a migration that contracts the
            // schema waits for older routers to go.
            .batch_execute(&format!(
                "SET application_name = '{}'; LISTEN {DIRECTORY_CHANNEL}; LISTEN {POLICY_CHANNEL}",
                super::schema::session_name()
            ))
            .await
            .map_err(DbError::pg("listening for changes"))?;
        self.notices = rx;
        self.listener = Some((client, task));
        Ok(())
    }
}

/// Reads the database once, listening first (so no change between the read
/// and the follower's start is missed). Tenants whose rows are invalid are
/// refused one by one (logged, counted, on the admin API); the router starts
/// without them. Only a database that cannot be reached or read fails.
pub async fn initial(db: Database, config: RouterConfig, metrics: Arc<Metrics>) -> Result<Initial, DbError> {
    let status = Arc::new(DirectoryStatus::default());
    let (_, notices) = mpsc::unbounded_channel();
    let mut state = State {
        db,
        config,
        versions: HashMap::new(),
        listener: None,
        notices,
        status: status.clone(),
        metrics: metrics.clone(),
        resync_pending: false,
        ldap: None,
        kept: BTreeMap::new(),
        snapshot: None,
        saver: None,
    };
    state.listen().await?;
    let (mut client, _) = state.read("reading the directory").await?;
    let (snapshot, unreadable) = rows::read_all(&mut client).await?;
    let mut directory = Directory::default();
    let mut domains: HashSet<String> = state.config.tenants.iter().flat_map(|t| t.domains.iter().cloned()).collect();
    for u in unreadable {
        let why = format!("{}: tenants.{}: {}", state.config.directory.display(), u.tenant, u.reason);
        tracing::warn!(tenant = %u.tenant, reason = %why, "tenant refused: its rows are invalid");
        status.refuse(&metrics, &u.tenant, why);
    }
    state.versions = snapshot.versions.into_iter().collect();
    let keeps = state.keeps_rows();
    for (id, TenantRows { data, version }) in snapshot.tenants {
        let rows = keeps.then(|| Arc::new(data.clone()));
        match validate(&state.config, &id, data, &mut domains) {
            Ok(t) => {
                if let Some(data) = rows {
                    state.kept.insert(id.clone(), Kept { version, data });
                }
                if !state.config.tenants.iter().any(|c| c.id == id) {
                    directory.defined.insert(id.clone(), t.config);
                }
                directory.tenants.insert(id, t.directory);
            }
            Err(why) => {
                tracing::warn!(tenant = %id, reason = %why, "tenant refused: its rows are invalid");
                status.refuse(&metrics, &id, why);
            }
        }
    }
    let tenants = Tenants::new(&state.config, directory);
    let mut active = HashMap::new();
    for (tenant, _) in policies::all_active(&client).await? {
        if let Some(v) = policies::active(&client, &tenant).await? {
            active.insert(tenant, DatabaseVersion { version_id: v.version_id, bytes: v.bytes.into() });
        }
    }
    status.set_connected(&metrics, true);
    Ok(Initial { tenants, policies: active, status, state })
}

/// What the router starts with when the database cannot be reached: the
/// snapshot's tenants (validated against the configuration as now) and policy
/// versions, the data stale since the snapshot was taken; the follower
/// connects when it can and catches up by versions.
pub fn from_snapshot(
    db: Database,
    config: RouterConfig,
    metrics: Arc<Metrics>,
    snapshot: Snapshot,
    policies: HashMap<String, DatabaseVersion>,
) -> Initial {
    let status = Arc::new(DirectoryStatus::default());
    let (_, notices) = mpsc::unbounded_channel();
    let mut directory = Directory::default();
    let mut domains: HashSet<String> = config.tenants.iter().flat_map(|t| t.domains.iter().cloned()).collect();
    let mut kept = BTreeMap::new();
    let mut versions = HashMap::new();
    for (id, k) in snapshot.tenants.iter() {
        match validate(&config, id, (*k.data).clone(), &mut domains) {
            Ok(t) => {
                if !config.tenants.iter().any(|c| &c.id == id) {
                    directory.defined.insert(id.clone(), t.config);
                }
                directory.tenants.insert(id.clone(), t.directory);
                versions.insert(id.clone(), k.version);
                kept.insert(id.clone(), k.clone());
            }
            Err(why) => {
                tracing::warn!(tenant = %id, reason = %why, "tenant of the snapshot refused");
                status.refuse(&metrics, id, why);
            }
        }
    }
    let tenants = Tenants::new(&config, directory);
    status.started_from_snapshot(&metrics, snapshot.taken_at());
    let state = State {
        db,
        config,
        versions,
        listener: None,
        notices,
        status: status.clone(),
        metrics,
        resync_pending: false,
        ldap: None,
        kept,
        snapshot: None,
        saver: None,
    };
    Initial { tenants, policies, status, state }
}

impl Initial {
    /// Keeps a snapshot at `path` of what is applied (from the start, when
    /// the database was read; from the first catch-up, when started from a
    /// snapshot).
    pub fn keep_snapshots(&mut self, path: std::path::PathBuf) {
        self.state.snapshot = Some(path);
    }
}

/// A request to the follower.
#[derive(Debug)]
enum Command {
    /// The configuration was reloaded: validate every tenant against it.
    Resync(Box<RouterConfig>),
}

/// The running follower.
#[derive(Debug, Clone)]
pub struct Follower {
    commands: mpsc::UnboundedSender<Command>,
    /// Connection and staleness, refused tenants.
    pub status: Arc<DirectoryStatus>,
}

impl Follower {
    /// Starts following the database with `initial`'s state; stops when
    /// `shutdown` changes.
    pub fn spawn(
        initial: Initial,
        live: Arc<LiveTenants>,
        policy: Arc<PolicyRegistry>,
        ldap: Option<Arc<dyn Overlay>>,
        shutdown: watch::Receiver<bool>,
    ) -> Follower {
        let (tx, rx) = mpsc::unbounded_channel();
        let status = initial.status.clone();
        let mut state = initial.state;
        state.ldap = ldap;
        if let Some(path) = state.snapshot.clone() {
            let (saver, inbox) = watch::channel(None);
            state.saver = Some(saver);
            tokio::spawn(save_snapshots(path, inbox).instrument(tracing::info_span!("directory_follower")));
            if state.status.connected() {
                state.save(initial.policies.clone());
            }
        }
        let (sink, rollbacks) = mpsc::unbounded_channel();
        policy.set_rollback_sink(Some(sink));
        tokio::spawn(
            write_rollbacks(state.db.clone(), rollbacks).instrument(tracing::info_span!("directory_follower")),
        );
        tokio::spawn(run(state, live, policy, rx, shutdown).instrument(tracing::info_span!("directory_follower")));
        Follower { commands: tx, status }
    }

    /// The configuration was reloaded: every tenant is read and validated
    /// against it again (in the background; refusals show on the status).
    pub fn resync(&self, config: RouterConfig) {
        let _ = self.commands.send(Command::Resync(Box::new(config)));
    }
}

async fn run(
    mut st: State,
    live: Arc<LiveTenants>,
    policy: Arc<PolicyRegistry>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The candidates in the database at start.
    let at_start = async {
        let (client, _) = st.read("reading the candidates").await?;
        changed_candidates(&client, &live, &policy).await
    };
    match at_start.await {
        Ok(ids) => {
            if let Err(e) = apply_policies(&st, &live, &policy, ids).await {
                tracing::warn!(error = %e, "applying the database's candidates failed; again once reconnected");
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the database's candidates failed; again once reconnected"),
    }
    loop {
        // Connected: apply notifications as they come, in batches.
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return,
                cmd = commands.recv() => match cmd {
                    Some(Command::Resync(config)) => {
                        st.config = *config;
                        st.resync_pending = true;
                        if let Err(e) = resync(&mut st, &live, &policy).await {
                            tracing::warn!(error = %e, "resynchronising after a reload failed; again once reconnected");
                            break;
                        }
                        continue;
                    }
                    None => return,
                },
                n = st.notices.recv() => n,
            };
            let Some(Some(first)) = first else { break };
            let (mut directory, mut policies, mut lost) = (BTreeSet::new(), BTreeSet::new(), false);
            let mut note = |n: Notification| match n.channel() {
                DIRECTORY_CHANNEL => {
                    directory.insert(n.payload().to_owned());
                }
                POLICY_CHANNEL => {
                    policies.insert(n.payload().to_owned());
                }
                _ => {}
            };
            note(first);
            while let Ok(n) = st.notices.try_recv() {
                match n {
                    Some(n) => note(n),
                    None => lost = true,
                }
            }
            let added = match apply_tenants(&mut st, &live, &policy, directory, false).await {
                Ok(added) => added,
                Err(e) => {
                    tracing::warn!(error = %e, "reading changed tenants failed");
                    break;
                }
            };
            policies.extend(added);
            if let Err(e) = apply_policies(&st, &live, &policy, policies).await {
                tracing::warn!(error = %e, "reading activated policies failed");
                break;
            }
            st.save_serving(&live, &policy);
            if lost {
                break;
            }
        }
        // Lost: serve on what we have, reconnect, then catch up.
        st.status.set_connected(&st.metrics, false);
        tracing::warn!("directory database connection lost; routing on the last data while reconnecting");
        let mut wait = BACKOFF.0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match catch_up(&mut st, &live, &policy).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "reconnecting to the directory database failed");
                    wait = (wait * 2).min(BACKOFF.1);
                }
            }
        }
        st.status.set_connected(&st.metrics, true);
        tracing::info!("directory database connected again; changes made meanwhile applied");
    }
}

/// Validates every tenant against the current configuration again.
async fn resync(st: &mut State, live: &LiveTenants, policy: &Arc<PolicyRegistry>) -> Result<(), DbError> {
    let all: BTreeSet<String> =
        st.versions.keys().cloned().chain(live.load().iter().map(|t| t.config.id.clone())).collect();
    apply_tenants(st, live, policy, all, true).await?;
    st.resync_pending = false;
    Ok(())
}

/// After a reconnection: listen again, then apply every tenant whose version
/// differs from the one applied, and every active policy version that differs
/// (every tenant, when a new configuration is still to be applied).
async fn catch_up(st: &mut State, live: &LiveTenants, policy: &Arc<PolicyRegistry>) -> Result<(), DbError> {
    st.listen().await?;
    if st.resync_pending {
        resync(st, live, policy).await?;
    }
    let (client, _) = st.read("reading tenant versions").await?;
    let rows = client
        .query("SELECT tenant_id, version FROM exum.tenant_changes", &[])
        .await
        .map_err(DbError::pg("reading tenant versions"))?;
    let changed: BTreeSet<String> = rows
        .iter()
        .filter(|r| st.versions.get(r.get::<_, &str>(0)) != Some(&r.get::<_, i64>(1)))
        .map(|r| r.get(0))
        .collect();
    let active = policies::all_active(&client).await?;
    let candidates = changed_candidates(&client, live, policy).await?;
    drop(client);
    let count = changed.len();
    let added = apply_tenants(st, live, policy, changed, false).await?;
    let mut refresh: BTreeSet<String> = added.into_iter().chain(candidates).collect();
    let tenants = live.load();
    let active_ids: HashMap<&str, i64> = active.iter().map(|(t, v)| (t.as_str(), *v)).collect();
    for t in tenants.iter() {
        let id = t.config.id.as_str();
        if policy.database_version(id).map(|v| v.version_id) != active_ids.get(id).copied() {
            refresh.insert(id.to_owned());
        }
    }
    apply_policies(st, live, policy, refresh).await?;
    st.save_serving(live, policy);
    tracing::info!(tenants_changed = count, "caught up with the directory database");
    Ok(())
}

/// Reads `ids` again and swaps them in, each alone: valid ones replace the
/// tenant (or remove it, when its row is gone), invalid ones keep what they
/// have. With `all`, every tenant is validated again (a new configuration).
/// Returns the tenants added (their policies are to be read).
async fn apply_tenants(
    st: &mut State,
    live: &LiveTenants,
    policy: &Arc<PolicyRegistry>,
    ids: BTreeSet<String>,
    all: bool,
) -> Result<Vec<String>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let read = read_rows(st, &ids, all).await?;
    let current = live.load();
    // The domains taken: the configuration's tenants' (as configured now), and
    // those of the tenants the database defines (as they are now; each is
    // taken out while its own rows are validated).
    let configured = |id: &str| st.config.tenants.iter().any(|c| c.id == id);
    let config_domains: HashSet<String> = st.config.tenants.iter().flat_map(|t| t.domains.iter().cloned()).collect();
    let mut domains: HashSet<String> = config_domains
        .iter()
        .cloned()
        .chain(current.iter().filter(|t| !configured(&t.config.id)).flat_map(|t| t.config.domains.iter().cloned()))
        .collect();
    let mut changes: Vec<(String, Option<Tenant>)> = Vec::new();
    // Reported applied once they serve (after the swap below).
    let mut applied: Vec<String> = Vec::new();
    let in_config = |config: &RouterConfig, id: &str| config.tenants.iter().find(|c| c.id == id).cloned();
    for (id, rows, version) in read {
        st.versions.insert(id.clone(), version);
        let defined_here = !configured(&id);
        let old_domains: Vec<String> =
            current.by_id(&id).filter(|_| defined_here).map(|t| t.config.domains.clone()).unwrap_or_default();
        for d in old_domains.iter().filter(|d| !config_domains.contains(*d)) {
            domains.remove(d);
        }
        let outcome = match rows {
            Err(u) => Err(format!("{}: tenants.{id}: {}", st.config.directory.display(), u.reason)),
            // Gone from the database: a tenant of the configuration stays, without data.
            Ok(None) => {
                st.kept.remove(&id);
                match in_config(&st.config, &id) {
                    Some(config) => Ok(Some(Tenant { config, directory: Default::default() })),
                    None => Ok(None),
                }
            }
            Ok(Some(data)) => {
                let rows = st.keeps_rows().then(|| Arc::new(data.clone()));
                let valid = validate(&st.config, &id, data, &mut domains).map(Some);
                if let (Ok(_), Some(data)) = (&valid, rows) {
                    st.kept.insert(id.clone(), Kept { version, data });
                }
                valid
            }
        };

        match outcome {
            Ok(t) => {
                if let Some(t) = &t
                    && defined_here
                {
                    domains.extend(t.config.domains.iter().cloned());
                }
                applied.push(id.clone());
                changes.push((id, t));
            }
            Err(why) => {
                domains.extend(old_domains);
                crate::spans::tenant(&id)
                    .in_scope(|| tracing::warn!(reason = %why, "tenant's rows refused; it keeps its previous data"));
                st.status.refuse(&st.metrics, &id, why);
            }
        }
    }
    if all {
        // Tenants of the new configuration that the database never had.
        for c in &st.config.tenants {
            if current.by_id(&c.id).is_none() && !changes.iter().any(|(id, _)| id == &c.id) {
                changes.push((c.id.clone(), Some(Tenant { config: c.clone(), directory: Default::default() })));
            }
        }
    }
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = changes.iter().map(|(id, _)| id.clone()).collect();
    let changes: Vec<(String, Option<Arc<Tenant>>)> =
        changes.into_iter().map(|(id, t)| (id, t.map(Arc::new))).collect();
    let overlay = |tenants: Tenants| match &st.ldap {
        Some(sync) => sync.overlay(tenants),
        None => tenants,
    };
    let next = Arc::new(overlay(current.with_shared(changes.clone())));
    let mut added = Vec::new();
    let (policy2, current2, next2) = (policy.clone(), current.clone(), next.clone());
    let installs = crate::spans::spawn_blocking(move || {
        let mut added = Vec::new();
        for id in ids {
            let _tenant = crate::spans::tenant(&id).entered();
            match (current2.by_id(&id), next2.by_id(&id)) {
                (old, Some(new)) if old.is_none_or(|o| o.config != new.config) => {
                    if old.is_none() {
                        added.push(id.clone());
                    }
                    policy2.install_configured(new);
                }
                (Some(_), None) => policy2.remove(&id),
                _ => {}
            }
        }
        added
    });
    if let Ok(a) = installs.await {
        added = a;
    }
    // Laid over the set current now (a reload may have swapped it meanwhile).
    live.update(|latest| {
        Some(if Arc::ptr_eq(latest, &current) { next } else { Arc::new(overlay(latest.with_shared(changes))) })
    });
    for id in &applied {
        st.status.applied(&st.metrics, id);
    }
    Ok(added)
}

/// The rows of each of `ids` and its version: all tenants read in one
/// snapshot when `all` or many changed, else one tenant at a time.
async fn read_rows(st: &State, ids: &BTreeSet<String>, all: bool) -> Result<Vec<ChangedRows>, DbError> {
    let (mut client, from) = st.read("reading changed tenants").await?;
    let mut read = read_rows_from(&mut client, ids, all).await?;
    if from == ReadFrom::Replica {
        // A replica never takes the router back: a tenant read older than
        // the version applied is read again from the primary.
        let behind: BTreeSet<String> = read
            .iter()
            .filter(|(id, _, version)| st.versions.get(id).is_some_and(|applied| version < applied))
            .map(|(id, _, _)| id.clone())
            .collect();
        if !behind.is_empty() {
            tracing::warn!(tenants = behind.len(), "the read replica is behind what was applied; reading the primary");
            let mut primary = st.db.client("reading changed tenants").await?;
            let again = read_rows_from(&mut primary, &behind, false).await?;
            read.retain(|(id, _, _)| !behind.contains(id));
            read.extend(again);
        }
    }
    Ok(read)
}

/// [`read_rows`] from `client`.
async fn read_rows_from(
    client: &mut tokio_postgres::Client,
    ids: &BTreeSet<String>,
    all: bool,
) -> Result<Vec<ChangedRows>, DbError> {
    let mut read: Vec<ChangedRows> = Vec::with_capacity(ids.len());
    if all || ids.len() > READ_ALL_ABOVE {
        let (mut snapshot, unreadable) = rows::read_all(client).await?;
        let mut unreadable: HashMap<String, Unreadable> =
            unreadable.into_iter().map(|u| (u.tenant.clone(), u)).collect();
        for id in ids {
            let version = snapshot.versions.get(id).copied().unwrap_or(0);
            let rows = match unreadable.remove(id) {
                Some(u) => Err(u),
                None => Ok(snapshot.tenants.remove(id).map(|r| r.data)),
            };
            read.push((id.clone(), rows, version));
        }
    } else {
        for id in ids {
            let (rows, version) = rows::read_tenant(client, id).await?;
            read.push((id.clone(), rows.map(|r| r.map(|r| r.data)), version));
        }
    }
    Ok(read)
}

/// A tenant's id, its rows (none: gone; or why they cannot be read) and its version.
type ChangedRows = (String, Result<Option<TenantData>, Unreadable>, i64);

/// Reads the active policy version of `ids` and applies it (compiled once,
/// through the disk cache; a version that does not load is refused and the
/// current one keeps serving).
async fn apply_policies(
    st: &State,
    live: &LiveTenants,
    policy: &Arc<PolicyRegistry>,
    ids: BTreeSet<String>,
) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let (client, _) = st.read("reading active policies").await?;
    for id in ids {
        let Some(tenant) = live.load().by_id(&id).cloned() else { continue };
        let active = policies::active(&client, &id).await?;
        let version = active.map(|v| DatabaseVersion { version_id: v.version_id, bytes: v.bytes.into() });
        let candidate =
            policies::candidate(&client, &id).await?.map(|c| database_candidate(c, policy.lifecycle().rule));
        let policy = policy.clone();
        let _ = crate::spans::spawn_blocking(move || {
            let _tenant = crate::spans::tenant(&tenant.config.id).entered();
            let _ = policy.apply_database_version(&tenant, version);
            policy.apply_database_candidate(&tenant, candidate);
        })
        .await;
    }
    Ok(())
}

/// A candidate row as the registry takes it (the routers' `[lifecycle]` rule
/// where the row sets none).
fn database_candidate(c: policies::StoredCandidate, defaults: CanaryRule) -> DatabaseCandidate {
    DatabaseCandidate {
        version_id: c.version_id,
        bytes: c.bytes.into(),
        mode: if c.mode == "canary" { Mode::Canary { share: c.share } } else { Mode::Shadow },
        rule: CanaryRule {
            fault_margin: c.fault_margin.unwrap_or(defaults.fault_margin),
            failure_margin: c.failure_margin.unwrap_or(defaults.failure_margin),
            min_calls: c.min_calls.map_or(defaults.min_calls, |n| n.max(1) as u64),
        },
        rolled_back: c.rolled_back,
    }
}

/// The tenants whose candidate in the database differs from the one applied.
async fn changed_candidates(
    client: &tokio_postgres::Client,
    live: &LiveTenants,
    policy: &Arc<PolicyRegistry>,
) -> Result<BTreeSet<String>, DbError> {
    let stored: HashMap<String, (i64, bool)> =
        policies::all_candidates(client).await?.into_iter().map(|(t, v, r)| (t, (v, r))).collect();
    Ok(live
        .load()
        .iter()
        .map(|t| t.config.id.clone())
        .filter(|id| policy.database_candidate(id) != stored.get(id).copied())
        .collect())
}

/// Writes a router's rollback of the fleet's canary to the database, so every
/// router follows.
async fn write_rollbacks(db: Database, mut rollbacks: mpsc::UnboundedReceiver<(String, i64, String)>) {
    while let Some((tenant, version_id, reason)) = rollbacks.recv().await {
        let written = async {
            let client = db.client("recording a canary's rollback").await?;
            policies::candidate_rolled_back(&client, &tenant, version_id, &reason).await
        };
        if let Err(e) = written.await {
            tracing::warn!(tenant = %tenant, version = version_id, error = %e, "could not record the canary's rollback in the database; this router rolled it back alone");
        }
    }
}

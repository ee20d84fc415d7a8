//! LDAP (Active Directory) as the source of a tenant's users and contacts.
//!
//! - [`mapping`]: an entry's Lync and Exchange attributes to a user or contact.
//! - this module: connecting (ldaps:// or StartTLS, the CA from the
//!   configuration), binding, the paged search; [`LdapSync`]: each LDAP
//!   tenant's entries, laid over the tenant's other data (its dial plans and
//!   hosted voice-mail policies from the directory file or database), kept in
//!   sync by polling the changed attribute and by a periodic full read.
//!
//! An entry that fails validation is refused alone, with its DN and why; the
//! rest of the tenant is served.

pub mod mapping;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::control::directory::{Directory, EntryKind};
use crate::control::ldap::LdapSettings;
use crate::control::{Tenant, Tenants};
use mapping::Mapped;
use tracing::Instrument as _;

/// Why the directory server could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// Connecting, binding or searching failed.
    #[error("{uri}: {what}: {source}")]
    Ldap {
        /// The server.
        uri: String,
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: ldap3::LdapError,
    },
    /// The TLS settings cannot be used.
    #[error("{0}")]
    Tls(#[from] crate::pki::PkiError),
    /// Took longer than the timeout.
    #[error("{uri}: {what}: timed out")]
    Timeout {
        /// The server.
        uri: String,
        /// What was being done.
        what: &'static str,
    },
}

/// Connects and binds with `s`.
pub async fn connect(s: &LdapSettings) -> Result<Ldap, LdapError> {
    let err = |what| {
        let uri = s.uri.clone();
        move |source| LdapError::Ldap { uri, what, source }
    };
    let mut settings = LdapConnSettings::new().set_conn_timeout(s.timeout).set_starttls(s.starttls);
    if let Some(ca) = &s.ca {
        let config = crate::pki::client_trusting(ca)?;
        settings = settings.set_config(Arc::new(config));
    }
    let connected = async {
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &s.uri).await.map_err(err("connecting"))?;
        ldap3::drive!(conn);
        ldap.simple_bind(&s.bind_dn, &s.password).await.and_then(|r| r.success()).map_err(err("binding"))?;
        Ok(ldap)
    };
    tokio::time::timeout(s.timeout * 2, connected)
        .await
        .map_err(|_| LdapError::Timeout { uri: s.uri.clone(), what: "connecting and binding" })?
}

/// The entries matching `filter` under the base DN, read page by page.
pub async fn search(ldap: &mut Ldap, s: &LdapSettings, filter: &str) -> Result<Vec<SearchEntry>, LdapError> {
    let err = |what| {
        let uri = s.uri.clone();
        move |source| LdapError::Ldap { uri, what, source }
    };
    let attrs = mapping::wanted(s);
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<'_, String, Vec<String>>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(s.page_size))];
    let mut stream = ldap
        .streaming_search_with(adapters, &s.base_dn, Scope::Subtree, filter, attrs)
        .await
        .map_err(err("searching"))?;
    let mut out = Vec::new();
    while let Some(entry) = stream.next().await.map_err(err("searching"))? {
        out.push(SearchEntry::construct(entry));
    }
    stream.finish().await.success().map_err(err("searching"))?;
    Ok(out)
}

/// One LDAP tenant's state.
#[derive(Debug, Default)]
struct TenantState {
    /// Its mapped entries by DN (unmappable ones kept as errors).
    entries: BTreeMap<String, Result<Mapped, String>>,
    /// The tenant as its other source (file or database) defines it.
    base: Option<Arc<Tenant>>,
    /// Entries refused, by DN, with why.
    refused: BTreeMap<String, String>,
    /// The latest value of the changed attribute seen.
    high_water: Option<String>,
    /// Connected and read at the last attempt.
    connected: bool,
    /// Since when the entries could not be read, if they cannot.
    stale_since: Option<SystemTime>,
    /// Reads that changed something.
    syncs: u64,
    /// Reads, whether they changed anything or not.
    polls: u64,
    /// The SIP addresses of every contact LDAP ever gave (lower case): a
    /// tenant laid over again drops them from its base first.
    contact_sips: std::collections::HashSet<String>,
    /// When the entries were last read from the server (or, restored, when
    /// the snapshot's were).
    read_at: Option<SystemTime>,
    /// Serving the snapshot's entries (read then), until the server answers.
    from_snapshot: Option<SystemTime>,
}

/// Every LDAP tenant's entries, laid over the tenants of the other source.
#[derive(Debug, Default)]
pub struct LdapSync {
    tenants: Mutex<HashMap<String, TenantState>>,
    /// Where the entries are kept (`ldap.snapshot` in `policy_cache`), if they are.
    snapshot: Option<std::path::PathBuf>,
    /// Entries read since the snapshot was last written.
    unsaved: AtomicBool,
}

impl crate::control::Overlay for LdapSync {
    fn overlay(&self, tenants: Tenants) -> Tenants {
        LdapSync::overlay(self, tenants)
    }
}

impl LdapSync {
    /// Entries kept on disk at `snapshot` (for the tenants that keep them).
    pub fn new(snapshot: Option<std::path::PathBuf>) -> LdapSync {
        LdapSync { snapshot, ..LdapSync::default() }
    }

    /// Serves `kept` (a snapshot's) as `id`'s entries: not connected, stale
    /// since they were read.
    fn restore(&self, id: &str, kept: snapshot::KeptEntries) {
        let mut all = self.lock();
        let state = all.entry(id.to_owned()).or_default();
        let read_at = kept.read_at();
        state.entries = kept.entries.into_iter().collect();
        state.high_water = kept.high_water;
        state.connected = false;
        state.stale_since = Some(read_at);
        state.read_at = Some(read_at);
        state.from_snapshot = Some(read_at);
    }

    /// Writes the entries of `tenants` that keep them, when any were read
    /// since the last write.
    pub fn save(&self, tenants: &Tenants) {
        let Some(path) = &self.snapshot else { return };
        if !self.unsaved.swap(false, Ordering::AcqRel) {
            return;
        }
        let kept: BTreeMap<String, snapshot::KeptEntries> = {
            let all = self.lock();
            tenants
                .iter()
                .filter(|t| t.config.ldap.as_ref().is_some_and(|l| l.snapshot))
                .filter_map(|t| {
                    let s = all.get(&t.config.id)?;
                    let read_at = s.read_at?;
                    Some((
                        t.config.id.clone(),
                        snapshot::KeptEntries {
                            read_at_ms: snapshot::millis(read_at),
                            high_water: s.high_water.clone(),
                            entries: s.entries.iter().map(|(dn, m)| (dn.clone(), m.clone())).collect(),
                        },
                    ))
                })
                .collect()
        };
        if kept.is_empty() {
            return;
        }
        match snapshot::write(path, &snapshot::LdapSnapshot { tenants: kept }) {
            Ok(()) => tracing::debug!(path = %path.display(), "LDAP snapshot written"),
            Err(e) => {
                // Tried again at the next look.
                self.unsaved.store(true, Ordering::Release);
                tracing::warn!(path = %path.display(), error = %e, "cannot write the LDAP snapshot");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantState>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `tenants` (fresh from the file or database) with each LDAP tenant's
    /// users and contacts replaced by its directory server's; remembers each
    /// as the base of later syncs.
    pub fn overlay(&self, tenants: Tenants) -> Tenants {
        let changes: Vec<(String, Option<Tenant>)> = tenants
            .iter()
            .filter(|t| t.config.ldap.is_some())
            .map(|t| {
                (t.config.id.clone(), Some(crate::spans::tenant(&t.config.id).in_scope(|| self.rebuild(t.clone()))))
            })
            .collect();
        if changes.is_empty() { tenants } else { tenants.with_changes(changes) }
    }

    /// Lays the tenant's entries over `base`.
    fn rebuild(&self, base: Arc<Tenant>) -> Tenant {
        let mut all = self.lock();
        let state = all.entry(base.config.id.clone()).or_default();
        state.base = Some(base.clone());
        let mut data = base.directory.to_data();
        data.users.clear();
        // The base may be a tenant laid over before: its LDAP contacts go first.
        data.contacts.retain(|c| !state.contact_sips.contains(&c.sip.to_ascii_lowercase()));
        let base_contacts = data.contacts.len();
        let mut dns: Vec<(EntryKind, String)> = Vec::new();
        state.refused.clear();
        for (dn, mapped) in &state.entries {
            match mapped {
                Ok(Mapped::User(u)) => {
                    dns.push((EntryKind::User, dn.clone()));
                    data.users.push(u.clone());
                }
                Ok(Mapped::Contact(c)) => {
                    dns.push((EntryKind::Contact, dn.clone()));
                    state.contact_sips.insert(c.sip.to_ascii_lowercase());
                    data.contacts.push(c.clone());
                }
                Ok(Mapped::Disabled) => {}
                Err(e) => {
                    state.refused.insert(dn.clone(), e.clone());
                }
            }
        }
        let users: Vec<&String> = dns.iter().filter(|(k, _)| *k == EntryKind::User).map(|(_, d)| d).collect();
        let contacts: Vec<&String> = dns.iter().filter(|(k, _)| *k == EntryKind::Contact).map(|(_, d)| d).collect();
        let source = std::path::Path::new("ldap");
        match Directory::lenient(source, &base.config, data) {
            Ok((directory, refused)) => {
                for (kind, i, e) in refused {
                    let dn = match kind {
                        EntryKind::User => users.get(i).map(|d| (*d).clone()),
                        EntryKind::Contact => {
                            i.checked_sub(base_contacts).and_then(|j| contacts.get(j)).map(|d| (*d).clone())
                        }
                    };
                    let reason = match e {
                        crate::control::ConfigError::Invalid { key, reason, .. } => {
                            format!("{reason} ({})", key.rsplit_once('.').map_or(key.as_str(), |(_, f)| f))
                        }
                        e => e.to_string(),
                    };
                    let dn = dn.unwrap_or_else(|| format!("{kind:?} {i} of the directory"));
                    tracing::warn!(%dn, %reason, "directory entry refused");
                    state.refused.insert(dn, reason);
                }
                Tenant { config: base.config.clone(), directory }
            }
            Err(e) => {
                // Not an entry's fault (the tenant's own dial plans): serve the base.
                tracing::warn!(error = %e, "LDAP entries not applied");
                Tenant { config: base.config.clone(), directory: base.directory.clone() }
            }
        }
    }

    /// Replaces the tenant's entries (a full read) or updates some (a poll);
    /// returns the rebuilt tenant when anything changed and it has a base.
    fn apply(
        &self,
        id: &str,
        read: Vec<(String, Result<Mapped, String>)>,
        full: bool,
        high: Option<String>,
    ) -> Option<Tenant> {
        let base = {
            let mut all = self.lock();
            let state = all.entry(id.to_owned()).or_default();
            let changed = if full {
                let new: BTreeMap<String, Result<Mapped, String>> = read.into_iter().collect();
                let changed = new != state.entries;
                state.entries = new;
                changed
            } else {
                let mut changed = false;
                for (dn, mapped) in read {
                    if state.entries.get(&dn) != Some(&mapped) {
                        state.entries.insert(dn, mapped);
                        changed = true;
                    }
                }
                changed
            };
            if high.is_some() && high > state.high_water {
                state.high_water = high;
            }
            if changed || !state.connected {
                self.unsaved.store(true, Ordering::Release);
            }
            state.connected = true;
            state.stale_since = None;
            state.from_snapshot = None;
            state.read_at = Some(SystemTime::now());
            state.polls += 1;
            if !changed {
                return None;
            }
            state.syncs += 1;
            state.base.clone()
        }?;
        Some(self.rebuild(base))
    }

    fn lost(&self, id: &str) {
        let mut all = self.lock();
        let state = all.entry(id.to_owned()).or_default();
        state.connected = false;
        state.stale_since.get_or_insert_with(SystemTime::now);
    }

    /// The latest value of the changed attribute seen for `id`.
    fn high_water(&self, id: &str) -> Option<String> {
        self.lock().get(id).and_then(|s| s.high_water.clone())
    }

    /// The status of each LDAP tenant, as the admin API shows it.
    pub fn json(&self) -> serde_json::Value {
        let all = self.lock();
        let mut ids: Vec<&String> = all.keys().collect();
        ids.sort();
        let tenants: Vec<serde_json::Value> = ids
            .into_iter()
            .map(|id| {
                let s = &all[id];
                let refused: Vec<serde_json::Value> =
                    s.refused.iter().map(|(dn, r)| serde_json::json!({"dn": dn, "reason": r})).collect();
                serde_json::json!({
                    "tenant": id,
                    "connected": s.connected,
                    "stale": s.stale_since.is_some(),
                    "stale_since": s.stale_since.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())),
                    "stale_seconds": s.stale_since.and_then(|t| t.elapsed().ok()).map_or(0, |d| d.as_secs()),
                    "entries": s.entries.len(),
                    "from_snapshot": s.from_snapshot.is_some(),
                    "snapshot_read_at": s.from_snapshot.map(|t| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())),
                    "syncs": s.syncs,
                    "polls": s.polls,
                    "refused": refused,
                })
            })
            .collect();
        serde_json::json!(tenants)
    }

    /// Whether `id`'s server was reachable at the last attempt.
    pub fn connected(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|s| s.connected)
    }

    /// Why entry `dn` of `id` is refused, if it is.
    pub fn refused(&self, id: &str, dn: &str) -> Option<String> {
        self.lock()
            .get(id)
            .and_then(|s| s.refused.iter().find(|(d, _)| d.eq_ignore_ascii_case(dn)).map(|(_, r)| r.clone()))
    }

    /// Entries refused across tenants, and the longest staleness in seconds.
    pub fn totals(&self) -> (usize, u64) {
        let all = self.lock();
        let refused = all.values().map(|s| s.refused.len()).sum();
        let stale =
            all.values().filter_map(|s| s.stale_since.and_then(|t| t.elapsed().ok())).map(|d| d.as_secs()).max();
        (refused, stale.unwrap_or(0))
    }
}

/// Reads `s`'s entries: all of them, or those changed since `since` (the
/// changed attribute's value); with the highest changed value seen.
pub async fn read(
    s: &LdapSettings,
    since: Option<&str>,
) -> Result<(Vec<(String, Result<Mapped, String>)>, Option<String>), LdapError> {
    let mut ldap = connect(s).await?;
    let filter = match since {
        Some(t) => format!("(&{}({}>={}))", s.filter, s.attributes.changed, t),
        None => s.filter.clone(),
    };
    let entries = search(&mut ldap, s, &filter).await;
    let _ = ldap.unbind().await;
    let entries = entries?;
    let high = entries.iter().filter_map(|e| mapping::values(e, &s.attributes.changed).first().cloned()).max();
    Ok((entries.iter().map(|e| (e.dn.clone(), mapping::map(e, s))).collect(), high))
}

/// Reads every LDAP tenant of `tenants` once (at start), in turn; a tenant
/// whose server cannot be read starts with the entries of the snapshot (stale
/// since they were read) or, without one, none; its follower keeps trying.
pub async fn initial(sync: &LdapSync, tenants: &Tenants) {
    let mut kept = match &sync.snapshot {
        Some(path) if path.exists() => match snapshot::read(path) {
            Ok(s) => s.tenants,
            Err(e) => {
                tracing::warn!(error = %e, "the LDAP snapshot cannot be used");
                BTreeMap::new()
            }
        },
        _ => BTreeMap::new(),
    };
    for t in tenants.iter() {
        let Some(s) = &t.config.ldap else { continue };
        let started = Instant::now();
        match read(s, None).await {
            Ok((entries, high)) => {
                let n = entries.len();
                sync.apply(&t.config.id, entries, true, high);
                tracing::info!(tenant = %t.config.id, entries = n, ms = started.elapsed().as_millis() as u64, "LDAP entries read");
            }
            Err(e) => match kept.remove(&t.config.id).filter(|_| s.snapshot) {
                Some(k) => {
                    let (n, age) = (k.entries.len(), k.read_at().elapsed().map_or(0, |d| d.as_secs()));
                    sync.restore(&t.config.id, k);
                    tracing::warn!(tenant = %t.config.id, error = %e, entries = n, age_s = age, "LDAP directory unreachable; the tenant starts with the entries of its snapshot");
                }
                None => {
                    sync.lost(&t.config.id);
                    tracing::warn!(tenant = %t.config.id, error = %e, "LDAP directory unreachable; the tenant starts without its entries");
                }
            },
        }
    }
    sync.save(tenants);
}

/// Follows each LDAP tenant of the live tenants: every poll interval the
/// entries changed since the last seen change, every full-sync interval all
/// of them; changes are laid over the tenant's base and swapped in alone.
pub async fn follow(
    sync: Arc<LdapSync>,
    live: Arc<crate::control::LiveTenants>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_full: HashMap<String, Instant> = HashMap::new();
    let mut next_poll: HashMap<String, Instant> = HashMap::new();
    loop {
        let tenants = live.load();
        let now = Instant::now();
        let mut wake = now + std::time::Duration::from_secs(1);
        for t in tenants.iter() {
            let Some(s) = &t.config.ldap else { continue };
            let id = &t.config.id;
            let due = *next_poll.entry(id.clone()).or_insert(now + s.poll_interval);
            if due > now {
                wake = wake.min(due);
                continue;
            }
            next_poll.insert(id.clone(), now + s.poll_interval);
            wake = wake.min(now + s.poll_interval);
            let full = last_full.get(id).is_none_or(|t| t.elapsed() >= s.full_sync_interval) || !sync.connected(id);
            let since = if full { None } else { sync.high_water(id) };
            let span = crate::spans::tenant(id);
            match read(s, since.as_deref()).instrument(span.clone()).await {
                Ok((entries, high)) => {
                    if full {
                        last_full.insert(id.clone(), Instant::now());
                    }
                    if let Some(new) = span.in_scope(|| sync.apply(id, entries, full, high)) {
                        let new = Arc::new(new);
                        live.update(|current| Some(Arc::new(current.with_shared([(id.clone(), Some(new.clone()))]))));
                    }
                }
                Err(e) => {
                    if sync.connected(id) {
                        span.in_scope(
                            || tracing::warn!(error = %e, "LDAP directory unreachable; serving the last entries"),
                        );
                    }
                    sync.lost(id);
                }
            }
        }
        if sync.snapshot.is_some() && sync.unsaved.load(Ordering::Acquire) {
            let (sync, tenants) = (sync.clone(), tenants.clone());
            let _ = crate::spans::spawn_blocking(move || sync.save(&tenants)).await;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
}

/// `exum-router ldap-check`: binds, searches, and describes how each entry of
/// each LDAP tenant maps, with the problems validation would refuse it for.
pub async fn check(config: &std::path::Path) -> anyhow::Result<String> {
    let (_, tenants) = crate::control::Tenants::load(config)?;
    let mut out = String::new();
    let sync = LdapSync::default();
    let mut any = false;
    for t in tenants.iter() {
        let Some(s) = &t.config.ldap else { continue };
        any = true;
        let (entries, _) = read(s, None).await.map_err(|e| anyhow::anyhow!("tenant {}: {e}", t.config.id))?;
        out.push_str(&format!("tenant {} ({}, base {}): {} entries\n", t.config.id, s.uri, s.base_dn, entries.len()));
        let described: Vec<(String, String)> =
            entries.iter().map(|(dn, m)| (dn.clone(), mapping::describe(m))).collect();
        sync.apply(&t.config.id, entries, true, None);
        sync.rebuild(t.clone());
        for (dn, what) in described {
            let problem = sync.refused(&t.config.id, &dn).map(|r| format!("  PROBLEM: {r}")).unwrap_or_default();
            out.push_str(&format!("  {dn}\n    {what}{problem}\n"));
        }
    }
    if !any {
        return Err(anyhow::anyhow!("{}: no tenant has [tenant.ldap]", config.display()));
    }
    Ok(out)
}

//! Each tenant's policy versions: the last N loaded (number, hash, size,
//! source, load time, state), the component of each so any can be served
//! again, and the version an operator pinned (a rollback or a promotion
//! through the API). With a `policy_cache`, all of it is kept across restarts
//! in `<policy_cache>/history/` (an index per tenant, a component per hash).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Versions kept per tenant, unless configured.
pub const DEFAULT_KEEP: usize = crate::control::policy_settings::DEFAULT_HISTORY_KEEP;

/// What became of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Loaded, not serving (yet).
    Loaded,
    /// Serves the tenant's calls.
    Serving,
    /// A shadow or canary candidate.
    Candidate,
    /// Served before; replaced.
    Retired,
    /// A canary rolled back automatically, or a candidate abandoned.
    RolledBack,
    /// Refused when loaded (see `reason`).
    Refused,
}

/// One version of a tenant's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The tenant's number for it (1, 2, ...): the same bytes keep their number.
    pub number: u64,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// Size in bytes.
    pub size: usize,
    /// Where it came from (`contoso.wasm`, `admin API`, `database version 7`).
    pub source: String,
    /// When it was first loaded, seconds since the Unix epoch.
    pub loaded_at: u64,
    /// What became of it.
    pub state: State,
    /// Why it was refused or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The component's own name and version, from its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// A version an operator chose through the API, and the watched file it
/// overrides: a new file (another hash) ends the pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The pinned version's number.
    pub number: u64,
    /// The hash of the tenant's watched or configured file when it was pinned.
    pub over_file: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct TenantHistory {
    entries: Vec<Entry>,
    #[serde(default)]
    pin: Option<Pin>,
    /// Components by hash, when there is no disk to keep them on.
    #[serde(skip)]
    bytes: HashMap<String, Arc<[u8]>>,
}

/// Every tenant's history.
#[derive(Debug)]
pub struct History {
    dir: Option<PathBuf>,
    keep: usize,
    tenants: Mutex<HashMap<String, TenantHistory>>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl History {
    /// A history keeping `keep` versions per tenant, on disk under `dir`
    /// (`<policy_cache>/history`) when given (created if missing).
    pub fn new(dir: Option<PathBuf>, keep: usize) -> std::io::Result<History> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d.join("components"))?;
        }
        Ok(History { dir, keep: keep.max(2), tenants: Mutex::new(HashMap::new()) })
    }

    fn index_path(&self, tenant: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{tenant}.json")))
    }

    fn component_path(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("components").join(format!("{hash}.wasm")))
    }

    fn with<T>(&self, tenant: &str, f: impl FnOnce(&mut TenantHistory) -> T) -> T {
        let mut all = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let h = all.entry(tenant.to_owned()).or_insert_with(|| {
            self.index_path(tenant)
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|b| serde_json::from_slice::<TenantHistory>(&b).ok())
                .unwrap_or_default()
        });
        let before = (h.entries.clone(), h.pin.clone());
        let out = f(h);
        if (h.entries.clone(), h.pin.clone()) != before {
            self.save(tenant, h);
        }
        out
    }

    fn save(&self, tenant: &str, h: &TenantHistory) {
        let Some(path) = self.index_path(tenant) else { return };
        let tmp = path.with_extension("tmp");
        let written = serde_json::to_vec_pretty(h)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(tenant, path = %path.display(), error = %e, "could not keep the policy history");
        }
    }

    /// The number of the version with these bytes: its number if seen before,
    /// else a new entry (state `loaded`) with the next number. The component is
    /// kept so the version can be served again.
    pub fn number_for(&self, tenant: &str, hash: &str, bytes: &[u8], source: &str) -> u64 {
        if let Some(path) = self.component_path(hash)
            && !path.is_file()
        {
            let tmp = path.with_extension("tmp");
            if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
                tracing::warn!(path = %path.display(), error = %e, "could not keep a policy component");
            }
        }
        let on_disk = self.dir.is_some();
        self.with(tenant, |h| {
            if !on_disk {
                h.bytes.entry(hash.to_owned()).or_insert_with(|| bytes.into());
            }
            if let Some(e) = h.entries.iter_mut().find(|e| e.hash == hash) {
                if e.state == State::Refused {
                    e.state = State::Loaded;
                    e.reason = None;
                }
                return e.number;
            }
            let number = h.entries.iter().map(|e| e.number).max().unwrap_or(0) + 1;
            h.entries.push(Entry {
                number,
                hash: hash.to_owned(),
                size: bytes.len(),
                source: source.to_owned(),
                loaded_at: now(),
                state: State::Loaded,
                reason: None,
                manifest: None,
            });
            number
        })
    }

    /// Sets the state of version `number` (and its reason); a version made
    /// `serving` retires the one serving before. Old entries beyond the kept
    /// count are forgotten (never the serving one or a candidate).
    pub fn set_state(&self, tenant: &str, number: u64, state: State, reason: Option<String>) {
        let keep = self.keep;
        let removed = self.with(tenant, |h| {
            if state == State::Serving {
                for e in h.entries.iter_mut().filter(|e| e.state == State::Serving && e.number != number) {
                    e.state = State::Retired;
                }
            }
            if let Some(e) = h.entries.iter_mut().find(|e| e.number == number) {
                e.state = state;
                e.reason = reason;
            }
            let mut removed = Vec::new();
            while h.entries.len() > keep {
                let Some(i) = h.entries.iter().position(|e| !matches!(e.state, State::Serving | State::Candidate))
                else {
                    break;
                };
                let e = h.entries.remove(i);
                h.bytes.remove(&e.hash);
                removed.push(e.hash);
            }
            removed
        });
        // A component no tenant's history names any more leaves the disk. The
        // same component kept by another tenant stays.
        for hash in removed {
            if !self.named_anywhere(&hash)
                && let Some(p) = self.component_path(&hash)
            {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn named_anywhere(&self, hash: &str) -> bool {
        let Some(dir) = &self.dir else { return false };
        let all = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if all.values().any(|h| h.entries.iter().any(|e| e.hash == hash)) {
            return true;
        }
        // Tenants not loaded this run, from their index files.
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|f| {
            let name = f.file_name().to_string_lossy().into_owned();
            name.ends_with(".json")
                && !all.contains_key(name.trim_end_matches(".json"))
                && std::fs::read_to_string(f.path()).is_ok_and(|t| t.contains(hash))
        })
    }

    /// Sets the manifest summary of a version.
    pub fn set_manifest(&self, tenant: &str, number: u64, manifest: Option<String>) {
        self.with(tenant, |h| {
            if let Some(e) = h.entries.iter_mut().find(|e| e.number == number) {
                e.manifest = manifest;
            }
        });
    }

    /// Records a refused load: the version (with its number, if its bytes are
    /// known) and why.
    pub fn refused(&self, tenant: &str, hash: &str, size: usize, source: &str, reason: &str) {
        let number = self.with(tenant, |h| {
            if let Some(e) = h.entries.iter().find(|e| e.hash == hash) {
                return e.number;
            }
            let number = h.entries.iter().map(|e| e.number).max().unwrap_or(0) + 1;
            h.entries.push(Entry {
                number,
                hash: hash.to_owned(),
                size,
                source: source.to_owned(),
                loaded_at: now(),
                state: State::Refused,
                reason: None,
                manifest: None,
            });
            number
        });
        // Serving and candidate states are not overwritten by a later refusal
        // of the same bytes (say, under a tighter cap): they keep serving.
        let serving = self.entries(tenant).iter().any(|e| e.number == number && e.state == State::Serving);
        if !serving {
            self.set_state(tenant, number, State::Refused, Some(reason.to_owned()));
        }
    }

    /// A tenant's versions, newest first.
    pub fn entries(&self, tenant: &str) -> Vec<Entry> {
        let mut entries = self.with(tenant, |h| h.entries.clone());
        entries.sort_by_key(|e| std::cmp::Reverse(e.number));
        entries
    }

    /// Version `number` of a tenant, and its component.
    pub fn get(&self, tenant: &str, number: u64) -> Option<(Entry, Arc<[u8]>)> {
        let (entry, kept) = self.with(tenant, |h| {
            let e = h.entries.iter().find(|e| e.number == number)?.clone();
            let kept = h.bytes.get(&e.hash).cloned();
            Some((e, kept))
        })?;
        let bytes = match kept {
            Some(b) => b,
            None => std::fs::read(self.component_path(&entry.hash)?).ok()?.into(),
        };
        (super::engine::hex_sha256(&bytes) == entry.hash).then_some((entry, bytes))
    }

    /// The version serving before the current one (the newest retired).
    pub fn previous(&self, tenant: &str) -> Option<u64> {
        self.entries(tenant).iter().filter(|e| e.state == State::Retired).map(|e| e.number).max()
    }

    /// The tenant's pin.
    pub fn pin(&self, tenant: &str) -> Option<Pin> {
        self.with(tenant, |h| h.pin.clone())
    }

    /// Pins (or unpins) a version over the file with hash `over_file`.
    pub fn set_pin(&self, tenant: &str, pin: Option<Pin>) {
        self.with(tenant, |h| h.pin = pin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_states_and_the_kept_count_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = History::new(Some(dir.path().to_path_buf()), 3).expect("history");
        let mut numbers = Vec::new();
        for i in 0..5u8 {
            let bytes = vec![i; 10];
            let n = history.number_for("t", &super::super::engine::hex_sha256(&bytes), &bytes, "t.wasm");
            history.set_state("t", n, State::Serving, None);
            numbers.push(n);
        }
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        let again = vec![4u8; 10];
        assert_eq!(history.number_for("t", &super::super::engine::hex_sha256(&again), &again, "t.wasm"), 5);
        let entries = history.entries("t");
        assert_eq!(entries.iter().map(|e| e.number).collect::<Vec<_>>(), [5, 4, 3]);
        assert_eq!(entries[0].state, State::Serving);
        assert_eq!(history.previous("t"), Some(4));
        history.set_pin("t", Some(Pin { number: 4, over_file: Some("abc".into()) }));
        drop(history);
        let reopened = History::new(Some(dir.path().to_path_buf()), 3).expect("history");
        assert_eq!(reopened.entries("t"), entries);
        assert_eq!(reopened.pin("t").map(|p| p.number), Some(4));
        let (entry, bytes) = reopened.get("t", 3).expect("version 3 is kept");
        assert_eq!((entry.number, &*bytes), (3, &[2u8; 10][..]));
        assert!(reopened.get("t", 1).is_none(), "version 1 was forgotten");
        let components = std::fs::read_dir(dir.path().join("components")).expect("dir").count();
        assert_eq!(components, 3, "forgotten components left the disk");
    }
}

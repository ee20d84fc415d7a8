//! The watched policy directory: a tenant's policy is the file `<tenant-id>.wasm`
//! there. Creating, replacing (also by atomic rename) or removing such a file is
//! reported once the directory has been quiet for the debounce interval; editor
//! temp files (dot-files, `~`, `.tmp`, `.swp`, `.part`) and other names are
//! ignored. A partial write shows as a file that fails to compile, and is
//! followed by the event of the complete one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// What happened to a tenant's policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyFileChange {
    /// `<tenant>.wasm` was created or replaced.
    Updated {
        /// The tenant id (the file stem).
        tenant: String,
        /// The file.
        path: PathBuf,
    },
    /// `<tenant>.wasm` is gone.
    Removed {
        /// The tenant id.
        tenant: String,
    },
}

/// Keeps the OS watch alive; dropping it stops watching.
pub struct PolicyDirWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PolicyDirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyDirWatcher")
    }
}

/// The tenant a policy file name belongs to, or `None` for names to ignore.
pub fn tenant_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') || name.ends_with('~') {
        return None;
    }
    let stem = name.strip_suffix(".wasm")?;
    (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .then(|| stem.to_owned())
}

/// Watches `dir` and sends one change per tenant file after `debounce` of quiet.
pub fn watch(
    dir: &Path,
    debounce: Duration,
    changes: mpsc::UnboundedSender<PolicyFileChange>,
) -> notify::Result<PolicyDirWatcher> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = raw_tx.send(path);
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let mut pending: BTreeMap<PathBuf, ()> = BTreeMap::new();
        loop {
            let next = if pending.is_empty() {
                raw_rx.recv().await
            } else {
                match tokio::time::timeout(debounce, raw_rx.recv()).await {
                    Ok(p) => p,
                    Err(_) => {
                        for (path, ()) in std::mem::take(&mut pending) {
                            let Some(tenant) = tenant_of(&path) else { continue };
                            let change = if path.is_file() {
                                PolicyFileChange::Updated { tenant, path }
                            } else {
                                PolicyFileChange::Removed { tenant }
                            };
                            if changes.send(change).is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                }
            };
            let Some(path) = next else { return };
            if tenant_of(&path).is_some() {
                pending.insert(path, ());
            }
        }
    });
    Ok(PolicyDirWatcher { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_tenants_and_temp_files_are_ignored() {
        assert_eq!(tenant_of(Path::new("/p/contoso.wasm")).as_deref(), Some("contoso"));
        for ignored in [
            "/p/.contoso.wasm.swp",
            "/p/contoso.wasm~",
            "/p/contoso.wasm.tmp",
            "/p/contoso.txt",
            "/p/.wasm",
            "/p/a b.wasm",
        ] {
            assert_eq!(tenant_of(Path::new(ignored)), None, "{ignored}");
        }
    }
}

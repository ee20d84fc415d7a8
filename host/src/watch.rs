//! The one file watcher of the router: the policy directory (a tenant's policy
//! is the file `<tenant-id>.wasm` there) and the files a reload reads again (the
//! directory file, the TLS certificate and key).
//!
//! A file is reported only when its content changed: events of reads (the
//! router's own among them) are ignored, and a file whose size and content hash
//! are those last seen is not reported again (a touch, the same bytes written
//! again). Changes are reported once a file has been quiet for its settling
//! interval, in the order the files were first written. Editor temp files in the policy
//! directory (dot-files, `~`, `.tmp`, `.swp`, `.part`) and other names are
//! ignored; a partial write shows as a file that fails to compile and is
//! followed by the report of the complete one.

use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `<tenant>.wasm` was created or its content replaced.
    PolicyUpdated {
        /// The tenant id (the file stem).
        tenant: String,
        /// The file.
        path: PathBuf,
    },
    /// `<tenant>.wasm` is gone.
    PolicyRemoved {
        /// The tenant id.
        tenant: String,
    },
    /// One of the watched files changed (or appeared, or is gone).
    File {
        /// The file.
        path: PathBuf,
        /// What it is, for the log (`directory file`, `TLS certificate`, ...).
        what: &'static str,
    },
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    /// The policy directory.
    pub policy_dir: Option<PathBuf>,
    /// Single files, each with what it is.
    pub files: Vec<(PathBuf, &'static str)>,
    /// How long a single file must keep its size, modification time and
    /// content before it is reported (`directory_settle_ms`; at least
    /// [`FILE_SETTLE`]).
    pub settle: Duration,
}

/// Keeps the OS watch alive; dropping it stops watching.
pub struct FileWatch {
    _watcher: std::sync::Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
}

/// How long a watched single file (the directory file, a certificate) must
/// keep its size and modification time before it is reported, at least: a
/// file rewritten in place by a slow writer is read once it is whole, not
/// between its writes. The configuration's `directory_settle_ms` (1 s by
/// default) can make it longer.
pub const FILE_SETTLE: Duration = Duration::from_millis(250);

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatch")
    }
}

/// The tenant a policy file name belongs to, or `None` for names to ignore.
pub fn tenant_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') || name.ends_with('~') {
        return None;
    }
    let stem = name.strip_suffix(".wasm")?;
    crate::control::config::is_tenant_id(stem).then(|| stem.to_owned())
}

/// What a file looked like when last seen (`None` when it did not exist).
/// Always read: a modification time can be too coarse to see a quick edit of
/// the same length, and only writes reach here, not reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    hash: u64,
}

/// Files larger than this are not hashed (no file the router loads is this
/// large: whoever reloads it refuses it by its size); their size and
/// modification time stand for their content.
const MAX_HASHED_BYTES: u64 = 64 << 20;

/// Reads what a file looks like now, in chunks: memory stays constant.
fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::io::Read as _;
    let meta = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if meta.len() > MAX_HASHED_BYTES {
        meta.modified().ok().hash(&mut h);
    } else if let Ok(mut file) = std::fs::File::open(path) {
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => h.write(&chunk[..n]),
                // An unreadable file counts as changed: whoever reloads it says why.
                Err(_) => {
                    h.write_u64(u64::MAX);
                    break;
                }
            }
        }
    }
    Some(Fingerprint { len: meta.len(), hash: h.finish() })
}

/// One watched path: what it is and what it looked like when last reported.
struct Entry {
    what: Kind,
    seen: Option<Fingerprint>,
}

#[derive(Clone)]
enum Kind {
    Policy(String),
    File(&'static str),
}

/// The watcher's task state.
struct State {
    policy_dir: Option<PathBuf>,
    files: Vec<(PathBuf, &'static str)>,
    entries: HashMap<PathBuf, Entry>,
}

impl State {
    /// What `path` is, if it is watched (a named file first: it may lie in
    /// the policy directory).
    fn kind_of(&self, path: &Path) -> Option<Kind> {
        let (dir, name) = (path.parent()?, path.file_name()?);
        if let Some((_, what)) = self.files.iter().find(|(f, _)| f.file_name() == Some(name) && parent_of(f) == dir) {
            return Some(Kind::File(what));
        }
        (self.policy_dir.as_deref() == Some(dir)).then(|| tenant_of(path).map(Kind::Policy)).flatten()
    }

    /// The change at `path`, if its content differs from what was last seen.
    fn settle(&mut self, path: PathBuf) -> Option<Change> {
        let what = self.kind_of(&path)?;
        let entry = self.entries.entry(path.clone()).or_insert(Entry { what, seen: None });
        let now = fingerprint(&path);
        let changed = entry.seen != now;
        entry.seen = now;
        if !changed {
            return None;
        }
        Some(match (&entry.what, now) {
            (Kind::Policy(tenant), Some(_)) => Change::PolicyUpdated { tenant: tenant.clone(), path },
            (Kind::Policy(tenant), None) => Change::PolicyRemoved { tenant: tenant.clone() },
            (Kind::File(what), _) => Change::File { path, what },
        })
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether a notify event can mean new content (not a read, not an open).
fn may_change_content(kind: &EventKind) -> bool {
    !matches!(kind, EventKind::Access(_))
}

/// Whether `kind` is a rename whose destination (the event's last path) is
/// the file now: one atomic step, the file whole.
fn renamed_into_place(kind: &EventKind) -> bool {
    use notify::event::{ModifyKind, RenameMode};
    matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)))
}

/// The size and modification time of a file, to tell whether it is still
/// being written.
fn stat(path: &Path) -> Option<(u64, Option<std::time::SystemTime>)> {
    std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()))
}

/// Watches what `watched` names; sends each change once it has been quiet for
/// `debounce` (policy files) or its `settle` time (single files) and its size and
/// modification time stayed the same meanwhile, in the order the files were
/// first written (a file still settling holds back the changes of files written
/// after it). The files as they are now are
/// the baseline: only later changes are sent. The policy directory's parent is
/// watched too: a policy directory removed and created again is watched again
/// and its files read.
pub fn watch(
    watched: Watched,
    debounce: Duration,
    changes: mpsc::UnboundedSender<Change>,
) -> notify::Result<FileWatch> {
    // The OS reports absolute paths: compare them with absolute ones.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let watched = Watched {
        policy_dir: watched.policy_dir.as_deref().map(absolute),
        files: watched.files.iter().map(|(f, what)| (absolute(f), *what)).collect(),
        settle: watched.settle.max(FILE_SETTLE),
    };
    // Each path with whether it is the destination of a rename: a file renamed
    // into place is whole at once, and needs no quiet interval.
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<(PathBuf, bool)>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && may_change_content(&event.kind)
        {
            let renamed_to = renamed_into_place(&event.kind);
            let last = event.paths.len().saturating_sub(1);
            for (i, path) in event.paths.into_iter().enumerate() {
                let _ = raw_tx.send((path, renamed_to && i == last));
            }
        }
    })?;
    let mut dirs: Vec<PathBuf> = watched.policy_dir.iter().cloned().collect();
    for (file, _) in &watched.files {
        let dir = parent_of(file).to_path_buf();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    // The policy directory's parent, to see the directory itself come back.
    let policy_parent = watched.policy_dir.as_deref().map(|d| parent_of(d).to_path_buf());
    if let Some(parent) = &policy_parent
        && !dirs.contains(parent)
        && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
    {
        tracing::warn!(dir = %parent.display(), error = %e, "cannot watch the policy directory's parent; a recreated policy directory needs a restart");
    }
    let watcher = std::sync::Arc::new(std::sync::Mutex::new(watcher));
    let rewatch = watcher.clone();
    // Notify reports a file of a directory watched as `dir` as `dir/name`.
    let files = watched.files.iter().map(|(f, what)| (parent_of(f).join(f.file_name().unwrap_or_default()), *what));
    let mut state = State { policy_dir: watched.policy_dir.clone(), files: files.collect(), entries: HashMap::new() };
    let mut baseline: Vec<PathBuf> = state.files.iter().map(|(f, _)| f.clone()).collect();
    if let Some(dir) = &watched.policy_dir
        && let Ok(read) = std::fs::read_dir(dir)
    {
        baseline.extend(read.flatten().map(|e| dir.join(e.file_name())));
    }
    for path in baseline {
        let _ = state.settle(path);
    }
    let relay =
        Relay { raw: raw_rx, state, rewatch, policy_dir: watched.policy_dir.clone(), settle: watched.settle, debounce };
    tokio::spawn(relay.run(changes));
    Ok(FileWatch { _watcher: watcher })
}

/// What the watcher's task needs: notify's raw events, the files and their
/// state, the watcher (to watch a recreated policy directory again), and the
/// quiet intervals.
struct Relay {
    raw: mpsc::UnboundedReceiver<(PathBuf, bool)>,
    state: State,
    rewatch: std::sync::Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
    policy_dir: Option<PathBuf>,
    settle: Duration,
    debounce: Duration,
}

impl Relay {
    /// Turns raw events into settled changes, sent to `changes` in the order
    /// the files were first written, until either side closes.
    async fn run(self, changes: mpsc::UnboundedSender<Change>) {
        let Relay { raw: mut raw_rx, mut state, rewatch, policy_dir, settle, debounce } = self;
        // Paths waiting for quiet, with when they settle and their size and
        // modification time when queued, in order of arrival.
        type Stat = Option<(u64, Option<std::time::SystemTime>)>;
        let mut pending: Vec<(PathBuf, Instant, Stat)> = Vec::new();
        let quiet = |state: &State, path: &Path| match state.kind_of(path) {
            Some(Kind::File(_)) => settle.max(debounce),
            _ => debounce,
        };
        loop {
            // Changes go out in the order the files were first written: the
            // first waiting path holds back the ones after it.
            let due = pending.first().map(|(_, at, _)| *at);
            let next = match due {
                None => raw_rx.recv().await,
                Some(at) => match tokio::time::timeout_at(at, raw_rx.recv()).await {
                    Ok(p) => p,
                    Err(_) => {
                        let now = Instant::now();
                        while let Some((path, at, queued)) = pending.first().cloned() {
                            if at > now {
                                break;
                            }
                            // Still changing without an event seen: wait again.
                            let current = stat(&path);
                            if current != queued {
                                pending[0] = (path.clone(), now + quiet(&state, &path), current);
                                break;
                            }
                            pending.remove(0);
                            if let Some(change) = state.settle(path)
                                && changes.send(change).is_err()
                            {
                                return;
                            }
                        }
                        continue;
                    }
                },
            };
            let Some((path, renamed)) = next else { return };
            let mut paths = vec![path];
            // The policy directory itself (seen from its parent): created again,
            // it is watched again and its files are read.
            if policy_dir.as_deref() == Some(paths[0].as_path()) {
                let dir = paths.remove(0);
                if dir.is_dir() {
                    let added = rewatch.lock().map(|mut w| w.watch(&dir, RecursiveMode::NonRecursive));
                    match added {
                        Ok(Ok(())) => tracing::info!(dir = %dir.display(), "policy directory watched again"),
                        Ok(Err(e)) => {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policy directory")
                        }
                        Err(_) => {}
                    }
                    if let Ok(read) = std::fs::read_dir(&dir) {
                        paths.extend(read.flatten().map(|e| dir.join(e.file_name())));
                    }
                }
            }
            for path in paths {
                if state.kind_of(&path).is_none() {
                    continue;
                }
                // A policy file renamed into place is due at once (still in
                // the order of arrival); anything else waits for quiet.
                let atomic = renamed && matches!(state.kind_of(&path), Some(Kind::Policy(_)));
                let at = if atomic { Instant::now() } else { Instant::now() + quiet(&state, &path) };
                let current = stat(&path);
                match pending.iter_mut().find(|(p, _, _)| *p == path) {
                    Some(entry) => (entry.1, entry.2) = (at, current),
                    None => pending.push((path, at, current)),
                }
            }
        }
    }
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

    #[test]
    fn a_file_is_reported_when_its_content_changes_and_not_when_it_is_only_touched_or_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("directory.toml");
        std::fs::write(&file, "a = 1\n").expect("write");
        let mut state = State {
            policy_dir: Some(dir.path().join("policies")),
            files: vec![(file.clone(), "directory file")],
            entries: HashMap::new(),
        };
        assert!(state.settle(file.clone()).is_some(), "first sight of an unknown file");
        assert_eq!(state.settle(file.clone()), None, "read again, unchanged");
        // Same content written again (a touch that changes the modification time).
        std::fs::write(&file, "a = 1\n").expect("write");
        assert_eq!(state.settle(file.clone()), None, "same content");
        std::fs::write(&file, "a = 2\n").expect("write");
        assert_eq!(state.settle(file.clone()), Some(Change::File { path: file.clone(), what: "directory file" }));
        std::fs::remove_file(&file).expect("remove");
        assert!(state.settle(file.clone()).is_some(), "removal is a change");
        assert_eq!(state.settle(file), None, "still gone");
    }

    #[test]
    fn a_named_file_in_the_policy_directory_is_that_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("directory.toml");
        let mut state = State {
            policy_dir: Some(dir.path().to_path_buf()),
            files: vec![(file.clone(), "directory file")],
            entries: HashMap::new(),
        };
        std::fs::write(&file, "a = 1\n").expect("write");
        assert_eq!(state.settle(file.clone()), Some(Change::File { path: file, what: "directory file" }));
    }

    #[test]
    fn policy_files_map_to_updates_and_removals() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut state =
            State { policy_dir: Some(dir.path().to_path_buf()), files: Vec::new(), entries: HashMap::new() };
        let path = dir.path().join("contoso.wasm");
        assert_eq!(state.settle(path.clone()), None, "absent and never seen");
        std::fs::write(&path, b"\0asm").expect("write");
        assert_eq!(
            state.settle(path.clone()),
            Some(Change::PolicyUpdated { tenant: "contoso".into(), path: path.clone() })
        );
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(state.settle(path.clone()), Some(Change::PolicyRemoved { tenant: "contoso".into() }));
        assert_eq!(state.settle(dir.path().join("notes.txt")), None, "not a policy file");
    }
}

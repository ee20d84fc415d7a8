//! Compiled artifacts shared by a fleet (`[compile] shared_cache`): a folder
//! every router of the fleet reads and writes (a network file system, a
//! volume mounted by each), so that a policy compiled by one router is mapped
//! by the others instead of compiled again, and a new instance starts warm.
//!
//! An artifact is native code: a router maps it and runs it. One in the
//! shared folder is therefore used only when it carries the tag the fleet's
//! key gives it (HMAC-SHA256 of the artifact, under the key bound to the engine
//! fingerprint and the component's SHA-256), so whoever can write to the folder without the
//! key cannot put code into a router. Its name holds the engine fingerprint
//! (wasmtime's version, its settings, the CPU's features), and wasmtime checks
//! them again when it maps the artifact: a router of another version or on
//! another CPU compiles its own. An artifact is taken into the router's own
//! `policy_cache` before it is used.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use prometheus_client::metrics::counter::Counter;
use ring::hmac;

/// The fleet's key is at least this long.
pub const MIN_KEY_BYTES: usize = 32;

const TAG_BYTES: usize = 32;

/// The shared folder and the fleet's key.
pub struct SharedCache {
    dir: PathBuf,
    key: hmac::Key,
    /// Artifacts taken from the folder (`exum_policy_shared_cache_hits_total`).
    pub hits: Counter,
    /// Artifacts refused: a tag that does not match, a truncated file, one
    /// that is not a regular file or cannot be read
    /// (`exum_policy_shared_cache_refused_total`).
    pub refused: Counter,
    /// The files refused once: not read again by this router (it compiles
    /// them and writes them again with the fleet's tag).
    refused_files: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache").field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// Why the shared cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedCacheError {
    /// The key file cannot be read.
    #[error("compile.shared_cache_key_file {}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is too short.
    #[error(
        "compile.shared_cache_key_file {}: {len} bytes; the fleet's key needs at least {MIN_KEY_BYTES} (head -c 32 /dev/urandom > it)",
        path.display()
    )]
    ShortKey {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The shared folder and the router's own cache overlap.
    #[error(
        "compile.shared_cache {} and policy_cache {}: one is in the other; the router's own cache is trusted without a tag, so the shared folder must be elsewhere",
        shared.display(),
        own.display()
    )]
    Overlaps {
        /// The shared folder.
        shared: PathBuf,
        /// The router's own cache.
        own: PathBuf,
    },
    /// The folder cannot be created.
    #[error("compile.shared_cache {}: {source}", dir.display())]
    Dir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl SharedCache {
    /// The shared folder `dir` (created if missing) with the key read from
    /// `key_file`.
    pub fn open(dir: &Path, key_file: &Path) -> Result<SharedCache, SharedCacheError> {
        let key = std::fs::read(key_file).map_err(|source| SharedCacheError::Key { path: key_file.into(), source })?;
        // Every byte of the file is the key (a random one may end in a
        // newline byte): the same file on every router.
        let key = key.as_slice();
        if key.len() < MIN_KEY_BYTES {
            return Err(SharedCacheError::ShortKey { path: key_file.into(), len: key.len() });
        }
        std::fs::create_dir_all(dir).map_err(|source| SharedCacheError::Dir { dir: dir.into(), source })?;
        Ok(SharedCache {
            dir: dir.into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            hits: Counter::default(),
            refused: Counter::default(),
            refused_files: std::sync::Mutex::default(),
        })
    }

    fn path(&self, hash: &str, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{fingerprint}.cwasm"))
    }

    /// The key of one artifact: the fleet's key bound to the engine
    /// fingerprint and the component's hash (an artifact renamed to another
    /// component or engine does not verify).
    fn key_of(&self, hash: &str, fingerprint: &str) -> hmac::Key {
        let bound = hmac::sign(&self.key, format!("exum-router artifact\0{fingerprint}\0{hash}").as_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, bound.as_ref())
    }

    /// Copies the artifact of `hash` for `fingerprint` to `local` (replaced
    /// atomically) if the folder has one whose tag matches; whether it did.
    pub fn fetch(&self, hash: &str, fingerprint: &str, local: &Path) -> bool {
        let path = self.path(hash, fingerprint);
        if self.refused_files.lock().unwrap_or_else(|e| e.into_inner()).contains(&path) {
            return false;
        }
        let file = match read_regular(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(e) => {
                self.refuse(&path, &e.to_string());
                return false;
            }
        };
        let Some(split) = file.len().checked_sub(TAG_BYTES) else {
            self.refuse(&path, "shorter than its tag");
            return false;
        };
        let (artifact, tag) = file.split_at(split);
        if hmac::verify(&self.key_of(hash, fingerprint), artifact, tag).is_err() {
            self.refuse(&path, "its tag does not match the fleet's key");
            return false;
        }
        if write_atomically(local, artifact).is_err() {
            tracing::warn!(path = %local.display(), "could not copy a shared artifact into the policy cache");
            return false;
        }
        self.hits.inc();
        true
    }

    fn refuse(&self, path: &Path, why: &str) {
        self.refused_files.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_owned());
        self.refused.inc();
        tracing::warn!(path = %path.display(), why, "refused an artifact of the shared cache; compiling instead");
    }

    /// Puts `artifact` in the folder with its tag, for the other routers.
    pub fn publish(&self, hash: &str, fingerprint: &str, artifact: &[u8]) {
        let path = self.path(hash, fingerprint);
        let tag = hmac::sign(&self.key_of(hash, fingerprint), artifact);
        let written = unique_tmp(&path).and_then(|tmp| {
            let r = std::fs::File::create(&tmp)
                .and_then(|mut f| f.write_all(artifact).and_then(|()| f.write_all(tag.as_ref())))
                .and_then(|()| std::fs::rename(&tmp, &path));
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        });
        match written {
            Ok(()) => {
                self.refused_files.lock().unwrap_or_else(|e| e.into_inner()).remove(&path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not write an artifact to the shared cache")
            }
        }
    }
}

/// The largest artifact taken from the folder (a language runtime's is tens
/// of MiB).
const MAX_ARTIFACT_BYTES: u64 = 512 << 20;

/// The bytes of the regular file at `path`: not through a symbolic link, not
/// a pipe or a device (which could block a compile thread or never end), at
/// most [`MAX_ARTIFACT_BYTES`].
fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_ARTIFACT_BYTES {
        return Err(std::io::Error::other(format!("{} bytes, more than an artifact may be", meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
        return Err(std::io::Error::other("grew past the size an artifact may be"));
    }
    Ok(bytes)
}

/// A temporary name beside `path` no other writer uses (routers on other
/// machines write to the same folder).
fn unique_tmp(path: &Path) -> std::io::Result<PathBuf> {
    let mut nonce = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| std::io::Error::other("no random bytes"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("artifact");
    Ok(path.with_file_name(format!("{name}.{:016x}.tmp", u64::from_le_bytes(nonce))))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = unique_tmp(path)?;
    let r = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, key: &[u8]) -> SharedCache {
        let key_file = dir.join(format!("key-{}", key[0]));
        std::fs::write(&key_file, key).expect("key");
        SharedCache::open(&dir.join("shared"), &key_file).expect("opens")
    }

    #[test]
    fn an_artifact_is_taken_only_with_the_fleets_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = open(dir.path(), &[1; 32]);
        a.publish("abc", "fp", b"native code");
        let local = dir.path().join("local.cwasm");
        assert!(a.fetch("abc", "fp", &local), "the same key");
        assert_eq!(std::fs::read(&local).expect("copied"), b"native code");
        assert_eq!(a.hits.get(), 1);
        // Another fingerprint or hash: not there.
        assert!(!a.fetch("abc", "other", &local) && !a.fetch("abd", "fp", &local));
        // Another key: refused, counted.
        let b = open(dir.path(), &[2; 32]);
        let other = dir.path().join("other.cwasm");
        assert!(!b.fetch("abc", "fp", &other) && !other.exists());
        assert_eq!(b.refused.get(), 1);
        // Altered in the folder: refused; renamed to another hash: refused.
        let path = a.path("abc", "fp");
        let mut bytes = std::fs::read(&path).expect("published");
        std::fs::write(a.path("xyz", "fp"), &bytes).expect("copy");
        bytes[0] ^= 1;
        std::fs::write(&path, &bytes).expect("alter");
        assert!(!a.fetch("abc", "fp", &other) && !a.fetch("xyz", "fp", &other) && !other.exists());
        assert_eq!(a.refused.get(), 2);
        // A file refused once is not read again (nor counted).
        assert!(!a.fetch("abc", "fp", &other));
        assert_eq!(a.refused.get(), 2);
        let c = open(dir.path(), &[3; 32]);
        std::fs::write(c.path("short", "fp"), b"short").expect("truncate");
        assert!(!c.fetch("short", "fp", &other));
        assert_eq!(c.refused.get(), 1);
        // Written again, usable again; no temporary file left.
        a.publish("abc", "fp", b"native code");
        assert!(a.fetch("abc", "fp", &other));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("shared"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn links_pipes_and_other_files_in_the_folder_are_refused_without_reading_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = open(dir.path(), &[1; 32]);
        a.publish("good", "fp", b"native code");
        // A link to a good artifact, a pipe nobody writes to (reading it
        // would block), a folder: each refused, none read.
        std::os::unix::fs::symlink(a.path("good", "fp"), a.path("link", "fp")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            a.path("pipe", "fp"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("fifo");
        std::fs::create_dir(a.path("dir", "fp")).expect("dir");
        let local = dir.path().join("local.cwasm");
        for hash in ["link", "pipe", "dir"] {
            assert!(!a.fetch(hash, "fp", &local), "{hash}");
        }
        assert_eq!(a.refused.get(), 3);
        assert!(!local.exists());
        assert!(a.fetch("good", "fp", &local));
    }

    #[test]
    fn every_byte_of_the_key_file_is_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 32 random-looking bytes ending in a newline byte: a valid key.
        let mut key = [5u8; 32];
        key[31] = b'\n';
        let a = open(dir.path(), &key);
        a.publish("abc", "fp", b"code");
        let mut other = key;
        other[31] = b'x';
        let b = open(dir.path(), &other);
        assert!(!b.fetch("abc", "fp", &dir.path().join("x.cwasm")), "a key differing in its last byte");
        assert!(a.fetch("abc", "fp", &dir.path().join("y.cwasm")));
    }

    #[test]
    fn a_short_or_missing_key_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("fleet.key");
        let e = SharedCache::open(dir.path(), &key).expect_err("missing").to_string();
        assert!(e.contains("compile.shared_cache_key_file") && e.contains("fleet.key"), "{e}");
        std::fs::write(&key, "short\n").expect("key");
        let e = SharedCache::open(dir.path(), &key).expect_err("short").to_string();
        assert!(e.contains("6 bytes") && e.contains("at least 32"), "{e}");
    }
}

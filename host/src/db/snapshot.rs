//! The last directory a router applied from the database, on disk, so that it
//! can start when the database cannot be reached: every tenant's rows as last
//! applied (in the directory file's format) with their versions, and each
//! tenant's active policy version (its id and the SHA-256 of its component;
//! the components themselves beside the file, one per hash).
//!
//! The file is replaced atomically and checksummed
//! ([`crate::control::checked_file`]): its first line is `exum-router
//! directory snapshot 1 sha256=<hex>` over the rest, JSON. A file that does
//! not verify is refused whole, never half read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::control::checked_file;
use crate::control::directory::TenantData;
use crate::policy::{DatabaseVersion, hex_sha256};

const HEADER: &str = "exum-router directory snapshot 1 sha256=";

/// What a snapshot holds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// When it was taken, milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// Each tenant's rows as last applied, with their version.
    pub(crate) tenants: BTreeMap<String, Kept>,
    /// Each tenant's active policy version.
    pub policies: BTreeMap<String, PolicyRef>,
}

/// One tenant's rows and their version in `exum.tenant_changes`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Kept {
    pub version: i64,
    pub data: Arc<TenantData>,
}

/// A tenant's active policy version, by reference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyRef {
    /// Its id in `exum.policy_versions`.
    pub version_id: i64,
    /// SHA-256 of its component (hex).
    pub sha256: String,
}

/// Why a snapshot cannot be used.
pub use crate::control::checked_file::CheckedFileError as SnapshotError;

impl Snapshot {
    /// How old it is.
    pub fn age(&self) -> Duration {
        let taken = UNIX_EPOCH + Duration::from_millis(self.taken_at_ms);
        SystemTime::now().duration_since(taken).unwrap_or_default()
    }

    /// When it was taken.
    pub fn taken_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.taken_at_ms)
    }
}

/// The folder of the components of the snapshot at `path`.
fn components(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "snapshot".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!("{name}.components"))
}

/// Writes `snapshot` to `path`, with the components of `policies` (by hash,
/// each written once).
pub fn write(path: &Path, snapshot: &Snapshot, policies: &HashMap<String, DatabaseVersion>) -> std::io::Result<()> {
    let folder = components(path);
    for v in policies.values() {
        let file = folder.join(format!("{}.wasm", hex_sha256(&v.bytes)));
        if !file.exists() {
            checked_file::replace(&file, &v.bytes)?;
        }
    }
    let body = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    checked_file::write(path, HEADER, &body)?;
    // Components no version refers to any more go.
    let wanted: std::collections::HashSet<String> =
        snapshot.policies.values().map(|p| format!("{}.wasm", p.sha256)).collect();
    if let Ok(entries) = std::fs::read_dir(&folder) {
        for e in entries.flatten() {
            if !wanted.contains(&*e.file_name().to_string_lossy()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Reads and verifies the snapshot at `path`, and the components of its
/// policy versions.
pub fn read(path: &Path) -> Result<(Snapshot, HashMap<String, DatabaseVersion>), SnapshotError> {
    let body = checked_file::read(path, HEADER)?;
    let corrupt = |reason: String| SnapshotError::Corrupt { path: path.to_owned(), reason };
    let snapshot: Snapshot = serde_json::from_slice(&body).map_err(|e| corrupt(format!("unreadable: {e}")))?;
    let folder = components(path);
    let mut policies = HashMap::with_capacity(snapshot.policies.len());
    for (tenant, p) in &snapshot.policies {
        let file = folder.join(format!("{}.wasm", p.sha256));
        let component = std::fs::read(&file).map_err(|source| SnapshotError::Read { path: file.clone(), source })?;
        if hex_sha256(&component) != p.sha256 {
            return Err(corrupt(format!("{}: the component does not match its hash", file.display())));
        }
        policies.insert(tenant.clone(), DatabaseVersion { version_id: p.version_id, bytes: component.into() });
    }
    Ok((snapshot, policies))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Snapshot, HashMap<String, DatabaseVersion>) {
        let data: TenantData = toml::from_str(
            "[[users]]\nsip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n\
             [[dial_plans]]\nname = \"DP1\"\nphone_context = \"DP1\"\nservers = [{ uri = \"sip:um1.contoso.com\" }]\n",
        )
        .expect("rows");
        let component: Arc<[u8]> = Arc::from(&b"\0asm component bytes"[..]);
        let mut snapshot = Snapshot { taken_at_ms: 1_765_000_000_000, ..Snapshot::default() };
        snapshot.tenants.insert("contoso".into(), Kept { version: 7, data: Arc::new(data) });
        snapshot.policies.insert("contoso".into(), PolicyRef { version_id: 3, sha256: hex_sha256(&component) });
        let policies = HashMap::from([("contoso".to_owned(), DatabaseVersion { version_id: 3, bytes: component })]);
        (snapshot, policies)
    }

    #[test]
    fn a_snapshot_reads_back_with_its_components_and_a_torn_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/directory.snapshot");
        let (snapshot, policies) = sample();
        write(&path, &snapshot, &policies).expect("written");
        let (back, components) = read(&path).expect("reads");
        assert_eq!(back.taken_at_ms, snapshot.taken_at_ms);
        assert_eq!(back.tenants["contoso"].version, 7);
        assert_eq!(back.tenants["contoso"].data.users[0].sip, "sip:bob@contoso.com");
        assert_eq!(components["contoso"].version_id, 3);
        assert_eq!(&*components["contoso"].bytes, &*policies["contoso"].bytes);
        // Torn: the last bytes missing.
        let whole = std::fs::read(&path).expect("read");
        std::fs::write(&path, &whole[..whole.len() - 3]).expect("write");
        let e = read(&path).expect_err("torn");
        assert!(e.to_string().contains("checksum does not match"), "{e}");
        // Not a snapshot at all.
        std::fs::write(&path, "users = []\n").expect("write");
        assert!(read(&path).expect_err("foreign").to_string().contains("not a snapshot"));
        // A component altered.
        write(&path, &snapshot, &policies).expect("written");
        let component = components_of(&path).join(format!("{}.wasm", snapshot.policies["contoso"].sha256));
        std::fs::write(&component, b"other").expect("write");
        assert!(read(&path).expect_err("altered").to_string().contains("does not match its hash"));
        assert!(matches!(read(&dir.path().join("none")), Err(SnapshotError::Read { .. })));
    }

    fn components_of(path: &Path) -> PathBuf {
        components(path)
    }
}

//! Each LDAP tenant's last entries on disk (`ldap.snapshot` in
//! `policy_cache`): a tenant whose directory server cannot be reached when
//! the router starts serves the entries it last read, stale since then,
//! instead of none. Written when a tenant's entries change or its server
//! answers again; replaced atomically and checksummed
//! ([`crate::control::checked_file`]). A tenant opts out with
//! `[tenant.ldap] snapshot = false`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::mapping::Mapped;
use crate::control::checked_file::{self, CheckedFileError};

const HEADER: &str = "exum-router ldap snapshot 1 sha256=";

/// What the file holds.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LdapSnapshot {
    /// Each tenant's entries, by tenant id.
    pub tenants: BTreeMap<String, KeptEntries>,
}

/// One tenant's entries as last read.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeptEntries {
    /// When they were read, milliseconds since the Unix epoch.
    pub read_at_ms: u64,
    /// The latest value of the changed attribute seen.
    pub high_water: Option<String>,
    /// Each entry by DN: what it maps to, or why it does not.
    pub entries: Vec<(String, Result<Mapped, String>)>,
}

impl KeptEntries {
    /// When they were read.
    pub fn read_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.read_at_ms)
    }
}

/// Milliseconds since the Unix epoch of `t`.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Writes `snapshot` to `path`.
pub fn write(path: &Path, snapshot: &LdapSnapshot) -> std::io::Result<()> {
    let body = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    checked_file::write(path, HEADER, &body)
}

/// Reads and verifies the snapshot at `path`.
pub fn read(path: &Path) -> Result<LdapSnapshot, CheckedFileError> {
    let body = checked_file::read(path, HEADER)?;
    serde_json::from_slice(&body)
        .map_err(|e| CheckedFileError::Corrupt { path: path.to_owned(), reason: format!("unreadable: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_and_a_torn_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cache/ldap.snapshot");
        let user: crate::control::directory::UserFile =
            toml::from_str("sip = \"sip:bob@contoso.com\"\neum = \"eum:bob@contoso.com;phone-context=DP1\"\n")
                .expect("user");
        let kept = KeptEntries {
            read_at_ms: 1_765_000_000_000,
            high_water: Some("20261207120000Z".into()),
            entries: vec![
                ("CN=Bob,DC=contoso,DC=com".into(), Ok(Mapped::User(user))),
                ("CN=Nobody,DC=contoso,DC=com".into(), Err("no SIP address".into())),
                ("CN=Off,DC=contoso,DC=com".into(), Ok(Mapped::Disabled)),
            ],
        };
        let snapshot = LdapSnapshot { tenants: BTreeMap::from([("contoso".to_owned(), kept.clone())]) };
        write(&path, &snapshot).expect("written");
        let back = read(&path).expect("reads");
        assert_eq!(back.tenants["contoso"].entries, kept.entries);
        assert_eq!(back.tenants["contoso"].read_at(), kept.read_at());
        let whole = std::fs::read(&path).expect("read");
        std::fs::write(&path, &whole[..whole.len() - 1]).expect("tear");
        assert!(read(&path).expect_err("torn").to_string().contains("checksum does not match"));
        // The directory snapshot's format is not this one.
        std::fs::write(&path, "exum-router directory snapshot 1 sha256=00\n{}").expect("write");
        assert!(read(&path).expect_err("foreign").to_string().contains("not a snapshot of this format"));
    }
}

//! State files a router keeps to start from (the directory snapshot, the LDAP
//! tenants' last entries): replaced atomically (written aside, synced,
//! renamed, the folder synced) and checksummed, their first line
//! `<header><sha256 of the rest, hex>`. A file that does not verify is
//! refused whole, never half read.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckedFileError {
    /// It cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a file of this kind, or its checksum does not match (a torn
    /// or altered file).
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// SHA-256 of `bytes`, hex (the hash of components, artifacts and state files).
pub fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` atomically: aside, synced, renamed, the folder synced.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let aside = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&aside)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&aside, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `body` to `path` atomically under the line `header` + its checksum.
pub fn write(path: &Path, header: &str, body: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{header}{}\n", hex_sha256(body)).into_bytes();
    out.extend_from_slice(body);
    replace(path, &out)
}

/// Reads `path` and verifies it against its header line (`header` and the
/// checksum); returns the body.
pub fn read(path: &Path, header: &str) -> Result<Vec<u8>, CheckedFileError> {
    let mut bytes = std::fs::read(path).map_err(|source| CheckedFileError::Read { path: path.to_owned(), source })?;
    let corrupt = |reason: &str| CheckedFileError::Corrupt { path: path.to_owned(), reason: reason.to_owned() };
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or_else(|| corrupt("not a snapshot"))?;
    let first = std::str::from_utf8(&bytes[..newline]).map_err(|_| corrupt("not a snapshot"))?;
    let expected = first.strip_prefix(header).ok_or_else(|| corrupt("not a snapshot of this format"))?.to_owned();
    let body = bytes.split_off(newline + 1);
    if hex_sha256(&body) != expected {
        return Err(corrupt("its checksum does not match (a torn or altered file)"));
    }
    Ok(body)
}

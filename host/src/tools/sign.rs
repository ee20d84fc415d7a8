//! `sign` and `keygen`: Ed25519 signatures of components.

use std::path::Path;

use crate::policy::LoadError;

use super::ToolError;

/// `exum-router sign --key <key> <policy.wasm> [--output <signed.wasm>]`:
/// appends an Ed25519 signature section (replacing an older one).
pub fn sign(key: &Path, policy: &Path, output: Option<&Path>) -> Result<String, ToolError> {
    let read = |p: &Path| std::fs::read(p).map_err(|source| ToolError::Read { path: p.display().to_string(), source });
    let pair = crate::policy::manifest::read_key(&read(key)?)
        .map_err(|reason| ToolError::Key { path: key.display().to_string(), reason })?;
    let bytes = read(policy)?;
    let (signed, public) = crate::policy::manifest::sign(&bytes, &pair)
        .map_err(|e| ToolError::Policy { path: policy.display().to_string(), source: LoadError::NotAComponent(e) })?;
    let out = output.unwrap_or(policy);
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &signed)
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|source| ToolError::Read { path: out.display().to_string(), source })?;
    Ok(format!("signed {} with key {public}\n", out.display()))
}

/// `exum-router keygen --out <key.pem>`: a new Ed25519 signing key (PKCS#8
/// PEM, readable by its owner only); prints the public key for a tenant's
/// `trusted_keys`.
pub fn keygen(out: &Path) -> Result<String, ToolError> {
    let (pem, public) = crate::policy::manifest::generate_key()
        .map_err(|reason| ToolError::Key { path: out.display().to_string(), reason })?;
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(out)?;
        f.write_all(pem.as_bytes())
    };
    write().map_err(|source| ToolError::Read { path: out.display().to_string(), source })?;
    Ok(format!("wrote {}\npublic key (for [tenant.signing] trusted_keys): {public}\n", out.display()))
}

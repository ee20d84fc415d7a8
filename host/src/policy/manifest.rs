//! What a policy component says of itself, and who vouches for it.
//!
//! - **Manifest**: a custom section `exum-policy-manifest` (in the component,
//!   or in its core module, where the SDK's `export_policy!` puts it) holding
//!   JSON: `{"name", "version", "author", "deadline_ms", "memory_mib"}`. The
//!   limits it asks for (0: none) are checked against the operator's caps for
//!   the tenant (its `limits`): more is refused, less is granted.
//! - **Signature**: a custom section `exum-policy-signature`, the component's
//!   last top-level section, holding JSON `{"key", "signature"}`: an Ed25519
//!   public key and its signature (both base64) of every byte before the
//!   section. `exum-router sign` appends it (replacing an older one).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// The manifest section's name.
pub const MANIFEST_SECTION: &str = "exum-policy-manifest";
/// The signature section's name.
pub const SIGNATURE_SECTION: &str = "exum-policy-signature";

/// A policy's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Its name (the SDK: the crate's name).
    #[serde(default)]
    pub name: String,
    /// Its version (the SDK: the crate's version).
    #[serde(default)]
    pub version: String,
    /// Who wrote it.
    #[serde(default)]
    pub author: String,
    /// The CPU-time deadline per call it asks for, in milliseconds (0: the tenant's).
    #[serde(default)]
    pub deadline_ms: u64,
    /// The linear memory it asks for, in MiB (0: the tenant's).
    #[serde(default)]
    pub memory_mib: u64,
}

impl Manifest {
    /// `name version`, as shown in the API and the metrics.
    pub fn label(&self) -> String {
        if self.version.is_empty() { self.name.clone() } else { format!("{} {}", self.name, self.version) }
    }
}

/// A section of a Wasm binary: its id, where it starts (its id byte), and its payload.
struct Section<'a> {
    id: u8,
    start: usize,
    payload: &'a [u8],
}

fn leb_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The top-level sections of a module or component binary (after its 8-byte
/// preamble); `None` if they do not parse.
fn sections(binary: &[u8]) -> Option<Vec<Section<'_>>> {
    let mut out = Vec::new();
    let mut at = 8;
    while at < binary.len() {
        let id = binary[at];
        let (size, n) = leb_u32(binary.get(at + 1..)?)?;
        let begin = at + 1 + n;
        let end = begin.checked_add(size as usize)?;
        out.push(Section { id, start: at, payload: binary.get(begin..end)? });
        at = end;
    }
    Some(out)
}

/// A custom section's name and data.
fn custom(payload: &[u8]) -> Option<(&str, &[u8])> {
    let (len, n) = leb_u32(payload)?;
    let name = payload.get(n..n + len as usize)?;
    Some((std::str::from_utf8(name).ok()?, &payload[n + len as usize..]))
}

/// Why a core module cannot become a policy component, when its sections
/// tell: it imports WASI, or it holds no `exum:policy` world (the crate does
/// not call `export_policy!`, or is not a `cdylib`).
pub fn module_problem(module: &[u8]) -> Option<String> {
    let sections = sections(module)?;
    let wasi = sections.iter().filter(|s| s.id == 2).any(|s| {
        s.payload.windows(22).any(|w| w == b"wasi_snapshot_preview1") || s.payload.windows(5).any(|w| w == b"wasi:")
    });
    if wasi {
        return Some(
            "the module imports WASI functions, which `componentize` does not adapt: build a Rust policy for \
             wasm32-unknown-unknown and keep std::fs, std::net, std::env, std::time::SystemTime and println! out of it \
             (the router's imports, exum_policy_sdk::host, give the time and the log)"
                .into(),
        );
    }
    let world =
        sections.iter().any(|s| s.id == 0 && custom(s.payload).is_some_and(|(n, _)| n.starts_with("component-type")));
    if !world {
        return Some(
            "the module holds no exum:policy world: does the crate call `exum_policy_sdk::export_policy!(YourPolicy);`, \
             and is its crate-type `cdylib`?"
                .into(),
        );
    }
    None
}

/// The manifest of `component`: a top-level custom section, else one in a
/// core module of it. `Ok(None)` when it has none.
pub fn manifest(component: &[u8]) -> Result<Option<Manifest>, String> {
    let Some(top) = sections(component) else { return Ok(None) };
    let mut found: Option<&[u8]> = None;
    for s in &top {
        match s.id {
            0 => {
                if let Some((MANIFEST_SECTION, data)) = custom(s.payload) {
                    found = Some(data);
                }
            }
            // A component's core module section holds a whole module.
            1 if found.is_none() && s.payload.starts_with(b"\0asm") => {
                for inner in sections(s.payload).unwrap_or_default() {
                    if inner.id == 0
                        && let Some((MANIFEST_SECTION, data)) = custom(inner.payload)
                    {
                        found = Some(data);
                    }
                }
            }
            _ => {}
        }
    }
    let Some(data) = found else { return Ok(None) };
    serde_json::from_slice(data)
        .map(Some)
        .map_err(|e| format!("its manifest ({MANIFEST_SECTION}) is not valid JSON: {e}"))
}

/// The signature section's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The Ed25519 public key, base64.
    pub key: String,
    /// The signature of every byte before the section, base64.
    pub signature: String,
}

/// The signature of `component`, and the bytes it covers; `None` if unsigned.
pub fn signature(component: &[u8]) -> Result<Option<(Signature, &[u8])>, String> {
    let Some(top) = sections(component) else { return Ok(None) };
    let signed = top.iter().position(|s| s.id == 0 && custom(s.payload).is_some_and(|(n, _)| n == SIGNATURE_SECTION));
    let Some(i) = signed else { return Ok(None) };
    if i + 1 != top.len() {
        return Err(format!("its {SIGNATURE_SECTION} section is not the last: bytes after it are not signed"));
    }
    let (_, data) = custom(top[i].payload).ok_or("an unreadable signature section")?;
    let sig: Signature =
        serde_json::from_slice(data).map_err(|e| format!("its {SIGNATURE_SECTION} section is not valid JSON: {e}"))?;
    Ok(Some((sig, &component[..top[i].start])))
}

pub use crate::control::policy_settings::Trust;

impl Trust {
    /// Checks `component`'s signature: a signature must verify with a trusted
    /// key; none is refused when signatures are required. The key that signed it.
    pub fn check(&self, component: &[u8]) -> Result<Option<String>, String> {
        match signature(component)? {
            None if self.required => Err("unsigned, and the tenant requires signed policies".into()),
            None => Ok(None),
            Some((sig, signed)) => {
                let key = BASE64.decode(&sig.key).map_err(|_| "its signature names a key that is not base64")?;
                let bytes = BASE64.decode(&sig.signature).map_err(|_| "its signature is not base64")?;
                if !self.keys.iter().any(|k| k.as_slice() == key.as_slice()) {
                    return Err(format!("signed by key {}, which the tenant does not trust", sig.key));
                }
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key)
                    .verify(signed, &bytes)
                    .map_err(|_| {
                        format!("its signature by key {} does not verify: the component was altered", sig.key)
                    })?;
                Ok(Some(sig.key))
            }
        }
    }
}

/// Reads an Ed25519 private key: PKCS#8, PEM (`-----BEGIN PRIVATE KEY-----`,
/// as `openssl genpkey -algorithm ed25519` writes) or DER.
pub fn read_key(bytes: &[u8]) -> Result<ring::signature::Ed25519KeyPair, String> {
    let der = match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => {
            let body: String =
                text.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect::<Vec<_>>().concat();
            BASE64.decode(body).map_err(|e| format!("not a PEM key: {e}"))?
        }
        _ => bytes.to_vec(),
    };
    ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
        .map_err(|e| format!("not an Ed25519 private key in PKCS#8: {e}"))
}

/// A new Ed25519 key: its PKCS#8 PEM and its public key (base64).
pub fn generate_key() -> Result<(String, String), String> {
    use ring::signature::KeyPair as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
    let pair = read_key(pkcs8.as_ref())?;
    let b64 = BASE64.encode(pkcs8.as_ref());
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect::<Vec<_>>();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    Ok((pem, BASE64.encode(pair.public_key().as_ref())))
}

/// `component` signed with `key`: any older signature removed, a new
/// signature section appended. Also the public key, base64.
pub fn sign(component: &[u8], key: &ring::signature::Ed25519KeyPair) -> Result<(Vec<u8>, String), String> {
    use ring::signature::KeyPair as _;
    if !super::engine::is_component(component) {
        return Err("not a WebAssembly component".into());
    }
    let unsigned = match signature(component)? {
        Some((_, before)) => before,
        None => component,
    };
    let public = BASE64.encode(key.public_key().as_ref());
    let sig = Signature { key: public.clone(), signature: BASE64.encode(key.sign(unsigned).as_ref()) };
    let data = serde_json::to_vec(&sig).map_err(|e| e.to_string())?;
    let mut payload = Vec::new();
    leb_write(&mut payload, SIGNATURE_SECTION.len() as u32);
    payload.extend_from_slice(SIGNATURE_SECTION.as_bytes());
    payload.extend_from_slice(&data);
    let mut out = unsigned.to_vec();
    out.push(0);
    leb_write(&mut out, payload.len() as u32);
    out.extend_from_slice(&payload);
    Ok((out, public))
}

/// `component` with `manifest` added as its top-level manifest section, for
/// toolchains that cannot write custom sections themselves (JavaScript,
/// Python). Refused when the component has a manifest or a signature already.
pub fn with_manifest(component: &[u8], manifest: &Manifest) -> Result<Vec<u8>, String> {
    if !super::engine::is_component(component) {
        return Err("not a WebAssembly component".into());
    }
    if self::manifest(component)?.is_some() {
        return Err("the component has a manifest already".into());
    }
    if signature(component)?.is_some() {
        return Err("the component is signed: add the manifest before signing".into());
    }
    let data = serde_json::to_vec(manifest).map_err(|e| e.to_string())?;
    let mut payload = Vec::new();
    leb_write(&mut payload, MANIFEST_SECTION.len() as u32);
    payload.extend_from_slice(MANIFEST_SECTION.as_bytes());
    payload.extend_from_slice(&data);
    let mut out = component.to_vec();
    out.push(0);
    leb_write(&mut out, payload.len() as u32);
    out.extend_from_slice(&payload);
    Ok(out)
}

fn leb_write(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble alone, and one with a custom section.
    fn component_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        let mut payload = Vec::new();
        leb_write(&mut payload, name.len() as u32);
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(data);
        c.push(0);
        leb_write(&mut c, payload.len() as u32);
        c.extend_from_slice(&payload);
        c
    }

    #[test]
    fn a_manifest_is_added_once_and_read_back_before_any_signature() {
        let bare = component_with("other", b"x");
        let m = Manifest { name: "p".into(), version: "1.0.0".into(), deadline_ms: 2, ..Manifest::default() };
        let with = with_manifest(&bare, &m).expect("added");
        assert_eq!(manifest(&with).expect("readable"), Some(m.clone()));
        assert!(with_manifest(&with, &m).expect_err("twice").contains("already"));
        assert!(with_manifest(b"\0asm\x01\0\0\0", &m).expect_err("a module").contains("not a WebAssembly component"));
        let key = read_key(generate_key().expect("key").0.as_bytes()).expect("read");
        let (signed, _) = sign(&bare, &key).expect("signed");
        assert!(with_manifest(&signed, &m).expect_err("signed").contains("before signing"));
    }

    #[test]
    fn signatures_verify_only_unaltered_components_by_trusted_keys() {
        let (pem, public) = generate_key().expect("key");
        let key = read_key(pem.as_bytes()).expect("reads its own PEM");
        let component = component_with(MANIFEST_SECTION, br#"{"name":"p","version":"1.0.0"}"#);
        let (signed, signer) = sign(&component, &key).expect("signs");
        assert_eq!(signer, public);
        let trust = Trust::new(std::slice::from_ref(&public), true).expect("trust");
        assert_eq!(trust.check(&signed), Ok(Some(public.clone())));
        // Signed again: one signature, still valid.
        let (again, _) = sign(&signed, &key).expect("signs");
        assert_eq!(again.len(), signed.len());
        assert!(trust.check(&again).is_ok());
        // Unsigned, altered, or by another key: refused.
        assert!(trust.check(&component).expect_err("unsigned").contains("unsigned"));
        let mut altered = signed.clone();
        altered[12] ^= 1;
        assert!(trust.check(&altered).is_err());
        let (other_pem, _) = generate_key().expect("key");
        let (by_other, _) = sign(&component, &read_key(other_pem.as_bytes()).expect("key")).expect("signs");
        assert!(trust.check(&by_other).expect_err("untrusted").contains("does not trust"));
        // Not required: unsigned passes, a bad signature still does not.
        let lenient = Trust::new(&[public], false).expect("trust");
        assert_eq!(lenient.check(&component), Ok(None));
        assert!(lenient.check(&by_other).is_err());
        assert_eq!(manifest(&signed).expect("manifest").map(|m| m.label()), Some("p 1.0.0".into()));
        assert!(Trust::new(&["nope".into()], false).is_err());
        assert!(Trust::new(&[], true).is_err());
    }
}

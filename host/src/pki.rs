//! Certificates, keys and CA roots read from PEM files, and the TLS client
//! set-up built from them: shared by the SIP plane's TLS (`sip::tls`) and the
//! directory's clients (PostgreSQL, LDAP), so that neither reaches into the
//! other. Every error names the file it is about.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};

/// Why a certificate, key or CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The file cannot be read as PEM.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate file with no certificate in it.
    #[error("{}: no certificate", .0.display())]
    NoCertificate(PathBuf),
    /// A CA file with no CA certificate in it.
    #[error("{}: no CA certificate", .0.display())]
    NoCa(PathBuf),
    /// The key or a CA certificate is refused by the TLS library.
    #[error("{}: {source}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The key is not the certificate's.
    #[error("{} and {}: {source}", certificate.display(), key.display())]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// A TLS configuration the library refuses to build.
    #[error("{0}")]
    Config(#[from] rustls::Error),
    /// The verifier of client certificates cannot be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The one cryptography provider (ring) of every TLS configuration.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain of `certificate` with the private key of `key`,
/// checked to belong together.
pub fn read_certified_key(certificate: &Path, key: &Path) -> Result<CertifiedKey, PkiError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| PkiError::Pem { path: certificate.to_path_buf(), source })?;
    if chain.is_empty() {
        return Err(PkiError::NoCertificate(certificate.to_path_buf()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|source| PkiError::Pem { path: key.to_path_buf(), source })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|source| PkiError::Refused { path: key.to_path_buf(), source })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|source| PkiError::Mismatch {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        source,
    })?;
    Ok(certified)
}

/// The CA certificates of the PEM file `path` (at least one).
pub fn read_roots(path: &Path) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| PkiError::Pem { path: path.to_path_buf(), source })?;
    for c in certs {
        roots.add(c).map_err(|source| PkiError::Refused { path: path.to_path_buf(), source })?;
    }
    if roots.is_empty() {
        return Err(PkiError::NoCa(path.to_path_buf()));
    }
    Ok(roots)
}

/// A TLS client configuration (no client certificate) that trusts the CAs of
/// the PEM file `ca` alone: for the directory's database and LDAP servers.
pub fn client_trusting(ca: &Path) -> Result<ClientConfig, PkiError> {
    let roots = read_roots(ca)?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_names_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let e = read_roots(&empty).expect_err("no CA").to_string();
        assert_eq!(e, format!("{}: no CA certificate", empty.display()));
        let missing = dir.path().join("missing.pem");
        let e = client_trusting(&missing).expect_err("missing").to_string();
        assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
        let e = read_certified_key(&empty, &missing).expect_err("no certificate").to_string();
        assert_eq!(e, format!("{}: no certificate", empty.display()));
    }
}

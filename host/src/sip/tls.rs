//! TLS for SIP (rustls): the router's certificate for its TLS listeners and as
//! the client certificate it presents to peers (mutual TLS), the CA roots that
//! verify servers it connects to and, when required, clients that connect to it.
//! The certificate and key are re-read on reload, without dropping connections.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::control::config::TlsSettings;

/// The router's certificate, swapped on reload.
#[derive(Debug, Default)]
struct Certificate(ArcSwapOption<CertifiedKey>);

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}

impl ResolvesClientCert for Certificate {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }

    fn has_certs(&self) -> bool {
        self.0.load().is_some()
    }
}

/// TLS configuration of the transports.
pub struct Tls {
    certificate: Arc<Certificate>,
    settings: TlsSettings,
    acceptor: Option<TlsAcceptor>,
    connector: Option<TlsConnector>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("settings", &self.settings).finish_non_exhaustive()
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_key(settings: &TlsSettings) -> Result<Option<CertifiedKey>, String> {
    let (Some(cert), Some(key)) = (&settings.certificate, &settings.key) else { return Ok(None) };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signing = provider().key_provider.load_private_key(der).map_err(|e| format!("{}: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
    Ok(Some(certified))
}

/// A TLS client configuration (no client certificate) that trusts the CAs of
/// the PEM file `ca` alone: for the directory's database and LDAP servers.
pub(crate) fn client_trusting(ca: &Path) -> Result<ClientConfig, String> {
    let roots = read_roots(ca)?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

pub(crate) fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for c in certs {
        roots.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate", path.display()));
    }
    Ok(roots)
}

impl Tls {
    /// Reads the certificate, key and CA roots named by `settings`.
    pub fn load(settings: &TlsSettings) -> Result<Tls, String> {
        let certificate = Arc::new(Certificate::default());
        certificate.0.store(read_key(settings)?.map(Arc::new));
        let roots = settings.ca.as_deref().map(read_roots).transpose()?.map(Arc::new);
        let versions = rustls::DEFAULT_VERSIONS;
        let acceptor = if certificate.0.load().is_some() {
            let verifier = match &roots {
                Some(r) => {
                    let b = WebPkiClientVerifier::builder_with_provider(r.clone(), provider());
                    let b = if settings.require_client_certificate { b } else { b.allow_unauthenticated() };
                    b.build().map_err(|e| format!("client certificate verifier: {e}"))?
                }
                None => WebPkiClientVerifier::no_client_auth(),
            };
            let config = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(certificate.clone());
            Some(TlsAcceptor::from(Arc::new(config)))
        } else {
            None
        };
        let connector = match roots {
            Some(r) => {
                let config = ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(versions)
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(r)
                    .with_client_cert_resolver(certificate.clone());
                Some(TlsConnector::from(Arc::new(config)))
            }
            None => None,
        };
        Ok(Tls { certificate, settings: settings.clone(), acceptor, connector })
    }

    /// Reads the certificate and key again (a renewed certificate); connections
    /// in progress keep theirs, new handshakes use the new one.
    pub fn reload(&self) -> Result<(), String> {
        let key = read_key(&self.settings)?;
        if key.is_some() {
            self.certificate.0.store(key.map(Arc::new));
        }
        Ok(())
    }

    /// The acceptor of TLS listeners (when a certificate is configured).
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }

    /// Connects to `name` (checked against the server's certificate) at the
    /// other end of `stream`.
    pub async fn connect(
        &self,
        name: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let connector =
            self.connector.as_ref().ok_or_else(|| std::io::Error::other("no [tls] ca to verify servers against"))?;
        let name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|e| std::io::Error::other(format!("{name}: {e}")))?;
        connector.connect(name, stream).await
    }
}

/// The first DNS name of the end-entity certificate a peer presented.
pub fn peer_name(certificates: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let first = certificates?.first()?;
    let cert = webpki::EndEntityCert::try_from(first).ok()?;
    cert.valid_dns_names().next().map(|n| n.to_ascii_lowercase())
}

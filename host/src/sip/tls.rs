//! TLS for SIP (rustls): the router's certificate for its TLS listeners and as
//! the client certificate it presents to peers (mutual TLS), the CA roots that
//! verify servers it connects to and, when required, clients that connect to it.
//! The certificate and key are re-read on reload, without dropping connections.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::control::config::TlsSettings;
use crate::pki::{PkiError, provider, read_certified_key, read_roots};

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

/// The router's certificate and key, when `settings` name both.
fn read_key(settings: &TlsSettings) -> Result<Option<CertifiedKey>, PkiError> {
    match (&settings.certificate, &settings.key) {
        (Some(certificate), Some(key)) => read_certified_key(certificate, key).map(Some),
        _ => Ok(None),
    }
}

impl Tls {
    /// Reads the certificate, key and CA roots named by `settings`.
    pub fn load(settings: &TlsSettings) -> Result<Tls, PkiError> {
        let certificate = Arc::new(Certificate::default());
        certificate.0.store(read_key(settings)?.map(Arc::new));
        let roots = settings.ca.as_deref().map(read_roots).transpose()?.map(Arc::new);
        let versions = rustls::DEFAULT_VERSIONS;
        let acceptor = if certificate.0.load().is_some() {
            let verifier = match &roots {
                Some(r) => {
                    let b = WebPkiClientVerifier::builder_with_provider(r.clone(), provider());
                    let b = if settings.require_client_certificate { b } else { b.allow_unauthenticated() };
                    b.build()?
                }
                None => WebPkiClientVerifier::no_client_auth(),
            };
            let config = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)?
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(certificate.clone());
            Some(TlsAcceptor::from(Arc::new(config)))
        } else {
            None
        };
        let connector = match roots {
            Some(r) => {
                let config = ClientConfig::builder_with_provider(provider())
                    .with_protocol_versions(versions)?
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
    pub fn reload(&self) -> Result<(), PkiError> {
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

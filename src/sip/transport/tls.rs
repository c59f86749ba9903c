//! TLS (RFC 3261 §26.2.1, RFC 5630) with rustls: TLS 1.2 and 1.3 only, the
//! ring provider. The core's certificate is verified against the configured
//! CA (webpki: chain, validity, name); the name is the peer's `tls_name`, or
//! its IP address when none is configured. Our certificate, when given, is
//! the server certificate of a TLS listener and the client certificate of
//! mutual TLS; a TLS listener can demand the core's client certificate.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// PEM material: the CA that signs the core's certificates, and optionally
/// our certificate chain and private key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsMaterial {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem_len", &self.ca_pem.len())
            .field("has_cert", &self.cert_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Read the files of `sip.tls_ca`, `sip.tls_cert`, `sip.tls_key`.
    pub fn load(
        ca: &std::path::Path,
        cert: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
    ) -> Result<TlsMaterial, TlsError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| TlsError::File(p.display().to_string(), e.to_string()))
        };
        Ok(TlsMaterial {
            ca_pem: read(ca)?,
            cert_pem: cert.map(read).transpose()?,
            key_pem: key.map(read).transpose()?,
        })
    }
}

/// Bad TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    File(String, String),
    /// No certificate in the CA file, or one that cannot be a trust anchor.
    Ca(String),
    Certificate(String),
    Key(String),
    /// rustls refused the configuration (key does not match the certificate ...).
    Config(String),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::File(p, e) => write!(f, "{p}: {e}"),
            TlsError::Ca(e) => write!(f, "CA: {e}"),
            TlsError::Certificate(e) => write!(f, "certificate: {e}"),
            TlsError::Key(e) => write!(f, "key: {e}"),
            TlsError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The rustls configurations built once at bind time.
pub(crate) struct TlsContext {
    connector: TlsConnector,
    pub(crate) server: Option<TlsAcceptor>,
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

impl TlsContext {
    pub(crate) fn new(m: &TlsMaterial, require_client_cert: bool) -> Result<TlsContext, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&m.ca_pem) {
            let c = c.map_err(|e| TlsError::Ca(e.to_string()))?;
            roots.add(c).map_err(|e| TlsError::Ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(TlsError::Ca("no certificate in the CA file".into()));
        }
        let roots = Arc::new(roots);
        let identity = match (&m.cert_pem, &m.key_pem) {
            (Some(c), Some(k)) => Some(identity(c, k)?),
            (None, None) => None,
            _ => return Err(TlsError::Config("certificate and key go together".into())),
        };
        let cfg = |e: rustls::Error| TlsError::Config(e.to_string());
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(VERSIONS)
            .map_err(cfg)?
            .with_root_certificates(roots.clone());
        let client = match &identity {
            Some((chain, key)) => client
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(cfg)?,
            None => client.with_no_client_auth(),
        };
        let server = match identity {
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(VERSIONS)
                    .map_err(cfg)?;
                let builder = if require_client_cert {
                    let v = WebPkiClientVerifier::builder_with_provider(roots, provider)
                        .build()
                        .map_err(|e| TlsError::Config(e.to_string()))?;
                    builder.with_client_cert_verifier(v)
                } else {
                    builder.with_no_client_auth()
                };
                Some(TlsAcceptor::from(Arc::new(
                    builder.with_single_cert(chain, key).map_err(cfg)?,
                )))
            }
            None => None,
        };
        Ok(TlsContext {
            connector: TlsConnector::from(Arc::new(client)),
            server,
        })
    }

    pub(crate) async fn connect(
        &self,
        stream: TcpStream,
        name: ServerName<'static>,
    ) -> std::io::Result<client::TlsStream<TcpStream>> {
        self.connector.connect(name, stream).await
    }

    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<server::TlsStream<TcpStream>> {
        match &self.server {
            Some(a) => a.accept(stream).await,
            None => Err(std::io::Error::other("no server certificate")),
        }
    }
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn identity(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    Ok((chain, key))
}

/// The name the peer's certificate must carry: `tls_name`, else its IP.
pub(crate) fn server_name(
    tls_name: Option<&str>,
    destination: std::net::SocketAddr,
) -> Option<ServerName<'static>> {
    match tls_name {
        Some(n) => ServerName::try_from(n.to_owned()).ok(),
        None => Some(ServerName::IpAddress(destination.ip().into())),
    }
}

//! HTTPS served by the daemon itself (`[http] tls_cert`, `tls_key`): rustls with the ring
//! provider the client already uses (no OpenSSL), TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`. The files are read once, at start; after renewing the certificate, restart
//! the daemon.

use crate::config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// Why HTTPS cannot be served with the files named.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[http] tls_cert {}: {why}; expected the certificate chain as PEM (\"-----BEGIN CERTIFICATE-----\")", path.display())]
    Cert { path: PathBuf, why: String },
    #[error("[http] tls_key {}: {why}; expected the private key as PEM (PKCS#8, PKCS#1 or SEC1)", path.display())]
    Key { path: PathBuf, why: String },
    #[error("[http] tls_cert and tls_key cannot serve HTTPS together: {0}")]
    Pair(String),
}

/// What accepts TLS connections with the configured certificate.
#[derive(Clone)]
pub struct Tls(pub(crate) super::serve::Acceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// Reads and checks the certificate chain and its key.
    pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
        let cert_err = |why: String| TlsError::Cert {
            path: files.cert.clone(),
            why,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
            .map_err(|e| cert_err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| cert_err(e.to_string()))?;
        if certs.is_empty() {
            return Err(cert_err("holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
            path: files.key.clone(),
            why: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Pair(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}

//! A rustls client configuration that trusts exactly the given CA certificates, for
//! tests, load tools and upstream TLS.
//!
//! Failure behaviour: PEM without a usable certificate is an error, never an empty
//! trust store (which would fail every handshake later with a less useful message).
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use super::{TlsError, provider};

/// A client configuration trusting only the certificates in `ca_pem` (one or more PEM
/// blocks), offering `alpn` in that order.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

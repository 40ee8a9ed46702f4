//! TLS: the crypto provider, PEM loading, development certificates, SNI resolution and
//! hot reload of certificate files.
//!
//! Failure behaviour: nothing here panics on bad input; a certificate that does not load
//! is an error value, and a reload that fails keeps the last good certificate in force.
pub mod client;
pub mod config;
pub mod generate;
pub(crate) mod reload;
pub mod resolver;
pub(crate) mod suites;
pub mod x509_name;

pub use client::client_config;
pub use config::{Resumption, server_config, server_config_for, server_config_with};
pub use generate::{DevCerts, run_certs};
pub use reload::CertReloader;
pub use resolver::{CertMap, SniResolver};
pub use suites::TlsPolicy;

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// What can go wrong turning PEM into a usable certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in PEM data")]
    NoCertificate,
    #[error("certificate PEM does not parse: {0}")]
    BadCertificate(String),
    #[error("private key PEM does not parse: {0}")]
    BadKey(String),
    #[error("key does not fit the certificate or is unsupported: {0}")]
    Mismatch(String),
    #[error("reading {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration rejected: {0}")]
    Config(String),
    #[error("watching {path}: {reason}")]
    Watch { path: String, reason: String },
}

/// The rustls crypto backend every TLS configuration of ours uses. aws-lc-rs, not ring:
/// its RSA signing (AVX2 exponentiation) makes full RSA handshakes markedly cheaper, which
/// is most of a full handshake's CPU (docs/PERFORMANCE.md). kube and rcgen keep ring for
/// their own use; nothing here mixes the two.
pub use rustls::crypto::aws_lc_rs as backend;

/// Installs our backend as the process-wide rustls provider. Idempotent: tests call it from
/// every helper, and a second install is not an error worth reporting.
pub fn install_provider() {
    let _ = backend::default_provider().install_default();
}

/// Our provider, for builders that take one explicitly.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(backend::default_provider())
}

/// Parses a PEM certificate chain and private key into a key rustls can serve, checking
/// that the key belongs to the leaf.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let ck = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(Arc::new(ck))
}

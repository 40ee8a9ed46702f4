//! The rustls server configuration every TLS listener shares: ring, TLS 1.2/1.3, ALPN
//! h2 + http/1.1, certificates from a resolver.
//!
//! Failure behaviour: a provider that cannot do the requested protocol versions is an
//! error at start-up, never at handshake time.
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;

use super::{TlsError, provider};

/// ALPN protocols offered, most preferred first. hyper-util's auto builder serves both on
/// any connection (it sniffs the h2 preface), so the list only steers the client.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// A server configuration taking certificates from `resolver`.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

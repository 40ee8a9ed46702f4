//! The rustls server configuration every TLS listener shares: aws-lc-rs, TLS 1.2/1.3, ALPN
//! h2 + http/1.1, certificates from a resolver, and session resumption sized for real
//! client counts.
//!
//! Failure behaviour: a provider that cannot do the requested protocol versions is an
//! error at start-up, never at handshake time.
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ResolvesServerCert;
use rustls::server::danger::ClientCertVerifier;

use super::TlsError;
use super::suites::TlsPolicy;

/// ALPN protocols offered, most preferred first. hyper-util's auto builder serves both on
/// any connection (it sniffs the h2 preface), so the list only steers the client.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How returning clients skip the full handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumption {
    /// Stateless tickets whose key rotates every 6 hours (the previous key is still
    /// accepted), as nginx does by default. Without them, TLS 1.3 resumption falls back to
    /// the cache below, and TLS 1.2 clients use session ids.
    pub tickets: bool,
    /// Sessions remembered server-side. rustls' own default of 256 is exhausted by a few
    /// hundred distinct clients taking turns, after which every handshake is a full one.
    pub cache_size: usize,
}

impl Default for Resumption {
    fn default() -> Self {
        Resumption {
            tickets: true,
            cache_size: 10_000,
        }
    }
}

/// A server configuration taking certificates from `resolver`, with default resumption.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(resolver, Resumption::default())
}

/// A server configuration taking certificates from `resolver`.
pub fn server_config_with(
    resolver: Arc<dyn ResolvesServerCert>,
    resumption: Resumption,
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for(resolver, resumption, &TlsPolicy::default(), None)
}

/// A server configuration with the versions and suites of `policy`, asking for client
/// certificates when `client_auth` is given.
pub fn server_config_for(
    resolver: Arc<dyn ResolvesServerCert>,
    resumption: Resumption,
    policy: &TlsPolicy,
    client_auth: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(policy.provider.clone())
        .with_protocol_versions(&policy.versions)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_auth {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = if resumption.cache_size == 0 {
        Arc::new(rustls::server::NoServerSessionStorage {})
    } else {
        rustls::server::ServerSessionMemoryCache::new(resumption.cache_size)
    };
    if resumption.tickets {
        config.ticketer =
            super::backend::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
        // One ticket per handshake (rustls and OpenSSL send two): a client resumes one
        // connection with it and gets a fresh one there, and each ticket costs an
        // encryption and a record on every handshake.
        config.send_tls13_tickets = 1;
    }
    Ok(Arc::new(config))
}

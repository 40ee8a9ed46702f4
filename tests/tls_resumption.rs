//! Session resumption holds for many distinct clients: with tickets, and with the
//! server-side cache alone, far more clients than rustls' default cache of 256 resume;
//! with both off nobody does. Each client is its own `ClientConfig` (its own session
//! store), as distinct machines would be.
mod common;

use std::sync::Arc;

use portcullis::tls::{DevCerts, Resumption, SniResolver, client_config, server_config_with};
use rustls::HandshakeKind;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// More distinct clients than rustls' default session cache holds.
const CLIENTS: usize = 300;

/// One request over a new TLS connection; returns how the handshake went. Reading the
/// response to its end also takes in the TLS 1.3 tickets the server sends after the
/// handshake, so the client can resume next time.
async fn one_request(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> HandshakeKind {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    kind
}

/// Connects `CLIENTS` distinct clients once, then each again; counts resumed second
/// handshakes.
async fn resumed_count(resumption: Resumption) -> usize {
    common::init();
    let certs = DevCerts::generate("portcullis", "test").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let handler = common::handler(|_req, _conn| async { common::ok("ok") });
    let server = common::start(
        handler,
        Some(server_config_with(resolver, resumption).unwrap()),
    )
    .await;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| client_config(certs.ca_pem.as_bytes(), &[b"http/1.1"]).unwrap())
        .collect();
    for c in &clients {
        assert_eq!(
            one_request(server.addr, c.clone()).await,
            HandshakeKind::Full
        );
    }
    let mut resumed = 0;
    for c in &clients {
        if one_request(server.addr, c.clone()).await == HandshakeKind::Resumed {
            resumed += 1;
        }
    }
    server.stop().await;
    resumed
}

#[tokio::test]
async fn tickets_resume_every_client() {
    let r = Resumption {
        tickets: true,
        cache_size: 0,
    };
    assert_eq!(resumed_count(r).await, CLIENTS);
}

#[tokio::test]
async fn cache_alone_resumes_more_clients_than_rustls_default() {
    let r = Resumption {
        tickets: false,
        cache_size: 10_000,
    };
    assert_eq!(resumed_count(r).await, CLIENTS);
}

#[tokio::test]
async fn no_tickets_and_no_cache_resume_nobody() {
    let r = Resumption {
        tickets: false,
        cache_size: 0,
    };
    assert_eq!(resumed_count(r).await, 0);
}

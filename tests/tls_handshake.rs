//! TLS handshakes happen off the accept loop, are bounded by `handshake_timeout`, and are
//! counted per listener.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Proto};
use portcullis::server::ServeOptions;
use portcullis::tls::{DevCerts, SniResolver, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn stalled_handshake_neither_blocks_others_nor_lives_forever() {
    common::init();
    let certs = DevCerts::generate("portcullis", "test").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let mut opts = ServeOptions::new("tls_handshake_timeout");
    opts.handshake_timeout = Duration::from_secs(1);
    let handler = common::handler(|_req, _conn| async { common::ok("ok") });
    let server = common::start_with(handler, Some(server_config(resolver).unwrap()), opts).await;
    let label = [("listener", "tls_handshake_timeout")];

    // A client that connects and never says hello.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let opened = Instant::now();

    // Meanwhile real clients are served at once.
    for proto in [Proto::H1, Proto::H2] {
        let mut client = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), proto)
            .await
            .unwrap();
        assert_eq!(client.get("localhost", "/").await.unwrap().status, 200);
    }
    assert!(opened.elapsed() < Duration::from_secs(1));

    // The silent connection is dropped by the server after the timeout.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("server kept a stalled handshake open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(opened.elapsed() >= Duration::from_millis(950));

    // Garbage instead of a ClientHello fails at once.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(3), garbage.read(&mut buf)).await;

    // Handshake metrics: 4 started, the silent and the garbage one failed. Both
    // counters move before the server closes the socket, so they are final by now.
    assert_eq!(
        common::metric("portcullis_tls_handshakes_total", &label),
        Some(4.0)
    );
    assert_eq!(
        common::metric("portcullis_tls_handshake_failures_total", &label),
        Some(2.0)
    );
    assert_eq!(
        common::metric("portcullis_connections_accepted_total", &label),
        Some(4.0)
    );
    server.stop().await;
    assert_eq!(
        common::metric("portcullis_connections_open", &label),
        Some(0.0)
    );
}

#[tokio::test]
async fn untrusted_client_fails_handshake_but_server_keeps_serving() {
    common::init();
    let certs = DevCerts::generate("portcullis", "test").unwrap();
    let stranger = DevCerts::generate("portcullis", "test").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let handler = common::handler(|_req, _conn| async { common::ok("ok") });
    let server = common::start(handler, Some(server_config(resolver).unwrap())).await;

    // Trusting another CA, the client refuses the certificate.
    let err = Client::tls(
        server.addr,
        "localhost",
        stranger.ca_pem.as_bytes(),
        Proto::H1,
    )
    .await;
    assert!(err.is_err());
    // A name the certificate does not cover is refused too.
    let err = Client::tls(
        server.addr,
        "elsewhere.test",
        certs.ca_pem.as_bytes(),
        Proto::H1,
    )
    .await;
    assert!(err.is_err());

    let (reply, _) = common::https_get(
        server.addr,
        "portcullis.test.svc",
        certs.ca_pem.as_bytes(),
        Proto::H2,
        "/",
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    server.stop().await;
}

//! ALPN: one TLS listener serves h2 and http/1.1, and handlers find the host in the
//! `Host` header (HTTP/1.1) or the `:authority` (HTTP/2). Plain listeners serve both too.
mod common;

use std::sync::Arc;

use common::{Client, Proto};
use http::Version;
use portcullis::tls::{DevCerts, SniResolver, server_config};

/// Echoes the HTTP version and where the host came from.
fn version_echo() -> portcullis::server::Handler {
    common::handler(|req, _conn| async move {
        let authority = req.uri().authority().map(|a| a.to_string());
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        common::ok(format!(
            "{:?} authority={} host={}",
            req.version(),
            authority.as_deref().unwrap_or("-"),
            host.as_deref().unwrap_or("-"),
        ))
    })
}

#[tokio::test]
async fn negotiates_h2_and_http11_on_one_listener() {
    common::init();
    let certs = DevCerts::generate("portcullis", "default").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let server = common::start(version_echo(), Some(server_config(resolver).unwrap())).await;

    let mut h2 = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), Proto::H2)
        .await
        .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    let reply = h2.get("app.example.com", "/x").await.unwrap();
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.text(), "HTTP/2.0 authority=app.example.com host=-\n");
    let reply = h2.get("app.example.com", "/again").await.unwrap();
    assert_eq!(reply.status, 200);

    let mut h1 = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), Proto::H1)
        .await
        .unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    for _ in 0..3 {
        // Keep-alive: several requests on one connection.
        let reply = h1.get("app.example.com:9443", "/y").await.unwrap();
        assert_eq!(reply.version, Version::HTTP_11);
        assert_eq!(
            reply.text(),
            "HTTP/1.1 authority=- host=app.example.com:9443\n"
        );
    }
    assert!(!h1.is_closed());
    server.stop().await;
}

#[tokio::test]
async fn plain_listener_serves_http11_and_h2c() {
    common::init();
    let server = common::start(version_echo(), None).await;
    let mut h1 = Client::plain(server.addr, Proto::H1).await.unwrap();
    assert_eq!(
        h1.get("plain.test", "/").await.unwrap().text(),
        "HTTP/1.1 authority=- host=plain.test\n"
    );
    let mut h2 = Client::plain(server.addr, Proto::H2).await.unwrap();
    assert_eq!(
        h2.get("plain.test", "/").await.unwrap().text(),
        "HTTP/2.0 authority=plain.test host=-\n"
    );
    server.stop().await;
}

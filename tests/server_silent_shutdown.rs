//! Shutdown of a TLS listener does not wait for clients that connected but never started
//! their handshake: they are idle, like a keep-alive connection between requests. A
//! client that did start its handshake is still served to the end.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Proto};
use portcullis::server::ServeOptions;
use portcullis::tls::{DevCerts, SniResolver, server_config};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn silent_tls_connection_does_not_hold_shutdown() {
    common::init();
    let certs = DevCerts::generate("portcullis", "test").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let mut opts = ServeOptions::new("tls_silent_shutdown");
    opts.handshake_timeout = Duration::from_secs(10);
    opts.grace = Duration::from_secs(10);
    let handler = common::handler(|_req, _conn| async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        common::ok("ok")
    });
    let server = common::start_with(handler, Some(server_config(resolver).unwrap()), opts).await;

    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut busy = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), Proto::H1)
        .await
        .unwrap();
    let in_flight = tokio::spawn(async move { busy.get("localhost", "/").await });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "shutdown waited {took:?} for a silent client"
    );
    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(
        reply.status, 200,
        "the request in flight must still be answered"
    );

    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(1), silent.read(&mut buf))
        .await
        .expect("silent connection left open")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

//! Graceful shutdown of `server::serve`: in-flight requests finish, idle keep-alive
//! connections do not hold shutdown up, the grace period is a hard limit, and the drain
//! delay keeps the listener accepting for a while after the trigger.
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, Proto};
use portcullis::server::{Handler, ServeOptions};
use portcullis::tls::{DevCerts, SniResolver, server_config};
use tokio::net::TcpStream;

/// `/slow` sleeps 300 ms, `/stuck` 10 s, anything else answers at once.
fn slow_handler() -> Handler {
    common::handler(|req, _conn| async move {
        match req.uri().path() {
            "/slow" => tokio::time::sleep(Duration::from_millis(300)).await,
            "/stuck" => tokio::time::sleep(Duration::from_secs(10)).await,
            _ => {}
        }
        common::ok("done")
    })
}

fn tls() -> (DevCerts, Arc<rustls::ServerConfig>) {
    let certs = DevCerts::generate("portcullis", "test").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let config = server_config(resolver).unwrap();
    (certs, config)
}

async fn refused(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn in_flight_request_completes_after_trigger() {
    common::init();
    for proto in [Proto::H1, Proto::H2] {
        let (certs, config) = tls();
        let mut opts = ServeOptions::new("shutdown_inflight");
        opts.grace = Duration::from_secs(5);
        let server = common::start_with(slow_handler(), Some(config), opts).await;
        let mut client = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), proto)
            .await
            .unwrap();
        let request = tokio::spawn(async move { client.get("localhost", "/slow").await });

        tokio::time::sleep(Duration::from_millis(100)).await;
        server.shutdown.trigger();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !server.task.is_finished(),
            "{proto:?}: serve returned while a request was in flight"
        );

        let reply = request.await.unwrap().unwrap();
        assert_eq!(reply.status, 200, "{proto:?}");
        assert_eq!(reply.text(), "done\n");
        let returned = tokio::time::timeout(Duration::from_secs(2), server.task)
            .await
            .unwrap_or_else(|_| panic!("{proto:?}: serve did not return after draining"));
        returned.unwrap().unwrap();
        assert!(refused(server.addr).await, "{proto:?}: still accepting");
    }
}

#[tokio::test]
async fn idle_keep_alive_connections_do_not_delay_shutdown() {
    common::init();
    let (certs, config) = tls();
    let mut opts = ServeOptions::new("shutdown_idle");
    opts.grace = Duration::from_secs(10);
    let server = common::start_with(slow_handler(), Some(config), opts).await;
    let mut h1 = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), Proto::H1)
        .await
        .unwrap();
    let mut h2 = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), Proto::H2)
        .await
        .unwrap();
    assert_eq!(h1.get("localhost", "/").await.unwrap().status, 200);
    assert_eq!(h2.get("localhost", "/").await.unwrap().status, 200);

    let started = Instant::now();
    server.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(2), server.task)
        .await
        .expect("idle connections held shutdown up")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // The server closed both connections (h1: closed after idle; h2: GOAWAY then close).
    h1.closed().await.unwrap();
    h2.closed().await.unwrap();
}

#[tokio::test]
async fn grace_period_bounds_shutdown() {
    common::init();
    let mut opts = ServeOptions::new("shutdown_grace");
    opts.grace = Duration::from_millis(300);
    let server = common::start_with(slow_handler(), None, opts).await;
    let mut client = Client::plain(server.addr, Proto::H1).await.unwrap();
    let request = tokio::spawn(async move { client.get("stuck.test", "/stuck").await });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    server.shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(3), server.task)
        .await
        .expect("serve ignored the grace period")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "returned before the grace period: {took:?}"
    );
    // The stuck request was cut off, not answered.
    assert!(request.await.unwrap().is_err());
    assert_eq!(
        common::metric(
            "portcullis_connections_open",
            &[("listener", "shutdown_grace")]
        ),
        Some(0.0)
    );
}

#[tokio::test]
async fn drain_delay_keeps_accepting() {
    common::init();
    let mut opts = ServeOptions::new("shutdown_drain_delay");
    opts.drain_delay = Duration::from_millis(500);
    opts.grace = Duration::from_secs(5);
    let server = common::start_with(slow_handler(), None, opts).await;

    let started = Instant::now();
    server.shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Within the delay: new connections are still accepted and served.
    for proto in [Proto::H1, Proto::H2] {
        let mut client = Client::plain(server.addr, proto).await.unwrap();
        assert_eq!(client.get("drain.test", "/").await.unwrap().status, 200);
    }
    assert!(!server.task.is_finished());

    tokio::time::timeout(Duration::from_secs(3), server.task)
        .await
        .expect("serve did not return after the drain delay")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(refused(server.addr).await);
}

#[tokio::test]
async fn panicking_handler_loses_only_its_connection() {
    common::init();
    let handler = common::handler(|req, _conn| async move {
        if req.uri().path() == "/panic" {
            panic!("handler bug");
        }
        common::ok("fine")
    });
    let server = common::start(handler, None).await;
    for proto in [Proto::H1, Proto::H2] {
        let mut client = Client::plain(server.addr, proto).await.unwrap();
        assert!(client.get("p.test", "/panic").await.is_err(), "{proto:?}");
        let mut next = Client::plain(server.addr, proto).await.unwrap();
        assert_eq!(next.get("p.test", "/").await.unwrap().text(), "fine\n");
    }
    server.stop().await;
}

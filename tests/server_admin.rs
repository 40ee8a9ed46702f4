//! The admin listener: metrics, liveness, readiness (which fails once draining starts),
//! problems, and the 404/405 answers.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::{Client, Proto};
use http::Request;
use http_body_util::Full;
use portcullis::admin::{self, AdminState};
use portcullis::server::{ServeOptions, Shutdown};

#[tokio::test]
async fn admin_endpoints() {
    common::init();
    let ready = Arc::new(AtomicBool::new(false));
    // The admin handler watches the process-wide shutdown; the admin listener itself is
    // stopped separately, after the others, so probes keep getting answers while draining.
    let process = Shutdown::new();
    let state = AdminState {
        ready: ready.clone(),
        shutdown: process.clone(),
        problems: Arc::new(
            || serde_json::json!([{"object": "default/web", "message": "no such Service"}]),
        ),
        dashboard: None,
        access: Default::default(),
    };
    let server =
        common::start_with(admin::handler(state), None, ServeOptions::new("admin_test")).await;
    let mut c = Client::plain(server.addr, Proto::H1).await.unwrap();

    let r = c.get("admin", "/healthz").await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));

    let r = c.get("admin", "/readyz").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("starting"), "{}", r.text());
    ready.store(true, Ordering::Release);
    let r = c.get("admin", "/readyz").await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));

    let r = c.get("admin", "/metrics").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    // This very connection was counted on the admin listener.
    assert!(
        r.text()
            .contains("portcullis_connections_accepted_total{listener=\"admin_test\"} 1"),
        "{}",
        r.text()
    );

    let r = c.get("admin", "/problems").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["message"], "no such Service");

    let r = c.get("admin", "/nope").await.unwrap();
    assert_eq!(r.status, 404);

    let post = Request::post("/healthz")
        .header("host", "admin")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let r = c.send(post).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    // Draining: readiness fails at once, liveness stays fine.
    process.trigger();
    let r = c.get("admin", "/readyz").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("draining"), "{}", r.text());
    let r = c.get("admin", "/healthz").await.unwrap();
    assert_eq!(r.status, 200);

    // Over h2c as well.
    let mut h2 = Client::plain(server.addr, Proto::H2).await.unwrap();
    assert_eq!(h2.get("admin", "/healthz").await.unwrap().status, 200);
    server.stop().await;
}

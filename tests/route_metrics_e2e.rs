//! Per-route request metrics through the real binary: `portcullis serve` with a manifests
//! directory and echo pods, real requests, then `/metrics`. Series carry the Ingress,
//! rule host, rule path, service, exact status and method; request data (an unknown
//! method, a random path, a random Host) never adds a label value; and a route removed
//! by a reload takes its series with it.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, Proto};
use e2e::{
    NS, Portcullis, eventually, ingress, ingress_class, pod, service, slice, write_atomic, yaml,
};
use http::{Method, Request, StatusCode};
use http_body_util::Full;

const HOST: &str = "shop.metrics.test";
const FAMILY: &str = "portcullis_ingress_requests_total";

/// The value of the `family` series having every label in `want`, if one exists.
fn series(text: &str, family: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| {
            want.iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics(gw: &Portcullis) -> String {
    let reply = gw.admin_get("/metrics").await.expect("GET /metrics");
    assert_eq!(reply.status, StatusCode::OK);
    reply.text()
}

async fn send(gw: &Portcullis, method: &str, host: &str, path: &str) -> StatusCode {
    let mut c = Client::plain(gw.http, Proto::H1).await.expect("connect");
    let req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header(http::header::HOST, host)
        .body(Full::new(Bytes::new()))
        .expect("request");
    c.send(req).await.expect("answer").status
}

fn shop(paths: &[(&str, &str)]) -> String {
    yaml(&[ingress("shop", HOST, None, paths, &[])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_per_route_with_bounded_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (web, _web) = pod("127.0.0.2", "web-1").await;
    let (api, _api) = pod("127.0.0.3", "api-1").await;
    let (idle, _idle) = pod("127.0.0.4", "idle-1").await;
    let m = dir.path();
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        m,
        "10-shop.yaml",
        &shop(&[("/", "web"), ("/api", "api"), ("/idle", "idle")]),
    );
    write_atomic(
        m,
        "20-services.yaml",
        &yaml(&[service("web"), service("api"), service("idle")]),
    );
    write_atomic(
        m,
        "30-slices.yaml",
        &yaml(&[
            slice("web", "web-1", web, true),
            slice("api", "api-1", api, true),
            slice("idle", "idle-1", idle, false),
        ]),
    );
    let gw = Portcullis::start(m, &[]).await;

    assert_eq!(send(&gw, "GET", HOST, "/api/items/1").await, StatusCode::OK);
    assert_eq!(send(&gw, "GET", HOST, "/api/items/2").await, StatusCode::OK);
    assert_eq!(send(&gw, "POST", HOST, "/api").await, StatusCode::OK);
    let idle_status = send(&gw, "GET", HOST, "/idle/x").await;
    assert_eq!(idle_status, StatusCode::SERVICE_UNAVAILABLE);
    send(&gw, "BREW", HOST, "/api/pot").await;
    assert_eq!(
        send(&gw, "GET", HOST, "/random-7f3a9c/x").await,
        StatusCode::OK
    );
    assert_eq!(
        send(&gw, "GET", "random-host-5e1b.example", "/random-2d8e").await,
        StatusCode::NOT_FOUND
    );

    let route = |path: &'static str, service: &'static str| {
        [
            ("namespace", NS),
            ("ingress", "shop"),
            ("host", HOST),
            ("path", path),
            ("service", service),
        ]
    };
    let text = metrics(&gw).await;
    let count = |path, svc, method, status| {
        let mut want = route(path, svc).to_vec();
        want.extend([("method", method), ("status", status)]);
        series(&text, FAMILY, &want)
    };
    assert_eq!(
        count("/api", "e2e/api:80", "GET", "200"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(count("/api", "e2e/api:80", "POST", "200"), Some(1.0));
    assert_eq!(count("/idle", "e2e/idle:80", "GET", "503"), Some(1.0));
    // An unknown method is `other`, never its own value.
    assert!(
        count("/api", "e2e/api:80", "other", "200").is_some(),
        "{text}"
    );
    assert!(!text.contains("BREW"));
    // A random path counts under the rule path that matched it.
    assert_eq!(count("/", "e2e/web:80", "GET", "200"), Some(1.0));
    assert!(!text.contains("random-7f3a9c"));
    // A random Host matched no rule: empty configured labels, never the request's host.
    let unrouted = [
        ("ingress", ""),
        ("host", ""),
        ("path", ""),
        ("method", "GET"),
        ("status", "404"),
    ];
    assert!(series(&text, FAMILY, &unrouted).is_some(), "{text}");
    assert!(!text.contains("random-host-5e1b") && !text.contains("random-2d8e"));
    // The other families carry the route labels too.
    let api = route("/api", "e2e/api:80");
    assert!(
        series(
            &text,
            "portcullis_ingress_upstream_duration_seconds_count",
            &api
        )
        .is_some()
    );
    assert!(
        series(
            &text,
            "portcullis_ingress_request_duration_seconds_count",
            &api[..4]
        )
        .is_some()
    );

    // A reload that drops /idle drops its series.
    write_atomic(m, "10-shop.yaml", &shop(&[("/", "web"), ("/api", "api")]));
    eventually(
        Duration::from_secs(10),
        "the /idle series removed",
        || async {
            let text = metrics(&gw).await;
            let idle = route("/idle", "e2e/idle:80");
            series(&text, FAMILY, &idle).is_none().then_some(())
        },
    )
    .await;
    let text = metrics(&gw).await;
    assert_eq!(
        series(
            &text,
            FAMILY,
            &[("path", "/api"), ("method", "GET"), ("status", "200")]
        ),
        Some(2.0),
        "a kept route keeps its counts: {text}"
    );
}

//! The access log through the real binary: `portcullis serve` (access log on, as by
//! default) writes exactly one JSON line per request to stdout, from its log thread,
//! with what happened to the request: routed and proxied, answered 404, or failed
//! upstream (with the failure's kind).
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::time::Duration;

use e2e::{
    Portcullis, eventually, http_get, ingress, ingress_class, pod, service, slice, write_atomic,
    yaml,
};
use http::StatusCode;
use serde_json::Value;

const HOST: &str = "shop.log.test";

/// The access-log lines among everything the process wrote (operational logs are text).
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("request_id").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_line_per_request_with_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let (web, _web) = pod("127.0.0.2", "web-1").await;
    let m = dir.path();
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        m,
        "10-shop.yaml",
        &yaml(&[
            ingress("shop", HOST, None, &[("/", "web")], &[]),
            ingress("down", "down.log.test", None, &[("/", "gone")], &[]),
        ]),
    );
    write_atomic(
        m,
        "20-services.yaml",
        &yaml(&[service("web"), service("gone")]),
    );
    // A "ready" pod whose port nobody listens on: every connect is refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.6:0").unwrap();
        l.local_addr().unwrap()
    };
    write_atomic(
        m,
        "30-slices.yaml",
        &yaml(&[
            slice("web", "web-1", web, true),
            slice("gone", "gone-1", closed, true),
        ]),
    );
    let gw = Portcullis::start(m, &[]).await;

    for i in 0..5 {
        let reply = http_get(gw.http, HOST, &format!("/items/{i}?page=2"))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
    }
    let reply = http_get(gw.http, "nobody.log.test", "/missing")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = http_get(gw.http, "down.log.test", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    let (lines, _) = eventually(Duration::from_secs(5), "seven access-log lines", || {
        let lines = access_lines(&gw.log());
        async move { (lines.len() >= 7).then_some(lines) }
    })
    .await;
    // No more than one each, even after a moment more.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(access_lines(&gw.log()).len(), 7, "{}", gw.log());

    // A line is written once its answer has gone out, so the client may already have the
    // next answer before the last line is queued: lines are matched by what they say, not
    // by their order.
    let by_host =
        |host: &str| -> Vec<&Value> { lines.iter().filter(|l| l["host"] == host).collect() };
    let mut served = by_host(HOST);
    served.sort_by_key(|l| l["path"].as_str().unwrap_or_default().to_owned());
    assert_eq!(served.len(), 5, "{lines:?}");
    for (i, line) in served.into_iter().enumerate() {
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["host"], HOST);
        assert_eq!(line["path"], format!("/items/{i}?page=2"));
        assert_eq!(line["upstream_addr"], web.to_string());
        assert_eq!(line["service"], "e2e/web:80");
        assert_eq!(line["ingress"], "e2e/shop");
        assert_eq!(line["client"], "127.0.0.1");
        assert!(line["bytes"].as_u64().unwrap() > 0, "{line}");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
        let id = line["request_id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "{line}");
        assert!(line["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(line["error"], "", "{line}");
    }
    let missing = by_host("nobody.log.test");
    assert_eq!(missing.len(), 1, "{lines:?}");
    let missing = missing[0];
    assert_eq!(missing["status"], 404, "{missing}");
    assert_eq!(missing["upstream_addr"], "");
    let failed = by_host("down.log.test");
    assert_eq!(failed.len(), 1, "{lines:?}");
    let failed = failed[0];
    assert_eq!(failed["status"], 502, "{failed}");
    assert_eq!(failed["error"], "connect_refused", "{failed}");
    assert_eq!(failed["upstream_addr"], closed.to_string(), "{failed}");
    assert_eq!(failed["service"], "e2e/gone:80");
}

//! Rate limits, session affinity and consistent hashing through the proxy, over real
//! loopback sockets: echo pods on 127.0.0.x, and clients bound to their own 127.0.0.x
//! source addresses so each one is a distinct client address. Policies come from the real
//! annotation parser.
mod proxy_common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::ingress::annotations::parse_annotations;
use portcullis::ingress::gateway::ProxyConfig;
use portcullis::ingress::policy::Policy;
use proxy_common::*;

/// The policy the real parser makes of these annotations (which must be valid).
fn policy(pairs: &[(&str, &str)]) -> Policy {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let parsed = parse_annotations(&map);
    assert!(parsed.is_ok(), "{:?}", parsed.errors);
    parsed.policy
}

/// A client whose connections come from `source`.
fn client_from(source: &str) -> TestClient {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(source.parse::<IpAddr>().unwrap()));
    Client::builder(TokioExecutor::new()).build(http)
}

async fn statuses(c: &TestClient, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(c, url).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn rate_limit_per_client_address_with_allowlist() {
    let pod = pod("127.0.0.150").await;
    let p = policy(&[
        ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
        ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "3"),
        (
            "nginx.ingress.kubernetes.io/limit-whitelist",
            "127.0.0.153/32",
        ),
    ]);
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), p),
        ProxyConfig::default(),
    )
    .await;
    let url = proxy.url("/");
    // One a minute plus a burst of three: four pass, then 503 (ingress-nginx's default).
    let first = statuses(&client_from("127.0.0.151"), &url, 6).await;
    assert_eq!(first, [200, 200, 200, 200, 503, 503]);
    let refused = get(&client_from("127.0.0.151"), &url).await;
    assert_eq!(refused.headers["server"], "portcullis");
    assert!(refused.text().contains("rate limit"), "{}", refused.text());
    // Another address has its own budget.
    let second = statuses(&client_from("127.0.0.152"), &url, 5).await;
    assert_eq!(second, [200, 200, 200, 200, 503]);
    // An allowlisted address is never limited.
    let exempt = statuses(&client_from("127.0.0.153"), &url, 20).await;
    assert!(exempt.iter().all(|s| *s == 200), "{exempt:?}");

    // A recompile (a new policy for the same Ingress and limits) keeps the state.
    let again = policy(&[
        ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
        ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "3"),
    ]);
    proxy.set_route(route(backend("default/web:80", &[pod]), again));
    assert_eq!(get(&client_from("127.0.0.151"), &url).await.status, 503);
    // Changed limits start afresh.
    let changed = policy(&[("nginx.ingress.kubernetes.io/limit-rpm", "2")]);
    proxy.set_route(route(backend("default/web:80", &[pod]), changed));
    assert_eq!(get(&client_from("127.0.0.151"), &url).await.status, 200);
}

#[tokio::test]
async fn configured_status_codes() {
    let slow = slow_pod("127.0.0.155", Duration::from_millis(400)).await;
    let p = policy(&[
        ("portcullis.io/limit-rpm", "1"),
        ("portcullis.io/limit-burst-multiplier", "1"),
        ("portcullis.io/limit-connections", "1"),
    ]);
    let mut config = ProxyConfig::default();
    config.limit_status.request = http::StatusCode::TOO_MANY_REQUESTS;
    config.limit_status.connection = http::StatusCode::from_u16(508).unwrap();
    let proxy = start_proxy(route(backend("default/web:80", &[slow]), p), config).await;
    let url = proxy.url("/");
    let c = client_from("127.0.0.156");
    // Two concurrent requests from one address: one is in flight, the other is over
    // limit-connections.
    let (a, b) = tokio::join!(get(&c, &url), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        get(&c, &url).await
    });
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 508, "{}", b.text());
    // The slot is free again once the response is done; then the rate (1 a minute,
    // burst 1) refuses with its own configured code.
    assert_eq!(get(&c, &url).await.status, 200);
    assert_eq!(get(&c, &url).await.status, 429);
}

#[tokio::test]
async fn connection_limit_counts_requests_in_flight_per_address() {
    let slow = slow_pod("127.0.0.158", Duration::from_millis(500)).await;
    let p = policy(&[("nginx.ingress.kubernetes.io/limit-connections", "2")]);
    let proxy = start_proxy(
        route(backend("default/web:80", &[slow]), p),
        ProxyConfig::default(),
    )
    .await;
    let url = proxy.url("/");
    let (c1, c2) = (client_from("127.0.0.159"), client_from("127.0.0.160"));
    let burst = |c: TestClient, url: String| async move {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (c, url) = (c.clone(), url.clone());
            set.spawn(async move { get(&c, &url).await.status.as_u16() });
        }
        let mut all = set.join_all().await;
        all.sort();
        all
    };
    let (one, two) = tokio::join!(burst(c1.clone(), url.clone()), burst(c2, url.clone()));
    assert_eq!(one, [200, 200, 503, 503]);
    assert_eq!(two, [200, 200, 503, 503]);
    // All released: the next requests pass.
    assert_eq!(get(&c1, &url).await.status, 200);
}

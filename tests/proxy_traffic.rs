//! Rate limits, session affinity and consistent hashing through the proxy, over real
//! loopback sockets: echo pods on 127.0.0.x, and clients bound to their own 127.0.0.x
//! source addresses so each one is a distinct client address. Policies come from the real
//! annotation parser.
mod proxy_common;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis::ingress::build::annotations::parse_annotations;
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::model::snapshot::{Backend, EndpointSet};
use portcullis::ingress::request::gateway::{ProxyConfig, Scheme};
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
    let metrics = String::from_utf8(portcullis::metrics::encode()).unwrap();
    assert!(
        metrics.contains(r#"ingress_limited_requests_total{ingress="default/web",reason="rate"}"#),
        "{metrics}"
    );
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
    config.limits.request = http::StatusCode::TOO_MANY_REQUESTS;
    config.limits.connection = http::StatusCode::from_u16(508).unwrap();
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

fn set_endpoints(be: &Backend, eligible: &[SocketAddr]) {
    be.endpoints.store(Arc::new(EndpointSet {
        all: Vec::new(),
        eligible: eligible.to_vec(),
    }));
}

/// The `name=value` part of a Set-Cookie, and the whole header.
fn issued(a: &Answer) -> Option<(String, String)> {
    let line = a.headers.get("set-cookie")?.to_str().unwrap().to_string();
    let pair = line.split(';').next().unwrap().to_string();
    Some((pair, line))
}

async fn get_with_cookie(c: &TestClient, url: &str, cookie: &str) -> Answer {
    let req = Request::get(url)
        .header("cookie", cookie)
        .body(Full::default())
        .unwrap();
    send(c, req).await
}

async fn get_with_header(c: &TestClient, url: &str, name: &str, value: &str) -> Answer {
    let req = Request::get(url)
        .header(name, value)
        .body(Full::default())
        .unwrap();
    send(c, req).await
}

#[tokio::test]
async fn balanced_affinity_sticks_and_rebalances_on_endpoint_changes() {
    let pods = [
        pod("127.0.0.170").await,
        pod("127.0.0.171").await,
        pod("127.0.0.172").await,
    ];
    let be = backend("default/web:80", &pods);
    let p = policy(&[("nginx.ingress.kubernetes.io/affinity", "cookie")]);
    let proxy = start_proxy(route(be.clone(), p), ProxyConfig::default()).await;
    let url = proxy.url("/");
    let c = client();

    // 40 new clients: each gets a cookie on its first response.
    let mut sessions = Vec::new();
    for _ in 0..40 {
        let first = get(&c, &url).await;
        assert_eq!(first.status, 200);
        let (pair, line) = issued(&first).expect("first response sets the cookie");
        assert!(pair.starts_with("INGRESSCOOKIE="), "{line}");
        assert!(line.ends_with("; Path=/; HttpOnly"), "{line}");
        assert!(
            !line.contains("127.0.0"),
            "no pod address in the cookie: {line}"
        );
        sessions.push((pair, first.pod()));
    }
    let spread: std::collections::HashSet<_> = sessions.iter().map(|(_, p)| p).collect();
    assert_eq!(spread.len(), 3, "new sessions spread over every pod");
    // Each comes back to its pod, without a new cookie.
    for (cookie, pod) in &sessions {
        for _ in 0..5 {
            let again = get_with_cookie(&c, &url, cookie).await;
            assert_eq!(&again.pod(), pod);
            assert!(issued(&again).is_none());
        }
    }

    // The pod of the first session stops being ready: its clients move, the others stay.
    let gone = sessions[0].1.clone();
    let rest: Vec<SocketAddr> = pods
        .iter()
        .copied()
        .filter(|a| echo_name(*a) != gone)
        .collect();
    set_endpoints(&be, &rest);
    let mut moved_to = HashMap::new();
    for (cookie, pod) in &sessions {
        let now = get_with_cookie(&c, &url, cookie).await.pod();
        if *pod == gone {
            assert_ne!(now, gone);
            // …and the move sticks.
            assert_eq!(get_with_cookie(&c, &url, cookie).await.pod(), now);
            moved_to.insert(cookie.clone(), now);
        } else {
            assert_eq!(&now, pod, "a client of a remaining pod stays");
        }
    }
    assert!(!moved_to.is_empty());

    // A new pod takes over some sessions (balanced mode), and only to itself.
    let newcomer = pod("127.0.0.173").await;
    let mut grown = rest.clone();
    grown.push(newcomer);
    set_endpoints(&be, &grown);
    let mut taken = 0;
    for (cookie, pod) in &sessions {
        let before = moved_to.get(cookie).unwrap_or(pod);
        let now = get_with_cookie(&c, &url, cookie).await.pod();
        if &now != before {
            assert_eq!(now, echo_name(newcomer));
            taken += 1;
        }
    }
    assert!(taken > 0, "the new pod got some of the sessions");
}

#[tokio::test]
async fn persistent_affinity_keeps_clients_until_their_pod_leaves() {
    let pods = [pod("127.0.0.175").await, pod("127.0.0.176").await];
    let be = backend("default/web:80", &pods);
    let p = policy(&[
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
        ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
    ]);
    let proxy = start_proxy(route(be.clone(), p), ProxyConfig::default()).await;
    let url = proxy.url("/");
    let c = client();
    let mut sessions = Vec::new();
    for _ in 0..10 {
        let first = get(&c, &url).await;
        let (pair, line) = issued(&first).expect("cookie on the first response");
        assert!(pair.starts_with("route="), "{line}");
        assert!(!line.contains("127.0.0"), "{line}");
        sessions.push((pair, first.pod()));
    }
    // The cookie names the pod: equal pods, equal cookies.
    for (a, pa) in &sessions {
        for (b, pb) in &sessions {
            assert_eq!(a == b, pa == pb);
        }
    }
    // A new pod gets no existing client.
    let newcomer = pod("127.0.0.177").await;
    set_endpoints(&be, &[pods[0], pods[1], newcomer]);
    for (cookie, pod) in &sessions {
        let r = get_with_cookie(&c, &url, cookie).await;
        assert_eq!(&r.pod(), pod);
        assert!(issued(&r).is_none());
    }
    // Pod 0 leaves: its clients get another pod and a cookie naming it.
    set_endpoints(&be, &[pods[1], newcomer]);
    for (cookie, pod) in &sessions {
        let r = get_with_cookie(&c, &url, cookie).await;
        if *pod == echo_name(pods[0]) {
            let (fresh, _) = issued(&r).expect("a moved client gets a new cookie");
            assert_ne!(&fresh, cookie);
            let now = r.pod();
            for _ in 0..3 {
                assert_eq!(get_with_cookie(&c, &url, &fresh).await.pod(), now);
            }
        } else {
            assert_eq!(&r.pod(), pod);
        }
    }
    // A cookie naming no pod is treated as none.
    let r = get_with_cookie(&c, &url, "route=zzz").await;
    assert_eq!(r.status, 200);
    assert!(issued(&r).is_some());
}

#[tokio::test]
async fn cookie_attributes_from_annotations() {
    let a = pod("127.0.0.178").await;
    let p = policy(&[
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        ("nginx.ingress.kubernetes.io/session-cookie-path", "/shop"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-domain",
            "example.com",
        ),
        ("nginx.ingress.kubernetes.io/session-cookie-max-age", "3600"),
        ("nginx.ingress.kubernetes.io/session-cookie-expires", "7200"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-samesite",
            "Strict",
        ),
    ]);
    let https = start_proxy_with(
        TestRoute {
            route: route(backend("default/web:80", &[a]), p.clone()),
            regex: None,
            tls_hosts: Vec::new(),
        },
        ProxyConfig::default(),
        Scheme::Https,
    )
    .await;
    let (_, line) = issued(&get(&client(), &https.url("/")).await).unwrap();
    let attrs: Vec<&str> = line.split("; ").skip(1).collect();
    assert_eq!(attrs[0], "Path=/shop");
    assert_eq!(attrs[1], "Domain=example.com");
    assert!(
        attrs[2].starts_with("Expires=") && attrs[2].ends_with(" GMT"),
        "{line}"
    );
    assert_eq!(
        attrs[3..],
        ["Max-Age=3600", "Secure", "HttpOnly", "SameSite=Strict"]
    );
    // Over plain HTTP no Secure, unless the annotation asks for it.
    let plain = start_proxy(
        route(backend("default/web:80", &[a]), p),
        ProxyConfig::default(),
    )
    .await;
    let (_, line) = issued(&get(&client(), &plain.url("/")).await).unwrap();
    assert!(!line.contains("Secure"), "{line}");
    let forced = policy(&[
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        ("nginx.ingress.kubernetes.io/session-cookie-secure", "true"),
    ]);
    plain.set_route(route(backend("default/web:80", &[a]), forced));
    let (_, line) = issued(&get(&client(), &plain.url("/")).await).unwrap();
    assert!(line.contains("; Secure"), "{line}");
}

#[tokio::test]
async fn hash_by_is_stable_and_moves_about_one_nth_when_an_endpoint_leaves() {
    let pods = [
        pod("127.0.0.180").await,
        pod("127.0.0.181").await,
        pod("127.0.0.182").await,
        pod("127.0.0.183").await,
    ];
    let be = backend("default/web:80", &pods);
    let p = policy(&[(
        "nginx.ingress.kubernetes.io/upstream-hash-by",
        "$http_x_user$arg_cart",
    )]);
    let proxy = start_proxy(route(be.clone(), p), ProxyConfig::default()).await;
    let c = client();
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut owner = HashMap::new();
    for k in &keys {
        let url = proxy.url("/items?cart=7");
        let first = get_with_header(&c, &url, "x-user", k).await.pod();
        for _ in 0..2 {
            assert_eq!(
                get_with_header(&c, &url, "x-user", k).await.pod(),
                first,
                "{k}"
            );
        }
        owner.insert(k.clone(), first);
    }
    let load = owner.values().fold(HashMap::new(), |mut m, p| {
        *m.entry(p.clone()).or_insert(0) += 1;
        m
    });
    assert_eq!(load.len(), 4, "{load:?}");
    // A different query value is a different key (the template reads `$arg_cart`).
    let mut other_cart = 0;
    for k in keys.iter().take(40) {
        let r = get_with_header(&c, &proxy.url("/items?cart=8"), "x-user", k).await;
        if r.pod() != owner[k] {
            other_cart += 1;
        }
    }
    assert!(other_cart > 10, "{other_cart} of 40 keys changed pod");

    let gone = pods[2];
    set_endpoints(&be, &[pods[0], pods[1], pods[3]]);
    let mut moved = 0;
    for k in &keys {
        let now = get_with_header(&c, &proxy.url("/items?cart=7"), "x-user", k)
            .await
            .pod();
        if now != owner[k] {
            assert_eq!(
                owner[k],
                echo_name(gone),
                "only keys of the removed pod move"
            );
            moved += 1;
        }
    }
    assert_eq!(
        moved,
        load[&echo_name(gone)],
        "every key of the removed pod moves"
    );
    // About a quarter of the keys.
    assert!((25..=80).contains(&moved), "{moved} of 200 moved");
}

#[tokio::test]
async fn change_on_failure_points_the_cookie_at_the_pod_that_answered() {
    use portcullis::ingress::request::hash_ring::endpoint_id;
    let alive = pod("127.0.0.185").await;
    let dead = dead_addr("127.0.0.186").await;
    let cookie = format!("route={:016x}", endpoint_id(dead));
    for change in [false, true] {
        let p = policy(&[
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
            ("nginx.ingress.kubernetes.io/session-cookie-name", "route"),
            (
                "nginx.ingress.kubernetes.io/session-cookie-change-on-failure",
                if change { "true" } else { "false" },
            ),
        ]);
        // A fresh proxy each time: no passive-health memory of the dead pod.
        let proxy = start_proxy(
            route(backend("default/web:80", &[alive, dead]), p),
            ProxyConfig::default(),
        )
        .await;
        let r = get_with_cookie(&client(), &proxy.url("/"), &cookie).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.pod(), echo_name(alive), "the retry went to the live pod");
        match change {
            true => assert_eq!(
                issued(&r).map(|(pair, _)| pair),
                Some(format!("route={:016x}", endpoint_id(alive)))
            ),
            false => assert!(issued(&r).is_none(), "the client keeps its cookie"),
        }
    }
}

/// A pod that answers every request with `status`.
async fn failing_pod(ip: &str, status: u16) -> SocketAddr {
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| async move {
                    let mut resp =
                        http::Response::new(Full::new(bytes::Bytes::from_static(b"pod says no")));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn statuses_of(c: &TestClient, method: &str, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let req = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::default())
            .unwrap();
        out.push(send(c, req).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn next_upstream_passes_listed_statuses_on() {
    let bad = failing_pod("127.0.0.190", 503).await;
    let good = pod("127.0.0.191").await;
    let c = client();
    let rr = ("nginx.ingress.kubernetes.io/load-balance", "round_robin");
    // Without the annotation a 503 is an answer like any other: round robin hands every
    // other request to the failing pod.
    let proxy = start_proxy(
        route(backend("default/web:80", &[bad, good]), policy(&[rr])),
        ProxyConfig::default(),
    )
    .await;
    let plain = statuses_of(&c, "GET", &proxy.url("/"), 6).await;
    assert_eq!(plain.iter().filter(|s| **s == 503).count(), 3, "{plain:?}");

    let listed = policy(&[
        rr,
        (
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "error timeout http_503",
        ),
    ]);
    proxy.set_route(route(backend("default/web:80", &[bad, good]), listed));
    let gets = statuses_of(&c, "GET", &proxy.url("/"), 6).await;
    assert_eq!(gets, [200; 6]);
    // POST is not idempotent: its 503s stay, unless non_idempotent allows a resend.
    let posts = statuses_of(&c, "POST", &proxy.url("/"), 6).await;
    assert_eq!(posts.iter().filter(|s| **s == 503).count(), 3, "{posts:?}");
    let any_method = policy(&[
        rr,
        (
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "http_503 non_idempotent",
        ),
    ]);
    proxy.set_route(route(backend("default/web:80", &[bad, good]), any_method));
    assert_eq!(statuses_of(&c, "POST", &proxy.url("/"), 6).await, [200; 6]);

    // Both pods failing: the last pod's own answer reaches the client.
    let bad2 = failing_pod("127.0.0.192", 503).await;
    let both = policy(&[
        (
            "nginx.ingress.kubernetes.io/proxy-next-upstream",
            "http_503",
        ),
        ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "3"),
    ]);
    proxy.set_route(route(backend("default/web:80", &[bad, bad2]), both));
    let r = get(&c, &proxy.url("/")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "pod says no");
}

#[tokio::test]
async fn next_upstream_off_and_tries_limit_connect_retries() {
    let dead = dead_addr("127.0.0.194").await;
    let good = pod("127.0.0.195").await;
    let c = client();
    let rr = ("nginx.ingress.kubernetes.io/load-balance", "round_robin");
    // `off`: the refused connection is the answer (502) for every other request.
    let off = policy(&[
        rr,
        ("nginx.ingress.kubernetes.io/proxy-next-upstream", "off"),
    ]);
    let proxy = start_proxy(
        route(backend("default/web:80", &[dead, good]), off),
        ProxyConfig::default(),
    )
    .await;
    let got = statuses_of(&c, "GET", &proxy.url("/"), 4).await;
    assert!(got.contains(&502), "{got:?}");
    // The default conditions retry it.
    let on = policy(&[
        rr,
        ("nginx.ingress.kubernetes.io/proxy-next-upstream-tries", "2"),
    ]);
    let fresh = start_proxy(
        route(backend("default/web:80", &[dead, good]), on),
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(statuses_of(&c, "GET", &fresh.url("/"), 4).await, [200; 4]);
}

#[tokio::test]
async fn next_upstream_timeout_condition_and_time_limit() {
    let slow = slow_pod("127.0.0.197", Duration::from_secs(3)).await;
    let fast = pod("127.0.0.198").await;
    let c = client();
    let base = [
        ("nginx.ingress.kubernetes.io/load-balance", "round_robin"),
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "300ms"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        policy(&all)
    };
    // `timeout` listed: a pod too slow for the read timeout is passed over.
    let proxy = start_proxy(
        route(
            backend("default/web:80", &[slow, fast]),
            with(&[("nginx.ingress.kubernetes.io/proxy-next-upstream", "timeout")]),
        ),
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(statuses_of(&c, "GET", &proxy.url("/"), 4).await, [200; 4]);
    // Not listed: 504 as before.
    proxy.set_route(route(
        backend("default/web:80", &[slow, fast]),
        with(&[("nginx.ingress.kubernetes.io/proxy-next-upstream", "error")]),
    ));
    let got = statuses_of(&c, "GET", &proxy.url("/"), 4).await;
    assert!(got.contains(&504), "{got:?}");
    // A time limit already spent by the first attempt stops the retry.
    let limited = policy(&[
        ("nginx.ingress.kubernetes.io/load-balance", "round_robin"),
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "1"),
        ("nginx.ingress.kubernetes.io/proxy-next-upstream", "timeout"),
        (
            "nginx.ingress.kubernetes.io/proxy-next-upstream-timeout",
            "1",
        ),
    ]);
    proxy.set_route(route(backend("default/web:80", &[slow, fast]), limited));
    let got = statuses_of(&c, "GET", &proxy.url("/"), 2).await;
    assert!(got.contains(&504), "{got:?}");
}

#[tokio::test]
async fn limits_key_on_the_client_behind_a_trusted_proxy() {
    let pod = pod("127.0.0.165").await;
    let p = policy(&[
        ("nginx.ingress.kubernetes.io/limit-rpm", "1"),
        ("nginx.ingress.kubernetes.io/limit-burst-multiplier", "1"),
        ("nginx.ingress.kubernetes.io/limit-allowlist", "203.0.113.9"),
    ]);
    let config = ProxyConfig {
        trusted_proxies: vec!["127.0.0.166/32".parse().unwrap()],
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(route(backend("default/web:80", &[pod]), p), config).await;
    let url = proxy.url("/");
    let balancer = client_from("127.0.0.166");
    let as_client = |xff: &'static str| {
        let (balancer, url) = (balancer.clone(), url.clone());
        async move {
            let mut out = Vec::new();
            for _ in 0..3 {
                let r = get_with_header(&balancer, &url, "x-forwarded-for", xff).await;
                out.push(r.status.as_u16());
            }
            out
        }
    };
    // Two clients behind the same trusted balancer: each has its own budget.
    assert_eq!(as_client("198.51.100.1").await, [200, 200, 503]);
    assert_eq!(as_client("198.51.100.2").await, [200, 200, 503]);
    // The allowlist is matched against the same address.
    assert_eq!(as_client("203.0.113.9").await, [200, 200, 200]);
    // An untrusted peer's X-Forwarded-For is ignored: it is limited as itself.
    let direct = client_from("127.0.0.167");
    let mut got = Vec::new();
    for xff in ["198.51.100.3", "198.51.100.4", "198.51.100.5"] {
        got.push(
            get_with_header(&direct, &url, "x-forwarded-for", xff)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(got, [200, 200, 503]);
}

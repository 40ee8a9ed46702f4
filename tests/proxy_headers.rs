//! What reaches the pod and what comes back: forwarded headers, hop-by-hop removal,
//! rewrites, redirects, source filters, body limits, vhost, custom headers, canaries.
mod proxy_common;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use portcullis::ingress::model::policy::{Canary, Policy};
use portcullis::ingress::request::gateway::{ProxyConfig, Scheme};
use proxy_common::*;

fn req(url: &str) -> http::request::Builder {
    Request::get(url)
}

#[tokio::test]
async fn request_reaches_pod_unchanged_with_forwarded_headers() {
    let pod = pod("127.0.0.30").await;
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let r = send(
        &client(),
        req(&proxy.url("/a/b?x=1&y=%20z"))
            .method("PATCH")
            .header("host", "Example.com")
            .header("user-agent", "probe/1.0")
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("x-real-ip", "6.6.6.6")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "PATCH");
    assert_eq!(v["path"], "/a/b?x=1&y=%20z");
    assert_eq!(v["host"], "Example.com");
    assert_eq!(r.seen("user-agent").unwrap(), "probe/1.0");
    // The client is not a trusted proxy: its forwarded headers are replaced.
    assert_eq!(r.seen("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(r.seen("x-real-ip").unwrap(), "127.0.0.1");
    assert_eq!(r.seen("x-forwarded-proto").unwrap(), "http");
    assert_eq!(r.seen("x-forwarded-host").unwrap(), "Example.com");
    assert_eq!(r.seen("x-forwarded-port").unwrap(), "80");
    let id = r.seen("x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    // The backend's Content-Length is kept.
    assert_eq!(
        r.headers["content-length"],
        r.body.len().to_string().as_str()
    );
}

#[tokio::test]
async fn trusted_proxy_forwarded_headers_are_kept_and_appended() {
    let pod = pod("127.0.0.31").await;
    let config = ProxyConfig {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), Policy::default()),
        config,
    )
    .await;
    let r = send(
        &client(),
        req(&proxy.url("/"))
            .header("host", "example.com:8443")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "https")
            .header("x-request-id", "req-42")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.seen("x-forwarded-for").unwrap(), "203.0.113.9, 127.0.0.1");
    assert_eq!(r.seen("x-real-ip").unwrap(), "203.0.113.9");
    assert_eq!(r.seen("x-forwarded-proto").unwrap(), "https");
    assert_eq!(r.seen("x-forwarded-port").unwrap(), "8443");
    assert_eq!(r.seen("x-request-id").unwrap(), "req-42");
}

#[tokio::test]
async fn allowlist_uses_real_client_only_behind_trusted_proxies() {
    let pod = pod("127.0.0.32").await;
    let policy = || Policy {
        allow_source: vec!["203.0.113.0/24".parse().unwrap()],
        ..Policy::default()
    };
    let spoof = |url: String| {
        req(&url)
            .header("x-forwarded-for", "203.0.113.9")
            .body(Full::default())
            .unwrap()
    };
    // Untrusted: the spoofed header must not open the allowlist.
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), policy()),
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(send(&client(), spoof(proxy.url("/"))).await.status, 403);
    let trusted = ProxyConfig {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..ProxyConfig::default()
    };
    let proxy = start_proxy(route(backend("default/web:80", &[pod]), policy()), trusted).await;
    assert_eq!(send(&client(), spoof(proxy.url("/"))).await.status, 200);
}

#[tokio::test]
async fn allow_and_deny_source_ranges() {
    let pod = pod("127.0.0.33").await;
    let cases = [
        (vec![], vec!["127.0.0.1/32"], 403),
        (vec!["10.0.0.0/8"], vec![], 403),
        (vec!["127.0.0.0/8"], vec![], 200),
        (vec!["127.0.0.0/8"], vec!["127.0.0.1/32"], 403),
        (vec![], vec!["10.0.0.0/8"], 200),
    ];
    for (allow, deny, want) in cases {
        let policy = Policy {
            allow_source: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny_source: deny.iter().map(|s| s.parse().unwrap()).collect(),
            ..Policy::default()
        };
        let proxy = start_proxy(
            route(backend("default/web:80", &[pod]), policy),
            ProxyConfig::default(),
        )
        .await;
        let r = get(&client(), &proxy.url("/")).await;
        assert_eq!(r.status, want, "allow {allow:?} deny {deny:?}");
        if want == 403 {
            assert_eq!(r.headers["server"], "portcullis");
            assert!(r.text().contains("127.0.0.1"));
        }
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed() {
    let pod = pod("127.0.0.34").await;
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let r = send(
        &client(),
        req(&proxy.url("/"))
            .header("connection", "x-secret")
            .header("x-secret", "s")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("te", "trailers, deflate")
            .header("upgrade", "h2c")
            .header("trailer", "x-t")
            .header("proxy", "http://attacker")
            .header("x-kept", "yes")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
        "trailer",
        "proxy",
    ] {
        assert_eq!(r.seen(gone), None, "{gone} reached the pod");
    }
    assert_eq!(r.seen("te").unwrap(), "trailers");
    assert_eq!(r.seen("x-kept").unwrap(), "yes");
}

#[tokio::test]
async fn rewrite_target_with_captures() {
    let pod = pod("127.0.0.35").await;
    let policy = Policy {
        rewrite_target: Some("/$2".into()),
        use_regex: true,
        x_forwarded_prefix: Some("/something".into()),
        ..Policy::default()
    };
    let proxy = start_proxy_with(
        TestRoute {
            route: route(backend("default/web:80", &[pod]), policy),
            regex: Some("/something(/|$)(.*)"),
            tls_hosts: Vec::new(),
        },
        ProxyConfig::default(),
        Scheme::Http,
    )
    .await;
    let c = client();
    for (path, want) in [
        ("/something", "/"),
        ("/something/", "/"),
        ("/something/new", "/new"),
        ("/something/new/deeper?q=1", "/new/deeper?q=1"),
    ] {
        let r = get(&c, &proxy.url(path)).await;
        assert_eq!(r.json()["path"], want, "request {path}");
        assert_eq!(r.seen("x-forwarded-prefix").unwrap(), "/something");
    }
}

#[tokio::test]
async fn app_root_redirects_only_slash() {
    let pod = pod("127.0.0.36").await;
    let policy = Policy {
        app_root: Some("/app1".into()),
        ..Policy::default()
    };
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), policy),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    let r = send(
        &c,
        req(&proxy.url("/"))
            .header("host", "example.com")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers["location"], "http://example.com/app1");
    assert_eq!(r.headers["server"], "portcullis");
    let r = get(&c, &proxy.url("/app1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/app1");
}

#[tokio::test]
async fn https_redirect_is_308_for_tls_hosts_on_plain_http() {
    let pod = pod("127.0.0.37").await;
    let mk = |host_tls: bool, ssl_redirect: bool, force: bool| TestRoute {
        route: route(
            backend("default/web:80", &[pod]),
            Policy {
                ssl_redirect,
                force_ssl_redirect: force,
                ..Policy::default()
            },
        ),
        regex: None,
        // The host the requests below name, when it has a TLS section.
        tls_hosts: if host_tls {
            vec!["shop.example.com"]
        } else {
            Vec::new()
        },
    };
    let c = client();
    let request = |url: String| {
        req(&url)
            .header("host", "Shop.example.com:9080")
            .body(Full::default())
            .unwrap()
    };
    let proxy = start_proxy_with(mk(true, true, false), ProxyConfig::default(), Scheme::Http).await;
    let r = send(&c, request(proxy.url("/cart?id=7"))).await;
    assert_eq!(r.status, 308);
    assert_eq!(r.headers["location"], "https://shop.example.com/cart?id=7");
    // ACME HTTP-01 challenges stay on plain HTTP.
    let r = send(&c, request(proxy.url("/.well-known/acme-challenge/tok"))).await;
    assert_eq!(r.status, 200);
    // Already HTTPS: no redirect.
    let proxy =
        start_proxy_with(mk(true, true, false), ProxyConfig::default(), Scheme::Https).await;
    assert_eq!(send(&c, request(proxy.url("/cart"))).await.status, 200);
    // No TLS section and no force: no redirect.
    let proxy =
        start_proxy_with(mk(false, true, false), ProxyConfig::default(), Scheme::Http).await;
    assert_eq!(send(&c, request(proxy.url("/cart"))).await.status, 200);
    // ssl-redirect "false" disables it.
    let proxy =
        start_proxy_with(mk(true, false, false), ProxyConfig::default(), Scheme::Http).await;
    assert_eq!(send(&c, request(proxy.url("/cart"))).await.status, 200);
    // force-ssl-redirect without TLS.
    let proxy =
        start_proxy_with(mk(false, false, true), ProxyConfig::default(), Scheme::Http).await;
    assert_eq!(send(&c, request(proxy.url("/cart"))).await.status, 308);
}

#[tokio::test]
async fn body_size_limit_413_declared_and_streamed() {
    let pod = pod("127.0.0.38").await;
    let policy = Policy {
        max_body_bytes: Some(1000),
        ..Policy::default()
    };
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), policy),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    let post = |n: usize| {
        Request::post(proxy.url("/up"))
            .body(Full::new(Bytes::from(vec![b'x'; n])))
            .unwrap()
    };
    let r = send(&c, post(1001)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.headers["server"], "portcullis");
    let r = send(&c, post(1000)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_length"], 1000);

    // Chunked (no Content-Length): stopped while streaming.
    let (tx, body) = channel_body();
    let stream_client = streaming_client();
    let request = Request::post(proxy.url("/up")).body(body).unwrap();
    let pending = tokio::spawn(async move { stream_client.request(request).await });
    for _ in 0..5 {
        if tx.send(Bytes::from(vec![b'y'; 400])).await.is_err() {
            break;
        }
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 413);
}

#[tokio::test]
async fn upstream_vhost_and_custom_headers() {
    let pod = pod("127.0.0.39").await;
    let policy = Policy {
        upstream_vhost: Some("internal.web.svc".into()),
        request_headers: vec![(
            HeaderName::from_static("x-added"),
            HeaderValue::from_static("in"),
        )],
        response_headers: vec![(
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        )],
        ..Policy::default()
    };
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), policy),
        ProxyConfig::default(),
    )
    .await;
    let r = send(
        &client(),
        req(&proxy.url("/"))
            .header("host", "public.example")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["host"], "internal.web.svc");
    assert_eq!(r.seen("x-forwarded-host").unwrap(), "public.example");
    assert_eq!(r.seen("x-added").unwrap(), "in");
    assert_eq!(r.headers["x-frame-options"], "DENY");
}

#[tokio::test]
async fn canary_by_header_and_weight() {
    let main = pod("127.0.0.40").await;
    let canary_pod = pod("127.0.0.41").await;
    let mk = |weight: u32, value: Option<&str>| {
        route(
            backend("default/main:80", &[main]),
            Policy {
                canary: Some(Canary {
                    backend: backend("default/canary:80", &[canary_pod]),
                    weight,
                    header: Some(HeaderName::from_static("x-canary")),
                    header_value: value.map(String::from),
                }),
                ..Policy::default()
            },
        )
    };
    let c = client();
    let with = |url: String, v: &str| {
        req(&url)
            .header("x-canary", v)
            .body(Full::default())
            .unwrap()
    };

    let proxy = start_proxy(mk(0, None), ProxyConfig::default()).await;
    assert_eq!(
        send(&c, with(proxy.url("/"), "always")).await.pod(),
        echo_name(canary_pod)
    );
    for _ in 0..50 {
        assert_eq!(
            get(&c, &proxy.url("/")).await.pod(),
            echo_name(main),
            "weight 0"
        );
    }
    proxy.set_route(mk(100, None));
    assert_eq!(
        send(&c, with(proxy.url("/"), "never")).await.pod(),
        echo_name(main)
    );
    for _ in 0..50 {
        assert_eq!(
            get(&c, &proxy.url("/")).await.pod(),
            echo_name(canary_pod),
            "weight 100"
        );
    }
    proxy.set_route(mk(0, Some("blue")));
    assert_eq!(
        send(&c, with(proxy.url("/"), "blue")).await.pod(),
        echo_name(canary_pod)
    );
    assert_eq!(
        send(&c, with(proxy.url("/"), "green")).await.pod(),
        echo_name(main)
    );

    proxy.set_route(mk(50, None));
    let mut canary_hits = 0;
    for _ in 0..400 {
        if get(&c, &proxy.url("/")).await.pod() == echo_name(canary_pod) {
            canary_hits += 1;
        }
    }
    // Binomial(400, 0.5): sd 10, so ±80 is eight standard deviations.
    assert!((120..=280).contains(&canary_hits), "{canary_hits} of 400");
}

#[tokio::test]
async fn http2_client_host_comes_from_authority() {
    let pod = pod("127.0.0.42").await;
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut send_req, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = Request::get("http://app.example:9080/h2?x=1")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = send_req.send_request(request).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["host"], "app.example:9080");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["path"], "/h2?x=1");
    assert_eq!(v["headers"]["x-forwarded-host"], "app.example:9080");
}

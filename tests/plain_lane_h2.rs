//! The plain lane for HTTP/2 requests against the usual path: the same requests over
//! HTTP/2 (prior knowledge, the plain listener) through a proxy with the lane on and one
//! with it off, to scripted pods that record the heads they get. What the pod receives
//! and what the client gets back (status, fields, body, trailers) must match.
//!
//! How a test knows the lane served a request: the lane writes `Host` (from `:authority`)
//! first in the pod's head; the usual path appends it to its map after the forwarded
//! fields, so there it comes last.
mod proxy_common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::request::gateway::{ProxyConfig, Scheme};
use proxy_common::scripted_pod::{
    Seen, canonical, field_names, heads_starting, policy_adding_a_field, scripted_pod,
};
use proxy_common::*;

/// An HTTP/2 connection to a proxy's plain listener.
async fn h2(proxy: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// Extra request fields, as name and value.
type Fields<'a> = &'a [(&'a str, &'a str)];

/// An HTTP/2 connection over TLS (ALPN h2) to a proxy's TLS listener.
async fn h2_tls(proxy: SocketAddr, ca_pem: &[u8]) -> SendRequest<Full<Bytes>> {
    let config = portcullis::tls::client_config(ca_pem, &[b"h2"]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// A GET for `path` on shop.example:8080 with `extra` fields, as a browser would send it.
fn get(path: &str, extra: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get(format!("http://shop.example:8080{path}"))
        .header("user-agent", "probe/1")
        .header("accept", "*/*");
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    req.body(Full::default()).unwrap()
}

/// The answer as text: status line, fields, a blank line, the body, then any trailers.
async fn send(conn: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> String {
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.send_request(req))
        .await
        .expect("no answer within 10 s")
        .expect("the request failed");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let mut text = format!("HTTP/2 {}\r\n", resp.status().as_u16());
    for (name, value) in resp.headers() {
        text += &format!("{name}: {}\r\n", String::from_utf8_lossy(value.as_bytes()));
    }
    let body = resp.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned();
    text += "\r\n";
    text += &String::from_utf8_lossy(&body.to_bytes());
    for (name, value) in trailers.iter().flatten() {
        text += &format!(
            "\r\ntrailer {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    text
}

struct Pair {
    lane: TestProxy,
    usual: TestProxy,
    lane_seen: Seen,
    usual_seen: Seen,
}

async fn pair_with(policy: impl Fn() -> Policy, config: ProxyConfig, scheme: Scheme) -> Pair {
    let (lane_pod, lane_seen) = scripted_pod("127.0.0.95").await;
    let (usual_pod, usual_seen) = scripted_pod("127.0.0.96").await;
    let start = |pod, plain_lane| {
        start_proxy_with(
            TestRoute {
                route: route(backend("default/web:80", &[pod]), policy()),
                regex: None,
                tls_hosts: vec!["shop.example"],
            },
            ProxyConfig {
                plain_lane,
                ..config.clone()
            },
            scheme,
        )
    };
    Pair {
        lane: start(lane_pod, true).await,
        usual: start(usual_pod, false).await,
        lane_seen,
        usual_seen,
    }
}

async fn pair(policy: impl Fn() -> Policy) -> Pair {
    pair_with(policy, ProxyConfig::default(), Scheme::Http).await
}

impl Pair {
    /// Both proxies' canonical answers to `req()`, each on a fresh connection after one
    /// warm-up request, so the lane finds an idle pooled connection to its pod.
    async fn both(&self, req: impl Fn() -> Request<Full<Bytes>>) -> (String, String) {
        let mut answers = Vec::new();
        for proxy in [&self.lane, &self.usual] {
            let mut conn = h2(proxy.addr).await;
            send(&mut conn, get("/len", &[])).await;
            answers.push(canonical(&send(&mut conn, req()).await));
        }
        let usual = answers.pop().unwrap();
        (answers.pop().unwrap(), usual)
    }

    /// The last head each pod got.
    fn last_heads(&self) -> (String, String) {
        let last = |seen: &Seen| seen.lock().unwrap().last().cloned().unwrap();
        (last(&self.lane_seen), last(&self.usual_seen))
    }
}

/// The name of the first field of a request head.
fn first_field(head: &str) -> &str {
    let line = head.split("\r\n").nth(1).unwrap_or_default();
    line.split(':').next().unwrap_or_default()
}

#[tokio::test]
async fn the_pod_and_the_client_see_the_same_through_either_lane() {
    let p = pair(Policy::default).await;
    for path in [
        "/len", "/chunked", "/named", "/empty", "/zero", "/early", "/close", "/both",
    ] {
        let (lane, usual) = p.both(|| get(path, &[])).await;
        assert!(lane.starts_with("HTTP/2 "), "{path}: {lane:?}");
        assert_eq!(lane, usual, "{path}: answers differ");
        let (lane_head, usual_head) = p.last_heads();
        assert!(lane_head.starts_with(&format!("GET {path} HTTP/1.1\r\n")));
        assert_eq!(first_field(&lane_head), "host", "{path}: {lane_head}");
        assert_ne!(first_field(&usual_head), "host", "{path}: {usual_head}");
        assert_eq!(
            canonical(&lane_head),
            canonical(&usual_head),
            "{path}: heads differ"
        );
        assert!(
            lane_head.contains("\r\nhost: shop.example:8080\r\n"),
            "{lane_head}"
        );
        assert!(
            lane_head.contains("\r\nx-forwarded-port: 8080\r\n"),
            "{lane_head}"
        );
    }
    // What the answers say, beyond being the same.
    let (lane, _) = p.both(|| get("/chunked", &[])).await;
    assert!(lane.ends_with("\r\n\r\nabcde\r\ntrailer x-t: 1"), "{lane}");
    let (lane, _) = p.both(|| get("/named", &[])).await;
    assert!(lane.starts_with("HTTP/2 201\r\n"), "{lane}");
    assert!(!lane.contains("x-drop"), "{lane}");
    assert!(!lane.contains("connection"), "{lane}");
    assert!(lane.contains("x-keep: 2\r\n"), "{lane}");
    assert!(lane.contains("date: Mon, 01 Jan 2024"), "{lane}");
    let (lane, _) = p.both(|| get("/both", &[])).await;
    assert!(!lane.contains("content-length: 99"), "{lane}");
    assert!(lane.ends_with("\r\n\r\nhi"), "{lane}");
    let (lane, _) = p.both(|| get("/close", &[])).await;
    assert!(lane.ends_with("\r\n\r\nuntil the end"), "{lane}");
}

#[tokio::test]
async fn requests_the_lane_does_not_take_still_match() {
    let p = pair(Policy::default).await;
    let declined: [Fields; 4] = [
        &[("x-forwarded-for", "6.6.6.6")],
        &[("te", "trailers")],
        &[("content-length", "0")],
        &[("host", "shop.example:8080")],
    ];
    for extra in declined {
        let (lane, usual) = p.both(|| get("/len", extra)).await;
        assert_eq!(lane, usual, "{extra:?}");
        let (lane_head, usual_head) = p.last_heads();
        assert_ne!(first_field(&lane_head), "host", "{extra:?}: {lane_head}");
        assert_eq!(canonical(&lane_head), canonical(&usual_head), "{extra:?}");
    }
    // A path that normalises to another, and a method other than GET.
    let (lane, usual) = p.both(|| get("/a/../len", &[])).await;
    assert_eq!(lane, usual);
    assert!(p.last_heads().0.starts_with("GET /len HTTP/1.1\r\n"));
    let head = || {
        let mut req = get("/len", &[]);
        *req.method_mut() = Method::HEAD;
        req
    };
    let (lane, usual) = p.both(head).await;
    assert_eq!(lane, usual);
    let (lane_head, _) = p.last_heads();
    assert!(lane_head.starts_with("HEAD /len "), "{lane_head}");
    assert_ne!(first_field(&lane_head), "host", "{lane_head}");
}

#[tokio::test]
async fn routes_with_a_policy_go_the_usual_way() {
    let p = pair(policy_adding_a_field).await;
    let (lane, usual) = p.both(|| get("/len", &[])).await;
    assert_eq!(lane, usual);
    assert!(lane.contains("x-policy: 1\r\n"), "{lane}");
    assert_ne!(first_field(&p.last_heads().0), "host");
}

#[tokio::test]
async fn a_pooled_connection_that_breaks_sends_the_request_the_usual_way() {
    let p = pair(Policy::default).await;
    // The warm-up leaves an idle connection; the pod drops it on the next request.
    let (lane, usual) = p.both(|| get("/drop", &[])).await;
    assert!(lane.starts_with("HTTP/2 200\r\n"), "{lane}");
    assert_eq!(lane, usual);
    let drops = heads_starting(&p.lane_seen, "GET /drop");
    assert_eq!(
        drops.len(),
        2,
        "the lane's attempt, then the usual one: {drops:?}"
    );
    assert_eq!(first_field(&drops[0]), "host", "{}", drops[0]);
    assert_ne!(first_field(&drops[1]), "host", "{}", drops[1]);
}

#[tokio::test]
async fn no_answer_within_the_read_timeout_is_a_504_from_either_lane() {
    let p = pair(|| Policy {
        read_timeout: Some(Duration::from_millis(200)),
        ..Policy::default()
    })
    .await;
    let (lane, usual) = p.both(|| get("/slow", &[])).await;
    assert!(lane.starts_with("HTTP/2 504\r\n"), "{lane}");
    // The reasons name each proxy's own pod; the fields are the same.
    assert_eq!(field_names(&lane), field_names(&usual));
    assert_eq!(first_field(&p.last_heads().0), "host");
}

#[tokio::test]
async fn hsts_and_server_tokens_are_added_as_the_usual_path_adds_them() {
    let settings = portcullis::config::EdgeSettings {
        hsts: true,
        server_tokens: true,
        ..Default::default()
    };
    let edge = portcullis::ingress::request::edge_headers::EdgeHeaders::from_settings(&settings);
    assert!(edge.is_some());
    let config = ProxyConfig {
        edge_headers: edge,
        ..ProxyConfig::default()
    };
    let p = pair_with(Policy::default, config, Scheme::Https).await;
    let (lane, usual) = p.both(|| get("/named", &[])).await;
    assert_eq!(lane, usual);
    let (lane_head, _) = p.last_heads();
    assert_eq!(first_field(&lane_head), "host", "{lane_head}");
    assert!(
        lane_head.contains("\r\nx-forwarded-proto: https\r\n"),
        "{lane_head}"
    );
    assert!(
        lane.contains("strict-transport-security: max-age="),
        "{lane}"
    );
    assert!(lane.contains("server: portcullis/"), "{lane}");
}

#[tokio::test]
async fn over_tls_the_lane_serves_from_its_own_small_future_and_falls_back_alike() {
    // HTTP/2 over TLS is `server::h2`'s, a task per stream, where the gateway boxes the
    // lane's future apart from the usual path's (`handle_boxed`).
    let certs = portcullis::tls::DevCerts::generate("portcullis", "default").unwrap();
    let resolver = std::sync::Arc::new(portcullis::tls::SniResolver::new(
        certs.certified_key().unwrap(),
    ));
    let tls = portcullis::tls::server_config(resolver).unwrap();
    let (lane_pod, lane_seen) = scripted_pod("127.0.0.97").await;
    let (usual_pod, usual_seen) = scripted_pod("127.0.0.98").await;
    let start = |pod, plain_lane| {
        start_proxy_tls(
            TestRoute {
                route: route(backend("default/web:80", &[pod]), Policy::default()),
                regex: None,
                tls_hosts: vec!["shop.example"],
            },
            ProxyConfig {
                plain_lane,
                ..ProxyConfig::default()
            },
            tls.clone(),
        )
    };
    let (lane, usual) = (start(lane_pod, true).await, start(usual_pod, false).await);
    let ca = certs.ca_pem.as_bytes();
    let (mut to_lane, mut to_usual) = (h2_tls(lane.addr, ca).await, h2_tls(usual.addr, ca).await);
    // Served by the lane, declined by it (a forwarded field), and given back by it (the
    // pod drops the pooled connection), each against the usual path.
    let cases: [(&str, Fields, bool); 4] = [
        ("/len", &[], true),
        ("/chunked", &[], true),
        ("/len", &[("x-forwarded-for", "6.6.6.6")], false),
        ("/drop", &[], false),
    ];
    for (path, extra, by_lane) in cases {
        let a = canonical(&send(&mut to_lane, get(path, extra)).await);
        let b = canonical(&send(&mut to_usual, get(path, extra)).await);
        assert_eq!(a, b, "{path} {extra:?}");
        assert!(a.starts_with("HTTP/2 200\r\n"), "{a}");
        let lane_head = lane_seen.lock().unwrap().last().cloned().unwrap();
        let usual_head = usual_seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(first_field(&lane_head) == "host", by_lane, "{lane_head}");
        assert_eq!(canonical(&lane_head), canonical(&usual_head), "{path}");
        assert!(
            lane_head.contains("\r\nx-forwarded-proto: https\r\n"),
            "{lane_head}"
        );
    }
    let drops = heads_starting(&lane_seen, "GET /drop").len();
    assert_eq!(
        drops, 2,
        "the lane's attempt on the pooled connection, then the usual one"
    );
}

//! The HTTP/1.1 upstream pool against a real hyper pod: keep-alive connections are
//! reused, kept up to the per-endpoint cap, closed after the idle timeout, and never
//! reused when the pod closed them or a response was left unread.
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::ingress::request::upstream::{UpstreamBody, UpstreamSettings, Upstreams, Wire};
use tokio::net::TcpListener;

/// Counts of what the pod saw.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    closed: AtomicUsize,
    requests: AtomicUsize,
}

/// How the pod answers.
#[derive(Clone, Copy)]
enum Mode {
    KeepAlive,
    /// `Connection: close` on every answer.
    Close,
    /// Waits this long before answering.
    Slow(Duration),
    /// A body far larger than any socket buffer.
    Large,
}

async fn pod(mode: Mode) -> (Authority, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let per_request = counts.clone();
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    per_request.requests.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let host = req
                            .headers()
                            .get("host")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let mut resp = match mode {
                            Mode::Large => {
                                Response::new(Full::new(Bytes::from(vec![b'x'; 8 << 20])))
                            }
                            _ => Response::new(Full::new(Bytes::from(format!(
                                "{} {host}",
                                req.uri()
                            )))),
                        };
                        match mode {
                            Mode::Close => {
                                resp.headers_mut()
                                    .insert("connection", "close".parse().unwrap());
                            }
                            Mode::Slow(d) => tokio::time::sleep(d).await,
                            _ => {}
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                counts.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr.to_string().parse().unwrap(), seen)
}

fn request(path: &str) -> Request<UpstreamBody> {
    let mut req = Request::new(UpstreamBody::Empty);
    *req.uri_mut() = path.parse().unwrap();
    req.headers_mut()
        .insert("host", "shop.example.test".parse().unwrap());
    req
}

/// One request through the pool, its body read to the end and the lease let go.
async fn get(pool: &Upstreams, target: &Authority, path: &str) -> (StatusCode, String) {
    let (resp, lease) = pool
        .send(Wire::Http1, Duration::from_secs(2), target, request(path))
        .await
        .expect("request failed");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    drop(lease);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Lets the pods and the pool's reaper run between requests.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection_in_origin_form() {
    let (target, seen) = pod(Mode::KeepAlive).await;
    let pool = Upstreams::new(UpstreamSettings::default());
    for i in 0..20 {
        let (status, body) = get(&pool, &target, &format!("/items?page={i}")).await;
        assert_eq!(status, StatusCode::OK);
        // The pod sees the path, not an absolute URI, and the client's Host.
        assert_eq!(body, format!("/items?page={i} shop.example.test"));
        settle().await;
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 20);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.h1_pool().idle_here(), 1);
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_are_kept_up_to_the_cap() {
    let (target, seen) = pod(Mode::Slow(Duration::from_millis(100))).await;
    let pool = Arc::new(Upstreams::new(UpstreamSettings {
        max_idle_per_endpoint: 3,
        ..UpstreamSettings::default()
    }));
    let burst = |n: usize| {
        let pool = pool.clone();
        let target = target.clone();
        async move {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let pool = pool.clone();
                    let target = target.clone();
                    tokio::spawn(async move { get(&pool, &target, "/").await.0 })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), StatusCode::OK);
            }
        }
    };
    burst(5).await;
    settle().await;
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 5);
    // Two over the cap were closed when their responses ended.
    assert_eq!(pool.h1_pool().idle_here(), 3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(seen.closed.load(Ordering::SeqCst), 2);
    // A second burst of three rides the kept connections.
    burst(3).await;
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let (target, seen) = pod(Mode::KeepAlive).await;
    let pool = Upstreams::new(UpstreamSettings {
        idle_timeout: Duration::from_millis(300),
        ..UpstreamSettings::default()
    });
    get(&pool, &target, "/").await;
    settle().await;
    // Busy again within the timeout: the same connection, still open.
    tokio::time::sleep(Duration::from_millis(150)).await;
    get(&pool, &target, "/").await;
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        seen.closed.load(Ordering::SeqCst),
        1,
        "idle connection not closed"
    );
    // The next request finds the closed one, drops it and connects afresh.
    let (status, _) = get(&pool, &target, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_pod_closes_is_not_reused() {
    let (target, seen) = pod(Mode::Close).await;
    let pool = Upstreams::new(UpstreamSettings::default());
    for _ in 0..5 {
        let (status, _) = get(&pool, &target, "/").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 5);
    assert_eq!(seen.requests.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_response_left_unread_does_not_return_its_connection() {
    let (target, seen) = pod(Mode::Large).await;
    let pool = Upstreams::new(UpstreamSettings::default());
    let (resp, lease) = pool
        .send(Wire::Http1, Duration::from_secs(2), &target, request("/"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The client went away mid-body: body and lease go, the rest of the body is unread.
    drop(resp);
    drop(lease);
    settle().await;
    let (status, body) = get(&pool, &target, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), 8 << 20);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connect_is_a_typed_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    drop(listener);
    let pool = Upstreams::new(UpstreamSettings::default());
    let err = pool
        .send(Wire::Http1, Duration::from_secs(2), &target, request("/"))
        .await
        .expect_err("a closed port answered");
    match err {
        portcullis::ingress::request::upstream::UpstreamError::Connect { kind, .. } => {
            assert_eq!(
                kind,
                portcullis::ingress::request::upstream::ConnectKind::Refused
            )
        }
        other => panic!("not a connect error: {other:?}"),
    }
}

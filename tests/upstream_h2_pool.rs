//! The HTTP/2 upstream pool under a burst: requests that find no connection share one
//! setup (one TCP connection to the pod, however many arrive at once) instead of queueing
//! behind a lock held across the connect, and share its failure when the pod is down.
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::ingress::request::upstream::{
    UpstreamBody, UpstreamError, UpstreamSettings, Upstreams, Wire,
};
use tokio::net::TcpListener;

/// An h2c pod that counts the TCP connections it accepts.
async fn h2_pod() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn request(addr: std::net::SocketAddr) -> Request<UpstreamBody> {
    let mut req = Request::new(UpstreamBody::Empty);
    *req.uri_mut() = format!("http://{addr}/").parse().unwrap();
    *req.version_mut() = http::Version::HTTP_2;
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_cold_pool_opens_one_connection() {
    let (addr, accepted) = h2_pod().await;
    let pool = Arc::new(Upstreams::new(UpstreamSettings::default()));
    let target: http::uri::Authority = addr.to_string().parse().unwrap();
    let burst: Vec<_> = (0..32)
        .map(|_| {
            let pool = pool.clone();
            let target = target.clone();
            tokio::spawn(async move {
                pool.send(Wire::H2c, Duration::from_secs(2), &target, request(addr))
                    .await
                    .map(|(resp, _lease)| resp.status())
            })
        })
        .collect();
    for task in burst {
        assert_eq!(task.await.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one shared setup for the burst"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_dead_pod_fails_as_a_connect_error_for_everyone() {
    // A port nobody listens on: refused at once.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let pool = Arc::new(Upstreams::new(UpstreamSettings::default()));
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.send(
                    Wire::H2c,
                    Duration::from_secs(2),
                    &dead.to_string().parse().unwrap(),
                    request(dead),
                )
                .await
            })
        })
        .collect();
    for task in burst {
        match task.await.unwrap() {
            Err(UpstreamError::Connect { message, .. }) => {
                assert!(message.contains("refused"), "{message}")
            }
            Err(other) => panic!("not a connect error: {other:?}"),
            Ok(_) => panic!("a dead pod answered"),
        }
    }
    // After the failure the pool tries again (no failure is remembered for ever).
    let (addr, accepted) = h2_pod().await;
    let (resp, _) = pool
        .send(
            Wire::H2c,
            Duration::from_secs(2),
            &addr.to_string().parse().unwrap(),
            request(addr),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

//! Bodies stream through the proxy both ways and are never collected: a 100 MiB upload
//! arrives whole at the echo pod while the proxy holds at most a few frames of it.
mod proxy_common;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::request::gateway::ProxyConfig;
use proxy_common::*;

const MIB: usize = 1024 * 1024;

/// Peak resident set size of this process, from /proc (Linux).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_upload_streams_through() {
    let pod = pod("127.0.0.60").await;
    let proxy = start_proxy(
        route(backend("default/upload:80", &[pod]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let rss_before = peak_rss_bytes();

    let (tx, body) = channel_body();
    let request = Request::post(proxy.url("/upload")).body(body).unwrap();
    let c = streaming_client();
    let pending = tokio::spawn(async move { c.request(request).await });
    let chunk = Bytes::from(vec![0xA5u8; 256 * 1024]);
    let sending = async {
        for _ in 0..(100 * MIB / chunk.len()) {
            tx.send(chunk.clone()).await.unwrap();
        }
        drop(tx);
    };
    tokio::time::timeout(Duration::from_secs(120), sending)
        .await
        .expect("upload stalled");
    let resp = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body_length"], (100 * MIB) as u64);
    assert_eq!(v["headers"]["transfer-encoding"], "chunked");

    // Proxy, pod and client share this process: had anyone buffered the upload, the
    // peak RSS would have grown by about 100 MiB.
    if let (Some(before), Some(after)) = (rss_before, peak_rss_bytes()) {
        let grown = after.saturating_sub(before);
        assert!(
            grown < 50 * MIB as u64,
            "peak RSS grew by {} MiB",
            grown / MIB as u64
        );
    }

    let metrics = String::from_utf8(portcullis::metrics::encode()).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("portcullis_ingress_request_bytes_total{host=\"\",ingress=\"web\",namespace=\"default\",path=\"/\"}"))
        .expect("request bytes metric");
    let counted: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= (100 * MIB) as u64, "{line}");
}

#[tokio::test]
async fn upload_reaches_the_pod_before_it_is_complete() {
    // A pod that reports, via the response, nothing; instead the client watches the
    // pod's side through a backend that answers only after reading everything, and
    // the client pauses mid-body: if the proxy buffered the request, the pod would not
    // receive the first half before the client sends the second.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.61:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = received.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let seen = seen.clone();
            async move {
                let mut body = req.into_body();
                while let Some(Ok(f)) = body.frame().await {
                    if let Some(d) = f.data_ref() {
                        seen.fetch_add(d.len() as u64, Ordering::SeqCst);
                    }
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    Bytes::from_static(b"done"),
                )))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });

    let proxy = start_proxy(
        route(backend("default/watch:80", &[addr]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let (tx, body) = channel_body();
    let request = Request::post(proxy.url("/")).body(body).unwrap();
    let c = streaming_client();
    let pending = tokio::spawn(async move { c.request(request).await });
    for _ in 0..8 {
        tx.send(Bytes::from(vec![1u8; 64 * 1024])).await.unwrap();
    }
    // The first half must reach the pod while the request is still open.
    let half = (8 * 64 * 1024) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::SeqCst) < half {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod got {} of {half} bytes",
            received.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..8 {
        tx.send(Bytes::from(vec![2u8; 64 * 1024])).await.unwrap();
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(received.load(Ordering::SeqCst), 2 * half);
}

#[tokio::test]
async fn response_streams_back_with_content_length() {
    // A pod that sends a large fixed-length body: the client gets the same length header
    // and every byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.62:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let body = http_body_util::Full::new(Bytes::from(vec![7u8; 4 * MIB]));
                    Ok::<_, std::convert::Infallible>(http::Response::new(body))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let proxy = start_proxy(
        route(backend("default/dl:80", &[addr]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let r = get(&client(), &proxy.url("/big")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], (4 * MIB).to_string().as_str());
    assert_eq!(r.body.len(), 4 * MIB);
    assert!(r.body.iter().all(|b| *b == 7));
}

#[tokio::test]
async fn slow_upload_is_not_a_read_timeout_but_a_stall_is() {
    let pod = pod("127.0.0.63").await;
    let policy = Policy {
        read_timeout: Some(Duration::from_millis(300)),
        send_timeout: Some(Duration::from_millis(300)),
        ..Policy::default()
    };
    let proxy = start_proxy(
        route(backend("default/slowup:80", &[pod]), policy),
        ProxyConfig::default(),
    )
    .await;

    // 10 chunks, 100 ms apart: the upload takes ~1 s, three read timeouts long.
    let (tx, body) = channel_body();
    let request = Request::post(proxy.url("/slow")).body(body).unwrap();
    let c = streaming_client();
    let pending = tokio::spawn(async move { c.request(request).await });
    for _ in 0..10 {
        tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["body_length"], 100);

    // A client that stops sending mid-body is cut after the send timeout.
    let (tx, body) = channel_body();
    let request = Request::post(proxy.url("/stall")).body(body).unwrap();
    let c = streaming_client();
    let pending = tokio::spawn(async move { c.request(request).await });
    tx.send(Bytes::from_static(b"start")).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("stalled upload was not cut")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 504);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("no progress"));
    drop(tx);
}

#[tokio::test]
async fn pod_that_answers_before_reading_the_body_is_heard() {
    // A pod refuses the upload from its head alone (413) and closes the connection with
    // the body unread, so the proxy's next body write fails. The pod's answer must still
    // reach the client rather than a 502 for the failed write.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.62:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answered_tx, answered) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream
            .write_all(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\
                  connection: close\r\n\r\ntoo big!",
            )
            .await;
        // Closing with unread bytes resets the connection: the proxy's writes fail.
        drop(stream);
        let _ = answered_tx.send(());
    });

    let proxy = start_proxy(
        route(backend("default/strict:80", &[addr]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let (tx, body) = channel_body();
    let request = Request::post(proxy.url("/upload"))
        .header("content-length", (64 * MIB).to_string())
        .body(body)
        .unwrap();
    let c = streaming_client();
    let pending = tokio::spawn(async move { c.request(request).await });
    tx.send(Bytes::from(vec![7u8; 16 * 1024])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), answered)
        .await
        .expect("the pod never saw the request head")
        .unwrap();
    // The rest of the body now meets a closed connection; the client keeps sending until
    // the proxy stops taking it.
    let feeding = tokio::spawn(async move {
        let chunk = Bytes::from(vec![7u8; 256 * 1024]);
        for _ in 0..256 {
            if tx.send(chunk.clone()).await.is_err() {
                break;
            }
        }
    });
    let resp = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("no answer")
        .unwrap()
        .expect("the client got no response");
    assert_eq!(resp.status(), 413);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"too big!");
    feeding.abort();
}

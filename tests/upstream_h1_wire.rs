//! Our HTTP/1.1 client code against pods that write raw bytes: the response framings of
//! RFC 9112 (chunked with extensions and trailers, close-delimited, interim 1xx), what
//! may reuse the connection afterwards, and malformed answers that must fail cleanly.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use portcullis::ingress::request::upstream::{
    UpstreamBody, UpstreamError, UpstreamSettings, Upstreams, Wire,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A pod that answers every request head with `answer` (the same bytes each time) and
/// counts the connections it accepted.
async fn raw_pod(answer: &'static [u8]) -> (Authority, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, answer));
        }
    });
    (addr.to_string().parse().unwrap(), accepted)
}

async fn serve(mut stream: TcpStream, answer: &'static [u8]) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        seen.clear();
        if stream.write_all(answer).await.is_err() {
            return;
        }
        // A close-delimited answer ends with the connection.
        if !answer
            .windows(15)
            .any(|w| w.eq_ignore_ascii_case(b"content-length:"))
            && !answer
                .windows(18)
                .any(|w| w.eq_ignore_ascii_case(b"transfer-encoding:"))
            && !answer.starts_with(b"HTTP/1.1 204")
        {
            return;
        }
    }
}

fn get(method: http::Method) -> Request<UpstreamBody> {
    let mut req = Request::new(UpstreamBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = "/x".parse().unwrap();
    req.headers_mut()
        .insert("host", "pod.test".parse().unwrap());
    req
}

struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    trailers: Option<http::HeaderMap>,
}

async fn send(
    pool: &Upstreams,
    target: &Authority,
    method: http::Method,
) -> Result<Answer, String> {
    let (resp, _lease) = pool
        .send(Wire::Http1, Duration::from_secs(2), target, get(method))
        .await
        .map_err(|e| match e {
            UpstreamError::Failed(e) => e.to_string(),
            other => format!("{other:?}"),
        })?;
    let status = resp.status();
    let collected = tokio::time::timeout(Duration::from_secs(2), resp.into_body().collect())
        .await
        .map_err(|_| "body did not end".to_string())?
        .map_err(|e| e.to_string())?;
    let trailers = collected.trailers().cloned();
    Ok(Answer {
        status,
        body: collected.to_bytes().to_vec(),
        trailers,
    })
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn chunked_answers_with_extensions_and_trailers_arrive_whole_and_keep_the_connection() {
    let (pod, accepted) = raw_pod(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
          5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
    )
    .await;
    let pool = Upstreams::new(UpstreamSettings::default());
    for _ in 0..3 {
        let a = send(&pool, &pod, http::Method::GET).await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, b"hello world");
        assert_eq!(a.trailers.expect("trailers")["x-sum"], "11");
        settle().await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for all three"
    );
    assert_eq!(pool.h1_pool().idle_here(), 1);
}

#[tokio::test]
async fn a_close_delimited_answer_is_read_to_the_end_and_its_connection_not_kept() {
    let (pod, accepted) = raw_pod(b"HTTP/1.1 200 OK\r\nx-kind: eof\r\n\r\nuntil the end").await;
    let pool = Upstreams::new(UpstreamSettings::default());
    for _ in 0..2 {
        let a = send(&pool, &pod, http::Method::GET).await.unwrap();
        assert_eq!(a.body, b"until the end");
        settle().await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(pool.h1_pool().idle_here(), 0);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_head_answers_have_no_body() {
    let (pod, accepted) = raw_pod(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody",
    )
    .await;
    let pool = Upstreams::new(UpstreamSettings::default());
    let a = send(&pool, &pod, http::Method::GET).await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b"body");

    let (head_pod, _) = raw_pod(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n").await;
    for _ in 0..2 {
        let a = send(&pool, &head_pod, http::Method::HEAD).await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert!(
            a.body.is_empty(),
            "HEAD: the length describes a body not sent"
        );
        settle().await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn malformed_answers_fail_cleanly() {
    let pool = Upstreams::new(UpstreamSettings::default());
    let cases: [(&'static [u8], &str); 5] = [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed response head"),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
            "Content-Length",
        ),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n",
            "chunked",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nshort",
            "before the response body was complete",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-le",
            "before the response head was complete",
        ),
    ];
    for (answer, why) in cases {
        let (pod, _) = raw_pod_closing(answer).await;
        let err = send(&pool, &pod, http::Method::GET)
            .await
            .err()
            .unwrap_or_else(|| panic!("{answer:?} was accepted"));
        assert!(err.contains(why), "{answer:?}: {err}");
    }
    assert_eq!(pool.h1_pool().idle_here(), 0);
}

/// A pod that writes `answer` once per connection and closes it.
async fn raw_pod_closing(answer: &'static [u8]) -> (Authority, ()) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer).await;
            });
        }
    });
    (addr.to_string().parse().unwrap(), ())
}

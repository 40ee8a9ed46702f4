//! The server's own HTTP/1.x reader and writer, over real sockets: pipelining, HTTP/1.0,
//! streamed and HEAD answers, the hand-over to hyper for requests with a body, a client
//! that leaves mid-request, and a body that breaks its own length.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use portcullis::body::{Body, BoxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A streamed body of `parts`, with no length known in advance.
fn streamed(parts: &[&'static str]) -> Body {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Answers `METHOD PATH VERSION body-bytes`, or what the path asks for.
fn handler() -> portcullis::server::Handler {
    common::handler(|req, _conn| async move {
        let line = format!("{} {} {:?}", req.method(), req.uri().path(), req.version());
        match req.uri().path() {
            "/stream" => Response::new(streamed(&["one,", "two,", "three"])),
            "/short" => {
                let mut resp = Response::new(portcullis::body::full("abc"));
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, "10".parse().unwrap());
                resp
            }
            _ => {
                let body = req.into_body().collect().await.map(|b| b.to_bytes());
                let len = body.map_or(0, |b| b.len());
                common::ok(format!("{line} {len}"))
            }
        }
    })
}

/// How the body of a response is read.
#[derive(Clone, Copy, PartialEq)]
enum Read {
    /// By its content-length or chunked encoding.
    Framed,
    /// To the end of the stream.
    ToEof,
    /// Not at all: the answer to HEAD.
    HeadOnly,
}

/// One response read off `conn`: its head (lower-cased) and its body.
async fn response(conn: &mut TcpStream, pending: &mut Vec<u8>, read: Read) -> (String, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before a whole head: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    pending.drain(..head_end);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("transfer-encoding: chunked");
    let mut fill = async |pending: &mut Vec<u8>| {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no body bytes within 5 s after {head:?} and {:?}",
                    String::from_utf8_lossy(pending)
                )
            })
            .unwrap();
        pending.extend_from_slice(&chunk[..n]);
        n
    };
    if read == Read::HeadOnly {
        return (head, Vec::new());
    }
    if read == Read::ToEof {
        while fill(pending).await > 0 {}
        return (head, std::mem::take(pending));
    }
    if chunked {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = pending.windows(2).position(|w| w == b"\r\n") else {
                assert!(fill(pending).await > 0, "closed inside a chunk size");
                continue;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&pending[..line_end]).unwrap(), 16)
                    .unwrap();
            while pending.len() < line_end + 2 + size + 2 {
                assert!(fill(pending).await > 0, "closed inside a chunk");
            }
            body.extend_from_slice(&pending[line_end + 2..line_end + 2 + size]);
            pending.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return (head, body);
            }
        }
    }
    let length = length.unwrap_or(0);
    while pending.len() < length {
        assert!(fill(pending).await > 0, "closed inside the body");
    }
    let body = pending.drain(..length).collect();
    (head, body)
}

async fn closed(conn: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    common::init();
    let server = common::start(handler(), None).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\nGET /c HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    for path in ["/a", "/b", "/c"] {
        let (head, body) = response(&mut conn, &mut pending, Read::Framed).await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("GET {path} HTTP/1.1 0\n")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn http10_closes_unless_the_client_asks_to_keep_alive() {
    common::init();
    let server = common::start(handler(), None).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let mut pending = Vec::new();
    for path in ["/one", "/two"] {
        let req = format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = response(&mut conn, &mut pending, Read::Framed).await;
        assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("GET {path} HTTP/1.0 0\n")
        );
    }
    conn.write_all(b"GET /last HTTP/1.0\r\n\r\n").await.unwrap();
    let (head, _) = response(&mut conn, &mut pending, Read::Framed).await;
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(
        closed(&mut conn).await,
        "an HTTP/1.0 request without keep-alive left the connection open"
    );

    // A streamed answer to HTTP/1.0 cannot be chunked: it ends with the connection.
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut conn, &mut Vec::new(), Read::ToEof).await;
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(&body[..], b"one,two,three");
    server.stop().await;
}

#[tokio::test]
async fn a_request_with_a_body_hands_the_connection_to_hyper_with_nothing_lost() {
    common::init();
    let server = common::start(handler(), None).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let mut pending = Vec::new();
    conn.write_all(b"GET /before HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (_, body) = response(&mut conn, &mut pending, Read::Framed).await;
    assert_eq!(&body[..], b"GET /before HTTP/1.1 0\n");
    // The body and the request behind it arrive in the same write as the head.
    conn.write_all(b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (_, body) = response(&mut conn, &mut pending, Read::Framed).await;
    assert_eq!(&body[..], b"POST /post HTTP/1.1 5\n");
    let (_, body) = response(&mut conn, &mut pending, Read::Framed).await;
    assert_eq!(&body[..], b"GET /after HTTP/1.1 0\n");
    // A malformed head still gets hyper's answer.
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut conn, &mut Vec::new(), Read::Framed).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    server.stop().await;
}

#[tokio::test]
async fn streamed_answers_are_chunked_and_head_answers_have_no_body() {
    common::init();
    let server = common::start(handler(), None).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let mut pending = Vec::new();
    conn.write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut conn, &mut pending, Read::Framed).await;
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    assert_eq!(&body[..], b"one,two,three");
    conn.write_all(b"HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut conn, &mut pending, Read::HeadOnly).await;
    assert!(head.contains("\r\ncontent-length: 19\r\n"), "{head}");
    // Whatever follows on the connection is the next answer, not a HEAD body.
    conn.write_all(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut conn, &mut pending, Read::Framed).await;
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert_eq!(&body[..], b"GET /next HTTP/1.1 0\n");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_request() {
    common::init();
    let dropped = Arc::new(AtomicBool::new(false));
    let seen = dropped.clone();
    let handler = common::handler(move |_req, _conn| {
        let guard = SetOnDrop(seen.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            common::ok("never")
        }
    });
    let server = common::start(handler, None).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !dropped.load(Ordering::SeqCst),
        "cancelled while the client waited"
    );
    drop(conn);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_body_shorter_than_its_length_ends_the_connection() {
    common::init();
    let server = common::start(handler(), None).await;
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    conn.write_all(b"GET /short HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut conn, &mut Vec::new(), Read::ToEof).await;
    assert!(head.contains("\r\ncontent-length: 10\r\n"), "{head}");
    // The client is not left waiting for seven bytes that never come.
    assert_eq!(&body[..], b"abc");
    let status = head.lines().next().unwrap_or_default().to_owned();
    assert!(status.contains(StatusCode::OK.as_str()), "{status}");
    server.stop().await;
}

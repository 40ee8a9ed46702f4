//! HTTP/2 over TLS as `server::h2` serves it (the h2 crate directly): bodies larger than
//! either side's flow-control window, trailers, the fields HTTP/2 forbids, `Date` and
//! `Content-Length`, a stream the client resets, a stream whose handler panics, and
//! keep-alive PINGs.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{Client, Proto};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use portcullis::body::Body;
use portcullis::server::ServeOptions;
use portcullis::tls::{DevCerts, SniResolver, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Tls {
    certs: DevCerts,
    config: Arc<rustls::ServerConfig>,
}

fn tls() -> Tls {
    common::init();
    let certs = DevCerts::generate("portcullis", "default").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let config = server_config(resolver).unwrap();
    Tls { certs, config }
}

async fn h2_client(addr: std::net::SocketAddr, tls: &Tls) -> Client {
    let client = Client::tls(addr, "localhost", tls.certs.ca_pem.as_bytes(), Proto::H2)
        .await
        .unwrap();
    assert_eq!(client.alpn.as_deref(), Some(&b"h2"[..]));
    client
}

/// A body of `n` bytes whose content depends on the position, so a lost or repeated piece
/// shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn bodies_larger_than_the_windows_arrive_whole_both_ways() {
    let tls = tls();
    // Echoes the body back: 3 MiB in, 3 MiB out, past the 64 KiB the client's window
    // starts with and the 1 MiB of ours.
    let handler = common::handler(|req, _| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(portcullis::body::full(body.to_vec()))
    });
    let server = common::start(handler, Some(tls.config.clone())).await;
    let mut client = h2_client(server.addr, &tls).await;
    let sent = pattern(3 * 1024 * 1024 + 17);
    let req = Request::post("https://localhost/echo")
        .body(Full::new(Bytes::from(sent.clone())))
        .unwrap();
    let reply = client.send(req).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.len(), sent.len());
    assert!(reply.body == sent, "the echoed body differs");
    server.stop().await;
}

#[tokio::test]
async fn each_field_http2_forbids_is_dropped_alone() {
    // One forbidden field per answer: each must be seen on its own (the h2 crate refuses
    // to send an answer that still has one). The list is written out again from RFC 9113
    // §8.2.2 rather than taken from the server, so that a name missing there fails here.
    const FORBIDDEN: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
    ];
    let tls = tls();
    let handler = common::handler(|req: http::Request<_>, _| async move {
        let name = req.uri().path().trim_start_matches('/').to_owned();
        let mut resp = Response::new(portcullis::body::full(b"hello".to_vec()));
        let h = resp.headers_mut();
        if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
            h.insert(name, HeaderValue::from_static("x"));
        }
        h.insert("x-kept", HeaderValue::from_static("2"));
        resp
    });
    let server = common::start(handler, Some(tls.config.clone())).await;
    let mut client = h2_client(server.addr, &tls).await;
    for name in FORBIDDEN {
        let reply = client.get("localhost", &format!("/{name}")).await.unwrap();
        assert_eq!(reply.status, 200, "{name}");
        assert!(reply.header(name).is_none(), "{name}: {:?}", reply.headers);
        assert_eq!(reply.header("x-kept"), Some("2"), "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn answers_carry_date_and_length_and_lose_the_fields_http2_forbids() {
    let tls = tls();
    let handler = common::handler(|_, _| async move {
        let mut resp = Response::new(portcullis::body::full(b"hello".to_vec()));
        let h = resp.headers_mut();
        h.insert("connection", HeaderValue::from_static("x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("2"));
        resp
    });
    let server = common::start(handler, Some(tls.config.clone())).await;
    let mut client = h2_client(server.addr, &tls).await;
    let reply = client.get("localhost", "/").await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello");
    for gone in ["connection", "x-hop", "keep-alive", "te"] {
        assert!(reply.header(gone).is_none(), "{gone}: {:?}", reply.headers);
    }
    assert_eq!(reply.header("x-kept"), Some("2"));
    assert_eq!(reply.header("content-length"), Some("5"));
    let date = reply.header("date").expect("a Date field");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    server.stop().await;
}

#[tokio::test]
async fn trailers_end_a_streamed_answer() {
    let tls = tls();
    let handler = common::handler(|_, _| async move {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![
            http_body::Frame::data(Bytes::from_static(b"part one, ")),
            http_body::Frame::data(Bytes::from_static(b"part two")),
            http_body::Frame::trailers(trailers),
        ];
        let body: Body = Frames(frames.into()).boxed();
        Response::new(body)
    });
    let server = common::start(handler, Some(tls.config.clone())).await;
    let mut client = h2_client(server.addr, &tls).await;
    let req = Request::get("https://localhost/stream")
        .body(Full::default())
        .unwrap();
    let resp = client.send_raw(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(collected.to_bytes(), "part one, part two");
    server.stop().await;
}

/// A body made of the frames given, one per poll.
struct Frames(std::collections::VecDeque<http_body::Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = portcullis::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[tokio::test]
async fn a_stream_the_client_resets_cancels_its_handler() {
    let tls = tls();
    let cancelled = Arc::new(AtomicBool::new(false));
    let seen = cancelled.clone();
    let handler = common::handler(move |req, _| {
        let cancelled = seen.clone();
        async move {
            if req.uri().path() != "/slow" {
                return common::ok("quick");
            }
            // Flags its own drop: the handler's future is dropped when the stream goes.
            struct OnDrop(Arc<AtomicBool>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _guard = OnDrop(cancelled);
            tokio::time::sleep(Duration::from_secs(30)).await;
            common::ok("too late")
        }
    });
    let server = common::start(handler, Some(tls.config.clone())).await;
    let mut client = h2_client(server.addr, &tls).await;
    let req = Request::get("https://localhost/slow")
        .body(Full::default())
        .unwrap();
    // Dropping the unanswered request resets its stream.
    let _ = tokio::time::timeout(Duration::from_millis(200), client.send_raw(req)).await;
    for _ in 0..50 {
        if cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cancelled.load(Ordering::SeqCst), "the handler kept running");
    // The connection serves on.
    assert_eq!(
        client.get("localhost", "/").await.unwrap().text(),
        "quick\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stream_whose_handler_panics_is_reset_and_its_siblings_go_on() {
    let tls = tls();
    let handler = common::handler(|req, _| async move {
        match req.uri().path() {
            "/panic" => panic!("a handler bug (this panic is the test's own)"),
            "/late" => {
                // The head now, the body's end only after the panic next door.
                let first = futures_util::stream::iter([Ok(http_body::Frame::data(
                    Bytes::from_static(b"part one, "),
                ))]);
                let later = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(http_body::Frame::data(Bytes::from_static(b"part two")))
                });
                let body: Body =
                    BodyExt::boxed(http_body_util::StreamBody::new(first.chain(later)));
                Response::new(body)
            }
            _ => common::ok("quick"),
        }
    });
    let server = common::start(handler, Some(tls.config.clone())).await;
    let mut client = h2_client(server.addr, &tls).await;
    let late = client
        .send_raw(client.request("localhost", "/late"))
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::OK);
    assert!(
        client.get("localhost", "/panic").await.is_err(),
        "the panicking stream was answered"
    );
    // The stream in flight beside it finishes, and the connection takes new ones.
    let body = late.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "part one, part two");
    assert_eq!(
        client.get("localhost", "/").await.unwrap().text(),
        "quick\n"
    );
    server.stop().await;
}

fn pinging(interval_ms: u64, timeout_ms: u64) -> ServeOptions {
    let mut opts = ServeOptions::new("h2_ping");
    opts.grace = Duration::from_secs(2);
    opts.h2_keep_alive_interval = Duration::from_millis(interval_ms);
    opts.h2_keep_alive_timeout = Duration::from_millis(timeout_ms);
    opts
}

#[tokio::test]
async fn a_peer_that_answers_pings_stays_connected() {
    let tls = tls();
    let handler = common::handler(|_, _| async move { common::ok("here") });
    let server = common::start_with(handler, Some(tls.config.clone()), pinging(100, 200)).await;
    let mut client = h2_client(server.addr, &tls).await;
    assert_eq!(client.get("localhost", "/").await.unwrap().status, 200);
    // Several PINGs go by; hyper's client answers them.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!client.is_closed());
    assert_eq!(client.get("localhost", "/").await.unwrap().text(), "here\n");
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_never_answers_a_ping_is_closed() {
    let tls = tls();
    let handler = common::handler(|_, _| async move { common::ok("here") });
    let server = common::start_with(handler, Some(tls.config.clone()), pinging(100, 200)).await;
    // A client that opens HTTP/2 and then reads but never writes again: no SETTINGS
    // acknowledgement, no PONG.
    let config = portcullis::tls::client_config(tls.certs.ca_pem.as_bytes(), &[b"h2"]).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    let started = std::time::Instant::now();
    let mut frames = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => frames.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was not closed");
    // A PING (type 6, not an ACK) went out before the close.
    assert!(has_frame(&frames, 6, 0), "no PING in {frames:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}

/// Whether the frames in `bytes` include one of `kind` with `flags`.
fn has_frame(bytes: &[u8], kind: u8, flags: u8) -> bool {
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        if bytes[at + 3] == kind && bytes[at + 4] == flags {
            return true;
        }
        at += 9 + len;
    }
    false
}

//! HTTP/1.1 Upgrade (the WebSocket handshake mechanism) works through `serve`, over TLS:
//! after the 101 both sides own the raw stream.
mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{Client, Proto};
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use portcullis::tls::{DevCerts, SniResolver, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn upgrade_hands_over_the_stream() {
    common::init();
    let certs = DevCerts::generate("portcullis", "test").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    // Echoes bytes back upper-cased after switching protocols.
    let handler = common::handler(|mut req, _conn| async move {
        if req.headers().get(header::UPGRADE).is_none() {
            return portcullis::body::text(StatusCode::BAD_REQUEST, "upgrade expected");
        }
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                    return;
                }
            }
        });
        let mut resp = Response::new(portcullis::body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert(header::UPGRADE, header::HeaderValue::from_static("echo"));
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
        resp
    });
    let server = common::start(handler, Some(server_config(resolver).unwrap())).await;

    let mut client = Client::tls(server.addr, "localhost", certs.ca_pem.as_bytes(), Proto::H1)
        .await
        .unwrap();
    let req = Request::get("/ws")
        .header(header::HOST, "localhost")
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "echo")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.send_raw(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut io = TokioIo::new(upgraded);
    for word in ["hello", "portcullis"] {
        io.write_all(word.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; word.len()];
        tokio::time::timeout(common::TIMEOUT, io.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, word.to_ascii_uppercase().as_bytes());
    }
    drop(io);
    server.stop().await;
}

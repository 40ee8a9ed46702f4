//! Protocol switches through the proxy: WebSocket (handshake and frames written by hand
//! over TCP), other `Upgrade` protocols, and gRPC over h2c with trailers.
mod proxy_common;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::model::snapshot::UpstreamProtocol;
use portcullis::ingress::request::gateway::ProxyConfig;
use proxy_common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads an HTTP/1.1 response head byte by byte (so no upgraded bytes are consumed).
async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("head timed out")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed in head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

/// A masked client frame (RFC 6455 §5.2).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one unmasked server frame: (first byte, payload).
async fn server_frame<R: AsyncRead + Unpin>(r: &mut R) -> (u8, Vec<u8>) {
    let read = async {
        let b0 = r.read_u8().await.unwrap();
        let b1 = r.read_u8().await.unwrap();
        assert_eq!(b1 & 0x80, 0, "server frames are not masked");
        let len = match b1 & 0x7f {
            126 => u64::from(r.read_u16().await.unwrap()),
            127 => r.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        r.read_exact(&mut payload).await.unwrap();
        (b0, payload)
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("frame timed out")
}

#[tokio::test]
async fn websocket_end_to_end_and_across_config_swap() {
    let pod = pod("127.0.0.50").await;
    let proxy = start_proxy(
        route(backend("default/ws:80", &[pod]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /ws?room=1 HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\n\
          Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    let lower = head.to_ascii_lowercase();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(lower.contains("upgrade: websocket"), "{head}");
    assert!(
        lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );

    s.write_all(&client_frame(0x1, b"hello portcullis"))
        .await
        .unwrap();
    assert_eq!(
        server_frame(&mut s).await,
        (0x81, b"hello portcullis".to_vec())
    );

    // A configuration change does not cut an open WebSocket.
    proxy.set_route(route(backend("default/other:80", &[]), Policy::default()));
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    s.write_all(&client_frame(0x2, &big)).await.unwrap();
    assert_eq!(server_frame(&mut s).await, (0x82, big));

    s.write_all(&client_frame(0x9, b"ping")).await.unwrap();
    assert_eq!(server_frame(&mut s).await, (0x8A, b"ping".to_vec()));
    s.write_all(&client_frame(0x8, &[0x03, 0xe8]))
        .await
        .unwrap();
    assert_eq!(server_frame(&mut s).await, (0x88, vec![0x03, 0xe8]));
}

#[tokio::test]
async fn other_upgrade_protocols_tunnel_raw_bytes_only_when_enabled() {
    let pod = pod("127.0.0.51").await;
    // Without `upgrade-protocols` the upgrade is not honoured: an ordinary request.
    let plain = start_proxy(
        route(backend("default/raw:80", &[pod]), Policy::default()),
        ProxyConfig::default(),
    )
    .await;
    let mut s = TcpStream::connect(plain.addr).await.unwrap();
    s.write_all(
        b"GET /tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: echo-proto\r\nConnection: upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(!head.starts_with("HTTP/1.1 101"), "{head}");

    let policy = Policy {
        upgrade_protocols: vec!["echo-proto".into()],
        ..Policy::default()
    };
    let proxy = start_proxy(
        route(backend("default/raw:80", &[pod]), policy),
        ProxyConfig::default(),
    )
    .await;
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"GET /tunnel HTTP/1.1\r\nHost: x\r\nUpgrade: echo-proto\r\nConnection: upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo-proto"),
        "{head}"
    );
    for msg in [&b"first"[..], b"second message", &[0u8, 1, 2, 255]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
}

#[tokio::test]
async fn grpc_over_h2c_with_trailers() {
    let pod = pod("127.0.0.52").await;
    let be = backend_proto("default/grpc:50051", &[pod], UpstreamProtocol::H2c);
    let proxy = start_proxy(route(be, Policy::default()), ProxyConfig::default()).await;

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);

    // One length-prefixed gRPC message.
    let payload = b"\x0a\x05hello";
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    let request = Request::post("http://grpc.example/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame.clone())))
        .unwrap();
    let resp = sender.send_request(request).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let collected = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("trailers passed through");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), Bytes::from(frame));

    // The upstream leg really is HTTP/2 (the echo reports the version it saw), and the
    // pod sees the client's host as :authority with no conflicting Host header.
    let c = client();
    let r = send(
        &c,
        Request::get(proxy.url("/plain"))
            .header("host", "grpc.example:8080")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    let v = r.json();
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(v["host"], "grpc.example:8080");
    assert!(v["headers"].get("host").is_none(), "{v}");
    // Requests share one connection to the pod: the remote port stays the same.
    let again = get(&c, &proxy.url("/plain")).await.json();
    assert_eq!(again["remote"], v["remote"]);
}

/// A TLS configuration for a pod with a self-signed certificate, offering `alpn`.
fn pod_tls(alpn: &[&[u8]]) -> std::sync::Arc<rustls::ServerConfig> {
    portcullis::tls::install_provider();
    let ck = rcgen::generate_simple_self_signed(vec!["pod.local".to_string()]).unwrap();
    let chain = vec![ck.cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let mut config = rustls::ServerConfig::builder_with_provider(portcullis::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    std::sync::Arc::new(config)
}

#[tokio::test]
async fn https_backend_over_tls() {
    let opts = portcullis::echo::EchoOptions {
        name: "tls-pod".into(),
        delay: Duration::ZERO,
    };
    let (pod, _task) = portcullis::echo::spawn_echo_tls(
        "127.0.0.53:0".parse().unwrap(),
        opts,
        pod_tls(&[b"http/1.1"]),
    )
    .await
    .unwrap();
    let be = backend_proto("default/secure:443", &[pod], UpstreamProtocol::Https);
    let proxy = start_proxy(route(be, Policy::default()), ProxyConfig::default()).await;
    let c = client();
    for _ in 0..3 {
        let r = send(
            &c,
            Request::get(proxy.url("/s?x=1"))
                .header("host", "secure.example")
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["name"], "tls-pod");
        assert_eq!(v["tls"], true);
        assert_eq!(v["version"], "HTTP/1.1");
        assert_eq!(v["host"], "secure.example");
        assert_eq!(v["path"], "/s?x=1");
    }
    // A plain-HTTP pod behind an HTTPS backend fails the handshake: 502, not a hang.
    let plain = proxy_common::pod("127.0.0.54").await;
    let be = backend_proto("default/mismatch:443", &[plain], UpstreamProtocol::Https);
    proxy.set_route(route(be, Policy::default()));
    let r = get(&c, &proxy.url("/")).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("TLS handshake"), "{}", r.text());
}

#[tokio::test]
async fn grpcs_backend_with_trailers() {
    let opts = portcullis::echo::EchoOptions {
        name: "grpcs-pod".into(),
        delay: Duration::ZERO,
    };
    let (pod, _task) =
        portcullis::echo::spawn_echo_tls("127.0.0.55:0".parse().unwrap(), opts, pod_tls(&[b"h2"]))
            .await
            .unwrap();
    let be = backend_proto("default/grpcs:443", &[pod], UpstreamProtocol::Grpcs);
    let proxy = start_proxy(route(be, Policy::default()), ProxyConfig::default()).await;
    // An HTTP/1.1 client: the proxy still speaks h2 over TLS to the pod.
    let r = get(&client(), &proxy.url("/plain")).await;
    let v = r.json();
    assert_eq!(v["version"], "HTTP/2.0");
    assert_eq!(v["tls"], true);

    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let frame = Bytes::from_static(b"\x00\x00\x00\x00\x02hi");
    let request = Request::post("http://grpc.example/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(frame.clone()))
        .unwrap();
    let resp = sender.send_request(request).await.unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), frame);
}

//! Issue 8 through the real binary and real sockets: what a hostile client or a careless
//! Service can throw at the edge. Idle and half-open connections are closed by the
//! head timeout, a flood of idle connections under a low descriptor limit leaves
//! `/healthz` and new requests served, path tricks meet the allowlist of the route they
//! really name, `h2c` is not tunnelled, oversized headers get 431 and malformed chunked
//! bodies 400, spoofable client-address headers are dropped, a pod that stalls
//! mid-body is cut off, and an EndpointSlice aimed at our own admin port is never dialled.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{
    NS, Portcullis, http_get, ingress, ingress_class, pod, service, slice, write_atomic, yaml,
};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "edge.e2e.test";

/// Settings with short timeouts, so each timeout is seen within a test's patience.
fn settings(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("settings.yaml");
    let text = format!(
        "listeners:\n  headerTimeoutSeconds: 1\n  keepAliveTimeoutSeconds: 2\n  handshakeTimeoutSeconds: 1\n{extra}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Reads from `s` until the peer closes, an error, or `limit`; returns what was read and
/// whether the peer closed within the limit.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// One raw HTTP/1.1 exchange on a fresh connection; returns the response text.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let (out, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

struct Edge {
    gw: Portcullis,
    dir: tempfile::TempDir,
    _pods: Vec<tokio::task::JoinHandle<()>>,
}

/// `/` → web (open), `/admin` → admin, allowlisted to 10.0.0.0/8 (so loopback clients
/// get 403 there), `/stall` → a pod that stops in the middle of its body.
async fn edge(extra_settings: &str, nofile: Option<u64>) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let (web, web_task) = pod("127.0.0.2", "web-1").await;
    let (admin, admin_task) = pod("127.0.0.3", "admin-1").await;
    let (stall, stall_task) = stalling_pod("127.0.0.4").await;
    let m = dir.path();
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        m,
        "10-ingress.yaml",
        &yaml(&[
            ingress("open", HOST, None, &[("/", "web")], &[]),
            ingress(
                "admin",
                HOST,
                None,
                &[("/admin", "admin")],
                &[(
                    "nginx.ingress.kubernetes.io/whitelist-source-range",
                    "10.0.0.0/8",
                )],
            ),
            ingress(
                "stall",
                HOST,
                None,
                &[("/stall", "stall")],
                &[("nginx.ingress.kubernetes.io/proxy-read-timeout", "1")],
            ),
        ]),
    );
    write_atomic(
        m,
        "20-services.yaml",
        &yaml(&[service("web"), service("admin"), service("stall")]),
    );
    write_atomic(
        m,
        "30-slices.yaml",
        &yaml(&[
            slice("web", "web-1", web, true),
            slice("admin", "admin-1", admin, true),
            slice("stall", "stall-1", stall, true),
        ]),
    );
    let config = settings(m, extra_settings);
    let config = config.to_string_lossy().into_owned();
    let gw = Portcullis::start_limited(m, &["--config", &config], nofile).await;
    Edge {
        gw,
        dir,
        _pods: vec![web_task, admin_task, stall_task],
    }
}

/// A pod that answers with a 100-byte Content-Length, sends 5 bytes, and goes silent.
async fn stalling_pod(ip: &str) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_are_closed_by_the_head_timeout() {
    let e = edge("", None).await;
    // Nothing at all; half a request head; an HTTP/2 preface + SETTINGS and no stream.
    let cases: [(&str, &[u8]); 3] = [
        ("silent", b""),
        ("partial head", b"GET / HTTP/1.1\r\nHost: edge"),
        (
            "h2 preface + SETTINGS",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        ),
    ];
    for (what, bytes) in cases {
        // On the TLS listeners anything but a ClientHello fails at once; there the silent
        // connection is the case, and the TLS one below.
        let listeners = match bytes.is_empty() {
            true => vec![e.gw.http, e.gw.https, e.gw.webhook],
            false => vec![e.gw.http],
        };
        for addr in listeners {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let opened = Instant::now();
            s.write_all(bytes).await.unwrap();
            let (_, closed) = read_until_closed(&mut s, Duration::from_secs(6)).await;
            let took = opened.elapsed();
            assert!(closed, "{what} on {addr}: still open after {took:?}");
            assert!(
                took >= Duration::from_millis(900),
                "{what} on {addr}: closed before the 1 s head timeout ({took:?})"
            );
        }
    }
    // Over TLS: a completed handshake, the HTTP/2 preface and SETTINGS, and no stream.
    let opened = Instant::now();
    let h2 = common::Client::tls(
        e.gw.webhook,
        "portcullis.portcullis.svc",
        &e.gw.webhook_ca(),
        common::Proto::H2,
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(6), h2.closed())
        .await
        .expect("an HTTP/2 connection with no stream stayed open")
        .unwrap();
    assert!(opened.elapsed() >= Duration::from_millis(900));
    // A keep-alive connection that served a request closes after the 2 s keep-alive.
    let mut s = TcpStream::connect(e.gw.http).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let opened = Instant::now();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert!(closed, "idle keep-alive connection never closed");
    assert!(opened.elapsed() >= Duration::from_millis(1900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_flood_under_a_low_descriptor_limit_leaves_health_and_new_requests_served() {
    // 512 descriptors: the derived budget is (512 - 256) / 2 = 128 client connections.
    let e = edge("", Some(512)).await;
    let mut idle = Vec::new();
    for _ in 0..600 {
        match TcpStream::connect(e.gw.http).await {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    // Give the server time to accept (and refuse or evict) what it can.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The admin listener has a budget of its own.
    let health = e.gw.admin_get("/healthz").await.expect("/healthz answers");
    assert_eq!(health.status, StatusCode::OK);
    // A new client that sends a request is served: idle connections made room.
    let (reply, _) = e2e::eventually(Duration::from_secs(5), "a new request served", || async {
        http_get(e.gw.http, HOST, "/")
            .await
            .ok()
            .filter(|r| r.status == StatusCode::OK)
    })
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let metrics = e.gw.admin_get("/metrics").await.unwrap().text();
    assert!(
        metrics
            .contains("portcullis_connections_refused_total{listener=\"http\",reason=\"limit\"}"),
        "no connection was refused at the limit:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("connections"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_meet_the_allowlist_of_the_route_they_name() {
    let e = edge("", None).await;
    assert_eq!(
        http_get(e.gw.http, HOST, "/").await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        http_get(e.gw.http, HOST, "/admin").await.unwrap().status,
        StatusCode::FORBIDDEN
    );
    // Tricks that climb above the root are refused outright, as nginx does.
    for above_root in ["/%2e%2e/admin", "/%2E%2E/admin", "/../admin"] {
        let reply = http_get(e.gw.http, HOST, above_root).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{above_root}: {}",
            reply.text()
        );
    }
    for trick in [
        "/api/../admin",
        "/api/%2e%2e/admin",
        "/api/%2E%2e/admin",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/admin%2Fx",
        "/x/%2e%2e/admin/",
    ] {
        let reply = http_get(e.gw.http, HOST, trick).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{trick} was not held to /admin's allowlist: {}",
            reply.text()
        );
    }
    // What the pod receives is the normalised path it was routed by.
    let reply = http_get(e.gw.http, HOST, "/a/./b//c/%7Euser")
        .await
        .unwrap();
    let echo: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echo["path"], "/a/b/c/~user");
    // Climbing above the root, or a NUL, is a bad request.
    for bad in ["/../etc/passwd", "/a/%2e%2e/%2e%2e/x", "/a%00b", "/%zz"] {
        let reply = http_get(e.gw.http, HOST, bad).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_not_tunnelled_and_spoofable_headers_are_dropped() {
    let e = edge("", None).await;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\
         Forwarded: for=6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\n\
         Connection: close\r\n\r\n"
    );
    let resp = raw(e.gw.http, req.as_bytes()).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
    let echo: Value = serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {resp}"));
    let headers = echo["headers"].as_object().expect("echoed headers");
    for gone in [
        "upgrade",
        "http2-settings",
        "forwarded",
        "true-client-ip",
        "x-client-ip",
    ] {
        assert!(
            !headers.contains_key(gone),
            "{gone} reached the pod: {headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_malformed_chunked_bodies_400() {
    let e = edge("", None).await;
    let big = "a".repeat(9 * 1024);
    let resp = raw(
        e.gw.http,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 431, "{}", &resp[..resp.len().min(200)]);
    // Many headers under the per-line limit, over the 32 KiB total.
    let many: String = (0..8)
        .map(|i| format!("X-Part-{i}: {}\r\n", "b".repeat(6 * 1024)))
        .collect();
    let resp = raw(
        e.gw.http,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 431, "{}", &resp[..resp.len().min(200)]);

    let resp = raw(
        e.gw.http,
        format!(
            "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\nzz\r\nnot hex\r\n0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_stalls_mid_body_is_cut_off_after_the_read_timeout() {
    let e = edge("", None).await;
    let started = Instant::now();
    let mut s = TcpStream::connect(e.gw.http).await.unwrap();
    s.write_all(format!("GET /stall HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (out, closed) = read_until_closed(&mut s, Duration::from_secs(6)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("hello"), "{text}");
    assert!(closed, "the stalled response was never cut off");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "cut off after {took:?}, the read timeout is 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_slice_aimed_at_the_admin_port_is_never_dialled() {
    let e = edge("", None).await;
    let admin = e.gw.admin;
    let evil = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "sneaky-1", "namespace": NS,
                     "labels": {"kubernetes.io/service-name": "sneaky"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": admin.port(), "protocol": "TCP"}],
        "endpoints": [{"addresses": [admin.ip().to_string()], "conditions": {"ready": true}}]
    });
    write_atomic(
        e.dir.path(),
        "50-sneaky.yaml",
        &yaml(&[
            ingress("sneaky", "sneaky.e2e.test", None, &[("/", "sneaky")], &[]),
            service("sneaky"),
            evil,
        ]),
    );
    let (problem, _) = e2e::eventually(Duration::from_secs(5), "the problem reported", || async {
        e.gw.problems().await.ok().and_then(|ps| {
            ps.into_iter()
                .map(|p| p.to_string())
                .find(|p| p.contains("sneaky") && p.contains("never dialled"))
        })
    })
    .await;
    assert!(problem.contains(&admin.to_string()), "{problem}");
    // The request gets no endpoint, and certainly not the admin listener's /metrics.
    let reply = http_get(e.gw.http, "sneaky.e2e.test", "/metrics")
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert!(
        !reply.text().contains("portcullis_"),
        "admin metrics leaked"
    );
}

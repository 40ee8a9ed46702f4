//! `mirror-target`: a copy of each request, body included, reaches the mirror while the
//! client gets the real backend's answer; a dead mirror changes nothing for the client.
mod proxy_common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis::ingress::build::annotations::parse_annotations;
use portcullis::ingress::model::policy::Policy;
use portcullis::ingress::request::gateway::ProxyConfig;
use proxy_common::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the mirror saw of one request.
#[derive(Debug)]
struct Copy {
    method: String,
    uri: String,
    host: String,
    request_id: String,
    body: Bytes,
}

/// A server on `ip` that reports every request it gets (and answers 500, which nobody
/// must notice).
async fn recording_mirror(ip: &str) -> (SocketAddr, mpsc::UnboundedReceiver<Copy>) {
    let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let header = |n: &str| {
                            parts
                                .headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        let _ = tx.send(Copy {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            host: header("host"),
                            request_id: header("x-request-id"),
                            body,
                        });
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"mirror")));
                        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn policy(annotations: &[(&str, String)]) -> Policy {
    let map: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (format!("nginx.ingress.kubernetes.io/{k}"), v.clone()))
        .collect();
    let parsed = parse_annotations(&map);
    assert!(parsed.is_ok(), "{:?}", parsed.errors);
    parsed.policy
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Copy>) -> Copy {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the mirror got a copy in time")
        .expect("mirror running")
}

#[tokio::test]
async fn copies_reach_the_mirror_and_the_client_gets_the_backend() {
    let pod = pod("127.0.0.40").await;
    let (mirror, mut copies) = recording_mirror("127.0.0.41").await;
    let p = policy(&[
        (
            "mirror-target",
            format!("http://{mirror}/shadow$request_uri"),
        ),
        ("mirror-host", "shadow.local".into()),
    ]);
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), p),
        ProxyConfig::default(),
    )
    .await;
    let c = client();

    let r = get(&c, &proxy.url("/a/b?x=1")).await;
    assert_eq!(r.status, 200, "the backend answers, not the mirror");
    assert_eq!(r.pod(), echo_name(pod));
    let copy = next(&mut copies).await;
    assert_eq!(copy.method, "GET");
    assert_eq!(copy.uri, "/shadow/a/b?x=1");
    assert_eq!(copy.host, "shadow.local");
    assert!(
        !copy.request_id.is_empty(),
        "the copy carries the request id"
    );
    assert!(copy.body.is_empty());

    // A body is mirrored as it streams, whole.
    let body = Bytes::from(vec![b'z'; 200_000]);
    let r = send(
        &c,
        Request::post(proxy.url("/upload"))
            .header("content-type", "application/octet-stream")
            .body(Full::new(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let copy = next(&mut copies).await;
    assert_eq!(copy.method, "POST");
    assert_eq!(copy.uri, "/shadow/upload");
    assert_eq!(copy.body.len(), body.len());
    assert_eq!(copy.body, body);
}

#[tokio::test]
async fn without_request_body_the_copy_has_none() {
    let pod = pod("127.0.0.42").await;
    let (mirror, mut copies) = recording_mirror("127.0.0.43").await;
    let p = policy(&[
        ("mirror-target", format!("http://{mirror}$uri")),
        ("mirror-request-body", "off".into()),
    ]);
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), p),
        ProxyConfig::default(),
    )
    .await;
    let r = send(
        &client(),
        Request::put(proxy.url("/item?v=2"))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let copy = next(&mut copies).await;
    assert_eq!((copy.method.as_str(), copy.uri.as_str()), ("PUT", "/item"));
    assert!(copy.body.is_empty());
    assert_eq!(
        copy.host, "127.0.0.43",
        "Host defaults to the target's host"
    );
}

#[tokio::test]
async fn a_dead_mirror_changes_nothing_for_the_client() {
    let pod = pod("127.0.0.44").await;
    let dead = dead_addr("127.0.0.45").await;
    let p = policy(&[("mirror-target", format!("http://{dead}$request_uri"))]);
    let proxy = start_proxy(
        route(backend("default/web:80", &[pod]), p),
        ProxyConfig::default(),
    )
    .await;
    let c = client();
    for _ in 0..5 {
        let r = send(
            &c,
            Request::post(proxy.url("/x"))
                .body(Full::new(Bytes::from_static(b"abc")))
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.pod(), echo_name(pod));
    }
}

#[test]
fn malformed_mirror_annotations_refuse_the_ingress() {
    for (k, v) in [
        ("mirror-target", "ftp://x/"),
        ("mirror-target", "http://h/$host"),
        ("mirror-request-body", "maybe"),
    ] {
        let mut map = BTreeMap::new();
        map.insert(format!("nginx.ingress.kubernetes.io/{k}"), v.to_string());
        if k != "mirror-target" {
            map.insert(
                "nginx.ingress.kubernetes.io/mirror-target".into(),
                "http://10.0.0.1/".into(),
            );
        }
        let parsed = parse_annotations(&map);
        assert!(!parsed.is_ok(), "{k}={v}");
        assert!(parsed.errors[0].message.contains(k), "{:?}", parsed.errors);
    }
}

//! The ingress gateway through the real binary: `portcullis serve` as a child process
//! with a manifests directory, echo pods on 127.0.0.x, real HTTP/1.1, h2c, and TLS
//! (h1 and h2) clients. Routing, generated answers, the HTTPS redirect, and certificate
//! choice by SNI (a Secret written by the real `portcullis certs`).
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::path::Path;
use std::process::Command;

use common::{Client, Proto, leaf_der};
use e2e::{
    NS, Portcullis, contains_bytes, ingress, ingress_class, pod, pod_name, presented_leaf, service,
    slice, write_atomic, yaml,
};
use http::{StatusCode, Version};
use serde_json::Value;

const SHOP: &str = "shop.e2e.test";
const PLAIN: &str = "plain.e2e.test";

/// A TLS certificate for `host` in `out`, made by the real `portcullis certs`: returns
/// (secret.yaml text, ca.crt, tls.crt).
fn certs_cli(host: &str, secret: &str, out: &Path) -> (String, String, String) {
    let status = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["certs", "--host", host, "--secret", secret])
        .args(["--secret-namespace", NS, "--out"])
        .arg(out)
        .output()
        .expect("run portcullis certs");
    assert!(
        status.status.success(),
        "portcullis certs failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    (read("secret.yaml"), read("ca.crt"), read("tls.crt"))
}

struct Shop {
    gw: Portcullis,
    ca: String,
    leaf: Vec<u8>,
    _dir: tempfile::TempDir,
    _pods: Vec<tokio::task::JoinHandle<()>>,
}

/// shop.e2e.test (TLS): `/` → web, `/api` → api, `/idle` → a Service whose only pod is
/// not ready; plain.e2e.test (no TLS): `/` → web.
async fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let (web, web_task) = pod("127.0.0.2", "web-1").await;
    let (api, api_task) = pod("127.0.0.3", "api-1").await;
    let (idle, idle_task) = pod("127.0.0.4", "idle-1").await;
    let m = dir.path();
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    write_atomic(
        m,
        "10-shop.yaml",
        &yaml(&[
            ingress(
                "shop",
                SHOP,
                Some("shop-tls"),
                &[("/", "web"), ("/api", "api"), ("/idle", "idle")],
                &[],
            ),
            ingress("plain", PLAIN, None, &[("/", "web")], &[]),
        ]),
    );
    write_atomic(
        m,
        "20-services.yaml",
        &yaml(&[service("web"), service("api"), service("idle")]),
    );
    write_atomic(
        m,
        "30-slices.yaml",
        &yaml(&[
            slice("web", "web-1", web, true),
            slice("api", "api-1", api, true),
            slice("idle", "idle-1", idle, false),
        ]),
    );
    let certs = tempfile::tempdir().unwrap();
    let (secret, ca, cert) = certs_cli(SHOP, "shop-tls", certs.path());
    write_atomic(m, "40-shop-tls.yaml", &secret);
    let gw = Portcullis::start(m, &[]).await;
    Shop {
        gw,
        ca,
        leaf: leaf_der(&cert),
        _dir: dir,
        _pods: vec![web_task, api_task, idle_task],
    }
}

fn echoed(reply: &common::Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not echo JSON ({e}): {}", reply.text()))
}

/// What every listener must do the same way: host + path to the right pod, the path and
/// host passed on unchanged, 503 for a path without ready endpoints.
async fn check_routes(c: &mut Client, host: &str, label: &str) {
    for (path, want) in [
        ("/", "web-1"),
        ("/cart?id=7", "web-1"),
        ("/api", "api-1"),
        ("/api/items/3", "api-1"),
        // Prefix matching is by path element: /apis is not under /api.
        ("/apis", "web-1"),
    ] {
        let reply = c.get(host, path).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{label} {path}: {}",
            reply.text()
        );
        assert_eq!(pod_name(&reply).as_deref(), Some(want), "{label} {path}");
        // Path and query reach the pod unchanged.
        let echo = echoed(&reply);
        assert_eq!(echo["path"], path, "{label}");
        assert_eq!(echo["host"], host, "{label} {path}");
    }
    let reply = c.get(host, "/idle/x").await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{label} /idle"
    );
    assert_eq!(reply.header("server"), Some("portcullis"), "{label} /idle");
    assert!(
        pod_name(&reply).is_none(),
        "{label}: a not-ready pod answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_over_http_and_https_h1_and_h2() {
    let shop = shop().await;
    let gw = &shop.gw;

    // Plain HTTP, HTTP/1.1 and h2c with prior knowledge.
    for proto in [Proto::H1, Proto::H2] {
        let label = format!("http {proto:?}");
        let mut c = Client::plain(gw.http, proto).await.unwrap();
        check_routes_plain(&mut c, &label).await;
        let reply = c.get("nowhere.e2e.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{label}");
        assert_eq!(reply.header("server"), Some("portcullis"), "{label}");
        // The TLS host is redirected, path and query kept, before any routing.
        let reply = c.get(SHOP, "/api/items?x=1").await.unwrap();
        assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT, "{label}");
        assert_eq!(
            reply.header("location"),
            Some("https://shop.e2e.test/api/items?x=1"),
            "{label}"
        );
        assert_eq!(reply.header("server"), Some("portcullis"), "{label}");
    }

    // HTTPS: HTTP/1.1 and h2 negotiated by ALPN, the shop certificate by SNI.
    for (proto, version, alpn) in [
        (Proto::H1, Version::HTTP_11, &b"http/1.1"[..]),
        (Proto::H2, Version::HTTP_2, &b"h2"[..]),
    ] {
        let label = format!("https {proto:?}");
        let mut c = Client::tls(gw.https, SHOP, shop.ca.as_bytes(), proto)
            .await
            .unwrap();
        assert_eq!(c.alpn.as_deref(), Some(alpn), "{label}");
        assert_eq!(c.peer_leaf.as_deref(), Some(&shop.leaf[..]), "{label}");
        check_routes(&mut c, SHOP, &label).await;
        let reply = c.get(SHOP, "/").await.unwrap();
        assert_eq!(reply.version, version, "{label}");
        assert_eq!(echoed(&reply)["headers"]["x-forwarded-proto"], "https");
        // A host with no rule on this connection: 404 from the gateway, not a pod.
        let reply = c.get("nowhere.e2e.test", "/").await.unwrap();
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{label}");
        assert_eq!(reply.header("server"), Some("portcullis"), "{label}");
        assert!(pod_name(&reply).is_none(), "{label}");
    }
}

/// plain.e2e.test has no TLS section, so plain HTTP is served, not redirected.
async fn check_routes_plain(c: &mut Client, label: &str) {
    for path in ["/", "/deep/path?q=1"] {
        let reply = c.get(PLAIN, path).await.unwrap();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{label} {path}: {}",
            reply.text()
        );
        assert_eq!(pod_name(&reply).as_deref(), Some("web-1"), "{label} {path}");
        assert_eq!(echoed(&reply)["headers"]["x-forwarded-proto"], "http");
    }
    // A port in the Host header does not change the route.
    let reply = c.get("plain.e2e.test:80", "/").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{label} with port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_chosen_by_sni() {
    let shop = shop().await;
    let gw = &shop.gw;

    // The Ingress host gets exactly the certificate from its Secret, whatever the case
    // of the SNI name, over h1 and h2.
    for proto in [Proto::H1, Proto::H2] {
        let c = Client::tls(gw.https, SHOP, shop.ca.as_bytes(), proto)
            .await
            .unwrap();
        assert_eq!(c.peer_leaf.as_deref(), Some(&shop.leaf[..]));
    }
    let leaf = presented_leaf(gw.https, Some("SHOP.E2E.Test"))
        .await
        .unwrap();
    assert_eq!(leaf, shop.leaf, "SNI is case-insensitive");

    // An unknown SNI and no SNI at all get the generated default certificate.
    let default = presented_leaf(gw.https, Some("unknown.e2e.test"))
        .await
        .unwrap();
    assert_ne!(default, shop.leaf);
    assert!(
        contains_bytes(&default, b"portcullis-default.invalid"),
        "default certificate is not the generated one"
    );
    let no_sni = presented_leaf(gw.https, None).await.unwrap();
    assert_eq!(no_sni, default, "no SNI must get the default certificate");
    let plain_host = presented_leaf(gw.https, Some(PLAIN)).await.unwrap();
    assert_eq!(plain_host, default, "a host without TLS gets the default");

    // And a client that verifies does not accept the default for the shop's name.
    assert!(
        Client::tls(gw.https, "unknown.e2e.test", shop.ca.as_bytes(), Proto::H1)
            .await
            .is_err(),
        "the shop CA must not vouch for the default certificate"
    );
}

//! ingress-nginx's CORS, redirect, server-alias and custom error page annotations through
//! the real binary: `portcullis serve` with a manifests directory, echo pods and a pod
//! that answers any status code on 127.0.0.x, real HTTP/1.1 clients.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, Proto, Reply};
use e2e::{
    NS, Portcullis, ingress, ingress_class, pod, pod_name, service, slice, write_atomic, yaml,
};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use portcullis::server::ServeOptions;
use serde_json::Value;

const NGINX: &str = "nginx.ingress.kubernetes.io/";

fn nginx(short: &str) -> String {
    format!("{NGINX}{short}")
}

/// A pod answering `…/status/NNN` with that status and a body naming it; anything else 200.
async fn status_pod(ip: &str) -> common::TestServer {
    let handler = common::handler(|req, _conn| async move {
        let code = req
            .uri()
            .path()
            .rsplit_once("/status/")
            .and_then(|(_, c)| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
        let mut resp = portcullis::body::text(code, format!("upstream says {}", code.as_u16()));
        resp.headers_mut()
            .insert("x-from", http::HeaderValue::from_static("status-pod"));
        resp
    });
    common::start_on(ip, handler, None, ServeOptions::new("status-pod")).await
}

async fn send(gw: &Portcullis, req: Request<Full<Bytes>>) -> Reply {
    let mut c = Client::plain(gw.http, Proto::H1).await.unwrap();
    c.send(req).await.unwrap()
}

fn req(method: Method, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn echoed(reply: &Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not echo JSON ({e}): {}", reply.text()))
}

struct Site {
    gw: Portcullis,
    dir: tempfile::TempDir,
    /// The EndpointSlices written, error-pages' first.
    slices: Vec<Value>,
    _pods: Vec<tokio::task::JoinHandle<()>>,
    _status: common::TestServer,
}

/// Every Ingress of these tests, on one gateway.
async fn site(extra_args: &[&str], extra_files: &[(&str, &str)]) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let (web, web_task) = pod("127.0.0.2", "web-1").await;
    let (errors, errors_task) = pod("127.0.0.3", "errors-1").await;
    let status = status_pod("127.0.0.4").await;
    let (idle, idle_task) = pod("127.0.0.5", "idle-1").await;
    let (other, other_task) = pod("127.0.0.6", "other-1").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.8:0").unwrap();
        l.local_addr().unwrap()
    };
    let m = dir.path();
    write_atomic(m, "00-class.yaml", &yaml(&[ingress_class()]));
    let cors_list = [
        (nginx("enable-cors"), "true"),
        (
            nginx("cors-allow-origin"),
            "https://app.example.com, https://*.example.org:8443",
        ),
        (nginx("cors-allow-methods"), "GET, POST"),
        (nginx("cors-expose-headers"), "X-Total"),
        (nginx("cors-allow-credentials"), "false"),
        (nginx("cors-max-age"), "600"),
    ];
    let cors_list: Vec<(&str, &str)> = cors_list.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let errors_ann = [
        (nginx("custom-http-errors"), "404,502,503"),
        (nginx("default-backend"), "error-pages"),
    ];
    let errors_ann: Vec<(&str, &str)> = errors_ann.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let ingresses = [
        ingress(
            "cors-any",
            "cors-any.e2e.test",
            None,
            &[("/", "web")],
            &[(&nginx("enable-cors"), "true")],
        ),
        ingress(
            "cors-list",
            "cors.e2e.test",
            None,
            &[("/", "web")],
            &cors_list,
        ),
        ingress(
            "moved",
            "moved.e2e.test",
            None,
            &[("/", "web")],
            &[
                (
                    &nginx("permanent-redirect"),
                    "https://new.example.com/landing",
                ),
                (&nginx("permanent-redirect-code"), "308"),
            ],
        ),
        ingress(
            "temp",
            "temp.e2e.test",
            None,
            &[("/", "web")],
            &[(
                "portcullis.io/temporal-redirect",
                "http://other.example.com/",
            )],
        ),
        ingress(
            "www",
            "site.e2e.test",
            None,
            &[("/", "web")],
            &[(&nginx("from-to-www-redirect"), "true")],
        ),
        ingress(
            "www-twin",
            "www.taken.e2e.test",
            None,
            &[("/", "other")],
            &[],
        ),
        ingress(
            "www-taken",
            "taken.e2e.test",
            None,
            &[("/", "web")],
            &[(&nginx("from-to-www-redirect"), "true")],
        ),
        ingress(
            "aliased",
            "main.e2e.test",
            None,
            &[("/", "web"), ("/errors", "status")],
            &[(&nginx("server-alias"), "alias.e2e.test, real.e2e.test")],
        ),
        ingress("real", "real.e2e.test", None, &[("/", "other")], &[]),
        ingress(
            "errors",
            "errors.e2e.test",
            None,
            &[("/", "status"), ("/idle", "idle"), ("/dead", "dead")],
            &errors_ann,
        ),
        ingress(
            "fallback",
            "fallback.e2e.test",
            None,
            &[("/", "idle")],
            &[(&nginx("default-backend"), "error-pages")],
        ),
        ingress(
            "plain",
            "plain.e2e.test",
            None,
            &[("/", "status"), ("/idle", "idle")],
            &[],
        ),
    ];
    write_atomic(m, "10-ingresses.yaml", &yaml(&ingresses));
    write_atomic(
        m,
        "20-services.yaml",
        &yaml(&[
            service("web"),
            service("error-pages"),
            service("status"),
            service("idle"),
            service("other"),
            service("dead"),
        ]),
    );
    let slices = vec![
        slice("error-pages", "errors-1", errors, true),
        slice("web", "web-1", web, true),
        slice("status", "status-1", status.addr, true),
        slice("idle", "idle-1", idle, false),
        slice("other", "other-1", other, true),
        slice("dead", "dead-1", dead, true),
    ];
    write_atomic(m, "30-slices.yaml", &yaml(&slices));
    for (name, text) in extra_files {
        write_atomic(m, name, text);
    }
    let gw = Portcullis::start(m, extra_args).await;
    Site {
        gw,
        dir,
        slices,
        _pods: vec![web_task, errors_task, idle_task, other_task],
        _status: status,
    }
}

fn problems_text(problems: &[Value]) -> String {
    problems
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn cors_preflight_and_response_headers() {
    let s = site(&[], &[]).await;
    let gw = &s.gw;

    // Defaults: `*` on every response, even without an Origin.
    let r = send(gw, req(Method::GET, "cors-any.e2e.test", "/", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pod_name(&r).as_deref(), Some("web-1"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, PUT, POST, DELETE, PATCH, OPTIONS")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some(
            "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization"
        )
    );
    assert_eq!(r.header("access-control-max-age"), Some("1728000"));
    assert!(r.header("access-control-expose-headers").is_none());

    // A preflight is answered by the proxy: 204, no body, CORS headers.
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];
    let r = send(
        gw,
        req(Method::OPTIONS, "cors-any.e2e.test", "/api", &preflight),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(r.body.is_empty());
    assert!(pod_name(&r).is_none(), "the preflight reached a pod");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("server"), Some("portcullis"));

    // A list: a matching origin is echoed, with the configured values.
    let r = send(
        gw,
        req(
            Method::GET,
            "cors.e2e.test",
            "/",
            &[("origin", "https://app.example.com")],
        ),
    )
    .await;
    assert_eq!(pod_name(&r).as_deref(), Some("web-1"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    assert!(r.header("access-control-allow-credentials").is_none());
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Total"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));

    // One label under a wildcard, with its port.
    let sub = [
        ("origin", "https://shop.example.org:8443"),
        ("access-control-request-method", "GET"),
    ];
    let r = send(gw, req(Method::OPTIONS, "cors.e2e.test", "/", &sub)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example.org:8443")
    );

    // Not allowed: proxied unchanged, no CORS headers, the preflight included.
    for origin in [
        "https://evil.example.com",
        "https://a.b.example.org:8443",
        "https://shop.example.org",
    ] {
        let h = [("origin", origin), ("access-control-request-method", "GET")];
        let r = send(gw, req(Method::OPTIONS, "cors.e2e.test", "/", &h)).await;
        assert_eq!(r.status, StatusCode::OK, "{origin}");
        assert_eq!(pod_name(&r).as_deref(), Some("web-1"), "{origin}");
        assert_eq!(echoed(&r)["method"], "OPTIONS");
        assert!(
            r.header("access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert!(r.header("access-control-allow-methods").is_none());
    }

    // An Ingress without the annotations is untouched.
    let r = send(
        gw,
        req(
            Method::GET,
            "plain.e2e.test",
            "/",
            &[("origin", "https://app.example.com")],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn redirects_and_www() {
    let s = site(&[], &[]).await;
    let gw = &s.gw;

    let r = send(gw, req(Method::GET, "moved.e2e.test", "/anything?x=1", &[])).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.header("location"),
        Some("https://new.example.com/landing")
    );
    assert!(pod_name(&r).is_none());

    let r = send(gw, req(Method::POST, "temp.e2e.test", "/a", &[])).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.header("location"), Some("http://other.example.com/"));

    // www.site → site, same scheme and URI, 308; the port the client named is kept.
    let r = send(gw, req(Method::GET, "www.site.e2e.test", "/foo?q=1", &[])).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.header("location"), Some("http://site.e2e.test/foo?q=1"));
    let r = send(gw, req(Method::GET, "WWW.site.e2e.test:8080", "/", &[])).await;
    assert_eq!(r.header("location"), Some("http://site.e2e.test:8080/"));
    // The name itself is served.
    let r = send(gw, req(Method::GET, "site.e2e.test", "/foo", &[])).await;
    assert_eq!(pod_name(&r).as_deref(), Some("web-1"));

    // A twin that has its own Ingress is not redirected.
    let r = send(gw, req(Method::GET, "www.taken.e2e.test", "/", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pod_name(&r).as_deref(), Some("other-1"));
}

#[tokio::test]
async fn server_alias_serves_the_same_rules() {
    let s = site(&[], &[]).await;
    let gw = &s.gw;
    for host in ["main.e2e.test", "alias.e2e.test", "ALIAS.e2e.test:80"] {
        let r = send(gw, req(Method::GET, host, "/x", &[])).await;
        assert_eq!(pod_name(&r).as_deref(), Some("web-1"), "{host}");
        // The Host header reaches the pod as the client sent it.
        assert_eq!(echoed(&r)["host"], host);
        let r = send(gw, req(Method::GET, host, "/errors/status/418", &[])).await;
        assert_eq!(r.status.as_u16(), 418, "{host}");
    }
    // An alias naming another Ingress's real host loses to it, with a problem reported.
    let r = send(gw, req(Method::GET, "real.e2e.test", "/", &[])).await;
    assert_eq!(pod_name(&r).as_deref(), Some("other-1"));
    let problems = problems_text(&gw.problems().await.unwrap());
    assert!(
        problems.contains("server-alias real.e2e.test"),
        "{problems}"
    );
    // Names nobody declared stay unrouted.
    let r = send(gw, req(Method::GET, "nobody.e2e.test", "/", &[])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// The headers the error backend (an echo pod) received, from the page it returned.
fn page_headers(r: &Reply) -> Value {
    assert_eq!(pod_name(r).as_deref(), Some("errors-1"), "{}", r.text());
    echoed(r)["headers"].clone()
}

#[tokio::test]
async fn custom_errors_and_default_backend() {
    let s = site(&[], &[]).await;
    let gw = &s.gw;

    // A listed upstream code: the error backend's page under the original status.
    let accept = [("accept", "application/json"), ("x-request-id", "req-42")];
    let r = send(
        gw,
        req(Method::GET, "errors.e2e.test", "/status/404?a=b", &accept),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let h = page_headers(&r);
    assert_eq!(h["x-code"], "404");
    assert_eq!(h["x-format"], "application/json");
    assert_eq!(h["x-original-uri"], "/status/404?a=b");
    assert_eq!(h["x-namespace"], NS);
    assert_eq!(h["x-ingress-name"], "errors");
    assert_eq!(h["x-service-name"], "status");
    assert_eq!(h["x-service-port"], "80");
    assert!(h["x-request-id"].as_str().is_some_and(|v| !v.is_empty()));
    assert_eq!(echoed(&r)["path"], "/");
    assert_eq!(echoed(&r)["method"], "GET");

    // X-Format defaults to text/html.
    let r = send(gw, req(Method::GET, "errors.e2e.test", "/status/503", &[])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(page_headers(&r)["x-format"], "text/html");

    // Codes not listed pass unchanged.
    let r = send(gw, req(Method::GET, "errors.e2e.test", "/status/500", &[])).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.text().trim(), "upstream says 500");
    assert_eq!(r.header("x-from"), Some("status-pod"));

    // Our own 502 (the only endpoint refuses connections) gets the page too.
    let r = send(gw, req(Method::GET, "errors.e2e.test", "/dead", &[])).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let h = page_headers(&r);
    assert_eq!(h["x-code"], "502");
    assert_eq!(h["x-service-name"], "dead");

    // A Service without ready endpoints is served by the default backend itself (the
    // request as it is), before any error could arise: as in ingress-nginx.
    let r = send(gw, req(Method::GET, "errors.e2e.test", "/idle", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pod_name(&r).as_deref(), Some("errors-1"));
    assert_eq!(echoed(&r)["path"], "/idle");

    // `default-backend` alone: a Service without ready endpoints is served by it.
    let r = send(gw, req(Method::GET, "fallback.e2e.test", "/some/page", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pod_name(&r).as_deref(), Some("errors-1"));
    assert_eq!(echoed(&r)["path"], "/some/page");

    // Without the annotations nothing changes.
    let r = send(gw, req(Method::GET, "plain.e2e.test", "/status/404", &[])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.text().trim(), "upstream says 404");
    let r = send(gw, req(Method::GET, "plain.e2e.test", "/idle", &[])).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("server"), Some("portcullis"));
}

#[tokio::test]
async fn error_backend_failure_keeps_the_original_answer() {
    let s = site(&[], &[]).await;
    let gw = &s.gw;
    // Point error-pages at an address where nothing listens.
    let dead = std::net::TcpListener::bind("127.0.0.7:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut slices = s.slices.clone();
    slices[0] = slice("error-pages", "errors-1", dead_addr, true);
    write_atomic(s.dir.path(), "30-slices.yaml", &yaml(&slices));
    e2e::eventually(Duration::from_secs(10), "error backend swapped", || async {
        let r = send(gw, req(Method::GET, "errors.e2e.test", "/status/404", &[])).await;
        (r.text().trim() == "upstream says 404").then_some(())
    })
    .await;
    let r = send(gw, req(Method::GET, "errors.e2e.test", "/status/404", &[])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-from"), Some("status-pod"));
    let metrics = gw.admin_get("/metrics").await.unwrap().text();
    assert!(
        metrics.contains(
            r#"portcullis_ingress_error_pages_total{outcome="failed",service="e2e/error-pages:80"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn controller_wide_error_pages_from_settings() {
    let config = "proxy:\n  defaultBackend: e2e/error-pages:80\n  customHttpErrors: [404]\n";
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("settings.yaml");
    std::fs::write(&cfg, config).unwrap();
    let s = site(&["--config", cfg.to_str().unwrap()], &[]).await;
    let gw = &s.gw;
    // An Ingress without annotations now gets the page for 404...
    let r = send(gw, req(Method::GET, "plain.e2e.test", "/status/404", &[])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(page_headers(&r)["x-ingress-name"], "plain");
    // ...and the default backend for a Service without ready endpoints.
    let r = send(gw, req(Method::GET, "plain.e2e.test", "/idle", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pod_name(&r).as_deref(), Some("errors-1"));
    // ...and whatever matches no rule, as is.
    let r = send(gw, req(Method::GET, "nobody.e2e.test", "/x?y=1", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(pod_name(&r).as_deref(), Some("errors-1"));
    assert_eq!(echoed(&r)["path"], "/x?y=1");
    // Its own list overrides the controller-wide one.
    let r = send(gw, req(Method::GET, "errors.e2e.test", "/status/503", &[])).await;
    assert_eq!(page_headers(&r)["x-code"], "503");
}

//! The admin listener: metrics, liveness, readiness (which fails once draining starts),
//! problems, and the 404/405 answers.
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::{Client, Proto};
use http::Request;
use http_body_util::Full;
use portcullis::admin::{self, AdminState};
use portcullis::server::{ServeOptions, Shutdown};

#[tokio::test]
async fn admin_endpoints() {
    common::init();
    let ready = Arc::new(AtomicBool::new(false));
    // The admin handler watches the process-wide shutdown; the admin listener itself is
    // stopped separately, after the others, so probes keep getting answers while draining.
    let process = Shutdown::new();
    let state = AdminState {
        ready: ready.clone(),
        shutdown: process.clone(),
        problems: Arc::new(
            || serde_json::json!([{"object": "default/web", "message": "no such Service"}]),
        ),
        dashboard: None,
        access: Default::default(),
    };
    let server =
        common::start_with(admin::handler(state), None, ServeOptions::new("admin_test")).await;
    let mut c = Client::plain(server.addr, Proto::H1).await.unwrap();

    let r = c.get("admin", "/healthz").await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));

    let r = c.get("admin", "/readyz").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("starting"), "{}", r.text());
    ready.store(true, Ordering::Release);
    let r = c.get("admin", "/readyz").await.unwrap();
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "ok\n"));

    let r = c.get("admin", "/metrics").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    // This very connection was counted on the admin listener.
    assert!(
        r.text()
            .contains("portcullis_connections_accepted_total{listener=\"admin_test\"} 1"),
        "{}",
        r.text()
    );

    let r = c.get("admin", "/problems").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v[0]["message"], "no such Service");

    let r = c.get("admin", "/nope").await.unwrap();
    assert_eq!(r.status, 404);

    let post = Request::post("/healthz")
        .header("host", "admin")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let r = c.send(post).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    // Draining: readiness fails at once, liveness stays fine.
    process.trigger();
    let r = c.get("admin", "/readyz").await.unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("draining"), "{}", r.text());
    let r = c.get("admin", "/healthz").await.unwrap();
    assert_eq!(r.status, 200);

    // Over h2c as well.
    let mut h2 = Client::plain(server.addr, Proto::H2).await.unwrap();
    assert_eq!(h2.get("admin", "/healthz").await.unwrap().status, 200);
    server.stop().await;
}

/// A snapshot serving `dash.example.test/shop` from one ready endpoint.
fn snapshot() -> portcullis::ingress::model::snapshot::Snapshot {
    use portcullis::ingress::build::compile::{CompileOptions, compile};
    use portcullis::source::{Object, ObjectStore};
    let docs = r#"
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: portcullis
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: portcullis.io/ingress-controller}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: dash}
spec:
  rules:
  - host: dash.example.test
    http:
      paths:
      - {path: /shop, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
---
apiVersion: v1
kind: Service
metadata: {name: shop, namespace: dash}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shop-1
  namespace: dash
  labels: {kubernetes.io/service-name: shop}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.9.0.1], conditions: {ready: true}}
"#;
    let values: Vec<serde_json::Value> = serde_saphyr::from_multiple(docs).unwrap();
    let objects = values
        .into_iter()
        .filter_map(|v| Object::from_value(v).unwrap())
        .collect();
    let mut store = ObjectStore::new();
    store.replace_origin("dash.yaml", objects, Vec::new());
    compile(&store, &CompileOptions::default(), None)
}

fn with_token(path: &str, token: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "admin")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn dashboard_routes_and_the_admin_token() {
    use portcullis::admission::Engine;
    use portcullis::admission::engine::Mode;
    use portcullis::dashboard::{Access, Dashboard};
    use portcullis::ingress::request::gateway::{Gateway, ProxyConfig};

    common::init();
    let snapshot = Arc::new(arc_swap::ArcSwap::from_pointee(snapshot()));
    let gateway = Arc::new(Gateway::new(snapshot, ProxyConfig::default()));
    let state = AdminState {
        ready: Arc::new(AtomicBool::new(true)),
        shutdown: Shutdown::new(),
        problems: Arc::new(|| serde_json::json!([{"message": "dash problem"}])),
        dashboard: Some(Arc::new(Dashboard::new(gateway))),
        access: Access {
            token: Some("letmein".into()),
            loopback_only: true,
        },
    };
    let server =
        common::start_with(admin::handler(state), None, ServeOptions::new("admin_dash")).await;
    let mut c = Client::plain(server.addr, Proto::H1).await.unwrap();

    // Probes and metrics stay open; the data needs the token.
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(c.get("admin", open).await.unwrap().status, 200, "{open}");
    }
    for data in ["/problems", "/routes", "/dashboard/state.json"] {
        let r = c.get("admin", data).await.unwrap();
        assert_eq!(r.status, 401, "{data}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"portcullis admin\"")
        );
        let r = c.send(with_token(data, "letmein!")).await.unwrap();
        assert_eq!(r.status, 401, "{data} with a wrong token");
        let r = c.send(with_token(data, "letmein")).await.unwrap();
        assert_eq!(r.status, 200, "{data}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    // The page itself holds no data and loads without the token; / points to it.
    let r = c.get("admin", "/").await.unwrap();
    assert_eq!(
        (r.status.as_u16(), r.header("location")),
        (302, Some("/dashboard"))
    );
    let r = c.get("admin", "/dashboard").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.text().contains("<title>portcullis dashboard</title>"));

    let r = c.send(with_token("/routes", "letmein")).await.unwrap();
    let routes: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let route = &routes["routes"][0];
    assert_eq!(route["host"], "dash.example.test");
    assert_eq!(route["path"], "/shop");
    assert_eq!(route["pathType"], "Prefix");
    assert_eq!(route["backend"], "dash/shop:80");
    assert_eq!(route["endpoints"][0]["address"], "10.9.0.1:8080");
    assert_eq!(route["endpoints"][0]["state"], "ready");

    // A denied review shows up among the dashboard's decisions.
    let engine = Engine::new(Default::default()).unwrap();
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "dash",
            "operation": "CREATE",
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "greedy-admin-test"},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                    "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}}]}
            }
        }
    });
    let out = portcullis::admission::http::answer_review(
        &engine,
        Mode::Validate,
        &serde_json::to_vec(&review).unwrap(),
    )
    .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["response"]["allowed"], false, "{out}");

    let r = c
        .send(with_token("/dashboard/state.json", "letmein"))
        .await
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(s["routes"][0]["host"], "dash.example.test");
    assert_eq!(s["backends"][0]["endpoints"][0]["state"], "ready");
    assert_eq!(s["backends"][0]["endpoints"][0]["inFlight"], 0);
    assert_eq!(s["problems"][0]["message"], "dash problem");
    assert!(s["audit"].is_null());
    let decision = s["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "greedy-admin-test")
        .unwrap_or_else(|| panic!("no decision in {s}"));
    assert_eq!(decision["outcome"], "denied");
    assert_eq!(decision["kind"], "Pod");
    assert_eq!(decision["namespace"], "dash");
    assert_eq!(decision["operation"], "CREATE");
    // The pod breaks requestAboveLimit (and, being minimal, some of Polaris' danger checks).
    let rules = decision["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r == "requestAboveLimit"), "{rules:?}");
    let ingresses = s["ingresses"].as_array().unwrap();
    assert!(
        ingresses.iter().any(|i| i["ingress"] == "dash/shop"),
        "served Ingress listed for rates: {s}"
    );

    let post = Request::post("/routes")
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(c.send(post).await.unwrap().status, 405);
    server.stop().await;
}

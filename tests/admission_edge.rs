//! Admission of Ingresses with the edge annotations (CORS, redirects, server-alias,
//! custom error pages): the webhook over real HTTPS denies a malformed value with the
//! annotation and the reason, and allows well-formed ones. The values are checked by the
//! same parser compile uses (`ingress::request::edge`).
mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::{Client, Proto};
use http::{Request, StatusCode};
use http_body_util::Full;
use portcullis::admission::{AdmissionSettings, Engine};
use portcullis::ingress::build::compile::{CompileOptions, compile};
use portcullis::reload::ConfigHandle;
use portcullis::source::files::load_all;
use portcullis::tls::{DevCerts, SniResolver, server_config};
use serde_json::{Value, json};

async fn webhook() -> (common::TestServer, String) {
    common::init();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/ingress-live");
    let (store, problems) = load_all(&dir).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let live = ConfigHandle::new(compile(&store, &CompileOptions::default(), None));
    let certs = DevCerts::generate("portcullis", "portcullis").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let tls = server_config(resolver).unwrap();
    let mut settings = AdmissionSettings::default();
    settings.rules.insert(
        "tlsSettingsMissing".into(),
        serde_json::from_value(json!("off")).unwrap(),
    );
    let engine = Arc::new(Engine::new(settings).unwrap());
    let handler = portcullis::admission::http::handler(engine, Some(live));
    (common::start(handler, Some(tls)).await, certs.ca_pem)
}

fn ingress(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
                        "uid": "9a0b7c7e-5d3c-4f7e-9e55-2b1a1c0d0e0f"},
           "spec": {"ingressClassName": "portcullis", "rules": [{"host": "edge.example.com",
               "http": {"paths": [{"path": "/", "pathType": "Prefix",
                   "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

async fn validate(c: &mut Client, obj: &Value) -> Value {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5a1b2c3d-0000-4000-8000-000000000002",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "namespace": "shop",
            "name": obj["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "dev"},
            "object": obj,
            "oldObject": null,
            "dryRun": false
        }
    });
    let req = Request::post("/validate")
        .header("host", "portcullis.portcullis.svc")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&review).unwrap())))
        .unwrap();
    let reply = c.send(req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    v["response"].clone()
}

#[tokio::test]
async fn malformed_edge_annotations_are_denied_with_the_reason() {
    let (server, ca) = webhook().await;
    let mut c = Client::tls(
        server.addr,
        "portcullis.portcullis.svc",
        ca.as_bytes(),
        Proto::H1,
    )
    .await
    .unwrap();

    let cases = [
        (
            "nginx.ingress.kubernetes.io/cors-allow-origin",
            "origin.example.com:8080",
            "is not an origin",
        ),
        (
            "nginx.ingress.kubernetes.io/permanent-redirect",
            "/relative/path",
            "expected an absolute http:// or https:// URL",
        ),
        (
            "nginx.ingress.kubernetes.io/permanent-redirect-code",
            "200",
            "expected a redirect status code from 300 to 308",
        ),
        (
            "nginx.ingress.kubernetes.io/custom-http-errors",
            "404,oops",
            "is not an error status code",
        ),
        (
            "portcullis.io/server-alias",
            "bad_name.example.com",
            "is not a host name",
        ),
    ];
    for (key, value, reason) in cases {
        let obj = ingress(
            "edge",
            json!({"nginx.ingress.kubernetes.io/enable-cors": "true", key: value}),
        );
        let resp = validate(&mut c, &obj).await;
        assert_eq!(resp["allowed"], false, "{key}: {resp}");
        assert_eq!(resp["status"]["code"], 403);
        let m = resp["status"]["message"].as_str().unwrap_or("");
        assert!(m.contains("ingressInvalidAnnotation: "), "{m}");
        assert!(m.contains(key), "{key} missing in {m}");
        assert!(m.contains(reason), "{reason:?} missing in {m}");
    }

    // Well-formed values of every edge annotation are allowed.
    let good = ingress(
        "edge",
        json!({
            "nginx.ingress.kubernetes.io/enable-cors": "true",
            "nginx.ingress.kubernetes.io/cors-allow-origin": "https://app.example.com, https://*.example.org:8443",
            "nginx.ingress.kubernetes.io/cors-allow-methods": "GET, POST",
            "nginx.ingress.kubernetes.io/cors-allow-headers": "X-Custom, Content-Type",
            "nginx.ingress.kubernetes.io/cors-expose-headers": "*, X-Total",
            "nginx.ingress.kubernetes.io/cors-allow-credentials": "false",
            "nginx.ingress.kubernetes.io/cors-max-age": "600",
            "nginx.ingress.kubernetes.io/temporal-redirect": "https://maintenance.example.com/",
            "nginx.ingress.kubernetes.io/temporal-redirect-code": "307",
            "nginx.ingress.kubernetes.io/from-to-www-redirect": "true",
            "nginx.ingress.kubernetes.io/server-alias": "edge2.example.com",
            "nginx.ingress.kubernetes.io/custom-http-errors": "404,503",
            "nginx.ingress.kubernetes.io/default-backend": "web"
        }),
    );
    let resp = validate(&mut c, &good).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    server.stop().await;
}

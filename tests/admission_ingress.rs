//! Ingress validation end to end: the webhook over real HTTPS, checking Ingresses against a
//! live snapshot compiled from `tests/fixtures/admission/ingress-live`, and
//! `portcullis check --manifests` through the real binary.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
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

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission")
}

fn live_handle() -> ConfigHandle {
    let (store, problems) = load_all(&fixtures().join("ingress-live")).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    ConfigHandle::new(compile(&store, &CompileOptions::default(), None))
}

struct Webhook {
    server: common::TestServer,
    ca: String,
}

async fn start(live: ConfigHandle) -> Webhook {
    common::init();
    let certs = DevCerts::generate("portcullis", "portcullis").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let tls = server_config(resolver).unwrap();
    // The Ingress validation rules alone; Polaris' tlsSettingsMissing has its fixtures.
    let mut settings = AdmissionSettings::default();
    settings.rules.insert(
        "tlsSettingsMissing".into(),
        serde_json::from_value(json!("off")).unwrap(),
    );
    let engine = Arc::new(Engine::new(settings).unwrap());
    let handler = portcullis::admission::http::handler(engine, Some(live));
    let server = common::start(handler, Some(tls)).await;
    Webhook {
        server,
        ca: certs.ca_pem,
    }
}

impl Webhook {
    async fn client(&self) -> Client {
        Client::tls(
            self.server.addr,
            "portcullis.portcullis.svc",
            self.ca.as_bytes(),
            Proto::H1,
        )
        .await
        .unwrap()
    }
}

fn ingress(name: &str, annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
                        "uid": "9a0b7c7e-5d3c-4f7e-9e55-2b1a1c0d0e0f"},
           "spec": spec})
}

fn rules(host: &str, paths: Value) -> Value {
    json!({"ingressClassName": "portcullis", "rules": [{"host": host, "http": {"paths": paths}}]})
}

fn path(p: &str, t: &str, port: Value) -> Value {
    json!({"path": p, "pathType": t, "backend": {"service": {"name": "web", "port": port}}})
}

/// Sends one review of `obj` to `/validate` and returns its response.
async fn validate(c: &mut Client, op: &str, obj: &Value, old: Option<&Value>) -> Value {
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5a1b2c3d-0000-4000-8000-000000000001",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "namespace": "shop",
            "name": obj["metadata"]["name"],
            "operation": op,
            "userInfo": {"username": "dev"},
            "object": obj,
            "oldObject": old,
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
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

fn message(resp: &Value) -> &str {
    resp["status"]["message"].as_str().unwrap_or("")
}

fn warnings(resp: &Value) -> Vec<String> {
    resp["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_denied_by(resp: &Value, rule: &str, needle: &str) {
    assert_eq!(resp["allowed"], false, "{resp}");
    assert_eq!(resp["status"]["code"], 403);
    let m = message(resp);
    assert!(m.contains(&format!("{rule}: ")), "{rule} missing in {m}");
    assert!(m.contains(needle), "{needle:?} missing in {m}");
    assert!(!m.contains('\n'), "{m}");
}

#[tokio::test]
async fn ingress_reviews_against_the_live_snapshot() {
    let live = live_handle();
    let hook = start(live.clone()).await;
    let mut c = hook.client().await;

    // A route shop/web serves, claimed by another Ingress: denied, naming the owner.
    let copy = ingress(
        "copy",
        json!({}),
        rules(
            "shop.example.com",
            json!([path("/api", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &copy, None).await;
    assert_denied_by(
        &resp,
        "ingressPathConflict",
        r#"host "shop.example.com" and path "/api" is already defined in ingress shop/web"#,
    );

    // shop/web updating itself (adding a path) is allowed, without findings.
    let web_old = ingress(
        "web",
        json!({}),
        rules(
            "shop.example.com",
            json!([
                path("/", "Prefix", json!({"name": "http"})),
                path("/api", "Prefix", json!({"number": 80}))
            ]),
        ),
    );
    let mut web_new = web_old.clone();
    web_new["spec"]["rules"][0]["http"]["paths"]
        .as_array_mut()
        .unwrap()
        .push(path("/docs", "Prefix", json!({"number": 80})));
    let resp = validate(&mut c, "UPDATE", &web_new, Some(&web_old)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");

    // Another controller's Ingress passes untouched, however broken for us.
    let mut nginx = ingress(
        "nginx-copy",
        json!({"nginx.ingress.kubernetes.io/configuration-snippet": "return 200;",
               "nginx.ingress.kubernetes.io/use-regex": "true"}),
        rules(
            "shop.example.com",
            json!([path(
                "/api(",
                "ImplementationSpecific",
                json!({"number": 1})
            )]),
        ),
    );
    nginx["spec"]["ingressClassName"] = json!("nginx");
    let resp = validate(&mut c, "CREATE", &nginx, None).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");

    // A regex that does not compile.
    let regex = ingress(
        "regex",
        json!({"nginx.ingress.kubernetes.io/rewrite-target": "/$1"}),
        rules(
            "blog.example.com",
            json!([path(
                "/blog/(.*",
                "ImplementationSpecific",
                json!({"number": 80})
            )]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &regex, None).await;
    assert_denied_by(
        &resp,
        "ingressInvalidRegex",
        r#"path "/blog/(.*" is not a valid regex"#,
    );
    assert!(message(&resp).contains("(at /spec/rules/0/http/paths/0)"));

    // An annotation value that does not parse.
    let timeout = ingress(
        "timeout",
        json!({"nginx.ingress.kubernetes.io/proxy-read-timeout": "forever"}),
        rules(
            "blog.example.com",
            json!([path("/", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &timeout, None).await;
    assert_denied_by(
        &resp,
        "ingressInvalidAnnotation",
        "nginx.ingress.kubernetes.io/proxy-read-timeout",
    );

    // A malformed auth value is denied with the parser's reason.
    let digest = ingress(
        "digest",
        json!({"nginx.ingress.kubernetes.io/auth-type": "digest",
               "nginx.ingress.kubernetes.io/auth-secret": "users"}),
        rules(
            "blog.example.com",
            json!([path("/", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &digest, None).await;
    assert_denied_by(
        &resp,
        "ingressInvalidAnnotation",
        "auth-type: digest authentication is not supported",
    );
    let variable = ingress(
        "auth-url",
        json!({"nginx.ingress.kubernetes.io/auth-url": "http://auth.sso/$upstream_addr"}),
        rules(
            "blog.example.com",
            json!([path("/", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &variable, None).await;
    assert_denied_by(
        &resp,
        "ingressInvalidAnnotation",
        "nginx variable $upstream_addr is not supported",
    );

    let headers = ingress(
        "auth-headers",
        json!({"nginx.ingress.kubernetes.io/auth-url": "http://auth.sso/verify",
               "nginx.ingress.kubernetes.io/auth-proxy-set-headers": "a/b/c"}),
        rules(
            "blog.example.com",
            json!([path("/", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &headers, None).await;
    assert_denied_by(
        &resp,
        "ingressInvalidAnnotation",
        "\"b/c\" is not a valid ConfigMap name",
    );

    // A snippet: its own rule, and not also an invalid annotation.
    let snippet = ingress(
        "snippet",
        json!({"nginx.ingress.kubernetes.io/server-snippet": "location /x { return 200; }"}),
        rules(
            "blog.example.com",
            json!([path("/", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &snippet, None).await;
    assert_denied_by(&resp, "ingressSnippetAnnotation", "server-snippet");
    assert!(!message(&resp).contains("ingressInvalidAnnotation"));

    // A Service port that does not exist, and a TLS Secret that does not: allowed, warned.
    let mut warned = ingress(
        "blog",
        json!({}),
        rules(
            "blog.example.com",
            json!([path("/", "Prefix", json!({"number": 8080}))]),
        ),
    );
    warned["spec"]["tls"] = json!([{"hosts": ["blog.example.com"], "secretName": "blog-tls"}]);
    let resp = validate(&mut c, "CREATE", &warned, None).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    let w = warnings(&resp);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("ingressBackendMissing: backend Service shop/web has no port 8080"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("ingressTlsSecretMissing: TLS Secret shop/blog-tls does not exist"),
        "{w:?}"
    );

    // Each review loads the current snapshot: once the Secret and the port exist, the
    // same Ingress passes clean.
    let mut dir_store = load_all(&fixtures().join("ingress-live")).unwrap().0;
    let extra: Vec<_> = portcullis::admission::check::parse_manifests(
        "extra",
        r#"
apiVersion: v1
kind: Secret
type: kubernetes.io/tls
metadata: {name: blog-tls, namespace: shop}
stringData: {tls.crt: "", tls.key: ""}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}, {name: alt, port: 8080}]}
"#,
    )
    .unwrap()
    .into_iter()
    .filter_map(|v| portcullis::source::Object::from_value(v).unwrap())
    .collect();
    // Sorts before the directory's own files, so its Service version is the one in force.
    dir_store.replace_origin("!extra", extra, vec![]);
    let next = compile(&dir_store, &CompileOptions::default(), Some(&live.load()));
    live.store(Arc::new(next));
    let resp = validate(&mut c, "CREATE", &warned, None).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    assert!(warnings(&resp).is_empty(), "{resp}");

    hook.server.stop().await;
}

fn check(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("--config=ingress-rules-only.yaml")
        .args(args)
        .current_dir(fixtures())
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_with_manifests_exit_codes() {
    let live = "--manifests=ingress-live";
    // An update of an Ingress that is in the directory: clean.
    let (code, out, err) = check(&[live, "ingress-check/web-update.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "no findings", "{out}");

    // A collision: exit 1, the owner named.
    let (code, out, err) = check(&[live, "--output=json", "ingress-check/copy.yaml"]);
    assert_eq!(code, 1, "{out}{err}");
    let reports: Value = serde_json::from_str(&out).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1, "{out}");
    assert_eq!(reports[0]["rule"], "ingressPathConflict");
    assert_eq!(reports[0]["action"], "deny");
    assert_eq!(reports[0]["object"], "Ingress shop/copy");
    assert!(
        reports[0]["message"]
            .as_str()
            .unwrap()
            .contains("is already defined in ingress shop/web"),
        "{out}"
    );

    // Warnings only: exit 0, both shown.
    let (code, out, err) = check(&[live, "ingress-check/warn-only.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ingressBackendMissing"), "{out}");
    assert!(out.contains("ingressTlsSecretMissing"), "{out}");

    // Without --manifests the live rules have nothing to compare with.
    let (code, out, err) = check(&["ingress-check/copy.yaml", "ingress-check/warn-only.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "no findings", "{out}");

    // A directory that cannot be read is an error (exit 2), not a clean pass.
    let (code, out, err) = check(&["--manifests=does-not-exist", "ingress-check/copy.yaml"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("does-not-exist"), "{err}");
}

/// Rate limits, affinity and hashing are parsed by the same code admission uses: a
/// malformed value is denied, naming the annotation and why.
#[tokio::test]
async fn malformed_traffic_annotations_are_denied_with_the_reason() {
    let hook = start(live_handle()).await;
    let mut c = hook.client().await;
    let cases = [
        (
            "nginx.ingress.kubernetes.io/limit-rps",
            "ten",
            "expected a non-negative integer",
        ),
        (
            "nginx.ingress.kubernetes.io/affinity",
            "ip",
            "the only affinity type is cookie",
        ),
        (
            "nginx.ingress.kubernetes.io/upstream-hash-by",
            "$upstream_addr",
            "$upstream_addr is not supported",
        ),
    ];
    for (i, (key, value, reason)) in cases.into_iter().enumerate() {
        let obj = ingress(
            &format!("traffic-{i}"),
            json!({ key: value }),
            rules(
                "blog.example.com",
                json!([path("/", "Prefix", json!({"number": 80}))]),
            ),
        );
        let resp = validate(&mut c, "CREATE", &obj, None).await;
        assert_denied_by(&resp, "ingressInvalidAnnotation", key);
        assert!(message(&resp).contains(reason), "{}", message(&resp));
    }
}

#[tokio::test]
async fn tls_edge_annotations_are_checked_by_admission() {
    let hook = start(live_handle()).await;
    let mut c = hook.client().await;
    let cases = [
        (
            "nginx.ingress.kubernetes.io/auth-tls-verify-client",
            "maybe",
            "expected on, off, optional or optional_no_ca",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "ca-without-namespace",
            "expected namespace/name",
        ),
        (
            "nginx.ingress.kubernetes.io/ssl-passthrough",
            "yes",
            "expected true or false",
        ),
        (
            "nginx.ingress.kubernetes.io/proxy-ssl-verify",
            "sometimes",
            "expected on or off",
        ),
    ];
    for (key, value, reason) in cases {
        let mut annotations = json!({key: value});
        if key != "nginx.ingress.kubernetes.io/auth-tls-secret" && key.contains("auth-tls") {
            annotations["nginx.ingress.kubernetes.io/auth-tls-secret"] = json!("shop/client-ca");
        }
        let obj = ingress(
            "tls-edge",
            annotations,
            rules(
                "mtls.example.com",
                json!([path("/", "Prefix", json!({"number": 80}))]),
            ),
        );
        let resp = validate(&mut c, "CREATE", &obj, None).await;
        assert_denied_by(&resp, "ingressInvalidAnnotation", key);
        assert!(message(&resp).contains(reason), "{}", message(&resp));
    }
    // Well-formed values pass.
    let ok = ingress(
        "tls-edge",
        json!({
            "nginx.ingress.kubernetes.io/auth-tls-secret": "shop/client-ca",
            "nginx.ingress.kubernetes.io/auth-tls-verify-client": "optional",
            "nginx.ingress.kubernetes.io/ssl-passthrough": "false"
        }),
        rules(
            "mtls.example.com",
            json!([path("/", "Prefix", json!({"number": 80}))]),
        ),
    );
    let resp = validate(&mut c, "CREATE", &ok, None).await;
    assert_eq!(resp["allowed"], true, "{resp}");
}

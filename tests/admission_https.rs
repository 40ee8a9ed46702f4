//! The admission webhook through its real HTTPS endpoint with a real TLS client: every
//! rule fixture in every pod-template kind, both review versions, every bad-input case,
//! mutation round trips and idempotence.
mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use common::{Client, Proto};
use http::{Request, StatusCode};
use http_body_util::Full;
use portcullis::admission::check::parse_manifests;
use portcullis::admission::settings::Action;
use portcullis::admission::{AdmissionSettings, Engine};
use portcullis::tls::{DevCerts, SniResolver, server_config};
use serde_json::{Value, json};

struct Webhook {
    server: common::TestServer,
    ca: String,
}

async fn start(settings: AdmissionSettings) -> Webhook {
    common::init();
    let certs = DevCerts::generate("portcullis", "portcullis").unwrap();
    let resolver = Arc::new(SniResolver::new(certs.certified_key().unwrap()));
    let tls = server_config(resolver).unwrap();
    let engine = Arc::new(Engine::new(settings).unwrap());
    let server = common::start(
        portcullis::admission::http::handler(engine, None),
        Some(tls),
    )
    .await;
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

fn post(path: &str, ctype: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "portcullis.portcullis.svc")
        .header("content-type", ctype)
        .body(Full::new(body.into()))
        .unwrap()
}

fn review(version: &str, op: &str, obj: &Value) -> Value {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let (group, ver) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d5b6e5c-1111-4222-8333-444455556666",
            "kind": {"group": group, "version": ver, "kind": obj["kind"]},
            "resource": {"group": group, "version": ver, "resource": "x"},
            "namespace": obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default"),
            "operation": op,
            "userInfo": {"username": "test"},
            "object": obj,
            "oldObject": null,
            "dryRun": false
        }
    })
}

async fn call(c: &mut Client, path: &str, review: &Value) -> Value {
    let reply = c
        .send(post(
            path,
            "application/json",
            serde_json::to_vec(review).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["apiVersion"], review["apiVersion"]);
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

/// Whether a response mentions `rule` in a warning or in the denial message.
fn mentions(resp: &Value, rule: &str) -> bool {
    let prefix = format!("{rule}: ");
    let in_warnings = resp["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with(&prefix)))
    });
    let in_status = resp["status"]["message"]
        .as_str()
        .is_some_and(|m| m.contains(&prefix));
    in_warnings || in_status
}

/// Whether the endpoint can show `rule` among `findings`: warnings are cut to the API
/// server's budget, so with every rule on a rule's warning may be among those left out.
fn shown(findings: &[portcullis::admission::Finding], rule: &str) -> bool {
    let prefix = format!("{rule}: ");
    portcullis::admission::review::warnings(findings)
        .iter()
        .any(|w| w.starts_with(&prefix))
        || (findings.iter().any(|f| f.action == Action::Deny)
            && portcullis::admission::review::denial_message("x", findings).contains(&prefix))
}

/// The same pod template put in each workload kind.
fn transplant(template: &Value, labels: &Value) -> Vec<(Value, bool)> {
    let pod_spec = template["spec"].clone();
    let mut batch_spec = pod_spec.clone();
    if batch_spec.get("restartPolicy").is_none() {
        batch_spec["restartPolicy"] = json!("Never");
    }
    let tmeta = json!({"labels": labels});
    let sel = json!({"matchLabels": labels});
    let meta = json!({"name": "x", "namespace": "default"});
    vec![
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "default", "labels": labels}, "spec": pod_spec}),
            true,
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"selector": sel, "template": {"metadata": tmeta, "spec": pod_spec}}}),
            true,
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta, "spec": {"selector": sel, "template": {"metadata": tmeta, "spec": pod_spec}}}),
            true,
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": {"serviceName": "x", "selector": sel, "template": {"metadata": tmeta, "spec": pod_spec}}}),
            true,
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": {"selector": sel, "template": {"metadata": tmeta, "spec": pod_spec}}}),
            true,
        ),
        (
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta, "spec": {"selector": labels, "template": {"metadata": tmeta, "spec": pod_spec}}}),
            true,
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": {"metadata": tmeta, "spec": batch_spec}}}),
            false,
        ),
        (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"metadata": tmeta, "spec": batch_spec}}}}}),
            false,
        ),
    ]
}

/// Settings that switch every rule on (off-by-default ones become warn) so each fixture
/// can be seen through the endpoint.
fn all_rules_on() -> AdmissionSettings {
    let mut s = AdmissionSettings {
        required_labels: vec!["app.kubernetes.io/name".into()],
        ..Default::default()
    };
    for r in portcullis::admission::rules::catalogue() {
        if r.default_action() == Action::Off {
            s.rules.insert(
                r.id().to_string(),
                serde_json::from_value(json!("warn")).unwrap(),
            );
        }
    }
    s
}

#[tokio::test]
async fn every_rule_fixture_through_https_in_every_pod_template_kind() {
    let wh = start(all_rules_on()).await;
    let mut c = wh.client().await;
    let engine = Engine::new(all_rules_on()).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let mut calls = 0;
    let mut rule_dirs: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    rule_dirs.sort();
    for dir in rule_dirs {
        let rule = dir.file_name().unwrap().to_string_lossy().to_string();
        if dir.join("settings.yaml").exists() {
            continue; // needs its own settings; covered by tests/rules_fixtures.rs
        }
        if dir.join("view.yaml").exists()
            || fs::read_dir(&dir)
                .unwrap()
                .any(|f| f.unwrap().file_name().to_string_lossy().starts_with("view"))
        {
            continue; // reads a cluster view this server does not have; see rules_fixtures
        }
        if dir.join("live").exists() {
            // Judged against live state this server does not have; covered by
            // tests/rules_fixtures.rs and tests/admission_ingress.rs.
            continue;
        }
        for f in fs::read_dir(&dir).unwrap() {
            let path = f.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let expect = if name.starts_with("fail") {
                true
            } else if name.starts_with("pass") {
                false
            } else {
                continue;
            };
            for obj in parse_manifests(&name, &fs::read_to_string(&path).unwrap()).unwrap() {
                let resp = call(
                    &mut c,
                    "/validate",
                    &review("admission.k8s.io/v1", "CREATE", &obj),
                )
                .await;
                calls += 1;
                if !["qosClassAnnotation", "defaultMetadata"].contains(&rule.as_str()) {
                    let ctx = portcullis::admission::Context::new(
                        portcullis::admission::cluster::group_of(&obj),
                        obj["kind"].as_str().unwrap_or(""),
                        portcullis::admission::Operation::Create,
                        obj.pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("default"),
                        "",
                        &obj,
                        engine.settings(),
                    );
                    let findings = engine.validate(&ctx).findings;
                    let direct = findings.iter().any(|f| f.rule == rule);
                    assert_eq!(direct, expect, "{rule}/{name}: {findings:?}");
                    assert_eq!(
                        mentions(&resp, &rule),
                        shown(&findings, &rule),
                        "{rule}/{name}: {resp}"
                    );
                }
                // Container-level fixtures are replayed in every pod-template kind.
                let template = match obj["kind"].as_str() {
                    Some("Deployment") => obj.pointer("/spec/template").cloned(),
                    Some("Pod") => Some(json!({"metadata": obj["metadata"], "spec": obj["spec"]})),
                    _ => None,
                };
                let Some(template) = template else { continue };
                let labels = template
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({"app": "x"}));
                for (variant, long_running) in transplant(&template, &labels) {
                    let resp = call(
                        &mut c,
                        "/validate",
                        &review("admission.k8s.io/v1", "CREATE", &variant),
                    )
                    .await;
                    calls += 1;
                    let ctx = portcullis::admission::Context::new(
                        variant["apiVersion"]
                            .as_str()
                            .unwrap()
                            .rsplit_once('/')
                            .map(|(g, _)| g)
                            .unwrap_or(""),
                        variant["kind"].as_str().unwrap(),
                        portcullis::admission::Operation::Create,
                        "default",
                        "",
                        &variant,
                        engine.settings(),
                    );
                    // What the endpoint can show of the engine's findings: warnings are
                    // cut to the API server's budget, so with every rule on a rule's
                    // warning may be among those left out.
                    let findings = engine.validate(&ctx).findings;
                    let direct = findings.iter().any(|f| f.rule == rule);
                    assert_eq!(
                        mentions(&resp, &rule),
                        shown(&findings, &rule),
                        "{rule}/{name} as {}: endpoint and engine disagree",
                        variant["kind"]
                    );
                    if long_running && expect && rule_is_template_level(&rule) {
                        assert!(
                            direct,
                            "{rule}/{name} as {}: the rule should trigger",
                            variant["kind"]
                        );
                    }
                }
            }
        }
    }
    assert!(calls > 20, "only {calls} reviews sent");
    wh.server.stop().await;
}

/// Rules that judge only the pod template, so they fire for any long-running kind.
fn rule_is_template_level(rule: &str) -> bool {
    !matches!(
        rule,
        "selectorMismatch"
            | "jobRestartPolicy"
            | "deploymentMissingReplicas"
            | "rollingUpdateStuck"
            | "statefulSetServiceName"
            | "requiredLabelsMissing"
            | "qosClassAnnotation"
            | "defaultMetadata"
    )
}

fn bad_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "p"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:latest",
            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}
    })
}

#[tokio::test]
async fn v1_and_v1beta1_are_answered_in_kind() {
    let wh = start(AdmissionSettings::default()).await;
    let mut c = wh.client().await;
    for v in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let resp = call(&mut c, "/validate", &review(v, "CREATE", &bad_pod())).await;
        assert_eq!(resp["allowed"], false, "{resp}");
        assert_eq!(resp["status"]["code"], 403);
        assert_eq!(resp["status"]["reason"], "Forbidden");
        let msg = resp["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("Pod shop/p") && msg.contains("requestAboveLimit: "),
            "{msg}"
        );
        assert!(
            mentions(&resp, "tagNotSpecified"),
            "warnings ride along with a denial: {resp}"
        );
        assert!(resp.get("patch").is_none() && resp.get("patchType").is_none());
    }
    wh.server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let settings = AdmissionSettings {
        max_body_bytes: 64 * 1024,
        ..Default::default()
    };
    let wh = start(settings).await;
    let mut c = wh.client().await;
    let get = Request::get("/validate")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send(get).await.unwrap();
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = c.send(post("/validate", "text/plain", "{}")).await.unwrap();
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = c
        .send(post("/validate", "application/json", ""))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("empty"), "{}", r.text());
    let r = c
        .send(post(
            "/mutate",
            "application/json; charset=utf-8",
            "{\"apiVersion\": ",
        ))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("not valid JSON"), "{}", r.text());
    let r = c
        .send(post(
            "/validate",
            "application/json",
            r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("no request"), "{}", r.text());
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    let r = c
        .send(post("/validate", "application/json", huge))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // A body left unread ends the connection; a new one works.
    let mut c = wh.client().await;
    let r = c
        .send(post("/nope", "application/json", "{}"))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The connection survived the other errors and still answers a good review.
    let resp = call(
        &mut c,
        "/validate",
        &review("admission.k8s.io/v1", "CREATE", &bad_pod()),
    )
    .await;
    assert_eq!(resp["allowed"], false);
    wh.server.stop().await;
}

#[tokio::test]
async fn unknown_kinds_deletes_skips_and_dry_run() {
    let wh = start(AdmissionSettings::default()).await;
    let mut c = wh.client().await;
    let crd = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"anything": [1, 2]}});
    for path in ["/validate", "/mutate"] {
        let resp = call(&mut c, path, &review("admission.k8s.io/v1", "CREATE", &crd)).await;
        assert_eq!(resp["allowed"], true);
        assert!(
            resp.get("patch").is_none() && resp.get("warnings").is_none(),
            "{resp}"
        );
    }
    let mut del = review("admission.k8s.io/v1", "DELETE", &bad_pod());
    del["request"]["oldObject"] = del["request"]["object"].take();
    for path in ["/validate", "/mutate"] {
        let resp = call(&mut c, path, &del).await;
        assert_eq!(resp["allowed"], true, "{resp}");
        assert!(resp.get("patch").is_none());
    }
    let mut kube_system = bad_pod();
    kube_system["metadata"]["namespace"] = json!("kube-system");
    let resp = call(
        &mut c,
        "/validate",
        &review("admission.k8s.io/v1", "CREATE", &kube_system),
    )
    .await;
    assert_eq!(resp["allowed"], true);
    let mut opted_out = bad_pod();
    opted_out["metadata"]["annotations"] = json!({"portcullis.io/validate": "false"});
    let resp = call(
        &mut c,
        "/validate",
        &review("admission.k8s.io/v1", "CREATE", &opted_out),
    )
    .await;
    assert_eq!(resp["allowed"], true);
    let mut dry = review("admission.k8s.io/v1", "CREATE", &bad_pod());
    dry["request"]["dryRun"] = json!(true);
    let wet = call(
        &mut c,
        "/validate",
        &review("admission.k8s.io/v1", "CREATE", &bad_pod()),
    )
    .await;
    let dry = call(&mut c, "/validate", &dry).await;
    assert_eq!(dry, wet, "a dry run gets the same decision");
    wh.server.stop().await;
}

#[tokio::test]
async fn mutation_round_trip_is_applicable_and_idempotent() {
    let wh = start(AdmissionSettings::default()).await;
    let mut c = wh.client().await;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "annotations": {"team.example.com/owner": "a"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [
                {"name": "web", "image": "nginx", "resources": {"limits": {"cpu": "1"}}},
                {"name": "side", "image": "busybox:1.36"}
            ], "volumes": [{"name": "tmp", "emptyDir": {}}]}
        }}
    });
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let resp = call(&mut c, "/mutate", &review(version, "CREATE", &deployment)).await;
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
        let mut mutated = deployment.clone();
        json_patch::patch(&mut mutated, &patch).unwrap();
        assert_eq!(
            mutated.pointer("/spec/template/spec/containers/0/imagePullPolicy"),
            Some(&json!("Always"))
        );
        assert_eq!(
            mutated.pointer("/metadata/annotations/team.example.com~1owner"),
            Some(&json!("a")),
            "existing annotations kept"
        );
        assert_eq!(
            mutated.pointer("/spec/template/metadata/labels/app"),
            Some(&json!("web")),
            "existing labels kept"
        );
        let again = call(&mut c, "/mutate", &review(version, "UPDATE", &mutated)).await;
        assert_eq!(again["allowed"], true);
        assert!(
            again.get("patch").is_none() && again.get("patchType").is_none(),
            "second pass must be empty: {again}"
        );
    }
    wh.server.stop().await;
}

//! The admission webhook through the real binary: `portcullis serve` with a settings
//! file, reached over HTTPS (h1 and h2) trusting only the development CA the binary
//! generated into `--cert-dir`, the way the API server trusts the caBundle.
mod common;
#[path = "common/e2e.rs"]
mod e2e;

use base64::Engine as _;
use bytes::Bytes;
use common::{Client, Proto};
use e2e::Portcullis;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use std::time::Duration;

const WEBHOOK_HOST: &str = "portcullis.portcullis.svc";

fn example_review() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/review-pod.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn post(c: &mut Client, path: &str, body: Vec<u8>) -> common::Reply {
    let req = Request::post(path)
        .header("host", WEBHOOK_HOST)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    c.send(req).await.unwrap()
}

/// POSTs `review` and returns its `response`, checking the envelope.
async fn review(c: &mut Client, path: &str, review: &Value) -> Value {
    let reply = post(c, path, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

fn warns(resp: &Value, rule: &str) -> bool {
    let prefix = format!("{rule}: ");
    resp["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|s| s.as_str().is_some_and(|s| s.starts_with(&prefix)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_validates_and_mutates_over_https() {
    let manifests = tempfile::tempdir().unwrap();
    let settings = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
    std::fs::write(
        settings.path(),
        // Polaris' danger checks the example breaks only warn here, so the example is
        // allowed: that it is shows the settings file is honoured.
        "admission:\n  rules:\n    runAsPrivileged: deny\n    tagNotSpecified: warn\n    runAsRootAllowed: warn\n    privilegeEscalationAllowed: warn\n",
    )
    .unwrap();
    let config = settings.path().to_str().unwrap();
    let gw = Portcullis::start(manifests.path(), &["--config", config]).await;
    let ca = gw.webhook_ca();
    let example = example_review();

    for proto in [Proto::H1, Proto::H2] {
        let mut c = Client::tls(gw.webhook, WEBHOOK_HOST, &ca, proto)
            .await
            .unwrap_or_else(|e| panic!("{proto:?}: the generated CA must verify: {e:#}"));

        // The example pod is allowed (by the settings), with warnings naming the rules it
        // breaks.
        let resp = review(&mut c, "/validate", &example).await;
        assert_eq!(resp["allowed"], true, "{resp}");
        for rule in [
            "tagNotSpecified",
            "livenessProbeMissing",
            "memoryLimitsMissing",
        ] {
            assert!(warns(&resp, rule), "{proto:?}: no {rule} warning in {resp}");
        }
        assert!(resp.get("patch").is_none(), "/validate must not patch");

        // /mutate answers with a JSONPatch that fills in the resource defaults.
        let resp = review(&mut c, "/mutate", &example).await;
        assert_eq!(resp["allowed"], true);
        assert_eq!(resp["patchType"], "JSONPatch", "{resp}");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(resp["patch"].as_str().expect("patch"))
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut pod = example["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch).unwrap();
        let resources = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(resources["requests"]["cpu"], "100m", "{pod}");
        assert_eq!(resources["requests"]["memory"], "128Mi", "{pod}");
        assert_eq!(resources["limits"]["memory"], "512Mi", "{pod}");

        // The patched pod needs no further patch, and no longer warns about resources.
        let mut again = example.clone();
        again["request"]["object"] = pod.clone();
        let resp = review(&mut c, "/mutate", &again).await;
        assert!(
            resp.get("patch").is_none(),
            "mutation not idempotent: {resp}"
        );
        let resp = review(&mut c, "/validate", &again).await;
        assert!(!warns(&resp, "memoryLimitsMissing"), "{resp}");

        // A deny rule still denies: privileged is a denial.
        let mut privileged = example.clone();
        privileged["request"]["object"]["spec"]["containers"][0]["securityContext"] =
            json!({"privileged": true});
        let resp = review(&mut c, "/validate", &privileged).await;
        assert_eq!(resp["allowed"], false, "{resp}");
        let message = resp["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("runAsPrivileged: "), "{resp}");

        // Not a review at all: a client error, not a decision.
        let reply = post(&mut c, "/validate", b"{not json".to_vec()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    }

    // The ingress listeners do not serve the webhook paths.
    let reply = e2e::http_get(gw.http, WEBHOOK_HOST, "/validate")
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// A review of `ingress` (CREATE) in the e2e namespace.
fn ingress_review(ingress: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "Ingress"},
            "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "ingresses"},
            "namespace": ingress["metadata"]["namespace"],
            "name": ingress["metadata"]["name"],
            "operation": "CREATE",
            "userInfo": {"username": "dev"},
            "object": ingress
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_checks_ingresses_against_the_served_routes() {
    let manifests = tempfile::tempdir().unwrap();
    let dir = manifests.path();
    e2e::write_atomic(
        dir,
        "shop.yaml",
        &e2e::yaml(&[
            e2e::ingress_class(),
            e2e::service("web"),
            e2e::ingress("web", "shop.example", None, &[("/", "web")], &[]),
        ]),
    );
    let gw = Portcullis::start(dir, &[]).await;
    let ca = gw.webhook_ca();
    let mut c = Client::tls(gw.webhook, WEBHOOK_HOST, &ca, Proto::H1)
        .await
        .unwrap();

    let copy = e2e::ingress("copy", "shop.example", None, &[("/", "web")], &[]);
    let resp = review(&mut c, "/validate", &ingress_review(&copy)).await;
    assert_eq!(resp["allowed"], false, "{resp}");
    let message = resp["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(r#"ingressPathConflict: host "shop.example" and path "/" is already defined in ingress "#)
            && message.contains("/web "),
        "{message}"
    );

    // A route added to the directory later is defended as soon as it is served.
    let blog = e2e::ingress("blog", "blog.example", None, &[("/", "web")], &[]);
    let rival = e2e::ingress("rival", "blog.example", None, &[("/", "web")], &[]);
    let resp = review(&mut c, "/validate", &ingress_review(&rival)).await;
    assert_eq!(resp["allowed"], true, "{resp}");
    e2e::write_atomic(dir, "blog.yaml", &e2e::yaml(&[blog]));
    let rival_review = ingress_review(&rival);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp = review(&mut c, "/validate", &rival_review).await;
        if resp["allowed"] == false {
            let message = resp["status"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("/blog "), "{message}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new route was never defended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

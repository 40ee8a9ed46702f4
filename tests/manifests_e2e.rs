//! The deployment manifests against the real binary and the real certificate script: the
//! ports and paths the Services, probes and webhook configurations name are the ones
//! `portcullis serve` listens on by default and answers; `scripts/install-certs.sh` makes
//! a certificate the webhook serves for the Service name in `clientConfig`, and rotates it
//! without a moment in which the caBundle does not trust what is served; kustomize turns
//! the same files into the Secret and the caBundle (when `kubectl` is installed).
mod common;
#[path = "common/e2e.rs"]
mod e2e;
#[path = "common/manifests.rs"]
mod manifests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{Client, Proto, leaf_der};
use e2e::Portcullis;
use http::{Request, StatusCode};
use http_body_util::Full;
use manifests::{
    Doc, all, base, container_args, container_port, find, lost_fields, parse_docs,
    resolve_target_port, root, typed_round_trip,
};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The `[default: …]` of `flag` in `portcullis serve --help`.
fn serve_default(flag: &str) -> SocketAddr {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    // One block per option: its line plus any continuation lines.
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        if line.trim_start().starts_with('-') || blocks.is_empty() {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push(' ');
        }
    }
    let option = format!("{flag} <");
    let block = blocks
        .iter()
        .find(|b| b.trim_start().starts_with(&option))
        .unwrap_or_else(|| panic!("{flag} not in serve --help:\n{help}"));
    let start = block.find("[default: ").expect("a default") + "[default: ".len();
    let len = block[start..].find(']').unwrap();
    block[start..start + len].parse().unwrap()
}

/// Runs scripts/install-certs.sh with this build's binary.
fn install_certs(out: &Path, extra: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-certs.sh");
    let result = Command::new("bash")
        .arg(script)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("PORTCULLIS", BIN)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "install-certs.sh {extra:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

fn pem_count(pem: &[u8]) -> usize {
    String::from_utf8_lossy(pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// An AdmissionReview for creating `object` (group/version/kind, plural resource).
fn review_of(object: &Value, resource: &str) -> Value {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "8f1e0d6c-0000-4000-8000-000000000042",
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "system:admin"},
            "object": object,
            "dryRun": false
        }
    })
}

async fn post_review(c: &mut Client, host: &str, path: &str, review: &Value) -> Value {
    let req = Request::post(path)
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(review).unwrap())))
        .unwrap();
    let reply = c.send(req).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    let v: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], review["request"]["uid"]);
    v["response"].clone()
}

/// Every webhook of both configurations, with the kind of its configuration.
fn all_webhooks(docs: &[Doc]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        for w in find(docs, kind, "portcullis").value["webhooks"]
            .as_array()
            .unwrap()
        {
            out.push((kind.to_string(), w.clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_ports_and_paths_the_manifests_name() {
    let docs = base();
    let d = find(&docs, "Deployment", "portcullis").value.clone();
    let webhook_port = serve_default("--webhook-addr").port();
    let admin_port = serve_default("--admin-addr").port();
    let http_port = serve_default("--http-addr").port();
    let https_port = serve_default("--https-addr").port();
    // The Deployment relies on those defaults.
    for arg in container_args(&d) {
        assert!(
            !arg.contains("-addr"),
            "the Deployment moves a listener: {arg}"
        );
    }
    let pod_labels = &d["spec"]["template"]["metadata"]["labels"];

    // Service ports reach the listeners the binary opens by default.
    let service_port = |name: &str, port: u64| {
        let svc = &find(&docs, "Service", name).value;
        for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&pod_labels[k], v, "{name} selects the portcullis pods");
        }
        let p = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("{name} has no port {port}"))
            .clone();
        resolve_target_port(&d, &p["targetPort"])
    };
    assert_eq!(service_port("portcullis-ingress", 80), http_port);
    assert_eq!(service_port("portcullis-ingress", 443), https_port);
    let ingress = &find(&docs, "Service", "portcullis-ingress").value;
    assert_eq!(ingress["spec"]["type"], "LoadBalancer");

    // Probes hit the admin listener.
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    let mut probe_paths = Vec::new();
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve_target_port(&d, &get["port"]), admin_port, "{probe}");
        probe_paths.push(path);
    }
    assert_eq!(container_port(&d, "admin"), admin_port);

    // Every webhook calls the webhook Service on a port that reaches the webhook listener.
    let hooks = all_webhooks(&docs);
    assert_eq!(hooks.len(), 6);
    for (_, w) in &hooks {
        let svc = &w["clientConfig"]["service"];
        assert_eq!(svc["namespace"], "portcullis");
        let port = svc["port"].as_u64().unwrap();
        assert_eq!(port, 443);
        assert_eq!(
            service_port(svc["name"].as_str().unwrap(), port),
            webhook_port,
            "{}",
            w["name"]
        );
    }

    // The real binary, with a certificate from the install script, answers on those paths.
    let certs = tempfile::tempdir().unwrap();
    install_certs(certs.path(), &[]);
    let manifests_dir = tempfile::tempdir().unwrap();
    let cert = certs.path().join("tls.crt");
    let key = certs.path().join("tls.key");
    let gw = Portcullis::start(
        manifests_dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    for path in probe_paths {
        let reply = gw.admin_get(path).await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    }
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();
    let review = review_of(&d, "deployments");
    for (kind, w) in &hooks {
        let svc = &w["clientConfig"]["service"];
        // The name the API server verifies the certificate against.
        let host = format!(
            "{}.{}.svc",
            svc["name"].as_str().unwrap(),
            svc["namespace"].as_str().unwrap()
        );
        let path = svc["path"].as_str().unwrap();
        assert_eq!(
            path,
            if kind.starts_with("Mutating") {
                "/mutate"
            } else {
                "/validate"
            }
        );
        let mut c = Client::tls(gw.webhook, &host, &ca, Proto::H1)
            .await
            .unwrap_or_else(|e| panic!("{host}: the caBundle must verify the certificate: {e:#}"));
        let resp = post_review(&mut c, &host, path, &review).await;
        // portcullis's own Deployment: allowed, not a single warning, nothing to patch.
        assert_eq!(resp["allowed"], true, "{path}: {resp}");
        assert!(resp.get("warnings").is_none(), "{path}: {resp}");
        assert!(resp.get("patch").is_none(), "{path}: {resp}");
    }
}

/// Connects trusting `ca` and returns the leaf the server presented, or the error.
async fn served_leaf(addr: SocketAddr, host: &str, ca: &[u8]) -> anyhow::Result<Vec<u8>> {
    let c = Client::tls(addr, host, ca, Proto::H1).await?;
    Ok(c.peer_leaf.clone().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_never_leaves_the_served_certificate_untrusted() {
    let host = "portcullis-webhook.portcullis.svc";
    let dir = tempfile::tempdir().unwrap();
    install_certs(dir.path(), &[]);
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let first_ca = read("ca.crt");
    assert_eq!(pem_count(&first_ca), 1);
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let manifests_dir = tempfile::tempdir().unwrap();
    let gw = Portcullis::start(
        manifests_dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    let old_leaf = served_leaf(gw.webhook, host, &first_ca).await.unwrap();

    // Rotate in place, as a Secret update does: new CA and leaf; the bundle keeps the old CA.
    install_certs(dir.path(), &[]);
    let bundle = read("ca.crt");
    assert_eq!(pem_count(&bundle), 2, "new CA + previous CA");
    assert!(
        String::from_utf8_lossy(&bundle).ends_with(&*String::from_utf8_lossy(&first_ca)),
        "the previous CA stays in the bundle"
    );
    let new_leaf = leaf_der(&String::from_utf8(read("tls.crt")).unwrap());
    assert_ne!(new_leaf, old_leaf);

    // Whichever certificate is served at any moment of the reload, the bundle trusts it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leaf = served_leaf(gw.webhook, host, &bundle)
            .await
            .expect("the rotated caBundle must trust the old and the new certificate");
        if leaf == new_leaf {
            break;
        }
        assert_eq!(leaf, old_leaf);
        assert!(
            Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old CA alone no longer verifies: trimming it before the reload would have broken
    // the webhook, which is why the bundle carries both.
    assert!(served_leaf(gw.webhook, host, &first_ca).await.is_err());

    // --trim keeps only the current CA, which is enough now.
    install_certs(dir.path(), &["--trim"]);
    let trimmed = read("ca.crt");
    assert_eq!(pem_count(&trimmed), 1);
    assert!(String::from_utf8_lossy(&bundle).starts_with(&*String::from_utf8_lossy(&trimmed)));
    assert_eq!(
        served_leaf(gw.webhook, host, &trimmed).await.unwrap(),
        new_leaf
    );
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Copies the committed manifests (not a local manifests/certs) into `to`.
fn copy_manifests(to: &Path) {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    for dir in ["base", "cert-manager"] {
        copy_dir(&root().join(dir), &to.join(dir));
    }
    std::fs::copy(
        root().join("kustomization.yaml"),
        to.join("kustomization.yaml"),
    )
    .unwrap();
}

fn kustomize(dir: &Path) -> Result<Vec<Doc>, String> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    Ok(parse_docs("kustomize output", &text)
        .into_iter()
        .map(|value| Doc {
            file: PathBuf::from("kustomize output"),
            value,
        })
        .collect())
}

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// kustomize wraps base64 (Secret data, caBundle) at 76 columns. The API server's decoder
/// (Go's encoding/base64) skips the line breaks; k8s-openapi's does not, so they are
/// removed before the typed round trip.
fn unwrap_base64(v: &mut Value) {
    let secret = v["kind"] == "Secret";
    if let Some(data) = v.get_mut("data").and_then(Value::as_object_mut)
        && secret
    {
        for value in data.values_mut() {
            if let Some(s) = value.as_str() {
                *value = Value::String(without_whitespace(s));
            }
        }
    }
    for w in v
        .get_mut("webhooks")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(b) = w.pointer_mut("/clientConfig/caBundle")
            && let Some(s) = b.as_str()
        {
            *b = Value::String(without_whitespace(s));
        }
    }
}

/// Needs `kubectl` (its built-in kustomize); says so and passes trivially without it.
#[test]
fn kustomize_builds_the_secret_and_the_ca_bundle_from_the_same_files() {
    if !kubectl_available() {
        eprintln!("kubectl not found: kustomize rendering not checked");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    copy_manifests(work.path());
    // Without certificates nothing builds, so nothing half-working can be applied.
    let err = kustomize(work.path()).unwrap_err();
    assert!(err.contains("certs/tls.crt"), "{err}");

    let certs = work.path().join("certs");
    install_certs(&certs, &[]);
    let mut docs = kustomize(work.path()).unwrap();
    for doc in &mut docs {
        unwrap_base64(&mut doc.value);
        match typed_round_trip(&doc.value) {
            Some(Ok(back)) => {
                let lost = lost_fields(&doc.value, &back);
                assert!(lost.is_empty(), "{} {}: {lost:?}", doc.kind(), doc.name());
            }
            other => panic!("{} {}: {other:?}", doc.kind(), doc.name()),
        }
    }
    let secret = &find(&docs, "Secret", "portcullis-webhook-tls").value;
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], "portcullis");
    let data = |key: &str| without_whitespace(secret["data"][key].as_str().unwrap());
    let decode = |b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    assert_eq!(
        decode(&data("tls.crt")),
        std::fs::read(certs.join("tls.crt")).unwrap()
    );
    assert_eq!(
        decode(&data("tls.key")),
        std::fs::read(certs.join("tls.key")).unwrap()
    );
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();
    assert_eq!(decode(&data("ca.crt")), ca);
    let hooks = all_webhooks(&docs);
    assert_eq!(hooks.len(), 6);
    for (_, w) in &hooks {
        let bundle = without_whitespace(w["clientConfig"]["caBundle"].as_str().unwrap());
        assert_eq!(decode(&bundle), ca, "{}", w["name"]);
    }
    // The Deployment mounts the generated ConfigMap under its hashed name, and that
    // ConfigMap holds settings the binary accepts.
    let d = &find(&docs, "Deployment", "portcullis").value;
    let config_maps = all(&docs, "ConfigMap");
    assert_eq!(config_maps.len(), 1);
    let cm = config_maps[0];
    assert!(cm.name().starts_with("portcullis-config-"), "{}", cm.name());
    let mounted = d["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .unwrap();
    assert_eq!(mounted, cm.name());
    let text = cm.value["data"]["config.yaml"].as_str().unwrap();
    portcullis::config::Settings::parse("config.yaml", text).unwrap();

    // The cert-manager variant: no Secret and no caBundle of its own, the cainjector
    // annotation on both configurations instead.
    let docs = kustomize(&work.path().join("cert-manager")).unwrap();
    assert!(all(&docs, "Secret").is_empty());
    for kind in [
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    ] {
        let c = &find(&docs, kind, "portcullis").value;
        assert_eq!(
            c["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            "portcullis/portcullis-webhook"
        );
        for w in c["webhooks"].as_array().unwrap() {
            assert!(w["clientConfig"].get("caBundle").is_none());
        }
    }
    assert_eq!(all(&docs, "Certificate").len(), 2);
    assert_eq!(all(&docs, "Issuer").len(), 2);
}

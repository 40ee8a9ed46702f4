//! The fake API server (tests/common/apiserver.rs) checked with the real kube client, so
//! tests built on it (the kube source, Ingress status, leader election) can trust it:
//! lists, paging, watches with selectors, 410 after expiry, Lease create/get/update with
//! conflicts, and the Ingress `/status` subresource.
#[path = "common/apiserver.rs"]
mod apiserver;
mod common;

use std::time::Duration;

use apiserver::ApiServer;
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Error};
use serde_json::{Value, json};

const STEP: Duration = Duration::from_secs(5);

fn ingress(name: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"rules": [{"host": "a.test"}]}
    })
}

fn secret(name: &str, type_: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": type_,
        "metadata": {"name": name, "namespace": "ns", "labels": labels}
    })
}

fn api_code(e: &Error) -> Option<(u16, String)> {
    match e {
        Error::Api(s) => Some((s.code, s.reason.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn lists_filter_by_field_and_label_and_page() {
    common::init();
    let server = ApiServer::start().await;
    server.apply(secret("a", "kubernetes.io/tls", json!({"app": "x"})));
    server.apply(secret("b", "Opaque", json!({"app": "x"})));
    server.apply(secret("c", "kubernetes.io/tls", json!({"app": "y"})));
    let secrets: Api<Secret> = Api::all(server.client());
    let names = |l: kube::core::ObjectList<Secret>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect()
    };
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(
        tls.metadata.resource_version.as_deref(),
        Some(server.resource_version().to_string().as_str())
    );
    assert_eq!(names(tls), ["a", "c"]);
    let l = secrets
        .list(&ListParams::default().fields("type!=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(names(l), ["b"]);
    let l = secrets
        .list(
            &ListParams::default()
                .labels("app=x")
                .fields("type=kubernetes.io/tls"),
        )
        .await
        .unwrap();
    assert_eq!(names(l), ["a"]);

    let first = secrets.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(names(first), ["a", "b"]);
    let rest = secrets
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert!(rest.metadata.continue_.is_none());
    assert_eq!(names(rest), ["c"]);

    server.expire();
    let err = secrets
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((410, "Expired".to_string())));
}

#[tokio::test]
async fn watch_streams_events_with_selector_semantics_and_410_after_expiry() {
    common::init();
    let server = ApiServer::start().await;
    server.apply(secret("a", "kubernetes.io/tls", json!({})));
    let secrets: Api<Secret> = Api::all(server.client());
    let rv = server.resource_version().to_string();
    let wp = WatchParams::default().fields("type=kubernetes.io/tls");
    let mut stream = secrets.watch(&wp, &rv).await.unwrap().boxed();
    let mut next = async || {
        tokio::time::timeout(STEP, stream.next())
            .await
            .expect("an event")
            .expect("stream open")
            .expect("decodes")
    };
    server.apply(secret("b", "Opaque", json!({})));
    server.apply(secret("c", "kubernetes.io/tls", json!({})));
    match next().await {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("c")),
        other => panic!("{other:?}"),
    }
    // Leaving the selector is a DELETED for this watch; entering it an ADDED.
    server.apply(secret("c", "Opaque", json!({})));
    assert!(matches!(next().await, WatchEvent::Deleted(_)));
    server.apply(secret("b", "kubernetes.io/tls", json!({})));
    match next().await {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }
    server.bookmark();
    match next().await {
        WatchEvent::Bookmark(b) => {
            assert_eq!(
                b.metadata.resource_version,
                server.resource_version().to_string()
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(server.delete("Secret", "ns", "a"));
    match next().await {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }

    // A dropped watch ends cleanly; resuming from a version replays what was missed.
    let last = server.resource_version().to_string();
    server.drop_watches();
    assert!(
        tokio::time::timeout(STEP, stream.next())
            .await
            .unwrap()
            .is_none()
    );
    server.apply(secret("d", "kubernetes.io/tls", json!({})));
    let mut resumed = secrets.watch(&wp, &last).await.unwrap().boxed();
    match tokio::time::timeout(STEP, resumed.next()).await.unwrap() {
        Some(Ok(WatchEvent::Added(s))) => assert_eq!(s.metadata.name.as_deref(), Some("d")),
        other => panic!("{other:?}"),
    }

    // After expiry the same version is too old: HTTP 200, one ERROR 410 event, end.
    server.expire();
    let mut old = secrets.watch(&wp, &last).await.unwrap().boxed();
    match tokio::time::timeout(STEP, old.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        tokio::time::timeout(STEP, old.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn lease_get_create_update_with_conflicts() {
    common::init();
    let server = ApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "portcullis");
    let err = leases.get("portcullis-leader").await.unwrap_err();
    assert_eq!(api_code(&err), Some((404, "NotFound".to_string())));
    assert_eq!(leases.get_opt("portcullis-leader").await.unwrap(), None);

    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "portcullis-leader"},
        "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("portcullis"));
    let rv1 = created.metadata.resource_version.clone().unwrap();
    let err = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((409, "AlreadyExists".to_string())));

    // pod-b takes it over with the version it read.
    let mut take = created.clone();
    take.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let updated = leases
        .replace("portcullis-leader", &PostParams::default(), &take)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version.as_deref(),
        Some(rv1.as_str())
    );
    // pod-a, still holding the old version, loses.
    let mut stale = created.clone();
    stale.spec.as_mut().unwrap().holder_identity = Some("pod-a".into());
    let err = leases
        .replace("portcullis-leader", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((409, "Conflict".to_string())));
    let now = leases.get("portcullis-leader").await.unwrap();
    assert_eq!(now.spec.unwrap().holder_identity.as_deref(), Some("pod-b"));
    let err = leases
        .replace("nope", &PostParams::default(), &take)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((400, "BadRequest".to_string())));
}

#[tokio::test]
async fn ingress_status_subresource_writes_only_status_and_is_recorded() {
    common::init();
    let server = ApiServer::start().await;
    server.apply(ingress("web"));
    let ingresses: Api<Ingress> = Api::namespaced(server.client(), "ns");

    // Merge patch of status.
    let lb = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let out = ingresses
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&lb))
        .await
        .unwrap();
    let ip = |i: &Ingress| {
        i.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .map(|v| v.iter().filter_map(|e| e.ip.clone()).collect::<Vec<_>>())
    };
    assert_eq!(ip(&out), Some(vec!["192.0.2.1".to_string()]));

    // JSON patch of status.
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/status/loadBalancer/ingress", "value": [{"ip": "192.0.2.2"}, {"hostname": "lb.test"}]}
    ]))
    .unwrap();
    let out = ingresses
        .patch_status("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(ip(&out), Some(vec!["192.0.2.2".to_string()]));

    // PUT of status ignores everything but status; a stale version conflicts.
    let mut whole = ingresses.get_status("web").await.unwrap();
    let stale = whole.clone();
    whole.spec = None;
    whole.status = Some(serde_json::from_value(json!({"loadBalancer": {}})).unwrap());
    let out = ingresses
        .replace_status("web", &PostParams::default(), &whole)
        .await
        .unwrap();
    assert!(out.spec.is_some(), "a status write keeps the spec");
    assert_eq!(ip(&out), None);
    let err = ingresses
        .replace_status("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((409, "Conflict".to_string())));

    // A write to the object itself cannot set status.
    let sneaky = json!({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
                        "metadata": {"labels": {"x": "y"}}});
    let out = ingresses
        .patch("web", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .unwrap();
    assert_eq!(ip(&out), None);
    assert_eq!(
        out.metadata.generation,
        Some(1),
        "no spec change, same generation"
    );

    let err = ingresses
        .patch_status("absent", &PatchParams::default(), &Patch::Merge(&lb))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some((404, "NotFound".to_string())));

    let writes = server.status_writes();
    let summary: Vec<(String, u16, String)> = writes
        .iter()
        .map(|w| (w.method.to_string(), w.code, w.name.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("PATCH".to_string(), 200, "web".to_string()),
            ("PATCH".to_string(), 200, "web".to_string()),
            ("PUT".to_string(), 200, "web".to_string()),
            ("PUT".to_string(), 409, "web".to_string()),
            ("PATCH".to_string(), 404, "absent".to_string()),
        ]
    );
    assert_eq!(writes[0].content_type, "application/merge-patch+json");
    assert_eq!(writes[1].content_type, "application/json-patch+json");
    assert_eq!(
        writes[1].status.as_ref().unwrap()["loadBalancer"]["ingress"][1]["hostname"],
        "lb.test"
    );
    assert_eq!(writes[0].body, lb);
}

//! The webhook's cluster view from watches (`serve --source kube`): the kinds the
//! cross-object rules read are watched on the fake API server, published once listed,
//! and followed as they change. A binding is judged by the watched Role; a role the view
//! lacks is not taken as proof it does not exist (it may be a moment old), so it denies
//! nothing; PDBs and ServiceAccounts are read the same way.
#[path = "common/apiserver.rs"]
mod apiserver;

use std::time::{Duration, Instant};

use apiserver::ApiServer;
use portcullis::admission::cluster::ClusterViewHandle;
use portcullis::admission::engine::Mode;
use portcullis::admission::http::answer_review_with;
use portcullis::admission::{AdmissionSettings, Engine};
use portcullis::source::cluster_watch;
use serde_json::{Value, json};

fn review(obj: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u1", "kind": {"group": portcullis::admission::cluster::group_of(obj), "version": "v1", "kind": obj["kind"]},
            "resource": {"group": "", "version": "v1", "resource": "x"},
            "namespace": obj["metadata"]["namespace"], "operation": "CREATE", "userInfo": {"username": "u"},
            "object": obj}
    }))
    .unwrap()
}

/// The rules the answer names (denial message and warnings).
fn rules_named(engine: &Engine, view: &ClusterViewHandle, obj: &Value) -> (bool, String) {
    let v = view.load();
    let out = answer_review_with(engine, Mode::Validate, &review(obj), None, v.as_deref()).unwrap();
    let resp: Value = serde_json::from_slice(&out).unwrap();
    (
        resp["response"]["allowed"] == true,
        resp["response"].to_string(),
    )
}

fn binding(role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": format!("to-{role}"), "namespace": "shop"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": []})
}

fn role(name: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": "shop", "managedFields": [{"manager": "x"}]},
        "rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]})
}

fn deployment(app: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": "shop"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"serviceAccountName": "quiet", "containers": [{"name": "c", "image": "nginx:1.27"}]}}}})
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_view_follows_the_watches() {
    let api = ApiServer::start().await;
    api.apply_all([
        role("exec"),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "quiet", "namespace": "shop"},
            "automountServiceAccountToken": false, "secrets": [{"name": "quiet-token"}]}),
    ]);
    let mut settings = AdmissionSettings::default();
    settings.skip_namespaces.clear();
    let mut engine = Engine::new(settings).unwrap();
    let checked = [
        "rolebindingRolePodExecAttach",
        "missingPodDisruptionBudget",
        "automountServiceAccountToken",
    ];
    engine.restrict_to(&checked.map(String::from)).unwrap();
    let kinds: Vec<cluster_watch::KindRef> = checked
        .iter()
        .flat_map(|id| cluster_watch::kinds_for(id).iter().copied())
        .collect();
    let view = ClusterViewHandle::default();
    assert!(view.load().is_none());
    let publisher = view.clone();
    cluster_watch::start(api.client(), &kinds, move |objs| publisher.publish(objs));
    until("the first view", || view.load().is_some()).await;

    let v = view.load().unwrap();
    let sa = v.get("", "ServiceAccount", Some("shop"), "quiet").unwrap();
    assert!(
        sa.get("secrets").is_none(),
        "token Secret names are dropped"
    );
    assert!(
        v.get("rbac.authorization.k8s.io", "Role", Some("shop"), "exec")
            .unwrap()["metadata"]
            .get("managedFields")
            .is_none()
    );

    // The watched Role decides the binding.
    let (allowed, text) = rules_named(&engine, &view, &binding("exec"));
    assert!(!allowed && text.contains("binds Role exec"), "{text}");
    // A Role the view lacks may be a moment old: no denial, no guess.
    let (allowed, text) = rules_named(&engine, &view, &binding("late"));
    assert!(
        allowed && !text.contains("rolebindingRolePodExecAttach"),
        "{text}"
    );
    // The PDB and the ServiceAccount (which turns the token off) are read too.
    let (_, text) = rules_named(&engine, &view, &deployment("web"));
    assert!(
        !text.contains("missingPodDisruptionBudget")
            && !text.contains("automountServiceAccountToken"),
        "{text}"
    );
    let (_, text) = rules_named(&engine, &view, &deployment("api"));
    assert!(
        text.contains("missingPodDisruptionBudget: no PodDisruptionBudget"),
        "{text}"
    );

    // Changes follow: the late Role appears, the PDB goes.
    api.apply(role("late"));
    until("the late Role", || {
        !rules_named(&engine, &view, &binding("late")).0
    })
    .await;
    assert!(api.delete("PodDisruptionBudget", "shop", "web"));
    until("the PDB's removal", || {
        rules_named(&engine, &view, &deployment("web"))
            .1
            .contains("missingPodDisruptionBudget")
    })
    .await;
}

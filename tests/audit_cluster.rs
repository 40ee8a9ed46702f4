//! `portcullis audit` without `--audit-path`: the live cluster (here the in-process fake
//! API server, through KUBECONFIG) is listed read-only and audited. Kinds the server does
//! not serve are reported and skipped; Pods a controller owns are left to their owner.
#[path = "common/apiserver.rs"]
mod apiserver;

use std::process::Command;

use apiserver::ApiServer;
use serde_json::{Value, json};

fn deployment(ns: &str, name: &str, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "managedFields": [{"manager": "kubectl"}]},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_cluster_audit_is_read_only_and_scored() {
    let api = ApiServer::start().await;
    api.apply_all([
        deployment("shop", "web", "nginx:1.27"),
        deployment("shop", "api", "api"),
        deployment("ops", "tool", "tool"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "creds", "namespace": "shop"}, "data": {"api_token": "x"}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-x", "uid": "1"}]},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}, "subjects": []}),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let run = |extra: Vec<String>| {
        let kubeconfig = kubeconfig.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_portcullis"))
                    .args(["audit", "--format", "json"])
                    .args([
                        "--checks",
                        "tagNotSpecified,sensitiveConfigmapContent,clusterrolebindingClusterAdmin",
                    ])
                    .args(extra)
                    .env("KUBECONFIG", kubeconfig)
                    .env_remove("KUBERNETES_SERVICE_HOST")
                    .env_remove("PORTCULLIS_CONFIG")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };

    let out = run(vec![]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Deployments web (tag ok), api and tool (no tag: dangers), the ConfigMap (danger),
    // the binding to cluster-admin (danger); the owned Pod is not listed.
    let names: Vec<String> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{} {}/{}",
                w["kind"].as_str().unwrap(),
                w["namespace"].as_str().unwrap(),
                w["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "ClusterRoleBinding /admins",
            "Deployment ops/tool",
            "ConfigMap shop/creds",
            "Deployment shop/api",
            "Deployment shop/web",
        ]
    );
    assert_eq!(
        report["counts"],
        json!({"successes": 1, "warnings": 0, "dangers": 4})
    );
    // 2·1 / (2 + 8) = 20
    assert_eq!(report["score"], 20);
    assert_eq!(report["source"], "cluster");
    // Kinds the fake server does not serve are named, not fatal.
    assert!(stderr.contains("statefulsets: not listed (404"), "{stderr}");

    // Only reads reached the server.
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method != http::Method::GET)
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(api.requests().iter().all(|r| !r.is_watch()));

    // --namespace narrows namespaced kinds; cluster-scoped RBAC is still read.
    let out = run(vec!["--namespace".into(), "ops".into()]).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["admins", "tool"]);
    assert_eq!(report["source"], "cluster (namespace ops)");
}

/// A Polaris configuration whose custom checks read other kinds: PodDisruptionBudgets
/// (listed with the built-in kinds) and ServiceMonitors (a CRD this server does not serve).
const ADDITIONAL_CONFIG: &str = r#"
checks:
  pdbNamed: warning
  serviceMonitored: warning
customChecks:
  pdbNamed:
    failureMessage: Needs a PodDisruptionBudget named after it
    target: Controller
    controllers: {include: [Deployment]}
    schema: {}
    additionalSchemas:
      policy/PodDisruptionBudget:
        properties:
          metadata:
            properties:
              name: {const: "{{ .metadata.name }}-pdb"}
  serviceMonitored:
    failureMessage: Needs a ServiceMonitor
    target: Controller
    controllers: {include: [Deployment]}
    schema: {}
    additionalSchemas:
      monitoring.coreos.com/ServiceMonitor: {}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_audit_lists_what_additional_schemas_read() {
    let api = ApiServer::start().await;
    api.apply_all([
        deployment("shop", "web", "nginx:1.27"),
        deployment("shop", "api", "api:1.0"),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web-pdb", "namespace": "shop"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
    ]);
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("kubeconfig");
    api.kubeconfig(&kubeconfig);
    let config = scratch.path().join("polaris.yaml");
    std::fs::write(&config, ADDITIONAL_CONFIG).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["audit", "--format", "json", "--polaris-config"])
            .arg(&config)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("PORTCULLIS_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The kind nobody serves is named; its check then finds no ServiceMonitor anywhere.
    assert!(
        stderr.contains("monitoring.coreos.com/ServiceMonitor: not served by the cluster"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<String> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            let name = w["name"].as_str().unwrap_or("").to_string();
            w["results"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|r| r["success"] == false)
                .map(move |r| format!("{name} {}", r["check"].as_str().unwrap_or("")))
        })
        .collect();
    assert_eq!(
        failed,
        [
            "api pdbNamed",
            "api serviceMonitored",
            "web serviceMonitored"
        ],
        "{report}"
    );
}

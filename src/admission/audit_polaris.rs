//! `portcullis audit --format polaris-json`: the report in the layout `polaris audit
//! --format json` writes (its `AuditData`, output version 1.0), so dashboards and scripts
//! built on Polaris' JSON read ours unchanged.
//!
//! How our results map onto it: a finding inside a container (its JSON Pointer runs
//! through `containers/N`, `initContainers/N` or `ephemeralContainers/N`) goes to that
//! container's `ContainerResults`; other findings on an object with a pod spec, and every
//! success there, go to `PodResult.Results`; objects without a pod spec (ConfigMaps,
//! Ingresses, RBAC) carry theirs in `Results`. Polaris keys a result set by check id, so
//! several findings of one check in one place become one entry whose `Details` lists
//! every message. `ClusterInfo.Version` is empty for a directory audit.
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::audit::{AuditReport, CheckResult, WorkloadResult};

/// Polaris' `PolarisOutputVersion`.
pub const POLARIS_OUTPUT_VERSION: &str = "1.0";

/// Go's zero `time.Time`, which Polaris writes for objects without a creation time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The report as Polaris' `AuditData`; `audit_time` is RFC 3339, `source_type` Polaris'
/// `Path` or `Cluster`.
pub fn render(report: &AuditReport, audit_time: &str, source_type: &str) -> Value {
    let namespaces: std::collections::BTreeSet<&str> = report
        .workloads
        .iter()
        .map(|w| w.namespace.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    let count = |f: fn(&WorkloadResult) -> bool| report.workloads.iter().filter(|w| f(w)).count();
    json!({
        "PolarisOutputVersion": POLARIS_OUTPUT_VERSION,
        "AuditTime": audit_time,
        "SourceType": source_type,
        "SourceName": report.source,
        "DisplayName": report.display_name.clone().unwrap_or_default(),
        "ClusterInfo": {
            "Version": "",
            "Nodes": count(|w| w.kind == "Node"),
            "Pods": count(|w| w.kind == "Pod"),
            "Namespaces": namespaces.len(),
            "Controllers": count(|w| w.has_pod && w.kind != "Pod"),
        },
        "Results": report.workloads.iter().map(workload).collect::<Vec<_>>(),
        "Score": report.score,
    })
}

fn workload(w: &WorkloadResult) -> Value {
    let mut own = Vec::new();
    let mut pod = Vec::new();
    let mut containers: BTreeMap<&str, Vec<&CheckResult>> = BTreeMap::new();
    for r in &w.results {
        match (&r.container, w.has_pod) {
            (Some(c), true) => containers.entry(c.as_str()).or_default().push(r),
            (None, true) => pod.push(r),
            (_, false) => own.push(r),
        }
    }
    let pod_result = w.has_pod.then(|| {
        json!({
            "Name": w.name,
            "Results": result_set(&pod),
            "ContainerResults": containers
                .iter()
                .map(|(name, results)| json!({"Name": name, "Results": result_set(results)}))
                .collect::<Vec<_>>(),
        })
    });
    json!({
        "Name": w.name,
        "Namespace": w.namespace,
        "Kind": w.kind,
        "Results": result_set(&own),
        "PodResult": pod_result,
        "CreatedTime": w.created.as_deref().unwrap_or(ZERO_TIME),
    })
}

/// Polaris' `ResultSet`: one entry per check id.
fn result_set(results: &[&CheckResult]) -> Value {
    let mut by_id: BTreeMap<&str, Vec<&CheckResult>> = BTreeMap::new();
    for r in results {
        by_id.entry(r.check.as_str()).or_default().push(r);
    }
    let set: serde_json::Map<String, Value> = by_id
        .into_iter()
        .map(|(id, rs)| {
            let success = rs.iter().all(|r| r.success);
            let failures: Vec<&str> = rs
                .iter()
                .filter(|r| !r.success)
                .map(|r| r.message.as_str())
                .collect();
            let message = match failures.first() {
                Some(m) => (*m).to_string(),
                None => rs.first().map(|r| r.message.clone()).unwrap_or_default(),
            };
            let details: Vec<&str> = if failures.len() > 1 {
                failures.clone()
            } else {
                Vec::new()
            };
            let first = rs.first();
            (
                id.to_string(),
                json!({
                    "ID": id,
                    "Message": message,
                    "Details": details,
                    "Success": success,
                    "Severity": first.map_or("", |r| r.configured),
                    "Category": first.map_or("", |r| r.category.as_str()),
                    "Mutations": null,
                    "Comments": null,
                }),
            )
        })
        .collect();
    Value::Object(set)
}

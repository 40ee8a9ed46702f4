//! `portcullis check FILE...`: the same rules over manifests, offline. Prints a table or
//! JSON and tells the caller whether anything would be denied.
use crate::admission::lookup::At;
use std::fmt::Write as _;

use serde_json::Value;

use super::cluster::ClusterView;
use super::context::{Context, Operation};
use super::engine::{Engine, Finding};
use crate::ingress::model::live::LiveState;

/// One finding with the object it belongs to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub source: String,
    pub object: String,
    #[serde(flatten)]
    pub finding: Finding,
}

/// Why a manifest could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
}

/// Splits a YAML or JSON stream into objects, unwrapping `List` kinds.
pub fn parse_manifests(source_name: &str, text: &str) -> Result<Vec<Value>, CheckError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| CheckError::Parse {
        source_name: source_name.to_string(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for d in docs {
        flatten(d, &mut out);
    }
    Ok(out)
}

fn flatten(mut v: Value, out: &mut Vec<Value>) {
    // A saved AdmissionReview is checked as the object it carries, so a review captured
    // from a cluster can be replayed offline.
    if v.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
        if let Some(obj) = v.pointer_mut("/request/object").map(Value::take) {
            flatten(obj, out);
        }
        return;
    }
    let is_list = v
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && v.get("items").is_some_and(Value::is_array);
    if is_list {
        if let Some(Value::Array(items)) = v.get("items").cloned() {
            for i in items {
                flatten(i, out);
            }
        }
    } else if v.is_object() {
        out.push(v);
    }
}

/// Runs the engine over every object as if it were being created, against `live` (the
/// compiled `--manifests` directory) when given, and with `cluster` as the other objects
/// cross-object rules read (every document the caller was given). An object that is also
/// in the live state under the same namespace/name is its own earlier version, so it
/// never collides with itself.
pub fn check_objects(
    engine: &Engine,
    source_name: &str,
    objects: &[Value],
    live: Option<&dyn LiveState>,
    cluster: Option<&ClusterView>,
) -> Vec<Report> {
    let mut reports = Vec::new();
    for obj in objects {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let namespace = obj
            .at("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let mut ctx = Context::new(
            group,
            kind,
            Operation::Create,
            namespace,
            "",
            obj,
            engine.settings(),
        );
        ctx.live = live;
        ctx.cluster = cluster;
        let object = ctx.describe();
        for f in engine.validate(&ctx).findings {
            reports.push(Report {
                source: source_name.to_string(),
                object: object.clone(),
                finding: f,
            });
        }
    }
    reports
}

/// The findings as an aligned text table.
pub fn render_table(reports: &[Report]) -> String {
    let header = ["OBJECT", "RULE", "ACTION", "MESSAGE", "PATH"];
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            [
                r.object.clone(),
                r.finding.rule.to_string(),
                r.finding.action.as_str().to_string(),
                r.finding.message.clone(),
                r.finding.path.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_reviews_are_unwrapped() {
        let text = r#"
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Service, metadata: {name: a}}
  - {apiVersion: v1, kind: ConfigMapList, items: [{apiVersion: v1, kind: ConfigMap, metadata: {name: b}}]}
---
{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}}}}
---
# a comment-only document
"#;
        let objs = parse_manifests("t", text).unwrap();
        let names: Vec<&str> = objs
            .iter()
            .filter_map(|o| o.at("/metadata/name")?.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn parse_errors_name_the_source() {
        let e = parse_manifests("bad.yaml", "a: [1, 2\n").unwrap_err();
        assert!(e.to_string().starts_with("bad.yaml: "), "{e}");
    }
}

//! What `portcullis check` does with each document before the rules see it: find where it
//! starts in its file (for the report's line numbers), decide whether it is something the
//! rules can judge, and refuse what cannot be interpreted. A document that is no
//! Kubernetes object, or a known kind whose fields have the wrong types (`containers:
//! "oops"`), is an error; a kind no rule reads (a CRD, or a misspelled kind) is skipped with
//! the reason; so is an object in a skipped namespace or opted out by annotation. Nothing
//! is silently passed.
use serde_json::Value;

use super::check::CheckError;

/// One document of an input, with the line it starts on (1-based).
#[derive(Debug, Clone)]
pub struct Located {
    pub line: usize,
    pub object: Value,
}

/// Splits YAML or JSON text into objects with their start lines, unwrapping Lists and
/// saved AdmissionReviews like `parse_manifests`. Line numbers are those of the document
/// (`---` separated) an object came from.
pub fn parse_located(source_name: &str, text: &str) -> Result<Vec<Located>, CheckError> {
    let mut out = Vec::new();
    for (line, chunk) in documents(text) {
        for object in super::check::parse_manifests(source_name, chunk).map_err(|e| {
            // Name the document's line, the parser's own position is within the chunk.
            CheckError::Parse {
                source_name: format!("{source_name}:{line}"),
                message: e.to_string(),
            }
        })? {
            out.push(Located { line, object });
        }
    }
    Ok(out)
}

/// (first line, text) of each `---`-separated document; the first line is that of its
/// first line with content, so a leading comment block does not shift it.
fn documents(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.starts_with("---") && line[3..].trim().is_empty() {
            out.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    out.push((start_line, &text[start..]));
    out.into_iter()
        .filter_map(|(line, chunk)| {
            let skipped = chunk
                .lines()
                .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
                .count();
            let content = chunk.lines().nth(skipped)?;
            (!content.trim().is_empty()).then_some((line + skipped, chunk))
        })
        .collect()
}

/// Checks that `obj` is a Kubernetes object and, for the kinds the rules know, that it
/// has the shape the API server would accept. `Err` says what is wrong.
pub fn interpret(obj: &Value) -> Result<(), String> {
    let Some(map) = obj.as_object() else {
        return Err("not a Kubernetes object (not a mapping)".into());
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || kind.is_empty() {
        return Err("not a Kubernetes object (no apiVersion and kind)".into());
    }
    typed(kind, api_version, obj).map_err(|e| format!("{kind} is malformed: {e}"))
}

/// Deserialises known kinds into their k8s-openapi types, which reject wrong field types.
fn typed(kind: &str, api_version: &str, obj: &Value) -> Result<(), serde_json::Error> {
    use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac};
    fn parse<T: serde::de::DeserializeOwned>(obj: &Value) -> Result<(), serde_json::Error> {
        T::deserialize(obj).map(|_| ())
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => parse::<core::v1::Pod>(obj),
        ("", "Service") => parse::<core::v1::Service>(obj),
        ("", "ConfigMap") => parse::<core::v1::ConfigMap>(obj),
        ("", "ServiceAccount") => parse::<core::v1::ServiceAccount>(obj),
        ("", "ReplicationController") => parse::<core::v1::ReplicationController>(obj),
        ("apps", "Deployment") => parse::<apps::v1::Deployment>(obj),
        ("apps", "StatefulSet") => parse::<apps::v1::StatefulSet>(obj),
        ("apps", "DaemonSet") => parse::<apps::v1::DaemonSet>(obj),
        ("apps", "ReplicaSet") => parse::<apps::v1::ReplicaSet>(obj),
        ("batch", "Job") => parse::<batch::v1::Job>(obj),
        ("batch", "CronJob") => parse::<batch::v1::CronJob>(obj),
        ("networking.k8s.io", "Ingress") => parse::<networking::v1::Ingress>(obj),
        ("networking.k8s.io", "NetworkPolicy") => parse::<networking::v1::NetworkPolicy>(obj),
        ("policy", "PodDisruptionBudget") => parse::<policy::v1::PodDisruptionBudget>(obj),
        ("autoscaling", "HorizontalPodAutoscaler") if api_version.ends_with("/v2") => {
            parse::<autoscaling::v2::HorizontalPodAutoscaler>(obj)
        }
        ("rbac.authorization.k8s.io", "Role") => parse::<rbac::v1::Role>(obj),
        ("rbac.authorization.k8s.io", "ClusterRole") => parse::<rbac::v1::ClusterRole>(obj),
        ("rbac.authorization.k8s.io", "RoleBinding") => parse::<rbac::v1::RoleBinding>(obj),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            parse::<rbac::v1::ClusterRoleBinding>(obj)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_carry_their_start_lines() {
        let text = "# header\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n# b\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\n---\n";
        let docs = parse_located("t.yaml", text).unwrap();
        let lines: Vec<usize> = docs.iter().map(|d| d.line).collect();
        assert_eq!(lines, [2, 8]);
        assert_eq!(docs[1].object["metadata"]["name"], "b");
    }

    #[test]
    fn parse_errors_name_the_document_line() {
        let e = parse_located("x.yaml", "a: 1\n---\nb: [1, 2\n").unwrap_err();
        assert!(e.to_string().starts_with("x.yaml:3: "), "{e}");
    }

    #[test]
    fn malformed_known_kinds_and_non_objects_are_refused() {
        let bad = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"selector": {}, "template": {"spec": {"containers": "oops"}}}});
        let e = interpret(&bad).unwrap_err();
        assert!(e.starts_with("Deployment is malformed"), "{e}");
        assert!(
            interpret(&json!({"hello": "world"}))
                .unwrap_err()
                .contains("no apiVersion")
        );
        assert!(interpret(&json!([1, 2])).is_err());
        let ok = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c"}]}}}});
        assert_eq!(interpret(&ok), Ok(()));
        // A kind we do not know is interpreted as far as it can be (it is skipped later).
        let crd = json!({"apiVersion": "example.com/v1", "kind": "Deploymnet", "spec": 1});
        assert_eq!(interpret(&crd), Ok(()));
    }
}

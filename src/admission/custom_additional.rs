//! Custom checks' `additionalSchemas` / `additionalSchemaStrings`: schemas for other objects
//! of the cluster, keyed by their kind, that the object under check needs beside it (a
//! Deployment needs a PodDisruptionBudget selecting its pods, a Namespace needs an
//! AlertmanagerConfig).
//!
//! Polaris' meaning, kept here: the check passes only when its main schema passes and, for
//! every additional kind, at least one object of that kind in the object's namespace (for
//! a Namespace, in the namespace it is) validates against that kind's schema. No such
//! object at all fails the check too. The schemas are rendered with the same `{{ }}` data
//! as the main schema (the object, `.Polaris.PodSpec`, `.Polaris.Container`, ...), and one
//! that renders to nothing is dropped, as Polaris drops it.
//!
//! The other objects come from the cluster view. Where that view cannot prove an object
//! absent (no view, or the webhook's watched one, which lags writes and does not watch
//! these kinds), the additional schemas judge nothing rather than fail every object.
use serde_json::Value;

use super::cluster::{ClusterView, namespace_of};
use super::custom::CustomError;
use super::custom_schema::{Prepared, Schema};

/// One additional schema and the kind it is for.
pub struct AdditionalSchema {
    /// The key as the configuration wrote it, for messages.
    key: String,
    group: String,
    kind: String,
    schema: Schema,
}

impl AdditionalSchema {
    /// The `(group, kind)` whose objects this schema judges.
    pub fn group_kind(&self) -> (String, String) {
        (self.group.clone(), self.kind.clone())
    }
}

/// Why the additional schemas did not pass.
pub enum Miss {
    /// No object of the kind in the namespace passes.
    NoMatch { key: String, namespace: String },
    /// The rendered schema is unusable; the reason.
    Unusable { key: String, reason: String },
}

/// `group/Kind`, `/Kind` or `Kind` (the core group) as `(group, kind)`. Polaris fetches
/// a bare `PodDisruptionBudget` or `Ingress` from their API groups, for configurations
/// older than group-qualified keys; the same is done here.
pub fn group_kind(key: &str) -> Option<(String, String)> {
    let (group, kind) = match key.split_once('/') {
        Some((g, k)) => (g, k),
        None => match key {
            "PodDisruptionBudget" => ("policy", key),
            "Ingress" => ("networking.k8s.io", key),
            _ => ("", key),
        },
    };
    let kind_ok = kind.chars().next().is_some_and(char::is_uppercase)
        && kind.chars().all(char::is_alphanumeric);
    kind_ok.then(|| (group.to_string(), kind.to_string()))
}

/// The additional schemas of a check: the string forms, then the object forms (which
/// win for a kind given both ways, as in Polaris), sorted by key so checks and messages
/// come in a stable order.
pub fn parse(
    strings: &std::collections::HashMap<String, String>,
    objects: &std::collections::HashMap<String, Value>,
) -> Result<Vec<AdditionalSchema>, CustomError> {
    let mut keys: Vec<&String> = strings.keys().chain(objects.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let (group, kind) =
            group_kind(key).ok_or_else(|| CustomError::AdditionalKind(key.clone()))?;
        let schema = match (objects.get(key), strings.get(key)) {
            (Some(v), _) => Schema::from_value(v),
            (None, Some(text)) => Schema::from_text(text),
            (None, None) => continue,
        }
        .map_err(|e| CustomError::Additional {
            key: key.clone(),
            source: Box::new(e),
        })?;
        out.push(AdditionalSchema {
            key: key.clone(),
            group,
            kind,
            schema,
        });
    }
    Ok(out)
}

/// Whether every additional schema finds a passing object for `object`, rendering the
/// schemas against `data`. Judges nothing without a view that knows absence.
pub fn check(
    schemas: &[AdditionalSchema],
    object: &Value,
    data: &Value,
    view: Option<&ClusterView>,
) -> Result<(), Miss> {
    let Some(view) = view.filter(|v| v.absence_known()) else {
        return Ok(());
    };
    let namespace = match object.get("kind").and_then(Value::as_str) {
        Some("Namespace") => super::cluster::name_of(object),
        _ => namespace_of(object),
    };
    for a in schemas {
        let prepared = a.schema.prepare(data);
        match &prepared {
            // A schema that renders to nothing judges nothing, objects or not.
            Prepared::Empty => continue,
            Prepared::Unusable(reason) => {
                return Err(Miss::Unusable {
                    key: a.key.clone(),
                    reason: reason.clone(),
                });
            }
            Prepared::Fixed(_) | Prepared::Rendered(_) => {}
        }
        let found = view
            .in_namespace(&a.group, &a.kind, namespace)
            .any(|other| prepared.passes(other));
        if !found {
            return Err(Miss::NoMatch {
                key: a.key.clone(),
                namespace: namespace.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_group_and_kind() {
        let gk = |k: &str| group_kind(k).map(|(g, k)| format!("{g}|{k}"));
        assert_eq!(
            gk("policy/PodDisruptionBudget").as_deref(),
            Some("policy|PodDisruptionBudget")
        );
        assert_eq!(
            gk("PodDisruptionBudget").as_deref(),
            Some("policy|PodDisruptionBudget")
        );
        assert_eq!(gk("ServiceAccount").as_deref(), Some("|ServiceAccount"));
        assert_eq!(gk("/ConfigMap").as_deref(), Some("|ConfigMap"));
        assert_eq!(
            gk("monitoring.coreos.com/AlertmanagerConfig").as_deref(),
            Some("monitoring.coreos.com|AlertmanagerConfig")
        );
        assert_eq!(gk("lowercase"), None);
        assert_eq!(gk("apps/"), None);
    }
}

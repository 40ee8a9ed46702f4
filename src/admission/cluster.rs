//! The other objects a cross-object rule reads: PodDisruptionBudgets, HPAs,
//! NetworkPolicies, RBAC roles, ServiceAccounts. `portcullis check` and `audit` build it
//! from every document they were given; the webhook's comes from watches
//! (`source::cluster_watch`) through a [`ClusterViewHandle`].
//!
//! A rule given no view at all finds nothing (it cannot know the cluster); a rule given a
//! view that lacks the object it needs says so in its message instead of guessing.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use serde_json::Value;

/// Objects by `(group, kind)`, each kept once, in the order they were given, with an
/// index by namespace so a lookup per object stays cheap in a large audit.
#[derive(Debug, Default, Clone)]
pub struct ClusterView {
    by_kind: HashMap<(String, String), Vec<Value>>,
    by_namespace: HashMap<(String, String, String), Vec<usize>>,
    /// True when the view holds everything there is (the documents given to `check` or
    /// `audit`), so an absent object is worth a finding. A view fed by watches may lag
    /// behind a write made a moment ago, so there an absence proves nothing.
    absence_known: bool,
}

/// The view a webhook serves from, swapped as a whole when the watches change; empty
/// (None) until they have listed.
#[derive(Debug, Clone, Default)]
pub struct ClusterViewHandle {
    current: Arc<ArcSwapOption<ClusterView>>,
    /// Counts publications, so a background reader (the dashboard's audit) can tell
    /// cheaply whether the view changed since it last looked.
    published: Arc<AtomicU64>,
}

impl ClusterViewHandle {
    pub fn load(&self) -> Option<Arc<ClusterView>> {
        self.current.load_full()
    }

    /// How many views were published so far.
    pub fn version(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Publishes the watched objects as the new view. It does not claim completeness: an
    /// object written a moment ago may not have reached the watches yet.
    pub fn publish(&self, objects: Vec<Value>) {
        let mut view = ClusterView::default();
        for o in objects {
            view.insert(o);
        }
        self.current.store(Some(Arc::new(view)));
        self.published.fetch_add(1, Ordering::Release);
    }
}

/// The API group of an object's `apiVersion` (`""` for the core group).
pub fn group_of(obj: &Value) -> &str {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

fn meta<'v>(obj: &'v Value, field: &str) -> &'v str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The namespace an object lives in: `default` when a namespaced object names none, as
/// `kubectl apply` would place it.
pub fn namespace_of(obj: &Value) -> &str {
    match meta(obj, "namespace") {
        "" => "default",
        ns => ns,
    }
}

pub fn name_of(obj: &Value) -> &str {
    meta(obj, "name")
}

impl ClusterView {
    /// A complete view of `objects`; anything that is not an object with a kind is
    /// ignored. (`ClusterView::default()` is an empty view that is not complete.)
    pub fn new<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut view = ClusterView {
            absence_known: true,
            ..ClusterView::default()
        };
        for o in objects {
            view.insert(o.clone());
        }
        view
    }

    /// A view of `objects` that does not claim to be complete (objects seen through
    /// watches, which may lag behind the cluster).
    pub fn partial<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut view = ClusterView::default();
        for o in objects {
            view.insert(o.clone());
        }
        view
    }

    /// Every object in the view, kind by kind.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.by_kind.values().flatten()
    }

    /// Whether an object missing from the view is missing from the cluster.
    pub fn absence_known(&self) -> bool {
        self.absence_known
    }

    pub fn insert(&mut self, obj: Value) {
        let Some(kind) = obj.get("kind").and_then(Value::as_str) else {
            return;
        };
        let key = (group_of(&obj).to_string(), kind.to_string());
        let ns_key = (key.0.clone(), key.1.clone(), namespace_of(&obj).to_string());
        let list = self.by_kind.entry(key).or_default();
        self.by_namespace
            .entry(ns_key)
            .or_default()
            .push(list.len());
        list.push(obj);
    }

    /// Every object of a kind, in any namespace.
    pub fn all<'s>(&'s self, group: &str, kind: &str) -> &'s [Value] {
        self.by_kind
            .get(&(group.to_string(), kind.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The objects of a kind in one namespace.
    pub fn in_namespace<'s>(
        &'s self,
        group: &str,
        kind: &str,
        namespace: &'s str,
    ) -> impl Iterator<Item = &'s Value> + 's {
        let all = self.all(group, kind);
        self.by_namespace
            .get(&(group.to_string(), kind.to_string(), namespace.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(move |i| all.get(*i))
    }

    /// One object by name; `namespace` is None for cluster-scoped kinds.
    pub fn get(
        &self,
        group: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&Value> {
        self.all(group, kind)
            .iter()
            .find(|o| name_of(o) == name && namespace.is_none_or(|ns| namespace_of(o) == ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookups_by_kind_namespace_and_name() {
        let objs = [
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "a"}}),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b", "namespace": "x"}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "x"}}),
            json!(["not", "an", "object"]),
        ];
        let v = ClusterView::new(&objs);
        assert_eq!(v.all("policy", "PodDisruptionBudget").len(), 2);
        let in_default: Vec<&str> = v
            .in_namespace("policy", "PodDisruptionBudget", "default")
            .map(name_of)
            .collect();
        assert_eq!(in_default, ["a"]);
        assert!(v.get("", "ServiceAccount", Some("x"), "sa").is_some());
        assert!(v.get("", "ServiceAccount", Some("default"), "sa").is_none());
        assert!(v.get("", "ServiceAccount", None, "sa").is_some());
        assert!(v.all("apps", "Deployment").is_empty());
    }
}

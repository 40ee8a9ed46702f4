//! A one-shot, read-only list of the kinds the admission rules judge, for `portcullis audit`
//! of a live cluster. Only `list` is called (paged), never a write or a watch.
//!
//! Failure behaviour: a kind the server does not serve (404) or the caller may not list
//! (403) is skipped and named in the returned notes, so an audit with partial rights still
//! reports what it could see; any other API error ends the listing.
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use serde_json::Value;

use super::kube::LAST_APPLIED;

/// `(group, version, kind, plural, namespaced)` of every kind listed.
pub const KINDS: [(&str, &str, &str, &str, bool); 18] = [
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("apps", "v1", "ReplicaSet", "replicasets", true),
    ("batch", "v1", "Job", "jobs", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    ("", "v1", "Pod", "pods", true),
    (
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
    ),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
];

/// Kinds whose objects controllers make from a template already audited on the owner.
const OWNED_KINDS: [&str; 3] = ["Pod", "ReplicaSet", "Job"];

/// Objects per list request.
const PAGE: u32 = 500;

/// What was listed, and what could not be.
#[derive(Debug, Default)]
pub struct Listing {
    pub objects: Vec<Value>,
    pub notes: Vec<String>,
}

/// The object as a manifest: with its kind and apiVersion (list items carry neither), and
/// without the bookkeeping no rule reads.
fn as_manifest(obj: DynamicObject, api_version: &str, kind: &str) -> Option<Value> {
    let mut v = serde_json::to_value(obj).ok()?;
    let m = v.as_object_mut()?;
    m.insert("apiVersion".into(), Value::String(api_version.into()));
    m.insert("kind".into(), Value::String(kind.into()));
    m.remove("status");
    if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(LAST_APPLIED);
        }
    }
    Some(v)
}

fn owned(v: &Value) -> bool {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|o| !o.is_empty())
}

/// Lists every kind in [`KINDS`], in all namespaces or in `namespace` (cluster-scoped kinds
/// are listed either way: bindings and roles apply to every namespace). Pods, ReplicaSets
/// and Jobs that a controller owns are left out: their owner's template is audited.
///
/// `extra` names further `(group, kind)`s to list (what custom checks' additional schemas
/// read); their version, plural and scope come from the server's discovery. One the server
/// does not serve, or that may not be listed, is named in the notes and skipped.
pub async fn list_all(
    client: kube::Client,
    namespace: Option<&str>,
    extra: &[(String, String)],
) -> Result<Listing, kube::Error> {
    let mut out = Listing::default();
    for (group, version, kind, plural, namespaced) in KINDS {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let skipped = "their checks are skipped";
        list_kind(&client, &ar, namespaced, namespace, skipped, &mut out).await?;
    }
    for (group, kind) in extra {
        if KINDS.iter().any(|(g, _, k, _, _)| g == group && k == kind) {
            continue;
        }
        let shown = if group.is_empty() {
            kind.clone()
        } else {
            format!("{group}/{kind}")
        };
        // A custom check that needs a kind nobody can list fails on every object it
        // judges: the notes say why, rather than the audit giving up as Polaris does.
        let missing = "custom checks that need these objects find none";
        let found = match kube::discovery::group(&client, group).await {
            Ok(g) => g.recommended_kind(kind),
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => None,
            Err(kube::Error::Discovery(_)) => None,
            Err(e) => return Err(e),
        };
        let Some((ar, caps)) = found else {
            out.notes
                .push(format!("{shown}: not served by the cluster: {missing}"));
            continue;
        };
        let namespaced = caps.scope == kube::discovery::Scope::Namespaced;
        list_kind(&client, &ar, namespaced, namespace, missing, &mut out).await?;
    }
    Ok(out)
}

/// Lists one kind into `out`, paged. A kind the server refuses (403) or does not serve
/// (404) is noted with `consequence`, what its absence means for the checks.
async fn list_kind(
    client: &kube::Client,
    ar: &ApiResource,
    namespaced: bool,
    namespace: Option<&str>,
    consequence: &str,
    out: &mut Listing,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = match (namespaced, namespace) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
        _ => Api::all_with(client.clone(), ar),
    };
    let kind = ar.kind.as_str();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(p) => p,
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 404 => {
                out.notes.push(format!(
                    "{}: not listed ({} {}): {consequence}",
                    ar.plural, e.code, e.reason
                ));
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        for item in page.items {
            if let Some(v) = as_manifest(item, &ar.api_version, kind)
                && !(OWNED_KINDS.contains(&kind) && owned(&v))
            {
                out.objects.push(v);
            }
        }
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

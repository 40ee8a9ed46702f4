//! The webhook's cluster view: cluster-wide watches of the kinds the cross-object rules
//! read (PDBs, HPAs, NetworkPolicies, ServiceAccounts, Roles, ClusterRoles), trimmed to
//! what the rules use, handed as one object list to a publisher (which builds the
//! admission `ClusterView` a review loads once; this module knows nothing of admission).
//!
//! Only the kinds a rule that is on needs are watched. Failure behaviour: until every
//! watched kind has completed its first list no view is published (the rules then find
//! nothing, as without a view), so a new replica never judges against a partial one; a
//! kind that cannot be listed (403, a missing API) keeps retrying with backoff and keeps
//! the view unpublished, which is logged. The published view does not claim that an
//! absent object does not exist (a Role created a moment ago may not have reached the
//! watch yet), so no rule denies because something is missing from it.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::Notify;

use super::kube::LAST_APPLIED;

/// `(group, version, kind, plural)` of a watched kind.
pub type KindRef = (&'static str, &'static str, &'static str, &'static str);

/// The kinds each cross-object rule reads.
pub fn kinds_for(rule: &str) -> &'static [KindRef] {
    const PDB: KindRef = (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
    );
    const HPA: KindRef = (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    );
    const NETPOL: KindRef = (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
    );
    const SA: KindRef = ("", "v1", "ServiceAccount", "serviceaccounts");
    const ROLE: KindRef = ("rbac.authorization.k8s.io", "v1", "Role", "roles");
    const CLUSTER_ROLE: KindRef = (
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
    );
    match rule {
        "missingPodDisruptionBudget" => &[PDB],
        "pdbMinAvailableGreaterThanHPAMinReplicas" => &[PDB, HPA],
        "missingNetworkPolicy" => &[NETPOL],
        "automountServiceAccountToken" => &[SA],
        "rolebindingRolePodExecAttach" | "rolebindingClusterAdminRole" => &[ROLE],
        "clusterrolebindingPodExecAttach"
        | "rolebindingClusterRolePodExecAttach"
        | "clusterrolebindingClusterAdmin"
        | "rolebindingClusterAdminClusterRole" => &[CLUSTER_ROLE],
        _ => &[],
    }
}

/// What the rules read of an object: no bookkeeping, no status, no token secrets.
fn trim(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        m.remove("secrets");
        m.remove("imagePullSecrets");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove(LAST_APPLIED);
            }
        }
    }
    v
}

fn key(v: &Value) -> String {
    let meta = |f: &str| {
        v.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    format!("{}/{}", meta("namespace"), meta("name"))
}

#[derive(Default)]
struct State {
    /// Objects by kind, then `namespace/name`.
    objects: HashMap<&'static str, BTreeMap<String, Value>>,
    /// Kinds whose first list has completed.
    listed: Vec<&'static str>,
}

/// Publishes at most this often, so a burst of changes is one rebuild.
const REBUILD_INTERVAL: Duration = Duration::from_millis(100);

/// Starts the watches of `kinds` (deduplicated) on the current tokio runtime; `publish`
/// gets every watched object after each change (bursts coalesced), once all have listed.
pub fn start(
    client: kube::Client,
    kinds: &[KindRef],
    publish: impl Fn(Vec<Value>) + Send + Sync + 'static,
) {
    let mut kinds: Vec<KindRef> = kinds.to_vec();
    kinds.sort_unstable();
    kinds.dedup();
    if kinds.is_empty() {
        return;
    }
    let state = Arc::new(Mutex::new(State::default()));
    let changed = Arc::new(Notify::new());
    for kind in kinds.iter().copied() {
        tokio::spawn(watch_kind(
            client.clone(),
            kind,
            state.clone(),
            changed.clone(),
        ));
    }
    let total = kinds.len();
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            let objects = {
                let s = state.lock().unwrap_or_else(PoisonError::into_inner);
                (s.listed.len() == total).then(|| {
                    s.objects
                        .values()
                        .flat_map(|objs| objs.values().cloned())
                        .collect::<Vec<Value>>()
                })
            };
            if let Some(objects) = objects {
                publish(objects);
            }
            tokio::time::sleep(REBUILD_INTERVAL).await;
        }
    });
}

async fn watch_kind(
    client: kube::Client,
    kind: KindRef,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) {
    let (group, version, name, plural) = kind;
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, name), plural);
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    let mut stream = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: BTreeMap<String, Value> = BTreeMap::new();
    let manifest = |o: DynamicObject| -> Option<Value> {
        let mut v = serde_json::to_value(o).ok()?;
        let m = v.as_object_mut()?;
        m.insert("apiVersion".into(), Value::String(ar.api_version.clone()));
        m.insert("kind".into(), Value::String(name.into()));
        Some(trim(v))
    };
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(kind = name, error = %e, "cluster view watch error; retrying after backoff (cross-object rules find nothing until it lists)");
                continue;
            }
        };
        let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Init => listing.clear(),
            Event::InitApply(o) => {
                if let Some(v) = manifest(o) {
                    listing.insert(key(&v), v);
                }
            }
            Event::InitDone => {
                s.objects.insert(name, std::mem::take(&mut listing));
                if !s.listed.contains(&name) {
                    s.listed.push(name);
                }
            }
            Event::Apply(o) => {
                if let Some(v) = manifest(o) {
                    s.objects.entry(name).or_default().insert(key(&v), v);
                }
            }
            Event::Delete(o) => {
                if let Some(v) = manifest(o) {
                    s.objects.entry(name).or_default().remove(&key(&v));
                }
            }
        }
        drop(s);
        changed.notify_one();
    }
}

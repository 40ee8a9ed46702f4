//! An in-process fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1:0,
//! speaking the real JSON list/watch protocol, so the real kube-rs client and watchers run
//! against it unchanged.
//!
//! Include it with `#[path = "common/apiserver.rs"] mod apiserver;`. This file holds the
//! state and the test controls; `apiserver/http.rs` the object verbs, `apiserver/watch.rs`
//! lists, selectors and watch streams.
//!
//! ## What it serves
//! Resources (cluster-wide paths like `/apis/networking.k8s.io/v1/ingresses`, and
//! namespaced ones under `/namespaces/{ns}/`):
//! IngressClass (cluster-scoped), Ingress, Service, Endpoints, Secret, EndpointSlice,
//! coordination.k8s.io/v1 Lease, for audits Deployment, ConfigMap, Pod and
//! ClusterRoleBinding (cluster-scoped), and for the webhook's cluster view Role,
//! PodDisruptionBudget and ServiceAccount. Every one supports:
//! - `GET` collection: a list `{kind: XList, apiVersion, metadata: {resourceVersion}, items}`
//!   (items carry no kind/apiVersion, as from the real server). `fieldSelector`
//!   (`a.b=v`, `a.b==v`, `a.b!=v`, comma-joined, any dotted field, e.g. Secret `type`) and
//!   `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`; no set-based `in`/`notin`) filter
//!   it. `limit` pages it; a `continue` token whose resourceVersion was expired by
//!   [`ApiServer::expire`] gets HTTP 410 with a Status `{reason: Expired, code: 410}`.
//! - `GET` collection with `watch=true`: a chunked stream of newline-delimited
//!   `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}` events after
//!   `resourceVersion` (absent or "0": synthetic ADDED events for everything first, as the
//!   real server does). Selectors apply per event with the real semantics: an object that
//!   stops matching is sent as DELETED, one that starts matching as ADDED. A
//!   resourceVersion older than the last [`ApiServer::expire`] gets HTTP 200 and a single
//!   ERROR event with Status `{code: 410, reason: "Expired"}` (what the real server does;
//!   note that kube-runtime 5 retries an HTTP 410 at watch *start* with the same
//!   resourceVersion forever, so the ERROR form is the one that triggers its relist).
//!   BOOKMARKs are sent (when `allowWatchBookmarks=true`) on [`ApiServer::bookmark`].
//!   A stream ends after `timeoutSeconds`, on [`ApiServer::drop_watches`] /
//!   [`ApiServer::expire`], or when the server is dropped.
//! - `GET` one object; `POST` create (201; 409 `AlreadyExists`); `PUT` replace (404
//!   `NotFound` if absent; 409 `Conflict` when the body's `metadata.resourceVersion` is set
//!   and not current; no resourceVersion means an unconditional update); `PATCH` with
//!   `application/merge-patch+json`, `application/json-patch+json`, and — approximated as
//!   a merge patch — `application/strategic-merge-patch+json` and
//!   `application/apply-patch+yaml` (JSON body); `DELETE` (returns the object).
//!   Writes set `resourceVersion`, and on create `uid`, `creationTimestamp` (unless given)
//!   and `generation` (bumped when `spec` changes). For Ingress and Service (kinds with a
//!   status subresource) writes to the object keep the stored `status`.
//! - Ingress and Service `/status` subresource: `GET`, `PUT` (only `status` is taken from
//!   the body; resourceVersion conflict as above) and `PATCH` (any of the patch types above;
//!   only the resulting `status` is kept). Each status write is recorded
//!   ([`ApiServer::status_writes`]) with its outcome, and raises a MODIFIED event like any
//!   write.
//!
//! Leases (leader election) use the plain object verbs: `GET
//! /apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}` (404 until created), `POST`
//! to `…/namespaces/{ns}/leases` (409 if it exists), `PUT …/leases/{name}` with the last
//! seen `metadata.resourceVersion` (409 `Conflict` if someone else wrote in between).
//!
//! ## Test controls
//! [`ApiServer::apply`] / [`ApiServer::delete`] change objects as a controller would (with
//! events); [`ApiServer::drop_watches`] ends every open watch (the clients resume from their
//! last resourceVersion); [`ApiServer::expire`] compacts history so every resourceVersion
//! issued so far is too old (and ends open watches: the clients get 410 and relist);
//! [`ApiServer::hold_lists`] / [`ApiServer::release_lists`] make list requests of a kind
//! wait; [`ApiServer::requests`], [`ApiServer::delivered`] and [`ApiServer::status_writes`]
//! record what happened. [`ApiServer::client`] is a `kube::Client` for the server, and
//! [`ApiServer::kubeconfig`] writes a kubeconfig file for a child process.
//!
//! Failure behaviour: a request it does not understand gets a Status error (400/404/405/
//! 415), never a panic; test controls panic on misuse (unknown kind), which fails the test.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

#[path = "apiserver/http.rs"]
mod http_api;
#[path = "apiserver/watch.rs"]
mod watch_api;

type Body = BoxBody<Bytes, Infallible>;

/// One kind the server knows.
#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource (writes to the object keep the stored status).
    pub status: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingressclasses",
        kind: "IngressClass",
        namespaced: false,
        status: false,
    },
    ResourceType {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        kind: "Ingress",
        namespaced: true,
        status: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        status: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        status: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        status: false,
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        kind: "EndpointSlice",
        namespaced: true,
        status: false,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
    },
    // For `portcullis audit` of a live cluster.
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        status: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        status: true,
    },
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        kind: "ClusterRoleBinding",
        namespaced: false,
        status: false,
    },
    // For the webhook's cluster view.
    ResourceType {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
        namespaced: true,
        status: false,
    },
    ResourceType {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        namespaced: true,
        status: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        status: false,
    },
];

fn resource_by_kind(kind: &str) -> &'static ResourceType {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve kind {kind}"))
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
}

impl Recorded {
    pub fn is_watch(&self) -> bool {
        matches!(
            self.query.get("watch").map(String::as_str),
            Some("true" | "1")
        )
    }
}

/// One write to a `/status` subresource.
#[derive(Debug, Clone)]
pub struct StatusWrite {
    pub kind: &'static str,
    pub method: Method,
    pub namespace: String,
    pub name: String,
    pub content_type: String,
    /// The request body as sent.
    pub body: Value,
    /// The HTTP status answered.
    pub code: u16,
    /// The object's `status` after the write (None if the write failed).
    pub status: Option<Value>,
}

/// One event written to a watch stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub kind: &'static str,
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub event: String,
    /// `namespace/name` (`name` for cluster-scoped kinds; empty for BOOKMARK and ERROR).
    pub key: String,
}

/// A change to an object, kept in history for watches that resume.
#[derive(Debug)]
struct Change {
    rv: u64,
    resource: &'static ResourceType,
    event: &'static str,
    old: Option<Value>,
    new: Value,
}

#[derive(Debug, Clone)]
enum Broadcast {
    Change(Arc<Change>),
    Bookmark(u64),
}

type ObjKey = (&'static str, String, String);

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    history: Vec<Arc<Change>>,
    /// Resource versions below this are expired.
    oldest: u64,
    requests: Vec<Recorded>,
    status_writes: Vec<StatusWrite>,
    delivered: Vec<Delivered>,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Broadcast>,
    /// Bumped to end every open watch.
    drops: watch::Sender<u64>,
    /// Kinds whose list requests wait.
    held: watch::Sender<BTreeSet<&'static str>>,
    open_watches: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running fake API server. Dropping it stops accepting and ends open watches.
pub struct ApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.drops.send_modify(|g| *g += 1);
    }
}

impl ApiServer {
    /// Starts the server on 127.0.0.1 with a kernel-chosen port.
    pub async fn start() -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                rv: 1,
                oldest: 0,
                ..Inner::default()
            }),
            events: broadcast::channel(16 * 1024).0,
            drops: watch::channel(0).0,
            held: watch::channel(BTreeSet::new()).0,
            open_watches: AtomicUsize::new(0),
        });
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let shared = accept_shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(http_api::handle(shared, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        ApiServer { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server (namespace `default`).
    pub fn client(&self) -> kube::Client {
        // kube builds a rustls configuration even for http://, and with two providers
        // compiled in rustls cannot pick one by itself.
        portcullis::tls::install_provider();
        let config = kube::Config::new(self.url().parse().expect("server url"));
        kube::Client::try_from(config).expect("kube client")
    }

    /// Writes a kubeconfig for this server to `path` (for a child process's KUBECONFIG).
    pub fn kubeconfig(&self, path: &Path) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// Creates or replaces `obj` (kind and apiVersion from the object; namespace
    /// `default` if a namespaced object names none), with an ADDED or MODIFIED event.
    /// Returns the new resourceVersion.
    pub fn apply(&self, obj: Value) -> u64 {
        let kind = obj["kind"].as_str().expect("object has a kind").to_string();
        let resource = resource_by_kind(&kind);
        let (ns, name) = names(resource, &obj, None);
        let mut inner = self.shared.lock();
        let key = (resource.plural, ns, name);
        let old = inner.objects.get(&key).cloned();
        let stored = write(&self.shared, &mut inner, resource, key, old, obj);
        rv_of(&stored)
    }

    /// Applies every object in `objs`.
    pub fn apply_all(&self, objs: impl IntoIterator<Item = Value>) {
        for o in objs {
            self.apply(o);
        }
    }

    /// Deletes an object with a DELETED event; false if it did not exist.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let resource = resource_by_kind(kind);
        let ns = if resource.namespaced { namespace } else { "" };
        let mut inner = self.shared.lock();
        remove(
            &self.shared,
            &mut inner,
            resource,
            (resource.plural, ns.to_string(), name.to_string()),
        )
        .is_some()
    }

    /// The stored object, if any.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_by_kind(kind);
        let ns = if resource.namespaced { namespace } else { "" };
        self.shared
            .lock()
            .objects
            .get(&(resource.plural, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every stored object of `kind`.
    pub fn objects(&self, kind: &str) -> Vec<Value> {
        let resource = resource_by_kind(kind);
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|((plural, _, _), _)| *plural == resource.plural)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The current (latest issued) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Ends every open watch stream cleanly; clients resume from their last
    /// resourceVersion and get the events they missed from history.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|g| *g += 1);
    }

    /// Compacts history: every resourceVersion issued so far becomes too old, and open
    /// watches end. A client resuming gets an ERROR 410 event and must relist; changes made
    /// after this call and before its relist are only visible in the list.
    pub fn expire(&self) {
        let mut inner = self.shared.lock();
        inner.rv += 1;
        inner.oldest = inner.rv;
        inner.history.clear();
        // Under the lock: a watch registered from now on sees the new horizon.
        self.shared.drops.send_modify(|g| *g += 1);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every open watch that allows
    /// bookmarks.
    pub fn bookmark(&self) {
        let inner = self.shared.lock();
        let _ = self.shared.events.send(Broadcast::Bookmark(inner.rv));
    }

    /// Makes list requests for `kind` wait until [`ApiServer::release_lists`].
    pub fn hold_lists(&self, kind: &str) {
        let r = resource_by_kind(kind);
        self.shared.held.send_modify(|s| {
            s.insert(r.kind);
        });
    }

    pub fn release_lists(&self, kind: &str) {
        let r = resource_by_kind(kind);
        self.shared.held.send_modify(|s| {
            s.remove(r.kind);
        });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Requests for resource `plural` (e.g. "secrets"), list and watch alike.
    pub fn requests_for(&self, plural: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.rsplit('/').next() == Some(plural))
            .collect()
    }

    /// Every event written to a watch stream so far.
    pub fn delivered(&self) -> Vec<Delivered> {
        self.shared.lock().delivered.clone()
    }

    /// Every write to a `/status` subresource so far.
    pub fn status_writes(&self) -> Vec<StatusWrite> {
        self.shared.lock().status_writes.clone()
    }

    /// How many watch streams are open now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until at least `n` watch streams are open.
    pub async fn wait_for_watches(&self, n: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.open_watches() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of {n} watches open after {timeout:?}",
                self.open_watches()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// (namespace, name) of `obj`; the namespace from `path_ns` or the object or `default`.
fn names(resource: &ResourceType, obj: &Value, path_ns: Option<&str>) -> (String, String) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let ns = if resource.namespaced {
        path_ns
            .map(str::to_string)
            .or_else(|| obj["metadata"]["namespace"].as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string())
    } else {
        String::new()
    };
    (ns, name)
}

fn now_timestamp() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// Stores `obj` under `key` (creating or replacing `old`), assigning metadata, recording
/// history and broadcasting the event. Returns the stored object.
fn write(
    shared: &Shared,
    inner: &mut Inner,
    resource: &'static ResourceType,
    key: ObjKey,
    old: Option<Value>,
    mut obj: Value,
) -> Value {
    inner.rv += 1;
    let rv = inner.rv;
    obj["apiVersion"] = json!(resource.api_version());
    obj["kind"] = json!(resource.kind);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let meta = &mut obj["metadata"];
    meta["name"] = json!(key.2);
    if resource.namespaced {
        meta["namespace"] = json!(key.1);
    } else if let Some(m) = meta.as_object_mut() {
        m.remove("namespace");
    }
    meta["resourceVersion"] = json!(rv.to_string());
    match &old {
        Some(old) => {
            for k in ["uid", "creationTimestamp"] {
                obj["metadata"][k] = old["metadata"][k].clone();
            }
            let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
            let bump = u64::from(old.get("spec") != obj.get("spec"));
            obj["metadata"]["generation"] = json!(generation + bump);
        }
        None => {
            obj["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{rv:012}"));
            if obj["metadata"]["creationTimestamp"].as_str().is_none() {
                obj["metadata"]["creationTimestamp"] = json!(now_timestamp());
            }
            obj["metadata"]["generation"] = json!(1);
        }
    }
    inner.objects.insert(key, obj.clone());
    let change = Arc::new(Change {
        rv,
        resource,
        event: if old.is_some() { "MODIFIED" } else { "ADDED" },
        old,
        new: obj.clone(),
    });
    inner.history.push(change.clone());
    let _ = shared.events.send(Broadcast::Change(change));
    obj
}

/// Deletes `key` with a DELETED event; returns the deleted object.
fn remove(
    shared: &Shared,
    inner: &mut Inner,
    resource: &'static ResourceType,
    key: ObjKey,
) -> Option<Value> {
    let mut obj = inner.objects.remove(&key)?;
    inner.rv += 1;
    let rv = inner.rv;
    let old = obj.clone();
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    let change = Arc::new(Change {
        rv,
        resource,
        event: "DELETED",
        old: Some(old),
        new: obj.clone(),
    });
    inner.history.push(change.clone());
    let _ = shared.events.send(Broadcast::Change(change));
    Some(obj)
}

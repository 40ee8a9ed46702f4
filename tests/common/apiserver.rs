//! An in-process fake Kubernetes API server for tests: plain HTTP/1.1 on 127.0.0.1:0,
//! speaking the real JSON list/watch protocol, so the real kube-rs client and watchers run
//! against it unchanged.
//!
//! Include it with `#[path = "common/apiserver.rs"] mod apiserver;`.
//!
//! ## What it serves
//! Resources (cluster-wide paths like `/apis/networking.k8s.io/v1/ingresses`, and
//! namespaced ones under `/namespaces/{ns}/`):
//! IngressClass (cluster-scoped), Ingress, Service, Endpoints, Secret, EndpointSlice and
//! coordination.k8s.io/v1 Lease. Every one supports:
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
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

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

pub const RESOURCES: &[ResourceType] = &[
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
                        async move { Ok::<_, Infallible>(handle(shared, req).await) }
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

// ---------------------------------------------------------------------------------------
// HTTP

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A `metav1.Status` failure.
fn status_value(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code
    })
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(code, &status_value(code.as_u16(), reason, message))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Where a request points.
struct Target {
    resource: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let resource = RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let method = req.method().clone();
    let recorded = Recorded {
        method: method.clone(),
        path: path.clone(),
        query,
    };
    shared.lock().requests.push(recorded.clone());
    let Some(target) = parse_path(&path) else {
        return failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return failure(StatusCode::BAD_REQUEST, "BadRequest", "unreadable body"),
    };
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("body is not JSON: {e}"),
                );
            }
        }
    };
    let q = &recorded.query;
    match (&method, &target.name, target.subresource.as_deref()) {
        (&Method::GET, None, None) if recorded.is_watch() => watch_stream(&shared, &target, q),
        (&Method::GET, None, None) => list(&shared, &target, q).await,
        (&Method::GET, Some(_), None | Some("status")) => get_one(&shared, &target),
        (&Method::POST, None, None) => create(&shared, &target, body),
        (&Method::PUT, Some(_), None | Some("status")) => replace(&shared, &target, body),
        (&Method::PATCH, Some(_), None | Some("status")) => {
            patch(&shared, &target, &content_type, body)
        }
        (&Method::DELETE, Some(_), None) => delete_one(&shared, &target),
        (_, _, Some(sub)) if sub != "status" => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("subresource {sub} is not served"),
        ),
        _ => failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("{method} is not supported here"),
        ),
    }
}

fn not_found(target: &Target) -> Response<Body> {
    let name = target.name.as_deref().unwrap_or("");
    let what = if target.resource.group.is_empty() {
        target.resource.plural.to_string()
    } else {
        format!("{}.{}", target.resource.plural, target.resource.group)
    };
    failure(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{what} \"{name}\" not found"),
    )
}

fn target_key(target: &Target) -> ObjKey {
    let ns = if target.resource.namespaced {
        target.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    (
        target.resource.plural,
        ns,
        target.name.clone().unwrap_or_default(),
    )
}

fn get_one(shared: &Shared, target: &Target) -> Response<Body> {
    match shared.lock().objects.get(&target_key(target)) {
        Some(obj) => full(StatusCode::OK, obj),
        None => not_found(target),
    }
}

fn create(shared: &Shared, target: &Target, body: Option<Value>) -> Response<Body> {
    let Some(obj) = body else {
        return failure(StatusCode::BAD_REQUEST, "BadRequest", "no body");
    };
    let (ns, name) = names(target.resource, &obj, target.namespace.as_deref());
    if name.is_empty() {
        return failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value",
        );
    }
    if target.resource.namespaced && target.namespace.is_none() {
        return failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "create needs a namespaced path",
        );
    }
    let mut inner = shared.lock();
    let key = (target.resource.plural, ns, name.clone());
    if inner.objects.contains_key(&key) {
        return failure(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", target.resource.plural),
        );
    }
    let mut obj = obj;
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let stored = write(shared, &mut inner, target.resource, key, None, obj);
    full(StatusCode::CREATED, &stored)
}

fn conflict(target: &Target) -> Response<Body> {
    let group = if target.resource.group.is_empty() {
        String::new()
    } else {
        format!(".{}", target.resource.group)
    };
    failure(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {}{group} \"{}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            target.resource.plural,
            target.name.as_deref().unwrap_or("")
        ),
    )
}

/// Combines the stored object and a written one per the target: a status write keeps
/// everything but `status`; an object write to a kind with a status subresource keeps
/// the stored `status`.
fn merge_for_target(target: &Target, stored: &Value, mut written: Value) -> Value {
    if target.subresource.as_deref() == Some("status") {
        let mut out = stored.clone();
        out["status"] = written.get("status").cloned().unwrap_or(Value::Null);
        if out["status"].is_null()
            && let Some(m) = out.as_object_mut()
        {
            m.remove("status");
        }
        return out;
    }
    if target.resource.status {
        match stored.get("status") {
            Some(s) => written["status"] = s.clone(),
            None => {
                if let Some(m) = written.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    written
}

fn record_status_write(
    inner: &mut Inner,
    target: &Target,
    method: Method,
    content_type: &str,
    body: &Value,
    code: StatusCode,
    status: Option<Value>,
) {
    if target.subresource.as_deref() != Some("status") {
        return;
    }
    let (ns, name) = (
        target.namespace.clone().unwrap_or_default(),
        target.name.clone().unwrap_or_default(),
    );
    inner.status_writes.push(StatusWrite {
        kind: target.resource.kind,
        method,
        namespace: ns,
        name,
        content_type: content_type.to_string(),
        body: body.clone(),
        code: code.as_u16(),
        status,
    });
}

fn replace(shared: &Shared, target: &Target, body: Option<Value>) -> Response<Body> {
    let Some(obj) = body else {
        return failure(StatusCode::BAD_REQUEST, "BadRequest", "no body");
    };
    let mut inner = shared.lock();
    let key = target_key(target);
    let answer = |inner: &mut Inner, code: StatusCode, resp: Response<Body>, st: Option<Value>| {
        record_status_write(
            inner,
            target,
            Method::PUT,
            "application/json",
            &obj,
            code,
            st,
        );
        resp
    };
    if obj["metadata"]["name"].as_str().is_some_and(|n| n != key.2) {
        let resp = failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        );
        return answer(&mut inner, StatusCode::BAD_REQUEST, resp, None);
    }
    let Some(stored) = inner.objects.get(&key).cloned() else {
        return answer(&mut inner, StatusCode::NOT_FOUND, not_found(target), None);
    };
    if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
        && rv != stored["metadata"]["resourceVersion"].as_str().unwrap_or("")
    {
        return answer(&mut inner, StatusCode::CONFLICT, conflict(target), None);
    }
    let merged = merge_for_target(target, &stored, obj.clone());
    let written = write(
        shared,
        &mut inner,
        target.resource,
        key,
        Some(stored),
        merged,
    );
    let st = written.get("status").cloned();
    answer(
        &mut inner,
        StatusCode::OK,
        full(StatusCode::OK, &written),
        st,
    )
}

fn patch(
    shared: &Shared,
    target: &Target,
    content_type: &str,
    body: Option<Value>,
) -> Response<Body> {
    let Some(patch_body) = body else {
        return failure(StatusCode::BAD_REQUEST, "BadRequest", "no body");
    };
    let mut inner = shared.lock();
    let key = target_key(target);
    let answer = |inner: &mut Inner, code: StatusCode, resp: Response<Body>, st: Option<Value>| {
        record_status_write(
            inner,
            target,
            Method::PATCH,
            content_type,
            &patch_body,
            code,
            st,
        );
        resp
    };
    let Some(stored) = inner.objects.get(&key).cloned() else {
        return answer(&mut inner, StatusCode::NOT_FOUND, not_found(target), None);
    };
    let mut doc = stored.clone();
    let mime = content_type.split(';').next().unwrap_or("").trim();
    match mime {
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+yaml" => json_patch::merge(&mut doc, &patch_body),
        "application/json-patch+json" => {
            let ops: json_patch::Patch = match serde_json::from_value(patch_body.clone()) {
                Ok(p) => p,
                Err(e) => {
                    let resp = failure(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("not a JSON patch: {e}"),
                    );
                    return answer(&mut inner, StatusCode::BAD_REQUEST, resp, None);
                }
            };
            if let Err(e) = json_patch::patch(&mut doc, &ops.0) {
                let resp = failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    &format!("the JSON patch does not apply: {e}"),
                );
                return answer(&mut inner, StatusCode::UNPROCESSABLE_ENTITY, resp, None);
            }
        }
        other => {
            let resp = failure(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &format!("the body of the request was in an unknown format: {other}"),
            );
            return answer(&mut inner, StatusCode::UNSUPPORTED_MEDIA_TYPE, resp, None);
        }
    }
    // A patch that sets a stale resourceVersion is a precondition, as on the real server.
    if let Some(rv) = patch_body["metadata"]["resourceVersion"].as_str()
        && rv != stored["metadata"]["resourceVersion"].as_str().unwrap_or("")
    {
        return answer(&mut inner, StatusCode::CONFLICT, conflict(target), None);
    }
    let merged = merge_for_target(target, &stored, doc);
    let written = write(
        shared,
        &mut inner,
        target.resource,
        key,
        Some(stored),
        merged,
    );
    let st = written.get("status").cloned();
    answer(
        &mut inner,
        StatusCode::OK,
        full(StatusCode::OK, &written),
        st,
    )
}

fn delete_one(shared: &Shared, target: &Target) -> Response<Body> {
    let mut inner = shared.lock();
    match remove(shared, &mut inner, target.resource, target_key(target)) {
        Some(obj) => full(StatusCode::OK, &obj),
        None => not_found(target),
    }
}

// ---------------------------------------------------------------------------------------
// Selectors

#[derive(Debug, Default)]
struct Selectors {
    fields: Vec<(String, bool, String)>,
    labels: Vec<LabelReq>,
}

#[derive(Debug)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

impl Selectors {
    fn parse(q: &BTreeMap<String, String>) -> Selectors {
        let mut s = Selectors::default();
        for part in q
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if let Some((k, v)) = part.split_once("!=") {
                s.fields.push((k.to_string(), false, v.to_string()));
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                s.fields.push((k.to_string(), true, v.to_string()));
            }
        }
        for part in q
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or("")
            .split(',')
        {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                LabelReq::Ne(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelReq::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some(k) = part.strip_prefix('!') {
                LabelReq::Absent(k.trim().to_string())
            } else {
                LabelReq::Exists(part.to_string())
            };
            s.labels.push(req);
        }
        s
    }

    fn matches(&self, obj: &Value) -> bool {
        let field_ok = self.fields.iter().all(|(path, eq, want)| {
            let mut v = obj;
            for seg in path.split('.') {
                v = &v[seg];
            }
            let have = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        });
        let labels = &obj["metadata"]["labels"];
        let label = |k: &str| labels[k].as_str();
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k) == Some(v.as_str()),
            LabelReq::Ne(k, v) => label(k) != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::Absent(k) => label(k).is_none(),
        });
        field_ok && labels_ok
    }
}

/// Whether an object belongs to a request's scope (kind and namespace).
fn in_scope(target: &Target, resource: &ResourceType, obj: &Value) -> bool {
    std::ptr::eq(resource, target.resource)
        && target
            .namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
}

/// An object as a list item: without kind and apiVersion, like the real server's JSON.
fn as_item(obj: &Value) -> Value {
    let mut item = obj.clone();
    if let Some(m) = item.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    item
}

async fn list(shared: &Shared, target: &Target, q: &BTreeMap<String, String>) -> Response<Body> {
    let mut held = shared.held.subscribe();
    let kind = target.resource.kind;
    let _ = held.wait_for(|s| !s.contains(kind)).await;
    let selectors = Selectors::parse(q);
    let inner = shared.lock();
    let (list_rv, offset) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let parsed = token
                .split_once(':')
                .and_then(|(rv, off)| Some((rv.parse::<u64>().ok()?, off.parse::<usize>().ok()?)));
            let Some((rv, off)) = parsed else {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "invalid continue token",
                );
            };
            if rv < inner.oldest {
                return failure(
                    StatusCode::GONE,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result.",
                );
            }
            (rv, off)
        }
        None => (inner.rv, 0),
    };
    let matching: Vec<&Value> = inner
        .objects
        .iter()
        .filter(|((plural, _, _), obj)| {
            *plural == target.resource.plural
                && in_scope(target, target.resource, obj)
                && selectors.matches(obj)
        })
        .map(|(_, v)| v)
        .collect();
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|o| as_item(o))
        .collect();
    let next = offset.saturating_add(page.len());
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if next < matching.len() {
        metadata["continue"] = json!(format!("{list_rv}:{next}"));
        metadata["remainingItemCount"] = json!(matching.len() - next);
    }
    full(
        StatusCode::OK,
        &json!({
            "kind": format!("{kind}List"),
            "apiVersion": target.resource.api_version(),
            "metadata": metadata,
            "items": page
        }),
    )
}

// ---------------------------------------------------------------------------------------
// Watch

/// What one watch sends for `change`, per its selectors (None: nothing).
fn translate(sel: &Selectors, target: &Target, change: &Change) -> Option<(&'static str, Value)> {
    let scoped = |v: &Value| in_scope(target, change.resource, v) && sel.matches(v);
    let old = change.old.as_ref().is_some_and(&scoped);
    let new = scoped(&change.new);
    match change.event {
        "ADDED" => new.then(|| ("ADDED", change.new.clone())),
        "DELETED" => old.then(|| ("DELETED", change.new.clone())),
        _ => match (old, new) {
            (true, true) => Some(("MODIFIED", change.new.clone())),
            (false, true) => Some(("ADDED", change.new.clone())),
            (true, false) => Some(("DELETED", change.new.clone())),
            (false, false) => None,
        },
    }
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": event, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn key_of(obj: &Value) -> String {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Counts an open watch for as long as it lives.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

fn watch_stream(
    shared: &Arc<Shared>,
    target: &Target,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let selectors = Selectors::parse(q);
    let bookmarks = matches!(
        q.get("allowWatchBookmarks").map(String::as_str),
        Some("true" | "1")
    );
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let target = Target {
        resource: target.resource,
        namespace: target.namespace.clone(),
        name: None,
        subresource: None,
    };
    let kind = target.resource.kind;
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial: Vec<(&'static str, Value)> = Vec::new();
    let (mut events, mut drops, expired) = {
        let mut inner = shared.lock();
        let from = q
            .get("resourceVersion")
            .filter(|v| !v.is_empty() && *v != "0");
        let expired = match from {
            None => {
                for ((plural, _, _), obj) in &inner.objects {
                    if *plural == target.resource.plural
                        && in_scope(&target, target.resource, obj)
                        && selectors.matches(obj)
                    {
                        initial.push(("ADDED", obj.clone()));
                    }
                }
                None
            }
            Some(v) => match v.parse::<u64>() {
                Ok(rv) if rv >= inner.oldest => {
                    for change in inner.history.iter().filter(|c| c.rv > rv) {
                        if let Some(e) = translate(&selectors, &target, change) {
                            initial.push(e);
                        }
                    }
                    None
                }
                Ok(rv) => Some(format!("too old resource version: {rv} ({})", inner.oldest)),
                Err(_) => Some(format!("invalid resource version {v:?}")),
            },
        };
        if expired.is_some() {
            inner.delivered.push(Delivered {
                kind,
                event: "ERROR".into(),
                key: String::new(),
            });
        } else {
            for (event, obj) in &initial {
                inner.delivered.push(Delivered {
                    kind,
                    event: event.to_string(),
                    key: key_of(obj),
                });
            }
        }
        // Subscribed under the lock: no change falls between history and live events.
        (shared.events.subscribe(), shared.drops.subscribe(), expired)
    };
    if let Some(message) = expired {
        let line = event_line("ERROR", &status_value(410, "Expired", &message));
        let _ = tx.try_send(line);
    } else {
        shared.open_watches.fetch_add(1, Ordering::SeqCst);
        let guard = OpenWatch(shared.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            drops.mark_unchanged();
            for (event, obj) in &initial {
                if tx.send(event_line(event, obj)).await.is_err() {
                    return;
                }
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                let item = tokio::select! {
                    biased;
                    _ = drops.changed() => return,
                    _ = &mut deadline => return,
                    item = events.recv() => item,
                };
                let (event, obj) = match item {
                    Ok(Broadcast::Change(change)) => {
                        match translate(&selectors, &target, &change) {
                            Some(e) => e,
                            None => continue,
                        }
                    }
                    Ok(Broadcast::Bookmark(rv)) if bookmarks => (
                        "BOOKMARK",
                        json!({
                            "kind": kind,
                            "apiVersion": target.resource.api_version(),
                            "metadata": {"resourceVersion": rv.to_string()}
                        }),
                    ),
                    Ok(Broadcast::Bookmark(_)) => continue,
                    // Lagged or closed: end the stream; the client resumes from history.
                    Err(_) => return,
                };
                let key = if event == "BOOKMARK" {
                    String::new()
                } else {
                    key_of(&obj)
                };
                shared.lock().delivered.push(Delivered {
                    kind,
                    event: event.to_string(),
                    key,
                });
                if tx.send(event_line(event, &obj)).await.is_err() {
                    return;
                }
            }
        });
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, Infallible>(Frame::data(line)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

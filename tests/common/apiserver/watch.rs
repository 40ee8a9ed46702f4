//! The fake API server's read side: selectors, lists (with paging and expiry), and watch
//! streams (history replay, live events, bookmarks, 410 after expiry).
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::http_api::{Target, failure, full, status_value};
use super::{Body, Broadcast, Change, Delivered, ResourceType, Shared};

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
    resource.kind == target.resource.kind
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

pub(super) async fn list(
    shared: &Shared,
    target: &Target,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
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

pub(super) fn watch_stream(
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

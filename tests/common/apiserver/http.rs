//! The fake API server's HTTP side: routing a request to its resource, and the object
//! verbs (get, create, replace, patch, delete, the `/status` subresource).
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::watch_api::{list, watch_stream};
use super::{
    Body, Inner, ObjKey, RESOURCES, Recorded, ResourceType, Shared, StatusWrite, names, remove,
    write,
};

pub(super) fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A `metav1.Status` failure.
pub(super) fn status_value(code: u16, reason: &str, message: &str) -> Value {
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

pub(super) fn failure(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
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
pub(super) struct Target {
    pub(super) resource: &'static ResourceType,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
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

pub(super) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
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
    let mut obj = obj;
    let (ns, mut name) = names(target.resource, &obj, target.namespace.as_deref());
    // metadata.generateName: the server picks the name (a unique suffix).
    if name.is_empty()
        && let Some(prefix) = obj["metadata"]["generateName"].as_str()
    {
        name = format!("{prefix}{}", shared.lock().rv + 1);
        obj["metadata"]["name"] = Value::String(name.clone());
    }
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

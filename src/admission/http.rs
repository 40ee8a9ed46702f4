//! `POST /validate` and `POST /mutate`: HTTP checks, a bounded body read, then the pure
//! `answer_review` that decodes, runs the engine and encodes.
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use crate::body::RequestBody;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};

use super::cluster::{ClusterView, ClusterViewHandle};
use super::context::Context;
use super::engine::{Engine, Mode};
use super::metrics;
use super::patch;
use super::review::{self, Answer, DecodeError};
use crate::body::{self, Body};
use crate::ingress::model::live::LiveState;
use crate::reload::ConfigHandle;
use crate::server::{ConnInfo, Handler};

/// A request that is not a review we can answer, with the HTTP status it deserves.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Decodes one review body, decides it and encodes the response review, without live
/// state (rules that compare with the served configuration find nothing).
pub fn answer_review(engine: &Engine, mode: Mode, body: &[u8]) -> Result<Vec<u8>, ReviewError> {
    answer_review_live(engine, mode, body, None)
}

/// `answer_review` against the live configuration `live`.
pub fn answer_review_live(
    engine: &Engine,
    mode: Mode,
    body: &[u8],
    live: Option<&dyn LiveState>,
) -> Result<Vec<u8>, ReviewError> {
    answer_review_with(engine, mode, body, live, None)
}

/// `answer_review_live` with the cluster view cross-object rules read.
pub fn answer_review_with(
    engine: &Engine,
    mode: Mode,
    body: &[u8],
    live: Option<&dyn LiveState>,
    cluster: Option<&ClusterView>,
) -> Result<Vec<u8>, ReviewError> {
    let started = Instant::now();
    let review = review::decode(body)?;
    let req = &review.request;
    let dry_run = req.dry_run.unwrap_or(false);
    let endpoint = match mode {
        Mode::Validate => "validate",
        Mode::Mutate => "mutate",
    };
    let mut answer = Answer {
        allowed: true,
        ..Default::default()
    };
    // Subresources (status, scale, exec, ...) carry other objects or none; rules are about
    // the main resource, and denying a status write would fight the controllers.
    let subresource = req.sub_resource.as_deref().is_some_and(|s| !s.is_empty());
    if let (Some(object), false) = (req.object.as_ref(), subresource) {
        let mut ctx = Context::new(
            &req.kind.group,
            &req.kind.kind,
            req.operation,
            req.namespace.as_deref().unwrap_or(""),
            req.name.as_deref().unwrap_or(""),
            object,
            engine.settings(),
        );
        ctx.old_object = req.old_object.as_ref();
        ctx.dry_run = dry_run;
        ctx.live = live;
        ctx.cluster = cluster;
        match mode {
            Mode::Validate => {
                let decision = engine.validate(&ctx);
                super::recent::record(&ctx, &decision);
                if !dry_run {
                    for f in &decision.findings {
                        metrics::FINDINGS
                            .with_label_values(&[f.rule, f.action.as_str()])
                            .inc();
                    }
                }
                answer.warnings = review::warnings(&decision.findings);
                if decision.denied() {
                    answer.allowed = false;
                    answer.message =
                        Some(review::denial_message(&ctx.describe(), &decision.findings));
                }
            }
            Mode::Mutate => {
                let ops = engine.mutate(&ctx);
                if !ops.is_empty() {
                    metrics::PATCHES
                        .with_label_values(&[metrics::kind_label(ctx.kind)])
                        .inc();
                    answer.patch = Some(patch::render(&ops));
                }
            }
        }
    }
    let out = review::encode(review.api_version, &req.uid, &answer);
    metrics::REVIEWS
        .with_label_values(&[
            endpoint,
            metrics::kind_label(&req.kind.kind),
            req.operation.as_str(),
            bool_str(answer.allowed),
            bool_str(dry_run),
        ])
        .inc();
    metrics::DURATION
        .with_label_values(&[endpoint])
        .observe(started.elapsed().as_secs_f64());
    Ok(out)
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// The webhook listener's handler: `/validate`, `/mutate` and `/healthz`. `live` is the
/// ingress configuration Ingresses are checked against (route collisions, Services, TLS
/// Secrets, our IngressClasses); each review loads the current snapshot once.
pub fn handler(engine: Arc<Engine>, live: Option<ConfigHandle>) -> Handler {
    handler_with_cluster(engine, live, None)
}

/// `handler` with the cluster view from the watches (`serve --source kube`); each review
/// loads the current view once.
pub fn handler_with_cluster(
    engine: Arc<Engine>,
    live: Option<ConfigHandle>,
    cluster: Option<ClusterViewHandle>,
) -> Handler {
    handler_with(engine, live, cluster, DEFAULT_BODY_TIMEOUT)
}

/// The API server gives up on a webhook after `timeoutSeconds` (10 s by default, 30 s at
/// most), so a body still arriving after that is of no use to anyone.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// [`handler_with_cluster`] with the time a client gets to deliver its whole request body;
/// a slower one gets 408, so a slow sender cannot hold a body buffer per connection.
pub fn handler_with(
    engine: Arc<Engine>,
    live: Option<ConfigHandle>,
    cluster: Option<ClusterViewHandle>,
    body_timeout: Duration,
) -> Handler {
    Arc::new(move |req: Request<RequestBody>, _conn: Arc<ConnInfo>| {
        let engine = engine.clone();
        let live = live.clone();
        let cluster = cluster.clone();
        Box::pin(async move {
            handle(&engine, live.as_ref(), cluster.as_ref(), req, body_timeout).await
        })
    })
}

fn bad(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    metrics::BAD_REQUESTS
        .with_label_values(&[status.as_str()])
        .inc();
    body::text(status, msg)
}

async fn handle(
    engine: &Engine,
    live: Option<&ConfigHandle>,
    cluster: Option<&ClusterViewHandle>,
    req: Request<RequestBody>,
    body_timeout: Duration,
) -> Response<Body> {
    let mode = match req.uri().path() {
        "/validate" => Mode::Validate,
        "/mutate" => Mode::Mutate,
        "/healthz" if req.method() == Method::GET => return body::text(StatusCode::OK, "ok"),
        _ => {
            return bad(
                StatusCode::NOT_FOUND,
                "not found: portcullis serves POST /validate and POST /mutate",
            );
        }
    };
    if req.method() != Method::POST {
        let mut r = bad(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: use POST with an AdmissionReview",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return bad(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {ctype:?}: send application/json"),
        );
    }
    let limit = engine.settings().max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return bad(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the {limit}-byte limit"),
        );
    }
    let read = tokio::time::timeout(body_timeout, Limited::new(req.into_body(), limit).collect());
    let Ok(collected) = read.await else {
        return bad(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {body_timeout:?}"),
        );
    };
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return bad(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over the {limit}-byte limit"),
            );
        }
        Err(e) => {
            return bad(
                StatusCode::BAD_REQUEST,
                format!("reading request body: {e}"),
            );
        }
    };
    // Loaded after the body is in, and held only for the (synchronous) decision.
    let snapshot = live.map(ConfigHandle::load);
    let state = snapshot.as_ref().map(|s| &***s as &dyn LiveState);
    let view = cluster.and_then(ClusterViewHandle::load);
    match answer_review_with(engine, mode, &bytes, state, view.as_deref()) {
        Ok(out) => body::json(StatusCode::OK, out),
        Err(e) => bad(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

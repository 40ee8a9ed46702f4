//! The plain-HTTP admin listener's handler: `/metrics`, `/healthz`, `/readyz`, `/problems`,
//! and with a dashboard `/routes`, `/dashboard` (`/` redirects there) and
//! `/dashboard/state.json`.
//!
//! Failure behaviour: every request gets an answer; unknown paths are 404, methods other
//! than GET/HEAD are 405, a refused client gets 401 or 403 (see `dashboard::access`).
//! Readiness turns 503 as soon as shutdown is triggered, so the endpoints controller
//! removes the pod while the listeners still drain.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};

use crate::body::{self, Body};
use crate::dashboard::{self, Access, Dashboard, Guard};
use crate::metrics;
use crate::server::{ConnInfo, Handler, Shutdown};

/// The content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// What the admin endpoints report on.
#[derive(Clone)]
pub struct AdminState {
    /// Set once the process can serve (configuration loaded, listeners bound).
    pub ready: Arc<AtomicBool>,
    /// Draining makes `/readyz` fail.
    pub shutdown: Shutdown,
    /// The current configuration problems, as JSON.
    pub problems: Arc<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// The dashboard and `/routes`; without it those paths are 404.
    pub dashboard: Option<Arc<Dashboard>>,
    /// Who may see the sensitive paths (everything but the probes and `/metrics`).
    pub access: Access,
}

/// The admin handler.
pub fn handler(state: AdminState) -> Handler {
    let state = Arc::new(state);
    Arc::new(move |req, conn: Arc<ConnInfo>| {
        let state = state.clone();
        Box::pin(
            async move { answer(&state, req.method(), req.uri().path(), req.headers(), &conn) },
        )
    })
}

/// How much `path` is guarded, or None when the listener does not serve it.
fn guard(state: &AdminState, path: &str) -> Option<Guard> {
    let dashboard = state.dashboard.is_some();
    match path {
        "/metrics" | "/healthz" | "/readyz" => Some(Guard::Open),
        "/problems" => Some(Guard::Data),
        "/routes" | "/dashboard/state.json" if dashboard => Some(Guard::Data),
        "/dashboard" if dashboard => Some(Guard::Page),
        // Only a pointer to the page: it shows nothing itself.
        "/" if dashboard => Some(Guard::Open),
        _ => None,
    }
}

fn answer(
    state: &AdminState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    conn: &ConnInfo,
) -> Response<Body> {
    let Some(guard) = guard(state, path) else {
        return body::text(StatusCode::NOT_FOUND, "not found");
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = body::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if let Err(refused) = state.access.check(guard, conn.remote.ip(), headers) {
        return refused.response();
    }
    match (path, &state.dashboard) {
        ("/dashboard", Some(_)) => return dashboard::page_response(),
        ("/", Some(_)) => return dashboard::redirect_response(),
        ("/dashboard/state.json", Some(d)) => return d.state_response((state.problems)()),
        ("/routes", Some(d)) => return d.routes_response(),
        _ => {}
    }
    match path {
        "/metrics" => {
            crate::process_metrics::refresh();
            let mut resp = Response::new(body::full(metrics::encode()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            resp
        }
        "/readyz" => {
            if state.shutdown.is_draining() {
                body::text(StatusCode::SERVICE_UNAVAILABLE, "not ready: draining")
            } else if !state.ready.load(Ordering::Acquire) {
                body::text(StatusCode::SERVICE_UNAVAILABLE, "not ready: starting")
            } else {
                body::text(StatusCode::OK, "ok")
            }
        }
        "/problems" => match serde_json::to_vec(&(state.problems)()) {
            Ok(bytes) => body::json(StatusCode::OK, bytes),
            Err(e) => body::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding problems: {e}"),
            ),
        },
        // "/healthz": answering at all is the liveness signal.
        _ => body::text(StatusCode::OK, "ok"),
    }
}

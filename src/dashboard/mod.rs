//! The dashboard on the admin listener: one self-contained HTML page (inline CSS and JS,
//! compiled into the binary, nothing fetched from elsewhere) that polls
//! `/dashboard/state.json` every second.
//!
//! It reads what other modules already keep: the current snapshot, the balancer's
//! per-endpoint state, the request counters, the recent admission decisions and the last
//! background audit (`audit_task`). It never writes any of them, so looking at the
//! dashboard cannot change what is served.
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Response, StatusCode, header};

use crate::admission::recent;
use crate::body::{self, Body};
use crate::ingress::request::gateway::Gateway;
use crate::ingress::request::health::monotonic_us;

pub(crate) mod access;
pub mod audit;
pub mod audit_inputs;
pub mod audit_task;
pub(crate) mod rates;
pub(crate) mod state;

pub use access::{Access, Guard, Refused};

/// The page, embedded at build time.
const PAGE: &str = include_str!("page.html");

/// Everything the dashboard reads from.
#[derive(Debug)]
pub struct Dashboard {
    gateway: Arc<Gateway>,
    rates: rates::RateSampler,
    /// Where the background audit publishes; None while auditing is off.
    audit: Option<audit::AuditCell>,
}

impl Dashboard {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Dashboard {
            gateway,
            rates: rates::RateSampler::new(),
            audit: None,
        }
    }

    /// Shows the audits published into `cell`.
    pub fn with_audit(mut self, cell: audit::AuditCell) -> Self {
        self.audit = Some(cell);
        self
    }

    /// The dashboard document; `problems` is what `/problems` reports.
    pub fn state(&self, problems: serde_json::Value) -> state::DashboardState {
        let snapshot = self.gateway.snapshot().load_full();
        let balancer = self.gateway.balancer();
        let now = monotonic_us();
        let live = |addr| {
            balancer.stats(addr).map(|s| {
                let ewma = s.estimate();
                state::EndpointLive {
                    in_flight: s.in_flight(),
                    ewma_ms: (!ewma.is_zero()).then_some(ewma.as_secs_f64() * 1000.0),
                    ejected: s.health.is_ejected(now),
                    consecutive_failures: s.health.consecutive_failures(),
                }
            })
        };
        let served: Vec<&str> = snapshot.served.iter().map(|s| &**s).collect();
        let ingresses = self
            .rates
            .observe(Instant::now(), rates::read_totals(), &served);
        state::build(
            &snapshot,
            &live,
            ingresses,
            problems,
            recent::ring().newest_first(),
            self.audit.as_ref().and_then(|cell| cell.load_full()),
        )
    }

    /// `GET /dashboard/state.json`.
    pub fn state_response(&self, problems: serde_json::Value) -> Response<Body> {
        let mut resp = match serde_json::to_vec(&self.state(problems)) {
            Ok(bytes) => body::json(StatusCode::OK, bytes),
            Err(e) => body::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the dashboard state: {e}"),
            ),
        };
        no_store(&mut resp);
        resp
    }

    /// `GET /routes`: the live route table, as `portcullis routes` shows it.
    pub fn routes_response(&self) -> Response<Body> {
        let snapshot = self.gateway.snapshot().load();
        let json = crate::ingress::model::routes::routes_json(&snapshot);
        let mut resp = match serde_json::to_vec(&json) {
            Ok(bytes) => body::json(StatusCode::OK, bytes),
            Err(e) => body::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding the routes: {e}"),
            ),
        };
        no_store(&mut resp);
        resp
    }
}

/// `GET /dashboard`: the page. The policy forbids every load from elsewhere, so the page
/// provably works offline and a name shown in it cannot pull anything in.
pub fn page_response() -> Response<Body> {
    let mut resp = Response::new(body::full(PAGE));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut resp);
    resp
}

/// `GET /`: to the dashboard.
pub fn redirect_response() -> Response<Body> {
    let mut resp = body::text(StatusCode::FOUND, "see /dashboard");
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/dashboard"));
    resp
}

fn no_store(resp: &mut Response<Body>) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        // Nothing may come from the network: no external scripts, styles, fonts or images.
        for needle in ["http://", "https://", "<link", "src=", "@import", "url("] {
            assert!(!PAGE.contains(needle), "page.html contains {needle:?}");
        }
        assert!(PAGE.contains("dashboard/state.json"));
        let resp = page_response();
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            resp.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'")
        );
    }
}

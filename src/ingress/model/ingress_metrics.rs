//! Prometheus families of the ingress data plane. Labels are bounded by configuration
//! (Ingress and backend names), never by request data. Registered once in the process
//! registry; if a family cannot be built (a programming error) metrics are skipped, the
//! proxy keeps serving.
use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::ingress::model::snapshot::Backend;

/// Labels of a request series, after ingress-nginx's `nginx_ingress_controller_requests`.
/// Every value comes from configuration or a fixed list (`metric_labels`).
pub(crate) const REQUEST_LABELS: &[&str] = &[
    "namespace",
    "ingress",
    "host",
    "path",
    "service",
    "method",
    "status",
];
/// Labels of a route's duration and byte series (no method or status: histograms per
/// status would multiply the bucket series by hundreds).
pub(crate) const ROUTE_LABELS: &[&str] = &["namespace", "ingress", "host", "path"];
/// [`ROUTE_LABELS`] plus the backend that answered.
pub(crate) const UPSTREAM_LABELS: &[&str] = &["namespace", "ingress", "host", "path", "service"];

/// All ingress metric families.
#[derive(Debug, Clone)]
pub struct IngressMetrics {
    /// [`REQUEST_LABELS`]; `status` is the exact code.
    pub requests: IntCounterVec,
    /// Whole request, first byte in to last byte out; [`ROUTE_LABELS`].
    pub request_duration: HistogramVec,
    /// Time to upstream response headers; [`UPSTREAM_LABELS`].
    pub upstream_duration: HistogramVec,
    /// Request body bytes received from clients; [`ROUTE_LABELS`].
    pub request_bytes: IntCounterVec,
    /// Response body bytes sent to clients; [`ROUTE_LABELS`].
    pub response_bytes: IntCounterVec,
    /// Second attempts on another endpoint; [`UPSTREAM_LABELS`].
    pub retries: IntCounterVec,
    /// Upstream failures by kind (`refused`, `connect_timeout`, `connect`, `read_timeout`,
    /// `send`); `service`, `kind`.
    pub upstream_errors: IntCounterVec,
    /// Endpoints per backend by `state` (`ready`, `serving`, `terminating`, `eligible`,
    /// `total`); `backend`.
    pub endpoints: IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl IngressMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).map(crate::metrics::register)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .map(crate::metrics::register)
        };
        Ok(Self {
            requests: counter(
                "ingress_requests_total",
                "Requests answered by the ingress listeners.",
                REQUEST_LABELS,
            )?,
            request_duration: histogram(
                "ingress_request_duration_seconds",
                "Time from request to the last response byte.",
                ROUTE_LABELS,
            )?,
            upstream_duration: histogram(
                "ingress_upstream_duration_seconds",
                "Time from sending upstream to receiving response headers.",
                UPSTREAM_LABELS,
            )?,
            request_bytes: counter(
                "ingress_request_bytes_total",
                "Request body bytes received from clients.",
                ROUTE_LABELS,
            )?,
            response_bytes: counter(
                "ingress_response_bytes_total",
                "Response body bytes sent to clients.",
                ROUTE_LABELS,
            )?,
            retries: counter(
                "ingress_upstream_retries_total",
                "Requests retried on another endpoint after a failure before sending.",
                UPSTREAM_LABELS,
            )?,
            upstream_errors: counter(
                "ingress_upstream_errors_total",
                "Upstream failures by kind.",
                &["service", "kind"],
            )?,
            endpoints: IntGaugeVec::new(
                Opts::new(
                    "ingress_backend_endpoints",
                    "Endpoints of a backend by state.",
                ),
                &["backend", "state"],
            )
            .map(crate::metrics::register)?,
        })
    }
}

/// The process-wide families, or `None` if they could not be built.
pub fn metrics() -> Option<&'static IngressMetrics> {
    static METRICS: OnceLock<Option<IngressMetrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| match IngressMetrics::new() {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(error = %e, "ingress metrics unavailable");
                None
            }
        })
        .as_ref()
}

/// Sets the endpoint gauges of one backend: for every backend of a new snapshot, and for
/// each backend the endpoint fast path refreshed.
pub fn set_backend_gauges(backend: &Backend) {
    let Some(m) = metrics() else { return };
    let endpoints = backend.endpoints.load();
    let count = |f: fn(&crate::ingress::model::snapshot::Endpoint) -> bool| {
        endpoints.all.iter().filter(|e| f(e)).count() as i64
    };
    let name = &*backend.name;
    let set = |state: &str, v: i64| m.endpoints.with_label_values(&[name, state]).set(v);
    set("ready", count(|e| e.ready));
    set("serving", count(|e| e.serving));
    set("terminating", count(|e| e.terminating));
    set("eligible", endpoints.eligible.len() as i64);
    set("total", endpoints.all.len() as i64);
}

/// Drops the gauges of a backend that is no longer in the snapshot.
pub fn remove_backend_gauges(backend_name: &str) {
    let Some(m) = metrics() else { return };
    for state in ["ready", "serving", "terminating", "eligible", "total"] {
        let _ = m.endpoints.remove_label_values(&[backend_name, state]);
    }
}

/// Counts an upstream failure; error paths only, so the label lookup is not cached.
pub(crate) fn record_upstream_error(service: &str, kind: &str) {
    if let Some(m) = metrics() {
        m.upstream_errors.with_label_values(&[service, kind]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::model::snapshot::{Endpoint, EndpointCell, UpstreamProtocol};

    #[test]
    fn gauges_follow_backend() {
        let ep = |a: &str, ready, serving, terminating| Endpoint {
            addr: a.parse().unwrap(),
            ready,
            serving,
            terminating,
        };
        let b = Backend {
            name: "metrics-test/web:80".into(),
            protocol: UpstreamProtocol::Http1,
            endpoints: EndpointCell::new(
                vec![
                    ep("10.0.0.1:80", true, true, false),
                    ep("10.0.0.2:80", false, true, true),
                    ep("10.0.0.3:80", false, false, true),
                ],
                vec!["10.0.0.1:80".parse().unwrap()],
            ),
            external: None,
        };
        set_backend_gauges(&b);
        let m = metrics().unwrap();
        let get = |s: &str| {
            m.endpoints
                .with_label_values(&["metrics-test/web:80", s])
                .get()
        };
        assert_eq!(
            (
                get("ready"),
                get("serving"),
                get("terminating"),
                get("eligible"),
                get("total")
            ),
            (1, 2, 2, 1, 3)
        );
        let text = String::from_utf8(crate::metrics::encode()).unwrap();
        assert!(text.contains("portcullis_ingress_backend_endpoints{backend=\"metrics-test/web:80\",state=\"total\"} 3"));
        remove_backend_gauges("metrics-test/web:80");
        let text = String::from_utf8(crate::metrics::encode()).unwrap();
        assert!(!text.contains("metrics-test/web:80"));
    }
}

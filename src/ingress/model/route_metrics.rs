//! Per-route metric handles. Every compiled route carries a [`RouteMetrics`] whose label
//! values (namespace, Ingress, rule host, rule path, service) are fixed when the snapshot
//! is compiled; the prometheus children are filled lazily, once per route and
//! (method, status), into `OnceLock` slots. A request therefore indexes arrays instead of
//! hashing label strings, and only series that saw traffic exist.
//!
//! Series of routes that leave the configuration are removed on the next snapshot
//! ([`retire`]) so reloads do not accumulate label sets forever.
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, IntCounter};

use crate::ingress::model::ingress_metrics::{IngressMetrics, metrics};
use crate::ingress::model::metric_labels::{
    FIRST_STATUS, LAST_STATUS, METHODS, OTHER_STATUS, status_label,
};

/// Status classes 1xx..5xx, each a lazily allocated row of 100 codes, so a route pays for
/// the codes it answers rather than for all 500.
const CLASSES: usize = 5;
const PER_CLASS: usize = 100;

type Row = Box<[OnceLock<IntCounter>; PER_CLASS]>;

/// The configured labels of one route's series. `ingress` is `namespace/name`, split when
/// a child is created so compiling a route allocates nothing for labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Labels {
    ingress: Arc<str>,
    host: Option<Arc<str>>,
    path: Arc<str>,
    service: Arc<str>,
}

impl Labels {
    fn namespace_name(&self) -> (&str, &str) {
        self.ingress.split_once('/').unwrap_or(("", &self.ingress))
    }

    fn route(&self) -> [&str; 4] {
        let (ns, name) = self.namespace_name();
        [ns, name, self.host.as_deref().unwrap_or(""), &self.path]
    }

    fn upstream(&self) -> [&str; 5] {
        let [ns, name, host, path] = self.route();
        [ns, name, host, path, &self.service]
    }

    fn request(&self, method: &'static str, status: &'static str) -> [&str; 7] {
        let [ns, name, host, path, service] = self.upstream();
        [ns, name, host, path, service, method, status]
    }
}

/// The series of one route answered by one service.
#[derive(Debug, Default)]
struct Series {
    labels: Labels,
    requests: [[OnceLock<Row>; CLASSES]; METHODS.len()],
    /// Statuses outside 100..=599, per method.
    odd_status: [OnceLock<IntCounter>; METHODS.len()],
    duration: OnceLock<Histogram>,
    upstream: OnceLock<Histogram>,
    request_bytes: OnceLock<IntCounter>,
    response_bytes: OnceLock<IntCounter>,
    retries: OnceLock<IntCounter>,
}

impl Series {
    fn new(labels: Labels) -> Self {
        Self {
            labels,
            ..Self::default()
        }
    }

    fn request_counter(&self, m: &IngressMetrics, method: usize, status: u16) -> &IntCounter {
        let method = method.min(METHODS.len() - 1);
        let child = |status: &'static str| {
            m.requests
                .with_label_values(&self.labels.request(METHODS[method], status))
        };
        if !(FIRST_STATUS..=LAST_STATUS).contains(&status) {
            return self.odd_status[method].get_or_init(|| child(OTHER_STATUS));
        }
        let offset = usize::from(status - FIRST_STATUS);
        let row = self.requests[method][offset / PER_CLASS]
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        row[offset % PER_CLASS].get_or_init(|| child(status_label(status)))
    }

    fn record(&self, done: &Finished) {
        let Some(m) = metrics() else { return };
        self.request_counter(m, done.method, done.status).inc();
        // The labels are only read when a child is first made: splitting the route's name
        // per request showed in the request path's instruction counts.
        self.duration
            .get_or_init(|| m.request_duration.with_label_values(&self.labels.route()))
            .observe(done.duration.as_secs_f64());
        if done.request_bytes > 0 {
            self.request_bytes
                .get_or_init(|| m.request_bytes.with_label_values(&self.labels.route()))
                .inc_by(done.request_bytes);
        }
        if done.response_bytes > 0 {
            self.response_bytes
                .get_or_init(|| m.response_bytes.with_label_values(&self.labels.route()))
                .inc_by(done.response_bytes);
        }
    }

    fn upstream(&self, elapsed: Duration) {
        let Some(m) = metrics() else { return };
        self.upstream
            .get_or_init(|| {
                m.upstream_duration
                    .with_label_values(&self.labels.upstream())
            })
            .observe(elapsed.as_secs_f64());
    }

    fn retry(&self) {
        let Some(m) = metrics() else { return };
        self.retries
            .get_or_init(|| m.retries.with_label_values(&self.labels.upstream()))
            .inc();
    }

    /// Removes every child this series created from its family.
    fn remove(&self, m: &IngressMetrics) {
        for (mi, classes) in self.requests.iter().enumerate() {
            for (ci, row) in classes.iter().enumerate() {
                let Some(row) = row.get() else { continue };
                for (si, slot) in row.iter().enumerate() {
                    if slot.get().is_some() {
                        // Offsets come from a valid code, so the cast cannot truncate.
                        let code = FIRST_STATUS + (ci * PER_CLASS + si) as u16;
                        let labels = self.labels.request(METHODS[mi], status_label(code));
                        let _ = m.requests.remove_label_values(&labels);
                    }
                }
            }
            if self.odd_status[mi].get().is_some() {
                let labels = self.labels.request(METHODS[mi], OTHER_STATUS);
                let _ = m.requests.remove_label_values(&labels);
            }
        }
        let route = self.labels.route();
        let upstream = self.labels.upstream();
        if self.duration.get().is_some() {
            let _ = m.request_duration.remove_label_values(&route);
        }
        if self.request_bytes.get().is_some() {
            let _ = m.request_bytes.remove_label_values(&route);
        }
        if self.response_bytes.get().is_some() {
            let _ = m.response_bytes.remove_label_values(&route);
        }
        if self.upstream.get().is_some() {
            let _ = m.upstream_duration.remove_label_values(&upstream);
        }
        if self.retries.get().is_some() {
            let _ = m.retries.remove_label_values(&upstream);
        }
    }
}

/// What a finished request contributes to its route's series.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    /// [`crate::ingress::model::metric_labels::method_index`] of the request method.
    pub method: usize,
    pub status: u16,
    pub duration: Duration,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

/// The metric handles of one compiled route: its main backend's series and, created on
/// the first canary answer, the canary backend's.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    main: Series,
    /// The canary backend's name, when the route's Ingress has one.
    canary_service: Option<Arc<str>>,
    /// Boxed: a `Series` is about a kilobyte of empty slots, which most routes (no
    /// canary) should not carry twice.
    canary: OnceLock<Box<Series>>,
}

impl RouteMetrics {
    /// Handles for a route of Ingress `ingress` (`namespace/name`) with the rule's host
    /// and path, answered by `service` or by the canary backend `canary`.
    pub fn new(
        ingress: Arc<str>,
        host: Option<Arc<str>>,
        path: Arc<str>,
        service: Arc<str>,
        canary: Option<Arc<str>>,
    ) -> Self {
        Self {
            main: Series::new(Labels {
                ingress,
                host,
                path,
                service,
            }),
            canary_service: canary,
            canary: OnceLock::new(),
        }
    }

    /// The series of the backend that answered. A route has at most two (main and
    /// canary), both fixed by configuration; the pointer comparison is the common case.
    fn series(&self, service: Option<&Arc<str>>) -> &Series {
        let main = &self.main;
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        match (service, &self.canary_service) {
            (Some(s), Some(c)) if !same(s, &main.labels.service) && same(s, c) => self
                .canary
                .get_or_init(|| Box::new(Series::new(self.canary_labels(c)))),
            // Anything else is the main backend, which keeps the labels bounded even if
            // a caller passed a name this route does not know.
            _ => main,
        }
    }

    fn canary_labels(&self, service: &Arc<str>) -> Labels {
        Labels {
            service: service.clone(),
            ..self.main.labels.clone()
        }
    }

    /// The label sets this route may use.
    fn configured(&self) -> impl Iterator<Item = Labels> + '_ {
        std::iter::once(self.main.labels.clone())
            .chain(self.canary_service.iter().map(|c| self.canary_labels(c)))
    }

    /// Records a finished request answered by `service` (None: by the route itself).
    pub fn record(&self, service: Option<&Arc<str>>, done: &Finished) {
        self.series(service).record(done);
    }

    /// Records the time `service` took to send response headers.
    pub fn upstream(&self, service: &Arc<str>, elapsed: Duration) {
        self.series(Some(service)).upstream(elapsed);
    }

    /// Counts a retry on another endpoint of `service`.
    pub fn retry(&self, service: &Arc<str>) {
        self.series(Some(service)).retry();
    }

    fn each(&self) -> impl Iterator<Item = &Series> {
        std::iter::once(&self.main).chain(self.canary.get().map(|b| &**b))
    }
}

/// Requests answered without a route (no match, bad path): all configured labels empty.
pub(crate) fn record_unrouted(done: &Finished) {
    static UNROUTED: LazyLock<Series> = LazyLock::new(Series::default);
    UNROUTED.record(done);
}

/// Removes the series of `old` routes whose labels no `new` route has, so a reload that
/// drops or renames a route (or moves it to another service) also drops its series.
/// Requests still finishing on the old snapshot may count into removed children; those
/// counts are lost, not leaked.
pub fn retire<'a>(old: &[Arc<RouteMetrics>], new: impl IntoIterator<Item = &'a Arc<RouteMetrics>>) {
    let Some(m) = metrics() else { return };
    let kept: HashSet<Labels> = new.into_iter().flat_map(|r| r.configured()).collect();
    for route in old {
        for series in route.each() {
            if !kept.contains(&series.labels) {
                series.remove(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(method: usize, status: u16) -> Finished {
        Finished {
            method,
            status,
            duration: Duration::from_millis(1),
            request_bytes: 3,
            response_bytes: 5,
        }
    }

    fn scrape() -> String {
        String::from_utf8(crate::metrics::encode()).unwrap_or_default()
    }

    #[test]
    fn canary_and_odd_values_stay_bounded_and_retire_removes_them() {
        let main: Arc<str> = Arc::from("rm-test/main:80");
        let canary: Arc<str> = Arc::from("rm-test/canary:80");
        let stranger: Arc<str> = Arc::from("rm-test/stranger:80");
        let route = Arc::new(RouteMetrics::new(
            Arc::from("rm-test/web"),
            Some(Arc::from("rm.example")),
            Arc::from("/shop"),
            main.clone(),
            Some(canary.clone()),
        ));
        route.record(Some(&main), &done(0, 200));
        route.record(Some(&canary), &done(2, 201));
        // Unknown service, method slot and status all fold into bounded values.
        route.record(Some(&stranger), &done(99, 999));
        route.record(None, &done(0, 200));
        route.upstream(&main, Duration::from_millis(1));
        route.retry(&canary);
        let text = scrape();
        let line = |labels: &str| {
            text.lines()
                .find(|l| l.starts_with("portcullis_ingress_requests_total{") && l.contains(labels))
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        };
        assert_eq!(
            line(r#"method="GET",namespace="rm-test",path="/shop",service="rm-test/main:80",status="200""#)
                .as_deref(),
            Some("2"),
            "{text}"
        );
        assert!(line(r#"method="POST",namespace="rm-test",path="/shop",service="rm-test/canary:80",status="201""#).is_some());
        assert!(line(r#"method="other",namespace="rm-test",path="/shop",service="rm-test/main:80",status="other""#).is_some());
        assert!(!text.contains("stranger"));

        // The same route compiled again keeps its series; without it, they go.
        let same = Arc::new(RouteMetrics::new(
            Arc::from("rm-test/web"),
            Some(Arc::from("rm.example")),
            Arc::from("/shop"),
            main.clone(),
            Some(canary.clone()),
        ));
        retire(std::slice::from_ref(&route), [&same]);
        assert!(scrape().contains("rm-test/canary:80"));
        retire(&[route], []);
        assert!(!scrape().contains("rm-test/"), "{}", scrape());
    }
}

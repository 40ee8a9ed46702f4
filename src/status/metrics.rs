//! Metrics of leader election and status publishing. If a (constant) definition were
//! refused, the metric is skipped rather than failing the caller.
use std::sync::OnceLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

struct Metrics {
    leader: IntGauge,
    lease_errors: IntCounter,
    writes: IntCounter,
    errors: IntCounterVec,
}

fn metrics() -> Option<&'static Metrics> {
    static METRICS: OnceLock<Option<Metrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            let leader = IntGauge::new(
                "status_leader",
                "1 while this replica holds the Lease and publishes Ingress status.",
            )
            .ok()?;
            let lease_errors = IntCounter::new(
                "status_lease_errors_total",
                "Lease requests that failed or timed out (retried on the next renewal).",
            )
            .ok()?;
            let writes = IntCounter::new(
                "ingress_status_writes_total",
                "Ingress status writes that succeeded (publishes and clears).",
            )
            .ok()?;
            let errors = IntCounterVec::new(
                Opts::new(
                    "ingress_status_errors_total",
                    "Failures while publishing Ingress status, by stage: addresses (reading \
                     the published Service), list (reading Ingress statuses), write.",
                ),
                &["stage"],
            )
            .ok()?;
            Some(Metrics {
                leader: crate::metrics::register(leader),
                lease_errors: crate::metrics::register(lease_errors),
                writes: crate::metrics::register(writes),
                errors: crate::metrics::register(errors),
            })
        })
        .as_ref()
}

pub(crate) fn set_leader(leading: bool) {
    if let Some(m) = metrics() {
        m.leader.set(i64::from(leading));
    }
}

pub(crate) fn lease_error() {
    if let Some(m) = metrics() {
        m.lease_errors.inc();
    }
}

pub(crate) fn write_ok() {
    if let Some(m) = metrics() {
        m.writes.inc();
    }
}

/// `stage` is one of `addresses`, `list`, `write`.
pub(crate) fn error(stage: &'static str) {
    if let Some(m) = metrics() {
        m.errors.with_label_values(&[stage]).inc();
    }
}

/// An Event about an Ingress was posted (`ok`) or refused.
pub(crate) fn event_posted(ok: bool) {
    static EVENTS: OnceLock<Option<IntCounterVec>> = OnceLock::new();
    let family = EVENTS.get_or_init(|| {
        let v = IntCounterVec::new(
            Opts::new(
                "ingress_events_total",
                "Kubernetes Events posted on Ingresses, by result (ok, error).",
            ),
            &["result"],
        )
        .ok()?;
        Some(crate::metrics::register(v))
    });
    if let Some(f) = family {
        f.with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }
}

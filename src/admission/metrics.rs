//! Admission metric families.
use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::metrics::register;

/// Reviews answered, by endpoint, kind, operation, result and dry run.
pub static REVIEWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("admission_reviews_total", "AdmissionReviews answered"),
            &["endpoint", "kind", "operation", "allowed", "dry_run"],
        )
        .expect("constant metric definition"),
    )
});

/// Time from the body being read to the response being encoded.
pub static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "admission_review_duration_seconds",
                "Time to decide one review",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 1.0, 10.0,
            ]),
            &["endpoint"],
        )
        .expect("constant metric definition"),
    )
});

/// Findings by rule and action (not counted for dry runs).
pub static FINDINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("admission_findings_total", "Rule findings"),
            &["rule", "action"],
        )
        .expect("constant metric definition"),
    )
});

/// Requests rejected before a review could be read, by HTTP status.
pub static BAD_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "admission_bad_requests_total",
                "Requests that were not valid reviews",
            ),
            &["status"],
        )
        .expect("constant metric definition"),
    )
});

/// Patches returned by /mutate.
pub static PATCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("admission_patches_total", "Mutations that returned a patch"),
            &["kind"],
        )
        .expect("constant metric definition"),
    )
});

/// The `kind` label for a reviewed object: one of the kinds a cluster commonly sends a
/// webhook, else `other`. The kind is request data, and any in-cluster client can send
/// reviews with kinds of its choosing; a label taken from it would grow without bound.
pub fn kind_label(kind: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "ReplicationController",
        "Ingress",
        "IngressClass",
        "Service",
        "EndpointSlice",
        "ConfigMap",
        "Secret",
        "Namespace",
        "ServiceAccount",
        "Role",
        "ClusterRole",
        "RoleBinding",
        "ClusterRoleBinding",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    ];
    KNOWN
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_a_closed_set() {
        assert_eq!(kind_label("Deployment"), "Deployment");
        assert_eq!(kind_label("Ingress"), "Ingress");
        assert_eq!(kind_label("deployment"), "other");
        assert_eq!(kind_label("Kind12345"), "other");
        assert_eq!(kind_label(""), "other");
    }
}

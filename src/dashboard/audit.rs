//! The last background audit as the dashboard shows it: Polaris' scores and the failing
//! findings, cut down from an [`AuditReport`] once per audit so the document the page
//! polls every second stays small and costs nothing to build.
//!
//! JSON (the `audit` key of `/dashboard/state.json`; null while auditing is off or before
//! the first audit has finished):
//! ```text
//! { "timeMs": epoch milliseconds when the audit started (what it saw was current then),
//!   "durationMs": float,
//!   "source": string,                 // the manifests directory, or "cluster (watched objects)"
//!   "objects": n,                     // objects audited
//!   "score": 0..100, "counts": Counts,
//!   "namespaces": [ { "namespace": string ("" for cluster-scoped), "score", "counts" } ],
//!   "findings": [ { "kind", "namespace", "name", "check", "severity": "danger" | "warning",
//!                   "message", "path": JSON Pointer ("" for the object) } ],
//!   "findingsTotal": n,               // failing findings in all; more than listed when capped
//!   "truncated": bool }               // findings were cut to the configured maximum
//! Counts = { "successes": n, "warnings": n, "dangers": n }
//! ```
//! Findings are listed dangers first, then by namespace, kind, name and check.
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use serde::Serialize;

use crate::admission::audit::{AuditReport, Counts, NamespaceResult};

/// One failing check on one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub check: String,
    pub severity: &'static str,
    pub message: String,
    pub path: String,
}

/// What the dashboard shows of one audit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditSummary {
    pub time_ms: u64,
    pub duration_ms: f64,
    pub source: String,
    pub objects: usize,
    pub score: u64,
    pub counts: Counts,
    pub namespaces: Vec<NamespaceResult>,
    pub findings: Vec<Finding>,
    pub findings_total: usize,
    pub truncated: bool,
}

/// Where the last audit is published: written by the background audit, read by every
/// dashboard request without waiting.
pub type AuditCell = Arc<ArcSwapOption<AuditSummary>>;

/// When and over how much an audit ran.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub time_ms: u64,
    pub duration_ms: f64,
    pub objects: usize,
}

/// The summary of `report`, with at most `max_findings` findings listed.
pub fn summarize(report: &AuditReport, run: Run, max_findings: usize) -> AuditSummary {
    let mut findings: Vec<Finding> = report
        .workloads
        .iter()
        .flat_map(|w| {
            w.results.iter().filter(|r| !r.success).map(|r| Finding {
                kind: w.kind.clone(),
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                check: r.check.clone(),
                severity: r.severity.unwrap_or("warning"),
                message: r.message.clone(),
                path: r.path.clone(),
            })
        })
        .collect();
    // The report is already ordered by object and check; a stable sort keeps that within
    // each severity, so what the cap drops is the least severe.
    findings.sort_by_key(|f| f.severity != "danger");
    let findings_total = findings.len();
    findings.truncate(max_findings);
    AuditSummary {
        time_ms: run.time_ms,
        duration_ms: run.duration_ms,
        source: report.source.clone(),
        objects: run.objects,
        score: report.score,
        counts: report.counts,
        namespaces: report.namespaces.clone(),
        truncated: findings.len() < findings_total,
        findings,
        findings_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::audit::{Input, audit};
    use crate::admission::polaris;
    use serde_json::json;

    fn report() -> AuditReport {
        let (engine, _) = polaris::engine(Default::default(), None).unwrap();
        let inputs = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "app", "image": "nginx"}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"ports": [{"port": 80}]}}),
        ]
        .into_iter()
        .map(|object| Input {
            file: "t.yaml".into(),
            object,
        })
        .collect::<Vec<_>>();
        audit(&engine, "t", &inputs)
    }

    const RUN: Run = Run {
        time_ms: 1_700_000_000_000,
        duration_ms: 1.5,
        objects: 2,
    };

    #[test]
    fn lists_failures_dangers_first() {
        let report = report();
        let s = summarize(&report, RUN, 1000);
        let failing = report.counts.warnings + report.counts.dangers;
        assert_eq!(s.findings_total as u64, failing);
        assert_eq!(s.findings.len(), s.findings_total);
        assert!(!s.truncated);
        assert_eq!(s.score, report.score);
        let tag = s
            .findings
            .iter()
            .find(|f| f.check == "tagNotSpecified")
            .expect("an untagged image fails tagNotSpecified");
        assert_eq!(
            (tag.kind.as_str(), tag.namespace.as_str(), tag.name.as_str()),
            ("Deployment", "shop", "web")
        );
        assert_eq!(tag.severity, "danger");
        let first_warning = s.findings.iter().position(|f| f.severity == "warning");
        let last_danger = s.findings.iter().rposition(|f| f.severity == "danger");
        assert!(last_danger < first_warning, "{:?}", s.findings);
    }

    #[test]
    fn caps_the_listing_but_not_the_counts() {
        let report = report();
        let s = summarize(&report, RUN, 2);
        assert_eq!(s.findings.len(), 2);
        assert!(s.findings_total > 2);
        assert!(s.truncated);
        assert!(s.findings.iter().all(|f| f.severity == "danger"));
        assert_eq!(s.counts, report.counts);
    }

    #[test]
    fn json_shape() {
        let s = summarize(&report(), RUN, 1000);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "timeMs",
            "durationMs",
            "source",
            "objects",
            "score",
            "counts",
            "namespaces",
            "findings",
            "findingsTotal",
            "truncated",
        ] {
            assert!(v.get(key).is_some(), "no {key} in {v}");
        }
        assert_eq!(v["timeMs"], 1_700_000_000_000u64);
        assert_eq!(v["objects"], 2);
        assert_eq!(v["namespaces"][0]["namespace"], "shop");
        assert!(v["namespaces"][0]["score"].is_u64());
        assert!(v["counts"]["dangers"].as_u64().unwrap() > 0);
        let f = &v["findings"][0];
        for key in [
            "kind",
            "namespace",
            "name",
            "check",
            "severity",
            "message",
            "path",
        ] {
            assert!(f[key].is_string(), "finding lacks {key}: {f}");
        }
    }
}

//! `portcullis audit`: every object through every rule, with Polaris' score per object, per
//! namespace and overall. Pure: objects in, report out; reading files and printing live
//! in the CLI and in [`super::audit_render`].
//!
//! A rule that judges an object's kind and finds nothing is a success; each finding is a
//! warning or a danger (by its action). Rules that are off, or exempt for the object, do
//! not count. Score, as Polaris computes it: successes weigh 2, warnings 1, dangers 2 in
//! the total, and the score is `2 × successes / total × 100`, rounded down (100 when
//! nothing was judged).
//!
//! JSON schema of [`AuditReport`] (all keys always present unless noted):
//! ```text
//! { "version": "1",
//!   "displayName": string | null,       // from the Polaris configuration
//!   "source": string,                   // what was audited (the --audit-path)
//!   "score": 0..100, "counts": Counts,
//!   "namespaces": [ { "namespace": string ("" for cluster-scoped), "score", "counts" } ],
//!   "workloads": [ { "kind", "namespace", "name", "file", "score", "counts",
//!                    "results": [ { "check", "category", "success": bool,
//!                                   "severity": "danger" | "warning" | null (successes),
//!                                   "message", "path": JSON Pointer ("" for the object) } ] } ] }
//! Counts = { "successes": n, "warnings": n, "dangers": n }
//! ```
//! Workloads are sorted by namespace, kind and name; results by check id.
use crate::admission::lookup::At;
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::cluster::{ClusterView, group_of, name_of};
use super::context::{Context, Operation};
use super::engine::Engine;
use super::settings::Action;

/// The version of the JSON layout above.
pub const REPORT_VERSION: &str = "1";

/// Tally of one object, namespace or the whole audit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub successes: u64,
    pub warnings: u64,
    pub dangers: u64,
}

impl Counts {
    /// Polaris' score: `2·successes / (2·successes + warnings + 2·dangers) · 100`, rounded
    /// down; 100 when nothing counted.
    pub fn score(&self) -> u64 {
        let good = self.successes * 2;
        let total = good + self.warnings + self.dangers * 2;
        if total == 0 {
            return 100;
        }
        good * 100 / total
    }

    fn add(&mut self, other: &Counts) {
        self.successes += other.successes;
        self.warnings += other.warnings;
        self.dangers += other.dangers;
    }
}

/// One check's outcome on one object (or one of its containers).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub category: String,
    pub success: bool,
    /// `danger` or `warning` for failures; None for successes.
    pub severity: Option<&'static str>,
    pub message: String,
    pub path: String,
    /// The container the finding is about, when its path is inside one (for Polaris'
    /// layout, which groups container results).
    #[serde(skip)]
    pub container: Option<String>,
    /// The check's configured severity, also for successes (Polaris reports it).
    #[serde(skip)]
    pub configured: &'static str,
}

/// Everything found on one object.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadResult {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub file: String,
    pub score: u64,
    pub counts: Counts,
    pub results: Vec<CheckResult>,
    /// `metadata.creationTimestamp`, when the object has one.
    #[serde(skip)]
    pub created: Option<String>,
    /// The object has a pod spec (a Pod or a workload with a template).
    #[serde(skip)]
    pub has_pod: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceResult {
    pub namespace: String,
    pub score: u64,
    pub counts: Counts,
}

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    pub version: &'static str,
    pub display_name: Option<String>,
    pub source: String,
    pub score: u64,
    pub counts: Counts,
    pub namespaces: Vec<NamespaceResult>,
    pub workloads: Vec<WorkloadResult>,
}

impl AuditReport {
    /// True when any check failed with severity danger.
    pub fn has_danger(&self) -> bool {
        self.counts.dangers > 0
    }

    /// Drops the successes from the listing (the counts and scores stay as audited).
    pub fn only_failures(&mut self) {
        for w in &mut self.workloads {
            w.results.retain(|r| !r.success);
        }
        self.workloads.retain(|w| !w.results.is_empty());
    }
}

/// One object with the file it came from.
#[derive(Debug, Clone)]
pub struct Input {
    pub file: String,
    pub object: Value,
}

/// The namespace an object is reported under: its own, `default` for a namespaced object
/// that names none, `""` for cluster-scoped kinds.
fn report_namespace(kind: &str, obj: &Value) -> String {
    const CLUSTER_SCOPED: [&str; 8] = [
        "Namespace",
        "Node",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "IngressClass",
        "PriorityClass",
    ];
    if CLUSTER_SCOPED.contains(&kind) {
        return String::new();
    }
    super::cluster::namespace_of(obj).to_string()
}

fn severity(action: Action) -> Option<&'static str> {
    match action {
        Action::Deny => Some("danger"),
        Action::Warn => Some("warning"),
        Action::Off => None,
    }
}

/// Audits one object.
fn audit_one(engine: &Engine, input: &Input, view: &ClusterView) -> WorkloadResult {
    let obj = &input.object;
    let group = group_of(obj);
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let namespace = report_namespace(kind, obj);
    let ctx_namespace = if namespace.is_empty() {
        ""
    } else {
        namespace.as_str()
    };
    let mut ctx = Context::new(
        group,
        kind,
        Operation::Create,
        ctx_namespace,
        "",
        obj,
        engine.settings(),
    );
    ctx.cluster = Some(view);
    let mut results = Vec::new();
    let mut counts = Counts::default();
    let skipped = engine.skip(&ctx, super::engine::Mode::Validate).is_some();
    for rule in engine.rules() {
        let action = engine.action(rule.as_ref());
        let Some(sev) = severity(action) else {
            continue;
        };
        if skipped || engine.exempt(rule.as_ref(), &ctx) {
            continue;
        }
        let found = engine.findings(rule.as_ref(), &ctx);
        if found.is_empty() {
            if rule.applies(&ctx) {
                counts.successes += 1;
                results.push(CheckResult {
                    check: rule.id().to_string(),
                    category: rule.category().to_string(),
                    success: true,
                    severity: None,
                    message: rule.success_message().to_string(),
                    path: String::new(),
                    container: None,
                    configured: sev,
                });
            }
            continue;
        }
        for v in found {
            match action {
                Action::Deny => counts.dangers += 1,
                _ => counts.warnings += 1,
            }
            results.push(CheckResult {
                check: rule.id().to_string(),
                category: rule.category().to_string(),
                success: false,
                severity: Some(sev),
                message: v.message,
                container: super::engine::container_at(obj, &v.path.render()),
                path: v.path.render(),
                configured: sev,
            });
        }
    }
    let has_pod = ctx.template.is_some();
    // Stable order for diffs: by check id, then path.
    results.sort_by(|a, b| (&a.check, &a.path).cmp(&(&b.check, &b.path)));
    WorkloadResult {
        kind: kind.to_string(),
        namespace,
        name: name_of(obj).to_string(),
        file: input.file.clone(),
        score: counts.score(),
        counts,
        results,
        created: obj
            .at("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .map(str::to_string),
        has_pod,
    }
}

/// Audits every input against the others (they form the cluster view).
pub fn audit(engine: &Engine, source: &str, inputs: &[Input]) -> AuditReport {
    audit_with_progress(engine, source, inputs, &mut |_, _| {})
}

/// [`audit`], calling `progress(done, total)` after each object (for a terminal display).
pub fn audit_with_progress(
    engine: &Engine,
    source: &str,
    inputs: &[Input],
    progress: &mut dyn FnMut(usize, usize),
) -> AuditReport {
    let view = ClusterView::new(inputs.iter().map(|i| &i.object));
    audit_in_view(engine, source, inputs, &view, progress)
}

/// Audits the inputs against the inputs themselves, as a view that does not claim to
/// be complete: for objects seen through watches, where an absence proves nothing.
pub fn audit_watched(engine: &Engine, source: &str, inputs: &[Input]) -> AuditReport {
    let view = ClusterView::partial(inputs.iter().map(|i| &i.object));
    audit_in_view(engine, source, inputs, &view, &mut |_, _| {})
}

fn audit_in_view(
    engine: &Engine,
    source: &str,
    inputs: &[Input],
    view: &ClusterView,
    progress: &mut dyn FnMut(usize, usize),
) -> AuditReport {
    let total = inputs.len();
    let mut workloads: Vec<WorkloadResult> = Vec::with_capacity(total);
    for (done, i) in inputs.iter().enumerate() {
        if i.object.get("kind").and_then(Value::as_str).is_some() {
            workloads.push(audit_one(engine, i, view));
        }
        progress(done + 1, total);
    }
    workloads.sort_by(|a, b| {
        (&a.namespace, &a.kind, &a.name, &a.file).cmp(&(&b.namespace, &b.kind, &b.name, &b.file))
    });
    let mut total = Counts::default();
    let mut by_ns: BTreeMap<String, Counts> = BTreeMap::new();
    for w in &workloads {
        total.add(&w.counts);
        by_ns.entry(w.namespace.clone()).or_default().add(&w.counts);
    }
    AuditReport {
        version: REPORT_VERSION,
        display_name: engine.display_name().map(str::to_string),
        source: source.to_string(),
        score: total.score(),
        counts: total,
        namespaces: by_ns
            .into_iter()
            .map(|(namespace, counts)| NamespaceResult {
                namespace,
                score: counts.score(),
                counts,
            })
            .collect(),
        workloads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polaris_score() {
        let c = |s, w, d| Counts {
            successes: s,
            warnings: w,
            dangers: d,
        };
        assert_eq!(c(0, 0, 0).score(), 100);
        assert_eq!(c(3, 0, 0).score(), 100);
        // 2·3 / (6 + 1 + 2) = 66.6… → 66
        assert_eq!(c(3, 1, 1).score(), 66);
        assert_eq!(c(0, 2, 0).score(), 0);
        assert_eq!(c(1, 0, 1).score(), 50);
    }
}

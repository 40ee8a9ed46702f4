//! Scheduling rules after Polaris: a priority class so the scheduler knows what to evict
//! first, and topology spread so replicas do not all land in one zone or on one node.
//! Only pods meant to keep running are asked to spread.
use serde_json::Value;

use super::{Rule, Violation, violations_now};
use crate::admission::context::Context;
use crate::admission::patch::PatchBuilder;
use crate::admission::settings::Action;

/// The scheduling rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(PriorityClassNotSet),
        Box::new(TopologySpreadConstraint),
    ]
}

/// `priorityClassNotSet` (Polaris id): without `priorityClassName` the pod gets the
/// cluster's default priority, usually zero, and is preempted like a batch job.
///
/// Its mutation is off unless switched on (a Polaris configuration's `mutations` list, or
/// `mutate: true` in the settings). It writes Polaris' `high-priority`, a class that
/// must exist in the cluster: the API server refuses a pod naming a class it does not
/// know, so only a cluster that has it should turn this on.
pub struct PriorityClassNotSet;

/// The class Polaris' `priorityClassNotSet` mutation names.
const POLARIS_PRIORITY_CLASS: &str = "high-priority";

impl Rule for PriorityClassNotSet {
    fn id(&self) -> &'static str {
        "priorityClassNotSet"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let ptr = t.spec.child("priorityClassName");
        let set = ptr
            .get(ctx.object)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if set || t.spec.get(ctx.object).is_none() {
            return Vec::new();
        }
        vec![Violation::new(
            "pod has no priorityClassName: set one so the scheduler knows which pods to keep when a node runs short",
            ptr,
        )]
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        // The finding points at the field; `set` replaces an empty or non-string one.
        for v in violations_now(self, ctx, patch) {
            patch.set(&v.path, Value::String(POLARIS_PRIORITY_CLASS.to_string()));
        }
    }
}

/// `topologySpreadConstraint` (Polaris id): no `topologySpreadConstraints`, so one zone or
/// node failure can take every replica.
pub struct TopologySpreadConstraint;

impl Rule for TopologySpreadConstraint {
    fn id(&self) -> &'static str {
        "topologySpreadConstraint"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        let Some(t) = ctx.template.as_ref().filter(|t| t.long_running) else {
            return Vec::new();
        };
        if t.spec.get(ctx.object).is_none() {
            return Vec::new();
        }
        let ptr = t.spec.child("topologySpreadConstraints");
        let set = ptr
            .get(ctx.object)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if set {
            return Vec::new();
        }
        vec![Violation::new(
            "pod has no topologySpreadConstraints: spread it over topology.kubernetes.io/zone (or kubernetes.io/hostname) so one failure does not take every replica",
            ptr,
        )]
    }
}

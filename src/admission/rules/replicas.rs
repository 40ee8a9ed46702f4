//! Replica counts: a workload with fewer than two replicas goes down with one node.
use serde_json::Value;

use super::workloads::replicas;
use super::{Rule, Violation, violations_now};
use crate::admission::context::Context;
use crate::admission::patch::{PatchBuilder, Pointer};
use crate::admission::settings::Action;

/// The replica rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(DeploymentMissingReplicas::DEPLOYMENT),
        Box::new(DeploymentMissingReplicas::STATEFUL_SET),
    ]
}

/// `deploymentMissingReplicas` (Polaris id) and `statefulSetMissingReplicas`: fewer than
/// two replicas means one node drain or crash takes the workload down. The Deployment
/// check warns, as in Polaris (exempt a Deployment whose replicas an HPA owns); the
/// StatefulSet one is ours and off by default.
pub struct DeploymentMissingReplicas {
    id: &'static str,
    kind: &'static str,
    default: Action,
}

impl DeploymentMissingReplicas {
    pub const DEPLOYMENT: DeploymentMissingReplicas = DeploymentMissingReplicas {
        id: "deploymentMissingReplicas",
        kind: "Deployment",
        default: Action::Warn,
    };
    pub const STATEFUL_SET: DeploymentMissingReplicas = DeploymentMissingReplicas {
        id: "statefulSetMissingReplicas",
        kind: "StatefulSet",
        default: Action::Off,
    };
}

impl Rule for DeploymentMissingReplicas {
    fn id(&self) -> &'static str {
        self.id
    }
    fn default_action(&self) -> Action {
        self.default
    }
    fn mutation(&self) -> Option<bool> {
        Some(false)
    }
    /// Polaris' fix: three replicas.
    fn mutate(&self, ctx: &Context<'_>, patch: &mut PatchBuilder) {
        for v in violations_now(self, ctx, patch) {
            patch.set(&v.path, Value::from(3));
        }
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("apps", self.kind)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != ("apps", self.kind) {
            return Vec::new();
        }
        let n = replicas(ctx.object);
        if n >= 2 {
            return Vec::new();
        }
        let plural = if n == 1 { "" } else { "s" };
        vec![Violation::new(
            format!(
                "{} runs {n} replica{plural}: set spec.replicas to 2 or more so one node drain or crash does not take it down (exempt it if an HPA manages replicas)",
                ctx.kind
            ),
            Pointer::from_tokens(["spec", "replicas"]),
        )]
    }
}

//! Availability rules after Polaris: PodDisruptionBudgets that block every eviction,
//! Deployments that no PDB protects, HPAs that cannot scale or scale down to one, and a
//! PDB that asks for more pods than the HPA keeps.
//!
//! The Deployment checks read PDBs and HPAs from the cluster view. A PDB protects a
//! Deployment when its selector selects the Deployment's pod template in the same
//! namespace (Kubernetes' meaning; an empty selector selects every pod).
use crate::admission::lookup::At;
use serde_json::{Map, Value};

use super::workloads::label_selector_misses;
use super::{Rule, Violation};
use crate::admission::cluster::{ClusterView, name_of, namespace_of};
use crate::admission::context::Context;
use crate::admission::patch::Pointer;
use crate::admission::settings::Action;

/// The availability rules.
pub fn rules() -> Vec<Box<dyn Rule>> {
    vec![
        Box::new(MissingPodDisruptionBudget),
        Box::new(PdbDisruptionsIsZero),
        Box::new(HpaMaxAvailability),
        Box::new(HpaMinAvailability),
        Box::new(PdbMinAvailableGreaterThanHpaMinReplicas),
    ]
}

fn is_deployment(ctx: &Context<'_>) -> bool {
    (ctx.group, ctx.kind) == ("apps", "Deployment")
}

fn template_labels<'v>(ctx: &Context<'v>) -> Option<&'v Map<String, Value>> {
    let t = ctx.template.as_ref()?;
    t.metadata
        .child("labels")
        .get(ctx.object)
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
}

/// The PDBs in the Deployment's namespace that select its pods.
fn matching_pdbs<'v>(
    view: &'v ClusterView,
    namespace: &'v str,
    labels: &'v Map<String, Value>,
) -> impl Iterator<Item = &'v Value> + 'v {
    view.in_namespace("policy", "PodDisruptionBudget", namespace)
        .filter(move |pdb| {
            pdb.at("/spec/selector")
                .and_then(Value::as_object)
                .is_some_and(|sel| label_selector_misses(sel, Some(labels)).is_empty())
        })
}

/// `missingPodDisruptionBudget` (Polaris id): a Deployment whose pods no PDB protects, so
/// a node drain may evict all of them at once.
pub struct MissingPodDisruptionBudget;

impl Rule for MissingPodDisruptionBudget {
    fn id(&self) -> &'static str {
        "missingPodDisruptionBudget"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        is_deployment(ctx)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !is_deployment(ctx) {
            return Vec::new();
        }
        let Some(t) = &ctx.template else {
            return Vec::new();
        };
        let Some(labels) = template_labels(ctx) else {
            return vec![Violation::new(
                "pod template has no labels, so no PodDisruptionBudget can select it: label the pods and add a PDB for them",
                t.metadata.child("labels"),
            )];
        };
        let Some(view) = ctx.cluster else {
            return Vec::new();
        };
        let namespace = namespace_of(ctx.object);
        if matching_pdbs(view, namespace, labels).next().is_some() {
            return Vec::new();
        }
        vec![Violation::new(
            format!(
                "no PodDisruptionBudget in namespace {namespace} among the objects given selects this Deployment's pods: add one (for example minAvailable: 1) so a node drain cannot evict them all at once"
            ),
            t.metadata.child("labels"),
        )]
    }
}

/// An IntOrString that is an integer or a `N%` string.
fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|i| (i, false)),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => p.trim().parse().ok().map(|p| (p, true)),
            None => s.trim().parse().ok().map(|i| (i, false)),
        },
        _ => None,
    }
}

/// `pdbDisruptionsIsZero` (Polaris id): `minAvailable: 100%` or `maxUnavailable: 0`
/// leaves no room for any voluntary eviction, so node drains hang.
pub struct PdbDisruptionsIsZero;

impl Rule for PdbDisruptionsIsZero {
    fn id(&self) -> &'static str {
        "pdbDisruptionsIsZero"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        (ctx.group, ctx.kind) == ("policy", "PodDisruptionBudget")
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if (ctx.group, ctx.kind) != ("policy", "PodDisruptionBudget") {
            return Vec::new();
        }
        let get = |f: &str| {
            ctx.object
                .at(&format!("/spec/{f}"))
                .and_then(int_or_percent)
        };
        let (field, text) = match (get("minAvailable"), get("maxUnavailable")) {
            (Some((100, true)), _) => ("minAvailable", "minAvailable is 100%"),
            (_, Some((0, _))) => ("maxUnavailable", "maxUnavailable is 0"),
            _ => return Vec::new(),
        };
        vec![Violation::new(
            format!(
                "PodDisruptionBudget allows no disruption ({text}): node drains and cluster upgrades will hang; allow at least one pod to be evicted"
            ),
            Pointer::from_tokens(["spec", field]),
        )]
    }
}

fn is_hpa(ctx: &Context<'_>) -> bool {
    (ctx.group, ctx.kind) == ("autoscaling", "HorizontalPodAutoscaler")
}

/// `minReplicas`, Kubernetes' default 1 when unset.
fn hpa_min(hpa: &Value) -> i64 {
    hpa.at("/spec/minReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// `hpaMaxAvailability` (Polaris id): an HPA whose `maxReplicas` is not above
/// `minReplicas` can never scale out.
pub struct HpaMaxAvailability;

impl Rule for HpaMaxAvailability {
    fn id(&self) -> &'static str {
        "hpaMaxAvailability"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        is_hpa(ctx)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !is_hpa(ctx) {
            return Vec::new();
        }
        let min = hpa_min(ctx.object);
        let ptr = Pointer::from_tokens(["spec", "maxReplicas"]);
        let message = match ptr.get(ctx.object).and_then(Value::as_i64) {
            None => {
                "HorizontalPodAutoscaler has no maxReplicas: set it above minReplicas".to_string()
            }
            Some(max) if max <= min => format!(
                "HorizontalPodAutoscaler maxReplicas {max} is not above minReplicas {min}, so it can never scale out: raise maxReplicas"
            ),
            Some(_) => return Vec::new(),
        };
        vec![Violation::new(message, ptr)]
    }
}

/// `hpaMinAvailability` (Polaris id): an HPA allowed to scale down to one pod leaves the
/// workload without a spare.
pub struct HpaMinAvailability;

impl Rule for HpaMinAvailability {
    fn id(&self) -> &'static str {
        "hpaMinAvailability"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        is_hpa(ctx)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !is_hpa(ctx) {
            return Vec::new();
        }
        let ptr = Pointer::from_tokens(["spec", "minReplicas"]);
        match ptr.get(ctx.object).and_then(Value::as_i64) {
            Some(min) if min < 2 => vec![Violation::new(
                format!(
                    "HorizontalPodAutoscaler minReplicas is {min}: set it to 2 or more so one pod failure does not take the workload down"
                ),
                ptr,
            )],
            _ => Vec::new(),
        }
    }
}

/// `pdbMinAvailableGreaterThanHPAMinReplicas` (Polaris id): the Deployment's PDB asks for
/// more available pods than its HPA may scale down to, so at the minimum no pod can ever
/// be evicted. Without an HPA or a PDB in the view there is nothing to compare.
pub struct PdbMinAvailableGreaterThanHpaMinReplicas;

/// `minAvailable` as a pod count for `replicas` pods (percentages round up, as the
/// disruption controller does).
pub fn min_available(pdb: &Value, replicas: i64) -> Option<i64> {
    let (n, percent) = int_or_percent(pdb.at("/spec/minAvailable")?)?;
    Some(if percent {
        (n.saturating_mul(replicas) + 99).div_euclid(100)
    } else {
        n
    })
}

impl Rule for PdbMinAvailableGreaterThanHpaMinReplicas {
    fn id(&self) -> &'static str {
        "pdbMinAvailableGreaterThanHPAMinReplicas"
    }
    fn default_action(&self) -> Action {
        Action::Warn
    }
    fn applies(&self, ctx: &Context<'_>) -> bool {
        is_deployment(ctx)
    }
    fn check(&self, ctx: &Context<'_>) -> Vec<Violation> {
        if !is_deployment(ctx) {
            return Vec::new();
        }
        let (Some(view), Some(labels)) = (ctx.cluster, template_labels(ctx)) else {
            return Vec::new();
        };
        let namespace = namespace_of(ctx.object);
        let name = name_of(ctx.object);
        let hpa = view
            .in_namespace("autoscaling", "HorizontalPodAutoscaler", namespace)
            .find(|h| {
                let target = |f: &str| {
                    h.at(&format!("/spec/scaleTargetRef/{f}"))
                        .and_then(Value::as_str)
                };
                target("kind") == Some("Deployment") && target("name") == Some(name)
            });
        let Some(hpa) = hpa else {
            return Vec::new();
        };
        let min = hpa_min(hpa);
        let mut out = Vec::new();
        for pdb in matching_pdbs(view, namespace, labels) {
            if let Some(needed) = min_available(pdb, min).filter(|n| *n > min) {
                out.push(Violation::new(
                    format!(
                        "PodDisruptionBudget {} needs {needed} pods available but HorizontalPodAutoscaler {} may scale this Deployment down to {min}: lower minAvailable or raise minReplicas",
                        name_of(pdb),
                        name_of(hpa)
                    ),
                    Pointer::from_tokens(["spec", "replicas"]),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentages_round_up() {
        let pdb = |v: Value| json!({"spec": {"minAvailable": v}});
        assert_eq!(min_available(&pdb(json!("50%")), 3), Some(2));
        assert_eq!(min_available(&pdb(json!("100%")), 2), Some(2));
        assert_eq!(min_available(&pdb(json!(4)), 2), Some(4));
        assert_eq!(min_available(&pdb(json!("x%")), 2), None);
        assert_eq!(min_available(&json!({"spec": {}}), 2), None);
    }
}
